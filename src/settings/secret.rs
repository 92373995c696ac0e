//! Secret settings (ADMIN_TOKEN, PROMETHEUS_TOKEN): read from the environment only, and
//! never shown.

/// A secret setting: never shown, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A bearer token that guards an endpoint: at least 16 characters, else an error naming
/// `var` (its value is never echoed). Unset or blank: `None`.
pub(super) fn token(var: &str, raw: Option<&str>, errors: &mut Vec<String>) -> Option<Secret> {
    match raw.map(str::trim) {
        None | Some("") => None,
        Some(t) if t.len() >= 16 => Some(Secret(t.to_owned())),
        Some(_) => {
            errors.push(format!("{var} is shorter than 16 characters: use a random one"));
            None
        }
    }
}

/// A secret given by someone else (a Prometheus token): any non-blank value.
pub(super) fn given(raw: Option<&str>) -> Option<Secret> {
    raw.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Secret(t.to_owned()))
}

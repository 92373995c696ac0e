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

//! `${VAR}` and `${VAR:-default}` substitution, done on the text before YAML parsing so that
//! thresholds come from the environment (a ConfigMap through `envFrom`). Values may not
//! contain newlines (that would let a variable inject YAML), so line numbers of the result
//! equal those of the source, and columns are mapped back for error messages.

/// A substitution failure at a position of the source text (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct SubstError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// The substituted text and the column shifts it introduced.
#[derive(Debug, Clone, Default)]
pub struct Substituted {
    pub text: String,
    /// (line, column in the output just after the replacement, output length − input length)
    shifts: Vec<(usize, usize, isize)>,
    /// (line, variable, value) for every value taken from the environment rather than a
    /// default.
    from_env: Vec<(usize, String, String)>,
}

impl Substituted {
    /// Maps a 1-based output column on `line` back to the source column.
    pub fn source_col(&self, line: usize, col: usize) -> usize {
        let shift: isize = self
            .shifts
            .iter()
            .filter(|(l, end, _)| *l == line && *end <= col)
            .map(|(_, _, d)| *d)
            .sum();
        (col as isize - shift).max(1) as usize
    }

    /// The variables whose environment values were substituted into `line`, so an error
    /// there can say where the text it quotes came from.
    pub fn env_vars_on(&self, line: usize) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (l, name, _) in &self.from_env {
            if *l == line && !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }

    /// `message` with every environment value substituted into `line` replaced by its
    /// `${VAR}` where the message quotes it (between backticks, as every message here
    /// quotes what it found): an error never echoes what came from the environment, and
    /// its own words and numbers are left alone.
    pub fn hide_values(&self, line: usize, message: &str) -> String {
        let mut values: Vec<(&str, &str)> = self
            .from_env
            .iter()
            .filter(|(l, _, v)| *l == line && !v.is_empty())
            .map(|(_, name, v)| (name.as_str(), v.as_str()))
            .collect();
        // Longest first: a value that contains another is replaced whole.
        values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        message
            .split('`')
            .enumerate()
            .map(|(i, part)| {
                if i % 2 == 0 {
                    return part.to_owned();
                }
                let mut quoted = part.to_owned();
                for (name, value) in &values {
                    quoted = quoted.replace(value, &format!("${{{name}}}"));
                }
                quoted
            })
            .collect::<Vec<_>>()
            .join("`")
    }
}

/// The automaton's own secret settings: substitution never reads them, whatever the rule
/// file says (a `description: "${POSTGRES_PASSWORD}"` would show the password in `/status`).
pub const OWN_SECRETS: [&str; 7] = [
    "NOTIFY_WEBHOOK",
    "KAFKA_SASL_PASSWORD",
    "POSTGRES_PASSWORD",
    "DATABASE_URL",
    "ADMIN_TOKEN",
    "PROMETHEUS_TOKEN",
    "ALERTMANAGER_TOKEN",
];

/// Whether substitution must refuse `name`: one of [`OWN_SECRETS`], or a name listed in
/// `SECRET_VARS` (comma- or space-separated).
fn is_secret(name: &str, env: &dyn Fn(&str) -> Option<String>) -> bool {
    OWN_SECRETS.contains(&name)
        || env("SECRET_VARS")
            .is_some_and(|list| list.split([',', ' ']).map(str::trim).any(|listed| listed == name))
}

/// YAML's line breaks: serde_yaml (libyaml) ends a line at `\r\n`, `\n`, a lone `\r`, and at
/// NEL, LS and PS. Substitution splits lines exactly like that, so its line numbers are the
/// ones serde_yaml reports, and refuses every one of them in a value: a value with a LS
/// would otherwise inject YAML (`{max: ${X}}` with `X=1<LS>replicas: 99`).
pub const LINE_BREAKS: [char; 5] = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];

/// The lines of `text` as YAML counts them, each with its line break (`\r\n` is one).
pub fn lines_inclusive(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = match rest.char_indices().find(|(_, c)| LINE_BREAKS.contains(c)) {
            Some((i, '\r')) if rest[i + 1..].starts_with('\n') => i + 2,
            Some((i, c)) => i + c.len_utf8(),
            None => rest.len(),
        };
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// The lines of `text` as YAML counts them (see [`LINE_BREAKS`]), without their breaks.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    lines_inclusive(text).map(|line| line.trim_end_matches(LINE_BREAKS))
}

fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Replaces every `${...}`; `$${` stays a literal `${`. Collects every error.
pub fn substitute(src: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Substituted, Vec<SubstError>> {
    let mut out = Substituted::default();
    let mut errors = Vec::new();
    for (index, line) in lines_inclusive(src).enumerate() {
        let line_no = index + 1;
        let mut rest = line;
        let mut consumed = 0; // bytes of `line` already handled
        let mut out_line_len = 0usize;
        while let Some(pos) = rest.find("${") {
            let escaped = pos > 0 && rest.as_bytes()[pos - 1] == b'$';
            let before = if escaped { &rest[..pos - 1] } else { &rest[..pos] };
            out.text.push_str(before);
            out_line_len += before.chars().count();
            let start_col = line[..consumed + pos].chars().count() + 1;
            let after = &rest[pos + 2..];
            if escaped {
                out.text.push_str("${");
                out_line_len += 2;
                out.shifts.push((line_no, out_line_len + 1, -1));
                consumed += pos + 2;
                rest = after;
                continue;
            }
            let Some(close) = after.find('}') else {
                errors.push(SubstError {
                    line: line_no,
                    col: start_col,
                    message: "unclosed `${`: expected `${VAR}` or `${VAR:-default}`".into(),
                });
                out.text.push_str(&rest[pos..]);
                rest = "";
                break;
            };
            let body = &after[..close];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            let value = if !is_name(name) {
                errors.push(SubstError {
                    line: line_no,
                    col: start_col,
                    message: format!(
                        "invalid variable name `{name}` in `${{{body}}}`: expected [A-Za-z_][A-Za-z0-9_]*"
                    ),
                });
                String::new()
            } else if is_secret(name, env) {
                errors.push(SubstError {
                    line: line_no,
                    col: start_col,
                    message: format!(
                        "`${{{name}}}` is a secret (the automaton's own setting, or listed in SECRET_VARS): it is never substituted into rules, which `/status` and logs show"
                    ),
                });
                String::new()
            } else {
                match (env(name), default) {
                    (Some(v), _) if !v.is_empty() || default.is_none() => {
                        out.from_env.push((line_no, name.to_owned(), v.clone()));
                        v
                    }
                    (_, Some(d)) => d.to_owned(),
                    (None, None) => {
                        errors.push(SubstError { line: line_no, col: start_col, message: format!("environment variable `{name}` is not set and `${{{name}}}` has no default (write `${{{name}:-VALUE}}`)") });
                        String::new()
                    }
                    (Some(v), None) => v,
                }
            };
            if value.contains(LINE_BREAKS) {
                errors.push(SubstError {
                    line: line_no,
                    col: start_col,
                    message: format!(
                        "the value of `{name}` contains a line break, which is not allowed in a rule file"
                    ),
                });
            }
            out.text.push_str(&value);
            let written = value.chars().count();
            out_line_len += written;
            let read = body.chars().count() + 3;
            out.shifts
                .push((line_no, out_line_len + 1, written as isize - read as isize));
            consumed += pos + 2 + close + 1;
            rest = &after[close + 1..];
        }
        out.text.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KAFKA_LAG_THRESHOLD" => Some("20000".into()),
            "EMPTY" => Some(String::new()),
            "EVIL" => Some("1\nfoo: bar".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_values_defaults_and_escapes() {
        let s = substitute(
            "when: \"> ${KAFKA_LAG_THRESHOLD:-15000}\" x ${MISSING:-7} $${KEEP}\n",
            &env,
        )
        .unwrap();
        assert_eq!(s.text, "when: \"> 20000\" x 7 ${KEEP}\n");
        assert_eq!(s.env_vars_on(1), vec!["KAFKA_LAG_THRESHOLD"]);
        assert_eq!(substitute("${EMPTY:-3}", &env).unwrap().text, "3");
    }

    #[test]
    fn errors_point_at_the_variable() {
        let errs = substitute("a: 1\nb: \"> ${NOPE}\" ${bad-name} ${EVIL}\nc: ${OPEN", &env).unwrap_err();
        let got: Vec<_> = errs.iter().map(|e| (e.line, e.col)).collect();
        assert_eq!(got, vec![(2, 7), (2, 16), (2, 28), (3, 4)]);
        assert!(errs[0].message.contains("NOPE"));
    }

    #[test]
    fn lines_are_split_as_yaml_splits_them() {
        // Found by the rule_loader fuzzer: with a lone `\r` (or NEL, LS, PS) serde_yaml saw
        // more lines than substitution, so errors pointed at the wrong line and column.
        let got: Vec<_> = lines("a\r\nb\rc\nd\u{85}e\u{2028}f\u{2029}g").collect();
        assert_eq!(got, ["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(
            lines_inclusive("a\r\n\rb").collect::<Vec<_>>(),
            ["a\r\n", "\r", "b"]
        );
        let errs = substitute("a: 1\rb: ${NOPE}", &env).unwrap_err();
        assert_eq!((errs[0].line, errs[0].col), (2, 4));
        assert!(substitute("x: ${OPEN\r}", &env).unwrap_err()[0]
            .message
            .starts_with("unclosed"));
    }

    #[test]
    fn values_with_any_yaml_line_break_are_refused() {
        // Found by the rule_loader fuzzer: a value with a LS kept the `\n` count but added a
        // YAML line, letting the environment inject keys.
        let ls = |name: &str| (name == "LS").then(|| "1\u{2028}replicas: 99".to_owned());
        let errs = substitute("scale: {max: ${LS}}", &ls).unwrap_err();
        assert!(errs[0].message.contains("line break"), "{}", errs[0].message);
    }

    #[test]
    fn columns_map_back_to_the_source() {
        let s = substitute("x: ${KAFKA_LAG_THRESHOLD:-1} ]", &env).unwrap();
        // `]` is at output column 10, source column 30.
        assert_eq!(s.text, "x: 20000 ]");
        assert_eq!(s.source_col(1, 10), 30);
        assert_eq!(s.source_col(1, 2), 2);
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "POSTGRES_PASSWORD" => Some("pg-pass".into()),
            "VAULT_TOKEN" => Some("hvs.secret".into()),
            "SECRET_VARS" => Some("VAULT_TOKEN, OTHER".into()),
            "FOR" => Some("soon".into()),
            _ => None,
        }
    }

    #[test]
    fn secrets_are_never_substituted_even_with_a_default() {
        for text in [
            "description: \"${POSTGRES_PASSWORD}\"\n",
            "description: \"${VAULT_TOKEN:-x}\"\n",
            "description: \"${DATABASE_URL:-x}\"\n",
        ] {
            let errors = substitute(text, &env).expect_err("a secret");
            assert_eq!(errors.len(), 1, "{text}");
            assert!(errors[0].message.contains("is a secret"), "{:?}", errors[0]);
            assert!(!errors[0].message.contains("pg-pass") && !errors[0].message.contains("hvs."));
        }
    }

    #[test]
    fn an_error_shows_the_variable_not_its_value() {
        let out = substitute("    for: ${FOR}\n", &env).expect("substituted");
        assert_eq!(out.text, "    for: soon\n");
        assert_eq!(
            out.hide_values(1, "invalid duration `soon`: expected a number and a unit"),
            "invalid duration `${FOR}`: expected a number and a unit"
        );
        assert_eq!(
            out.hide_values(1, "rules[0].for soon: invalid `soon`"),
            "rules[0].for soon: invalid `${FOR}`",
            "only what the message quotes"
        );
        assert_eq!(
            out.hide_values(2, "soon"),
            "soon",
            "only the line it was substituted into"
        );
    }
}

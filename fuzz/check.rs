// The invariants of the rule loader on arbitrary text. Shared by the fuzz target
// (`fuzz/fuzz_targets/rule_loader.rs`) and the corpus replay in CI (`tests/fuzz_corpus.rs`),
// which both `include!` this file, so a corpus entry is checked exactly as it was fuzzed.
// Every check panics with the input's offending part: beyond "no panic", it asserts what
// the loader promises (errors at `FILE:LINE:COL` inside the file, values that print back in
// a form that parses to the same value, substitution that keeps line numbers).

/// The file name the input is loaded as; every error must start with it.
const FUZZ_FILE: &str = "fuzz.yaml";

/// What one input came to, so the corpus replay can tell that both paths are exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The input loaded; this many rules.
    Loaded(usize),
    /// The input was rejected with this many errors.
    Rejected(usize),
}

/// A deterministic environment: a few names with values of each kind the rules read, an
/// empty one (so `${EMPTY:-default}` takes the default) and values with line breaks (which
/// substitution must refuse); every other name is unset.
pub fn fuzz_env(name: &str) -> Option<String> {
    let value = match name {
        "T" => "15000",
        "D" => "5m",
        "Q" => "512Mi",
        "S" => "app=email",
        "N" => "kafka-lag",
        "EMPTY" => "",
        "NL" => "1\nx: y",
        "CR" => "1\rx: y",
        "LS" => "1\u{2028}x: y",
        _ => return None,
    };
    Some(value.to_owned())
}

/// Runs every check on one input (invalid UTF-8 is replaced, so every input reaches YAML).
pub fn check_rule_loader(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        check_scalars(line);
    }
    check_substitution(&text);
    check_load(&text)
}

/// Lines as YAML (libyaml) counts them: `\r\n`, `\r`, `\n`, NEL, LS and PS all end one.
pub fn yaml_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}') {
            lines.push(&text[start..i]);
            start = i + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|&(_, next)| next == '\n') {
                chars.next();
                start += 1;
            }
        }
    }
    lines.push(&text[start..]);
    lines
}

/// Durations, conditions and byte quantities: whatever parses prints back to the same value
/// (their `Display` is what `/status`, `explain` and re-serialized rules show).
pub fn check_scalars(s: &str) {
    use automaton::core::values::{parse_quantity, Bytes, Condition, Dur};
    match s.parse::<Dur>() {
        Ok(d) => assert_eq!(
            d.to_string().parse::<Dur>(),
            Ok(d),
            "duration {s:?} prints as {d}"
        ),
        Err(e) => assert!(e.0.contains("expected"), "duration {s:?}: {e}"),
    }
    match s.parse::<Condition>() {
        Ok(c) => {
            assert!(
                c.threshold.is_finite(),
                "condition {s:?} has threshold {}",
                c.threshold
            );
            assert_eq!(
                c.to_string().parse::<Condition>(),
                Ok(c),
                "condition {s:?} prints as {c}"
            );
        }
        Err(e) => assert!(e.0.contains("expected"), "condition {s:?}: {e}"),
    }
    match s.parse::<Bytes>() {
        Ok(b) => assert_eq!(b.to_string().parse::<Bytes>(), Ok(b), "bytes {s:?} print as {b}"),
        Err(e) => assert!(e.0.contains("expected"), "bytes {s:?}: {e}"),
    }
    if let Ok(n) = parse_quantity(s) {
        assert!(n.is_finite(), "quantity {s:?} is {n}");
    }
}

/// Substitution keeps every line where it was (values with line breaks are refused), and its
/// errors point inside the source.
pub fn check_substitution(text: &str) {
    match automaton::rules::subst::substitute(text, &fuzz_env) {
        Ok(s) => {
            assert_eq!(
                yaml_lines(&s.text).len(),
                yaml_lines(text).len(),
                "substitution changed the line count: {text:?} became {:?}",
                s.text
            );
            if !text.contains("${") {
                assert_eq!(s.text, text, "substitution changed text without `${{`");
            }
            for (i, line) in yaml_lines(&s.text).iter().enumerate() {
                let len = line.chars().count() + 1;
                assert!(s.source_col(i + 1, len) >= 1);
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "substitution failed without an error");
            let lines = yaml_lines(text);
            for e in errors {
                assert!(e.line >= 1 && e.line <= lines.len(), "{e:?} is outside {text:?}");
                let len = lines[e.line - 1].chars().count();
                assert!(
                    e.col >= 1 && e.col <= len,
                    "{e:?} is outside line {:?}",
                    lines[e.line - 1]
                );
                assert!(!e.message.is_empty());
            }
        }
    }
}

/// The loader: a rule set whose rules re-serialize to themselves, or errors that each start
/// with `fuzz.yaml:LINE:COL: ` at a position inside the file.
pub fn check_load(text: &str) -> Outcome {
    let file = std::path::Path::new(FUZZ_FILE);
    match automaton::rules::load_texts(&[(file, text)], &fuzz_env) {
        Ok(set) => {
            let mut names = std::collections::HashSet::new();
            for rule in &set.rules {
                assert!(
                    names.insert(rule.name.clone()),
                    "rule `{}` loaded twice",
                    rule.name
                );
                assert_eq!(rule.file, file);
                assert!(
                    rule.line >= 1 && rule.line <= yaml_lines(text).len(),
                    "rule at {}",
                    rule.line
                );
                let yaml = serde_yaml::to_string(&rule.spec)
                    .unwrap_or_else(|e| panic!("rule `{}` does not serialize: {e}", rule.name));
                let back: automaton::rules::RuleSpec = serde_yaml::from_str(&yaml)
                    .unwrap_or_else(|e| panic!("rule `{}` does not parse back: {e}\n{yaml}", rule.name));
                assert_eq!(back, rule.spec, "rule `{}` changed through\n{yaml}", rule.name);
                serde_json::to_string(&rule.spec)
                    .unwrap_or_else(|e| panic!("rule `{}` has no JSON form: {e}", rule.name));
            }
            let mut indices: Vec<usize> = set.sources.iter().flat_map(|s| s.rules.clone()).collect();
            indices.sort_unstable();
            assert!(
                indices.iter().copied().eq(0..set.rules.len()),
                "sources do not partition the rules: {indices:?}"
            );
            Outcome::Loaded(set.rules.len())
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "the load failed without an error");
            let lines = yaml_lines(text);
            for e in &errors {
                let shown = e.to_string();
                let prefix = format!("{FUZZ_FILE}:{}:{}: ", e.line, e.col);
                assert!(
                    shown.starts_with(&prefix),
                    "{shown:?} does not start with {prefix:?}"
                );
                assert!(!e.message.trim().is_empty(), "{shown:?} says nothing");
                assert!(
                    e.line >= 1 && e.line <= lines.len(),
                    "{shown:?}: line outside {text:?}"
                );
                let len = lines[e.line - 1].chars().count();
                assert!(
                    e.col >= 1 && e.col <= len + 1,
                    "{shown:?}: column outside line {:?}",
                    lines[e.line - 1]
                );
            }
            Outcome::Rejected(errors.len())
        }
    }
}

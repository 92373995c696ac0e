//! Loading rule files: substitution, strict YAML parsing, validation. Every error carries
//! `FILE:LINE:COL` and says what was expected; all errors of all files are collected so an
//! operator fixes a rule set in one pass.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::subst::{lines, lines_inclusive, substitute, LINE_BREAKS};
use super::{Rule, RuleSet};
use crate::actions::ActionSpec;
use crate::core::rule::RuleFile;
use crate::signals::SignalSpec;

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

impl std::error::Error for LoadError {}

/// The environment as substitution sees it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Rule files among `paths`: files as given, directories expanded to their `*.yaml` /
/// `*.yml` entries, sorted. Hidden entries are skipped: a mounted ConfigMap holds `..data`
/// and timestamped `..2024_…` directories beside the symlinks to the real keys.
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let io_err = |e: std::io::Error| LoadError {
            file: path.clone(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        };
        if path.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io_err)? {
                let entry = entry.map_err(io_err)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let p = entry.path();
                if !name.starts_with('.')
                    && (name.ends_with(".yaml") || name.ends_with(".yml"))
                    && p.is_file()
                {
                    found.push(p);
                }
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Loads and validates every rule file under `paths`.
pub fn load(paths: &[PathBuf], env: &dyn Fn(&str) -> Option<String>) -> Result<RuleSet, Vec<LoadError>> {
    let files = rule_files(paths).map_err(|e| vec![e])?;
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => sources.push((file, text)),
            Err(e) => errors.push(LoadError {
                file,
                line: 0,
                col: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    let borrowed: Vec<(&Path, &str)> = sources.iter().map(|(f, t)| (f.as_path(), t.as_str())).collect();
    match load_texts(&borrowed, env) {
        Ok(set) if errors.is_empty() => Ok(set),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// Loads rule files already in memory (the fuzzer and tests use this directly).
pub fn load_texts(
    files: &[(&Path, &str)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RuleSet, Vec<LoadError>> {
    let mut errors = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for (file, text) in files {
        let at = |line: usize, col: usize, message: String| LoadError {
            file: file.to_path_buf(),
            line,
            col,
            message,
        };
        let subst = match substitute(text, env) {
            Ok(s) => s,
            Err(errs) => {
                for e in errs {
                    let message = match rule_name_before(text, e.line) {
                        Some(name) => format!("rule `{name}`: {}", e.message),
                        None => e.message,
                    };
                    errors.push(at(e.line, e.col, message));
                }
                continue;
            }
        };
        let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
        // Lines as YAML splits them: after `#x` and a lone `\r`, `rules: []` is not a comment.
        if lines(&subst.text).all(blank) {
            errors.push(at(
                1,
                1,
                "the file is empty: expected `rules:` and a list of rules".into(),
            ));
            continue;
        }
        let parsed: RuleFile<SignalSpec, ActionSpec> = match serde_yaml::from_str(&subst.text) {
            Ok(p) => p,
            Err(e) => {
                let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                // What came from the environment is shown as its `${VAR}`, never its value.
                let explained = explain(&e, (line, col), &|l, c| subst.source_col(l, c));
                let mut message = subst.hide_values(line, &explained);
                let vars = subst.env_vars_on(line);
                if !vars.is_empty() {
                    let vars: Vec<String> = vars.iter().map(|v| format!("`{v}`")).collect();
                    message.push_str(&format!(
                        " (this line uses {} from the environment)",
                        vars.join(", ")
                    ));
                }
                let (line, col) = inside(text, line, subst.source_col(line, col));
                errors.push(at(line, col, message));
                continue;
            }
        };
        let mut search_from = 0;
        for spec in parsed.rules {
            let (line, col) = locate_name(text, &spec.name.0, &mut search_from);
            for problem in validate(&spec) {
                errors.push(at(line, col, format!("rule `{}`: {problem}", spec.name)));
            }
            if let Some((other, other_line)) = seen.get(&spec.name.0) {
                errors.push(at(
                    line,
                    col,
                    format!(
                        "rule name `{}` is already used at {}:{}",
                        spec.name,
                        other.display(),
                        other_line
                    ),
                ));
                continue;
            }
            seen.insert(spec.name.0.clone(), (file.to_path_buf(), line));
            rules.push(Rule::new(spec, file.to_path_buf(), line));
        }
    }
    if errors.is_empty() {
        Ok(RuleSet::new(rules))
    } else {
        Err(errors)
    }
}

/// serde_yaml's message without its own position (we print it in front), with a
/// "did you mean" for unknown fields and variants.
/// Every problem of one rule: the signal's and the action's own checks, then the checks of
/// the rule as a whole.
fn validate(spec: &super::RuleSpec) -> Vec<String> {
    let rule = crate::signals::RuleContext {
        cooldown: spec.cooldown(),
    };
    let mut errors = spec.signal.validate(&rule);
    errors.extend(spec.action.validate(&spec.signal));
    errors.extend(spec.validate());
    errors
}

fn explain(e: &serde_yaml::Error, own: (usize, usize), source_col: &dyn Fn(usize, usize) -> usize) -> String {
    let mut msg = strip_positions(&e.to_string(), own, source_col);
    // serde names Rust types and serde concepts; say what to write instead.
    for (rust, wanted) in [
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected i64", "expected a whole number (may be negative)"),
        ("expected f64", "expected a number"),
        (
            "expected struct RuleFile",
            "expected `rules:` and a list of rules",
        ),
        (
            "invalid type: unit variant, expected newtype variant",
            "expected `KIND: {PARAMETERS}`, found a kind without parameters",
        ),
        (
            "invalid value: map, expected map with a single key",
            "expected exactly one kind, found several",
        ),
    ] {
        if msg.ends_with(rust) {
            msg.truncate(msg.len() - rust.len());
            msg.push_str(wanted);
        }
    }
    if let Some(pos) = msg.find("expected struct ") {
        // A kind's parameters (`kafka_lag: 5`).
        msg.truncate(pos);
        msg.push_str("expected a mapping of parameters, e.g. `{NAME: VALUE}`");
    }
    if let Some(suggestion) = did_you_mean(&msg) {
        msg.push_str(&format!(" (did you mean `{suggestion}`?)"));
    }
    msg
}

/// Removes " at line N column M" where it is the error's own position (printed once, in
/// front); another position, such as where an unclosed `{` was opened, is kept, with its
/// column mapped back to the source.
fn strip_positions(text: &str, own: (usize, usize), source_col: &dyn Fn(usize, usize) -> usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(" at line ") {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos + " at line ".len()..];
        let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n = digits(tail);
        let position = tail[n..].strip_prefix(" column ").and_then(|after| {
            let m = digits(after);
            let line = tail[..n].parse::<usize>().ok()?;
            let col = after[..m].parse::<usize>().ok()?;
            Some((line, col, &after[m..]))
        });
        match position {
            Some((line, col, after)) => {
                if (line, col) != own {
                    out.push_str(&format!(" at line {line} column {}", source_col(line, col)));
                }
                rest = after;
            }
            None => {
                out.push_str(" at line ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A position inside `text`. libyaml starts a new line at the end of the stream, so when the
/// last line has no line break serde_yaml places an error at the end one line below the
/// last; an editor cannot go there, so it becomes the end of the last line.
fn inside(text: &str, line: usize, col: usize) -> (usize, usize) {
    let last = lines_inclusive(text).last().unwrap_or("");
    let ends_open = !last.is_empty() && !last.ends_with(LINE_BREAKS);
    let count = lines_inclusive(text).count() + usize::from(!ends_open);
    if line > count && ends_open {
        (count, last.chars().count() + 1)
    } else {
        (line, col)
    }
}

/// For "unknown field `x`, expected one of `a`, `b`" (or `variant`): the closest of the
/// expected names, when it is close enough to be a typo.
fn did_you_mean(msg: &str) -> Option<String> {
    let rest = msg
        .split_once("unknown field `")
        .or_else(|| msg.split_once("unknown variant `"))?
        .1;
    let (unknown, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let (best, distance) = candidates
        .iter()
        .map(|c| (*c, strsim::levenshtein(unknown, c)))
        .min_by_key(|(_, d)| *d)?;
    (distance <= (unknown.len().max(best.len()) / 3).max(2)).then(|| best.to_owned())
}

/// Where `name: NAME` of a rule is written, searching forward from the previous rule. Lines
/// are YAML's (see [`lines`]), so the line agrees with serde_yaml's and substitution's.
fn locate_name(text: &str, name: &str, from_line: &mut usize) -> (usize, usize) {
    for (i, line) in lines(text).enumerate().skip(*from_line) {
        let trimmed = line.trim_start().trim_start_matches('-').trim_start();
        if let Some(value) = trimmed.strip_prefix("name:") {
            if value.trim().trim_matches(|c| c == '"' || c == '\'') == name {
                *from_line = i + 1;
                // The value's own column: `value` is a suffix of `line`, after `name:`.
                let col = line[..line.len() - value.trim_start().len()].chars().count() + 1;
                return (i + 1, col);
            }
        }
    }
    (1, 1)
}

/// The rule a line belongs to, for messages about text that could not be parsed yet.
fn rule_name_before(text: &str, line: usize) -> Option<String> {
    lines(text)
        .take(line)
        .collect::<Vec<_>>()
        .iter()
        .rev()
        .find_map(|l| {
            let trimmed = l.trim_start().trim_start_matches('-').trim_start();
            trimmed
                .strip_prefix("name:")
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_field() {
        let msg = "rules[0]: unknown field `cooldwn`, expected one of `name`, `cooldown`, `dry_run`";
        assert_eq!(did_you_mean(msg).as_deref(), Some("cooldown"));
        let msg = "unknown variant `kafka_lagg`, expected one of `kafka_lag`, `postgres`";
        assert_eq!(did_you_mean(msg).as_deref(), Some("kafka_lag"));
        assert_eq!(
            did_you_mean("unknown field `zzzzzzzz`, expected `name` or `when`"),
            None
        );
    }

    #[test]
    fn lone_carriage_returns_end_lines_as_in_yaml() {
        // Found by the rule_loader fuzzer: serde_yaml ends a line at a lone `\r`, the loader
        // did not, so positions disagreed and this file was "empty" (one comment line).
        assert!(load_texts(&[(Path::new("r.yaml"), "# x\rrules: []\r")], &|_| None).is_ok());
        let text = "rules:\r  - name: lag\r    when: \"> ${NOPE}\"\r";
        let errs = load_texts(&[(Path::new("r.yaml"), text)], &|_| None).unwrap_err();
        assert!(
            errs[0].to_string().starts_with("r.yaml:3:14: rule `lag`: "),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn errors_at_the_end_stay_inside_the_file() {
        // Found by the rule_loader fuzzer: without a final line break, the end of the text
        // was reported one line below the last (`r.yaml:3:1` for a two-line file).
        let errs = load_texts(&[(Path::new("r.yaml"), "rules:\n3 - x")], &|_| None).unwrap_err();
        assert!(errs[0].to_string().starts_with("r.yaml:2:6: "), "{}", errs[0]);
        let errs = load_texts(&[(Path::new("r.yaml"), "rules:\n3 - x\n")], &|_| None).unwrap_err();
        assert!(errs[0].to_string().starts_with("r.yaml:3:1: "), "{}", errs[0]);
    }

    #[test]
    fn unset_variables_name_the_rule() {
        let text = "rules:\n  - name: lag\n    when: \"> ${NOPE}\"\n";
        let errs = load_texts(&[(Path::new("r.yaml"), text)], &|_| None).unwrap_err();
        assert_eq!(errs[0].to_string(), "r.yaml:3:14: rule `lag`: environment variable `NOPE` is not set and `${NOPE}` has no default (write `${NOPE:-VALUE}`)");
    }
}

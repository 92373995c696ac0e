//! Kubernetes label selectors, as `kubectl get pods -l` takes them: `a=b`, `a==b`, `a!=b`,
//! `a`, `!a`, `a in (x,y)`, `a notin (x)`, comma-separated (all must hold). The empty
//! selector matches every pod. Keys and values are validated as the API server validates
//! them, so a typo is a rule-file error instead of a selector that silently matches nothing.
//! Set-based `>`/`<` (`gt`/`lt`) are not supported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// One requirement on one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
}

/// What a requirement asks of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `key=value` or `key==value`.
    Equals(String),
    /// `key!=value`: also holds when the label is absent (as in Kubernetes).
    NotEquals(String),
    /// `key in (a,b)`.
    In(BTreeSet<String>),
    /// `key notin (a,b)`: also holds when the label is absent.
    NotIn(BTreeSet<String>),
    /// `key`: the label is present, with any value.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
}

/// Why a selector could not be parsed; `column` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector `{selector}`: at column {column}: {message}")]
pub struct SelectorError {
    pub selector: String,
    pub column: usize,
    pub message: String,
}

impl Selector {
    /// The selector that matches everything (the empty string).
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        Parser::new(input)?.selector()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }
}

impl Requirement {
    /// Whether the label's value (`None` when absent) satisfies this requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Equals(want), Some(v)) => v == want,
            (Op::NotEquals(other), Some(v)) => v != other,
            (Op::In(set), Some(v)) => set.contains(v),
            (Op::NotIn(set), Some(v)) => !set.contains(v),
            (Op::Exists, Some(_)) => true,
            (Op::DoesNotExist, Some(_)) => false,
            (Op::Equals(_) | Op::In(_) | Op::Exists, None) => false,
            (Op::NotEquals(_) | Op::NotIn(_) | Op::DoesNotExist, None) => true,
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let set = |s: &BTreeSet<String>| s.iter().map(String::as_str).collect::<Vec<_>>().join(",");
            match &r.op {
                Op::Equals(v) => write!(f, "{}={v}", r.key)?,
                Op::NotEquals(v) => write!(f, "{}!={v}", r.key)?,
                Op::In(s) => write!(f, "{} in ({})", r.key, set(s))?,
                Op::NotIn(s) => write!(f, "{} notin ({})", r.key, set(s))?,
                Op::Exists => f.write_str(&r.key)?,
                Op::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    /// `!`
    Not,
    /// `=` or `==`
    Eq,
    /// `!=`
    NotEq,
    Open,
    Close,
    Comma,
    /// `>` or `<`
    Compare(char),
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Not => f.write_str("`!`"),
            Tok::Eq => f.write_str("`=`"),
            Tok::NotEq => f.write_str("`!=`"),
            Tok::Open => f.write_str("`(`"),
            Tok::Close => f.write_str("`)`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Compare(c) => write!(f, "`{c}`"),
        }
    }
}

struct Parser<'a> {
    input: &'a str,
    /// Tokens with their byte offset.
    tokens: Vec<(Tok<'a>, usize)>,
    next: usize,
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>')
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, SelectorError> {
        let mut tokens = Vec::new();
        let mut chars = input.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let tok = match c {
                c if c.is_whitespace() => continue,
                '!' | '=' => {
                    let double = chars.next_if(|&(_, n)| n == '=').is_some();
                    match (c, double) {
                        ('!', false) => Tok::Not,
                        ('!', true) => Tok::NotEq,
                        _ => Tok::Eq,
                    }
                }
                '(' => Tok::Open,
                ')' => Tok::Close,
                ',' => Tok::Comma,
                '<' | '>' => Tok::Compare(c),
                _ => {
                    let mut end = at + c.len_utf8();
                    while let Some((i, n)) = chars.next_if(|&(_, n)| !n.is_whitespace() && !is_special(n)) {
                        end = i + n.len_utf8();
                    }
                    Tok::Ident(&input[at..end])
                }
            };
            tokens.push((tok, at));
        }
        Ok(Parser {
            input,
            tokens,
            next: 0,
        })
    }

    fn error(&self, at: usize, message: impl Into<String>) -> SelectorError {
        SelectorError {
            selector: self.input.to_owned(),
            column: at + 1,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<(Tok<'a>, usize)> {
        self.tokens.get(self.next).copied()
    }

    fn bump(&mut self) -> Option<(Tok<'a>, usize)> {
        let t = self.peek();
        self.next += 1;
        t
    }

    fn end(&self) -> usize {
        self.input.len()
    }

    fn selector(mut self) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        if self.peek().is_none() {
            return Ok(Selector { requirements });
        }
        loop {
            requirements.push(self.requirement()?);
            match self.bump() {
                None => return Ok(Selector { requirements }),
                Some((Tok::Comma, at)) if self.peek().is_none() => {
                    return Err(self.error(at, "trailing `,`: expected a requirement after it"))
                }
                Some((Tok::Comma, _)) => {}
                Some((tok, at)) => {
                    return Err(self.error(at, format!("expected `,` or the end, found {tok}")))
                }
            }
        }
    }

    /// A label key; `wanted` says where, for the error.
    fn key(&mut self, wanted: &str) -> Result<String, SelectorError> {
        match self.bump() {
            Some((Tok::Ident(key), at)) => {
                check_key(key).map_err(|why| self.error(at, format!("invalid label key `{key}`: {why}")))?;
                Ok(key.to_owned())
            }
            Some((tok, at)) => Err(self.error(at, format!("expected {wanted}, found {tok}"))),
            None => Err(self.error(self.end(), format!("expected {wanted}"))),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if let Some((Tok::Not, _)) = self.peek() {
            self.bump();
            let key = self.key("a label key after `!`")?;
            if let Some((tok, at)) = self.peek().filter(|(t, _)| *t != Tok::Comma) {
                return Err(self.error(at, format!("`!{key}` takes no operator or value, found {tok}")));
            }
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
            });
        }
        let key = self.key("a label key")?;
        let op = match self.peek() {
            None | Some((Tok::Comma, _)) => Op::Exists,
            Some((Tok::Eq, _)) => {
                self.bump();
                Op::Equals(self.single_value()?)
            }
            Some((Tok::NotEq, _)) => {
                self.bump();
                Op::NotEquals(self.single_value()?)
            }
            Some((Tok::Ident("in"), _)) => {
                self.bump();
                Op::In(self.value_set("in")?)
            }
            Some((Tok::Ident("notin"), _)) => {
                self.bump();
                Op::NotIn(self.value_set("notin")?)
            }
            Some((Tok::Compare(c), at)) => {
                return Err(self.error(
                    at,
                    format!("`{c}` is not supported; use `=`, `==`, `!=`, `in` or `notin`"),
                ))
            }
            Some((tok, at)) => {
                return Err(self.error(
                    at,
                    format!("unknown operator {tok} after `{key}`: expected `=`, `==`, `!=`, `in`, `notin`, `,` or the end"),
                ))
            }
        };
        Ok(Requirement { key, op })
    }

    /// The value after `=`, `==` or `!=`; empty when a `,` or the end follows (`a=` selects
    /// an empty value, as in Kubernetes).
    fn single_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            None | Some((Tok::Comma, _)) => Ok(String::new()),
            Some((Tok::Ident(v), at)) => {
                self.bump();
                check_value(v).map_err(|why| self.error(at, format!("invalid label value `{v}`: {why}")))?;
                Ok(v.to_owned())
            }
            Some((tok, at)) => Err(self.error(at, format!("expected a label value, found {tok}"))),
        }
    }

    fn value_set(&mut self, op: &str) -> Result<BTreeSet<String>, SelectorError> {
        match self.bump() {
            Some((Tok::Open, _)) => {}
            Some((tok, at)) => return Err(self.error(at, format!("expected `(` after `{op}`, found {tok}"))),
            None => return Err(self.error(self.end(), format!("expected `(` after `{op}`"))),
        }
        let mut values = BTreeSet::new();
        // `true` right after `(` or `,`: a value may come (empty values are allowed).
        let mut want_value = true;
        loop {
            match self.bump() {
                Some((Tok::Ident(v), at)) if want_value => {
                    check_value(v)
                        .map_err(|why| self.error(at, format!("invalid label value `{v}`: {why}")))?;
                    values.insert(v.to_owned());
                    want_value = false;
                }
                Some((Tok::Comma, _)) => {
                    if want_value {
                        values.insert(String::new());
                    }
                    want_value = true;
                }
                Some((Tok::Close, at)) => {
                    if want_value && !values.is_empty() {
                        values.insert(String::new());
                    }
                    if values.is_empty() {
                        return Err(self.error(at, format!("`{op}` needs at least one value")));
                    }
                    return Ok(values);
                }
                Some((tok, at)) => {
                    return Err(self.error(
                        at,
                        format!("expected a value, `,` or `)` in `{op} (…)`, found {tok}"),
                    ))
                }
                None => return Err(self.error(self.end(), format!("missing `)` to close `{op} (`"))),
            }
        }
    }
}

/// A label name: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn check_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    if name.is_empty() {
        return Err("the name part must not be empty".to_owned());
    }
    if name.len() > 63 {
        return Err(format!(
            "the name part is {} characters, at most 63 are allowed",
            name.len()
        ));
    }
    let edge_ok = |b: u8| b.is_ascii_alphanumeric();
    let inner_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) || !bytes.iter().all(|&b| inner_ok(b)) {
        return Err(
            "must be alphanumerics, `-`, `_` or `.`, starting and ending with an alphanumeric".to_owned(),
        );
    }
    Ok(())
}

/// `[prefix/]name`: the prefix is a DNS subdomain (lowercase, at most 253 characters).
fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if name.contains('/') {
            return Err("at most one `/` (between a DNS prefix and the name)".to_owned());
        }
        let dns_ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                let b = part.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter()
                        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            });
        if !dns_ok {
            return Err(format!(
                "the prefix `{prefix}` must be a lowercase DNS subdomain (e.g. `example.com`)"
            ));
        }
    }
    check_name(name)
}

/// A label value: empty, or a valid name.
fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name(value).map_err(|why| why.replace("the name part", "the value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for (input, canonical) in [
            ("", ""),
            ("  ", ""),
            ("app=web", "app=web"),
            ("app==web", "app=web"),
            ("app = web", "app=web"),
            ("tier!=cache", "tier!=cache"),
            ("canary", "canary"),
            ("!canary", "!canary"),
            ("env in (prod, staging)", "env in (prod,staging)"),
            ("env notin (dev)", "env notin (dev)"),
            ("app=", "app="),
            (
                "automaton.dev/heal=true,app in (a,b),!legacy,track",
                "automaton.dev/heal=true,app in (a,b),!legacy,track",
            ),
        ] {
            let s = Selector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.to_string(), canonical, "{input}");
            assert_eq!(Selector::parse(&s.to_string()).unwrap(), s, "{input} round trip");
        }
    }

    #[test]
    fn matches_as_kubernetes_does() {
        let web = labels(&[("app", "web"), ("env", "prod"), ("automaton.dev/heal", "true")]);
        let bare = labels(&[]);
        for (selector, on_web, on_bare) in [
            ("", true, true),
            ("app=web", true, false),
            ("app==db", false, false),
            ("app!=db", true, true),
            ("app!=web", false, true),
            ("app", true, false),
            ("!app", false, true),
            ("env in (prod,staging)", true, false),
            ("env notin (prod)", false, true),
            ("env notin (dev)", true, true),
            ("automaton.dev/heal=true,app=web", true, false),
            ("automaton.dev/heal=true,app=db", false, false),
            ("app=", false, false),
        ] {
            let s = Selector::parse(selector).unwrap();
            assert_eq!(s.matches(&web), on_web, "{selector} on web");
            assert_eq!(s.matches(&bare), on_bare, "{selector} on no labels");
        }
        let empty_value = labels(&[("app", "")]);
        assert!(Selector::parse("app=").unwrap().matches(&empty_value));
        assert!(Selector::parse("app in (x,)").unwrap().matches(&empty_value));
    }

    #[test]
    fn rejects_bad_selectors_with_a_clear_reason() {
        for (input, column, needle) in [
            ("app in (a", 10, "missing `)` to close `in (`"),
            ("app in a", 8, "expected `(` after `in`, found `a`"),
            ("app in ()", 9, "`in` needs at least one value"),
            ("app notin", 10, "expected `(` after `notin`"),
            ("app=web,", 8, "trailing `,`"),
            (",app", 1, "expected a label key, found `,`"),
            ("app=web=x", 8, "expected `,` or the end, found `=`"),
            ("app is web", 5, "unknown operator `is` after `app`"),
            ("replicas>2", 9, "`>` is not supported"),
            ("!app=web", 5, "`!app` takes no operator or value"),
            ("!", 2, "expected a label key after `!`"),
            ("-app=x", 1, "invalid label key `-app`"),
            (
                "Example.com/app=x",
                1,
                "the prefix `Example.com` must be a lowercase DNS subdomain",
            ),
            ("a/b/c=x", 1, "at most one `/`"),
            ("app=-web", 5, "invalid label value `-web`"),
            ("app in (ok, bad!)", 16, "expected a value, `,` or `)`"),
        ] {
            let err = Selector::parse(input).expect_err(input);
            assert!(err.message.contains(needle), "{input}: {err}");
            assert_eq!(err.column, column, "{input}: {err}");
            assert!(err
                .to_string()
                .starts_with(&format!("invalid label selector `{input}`")));
        }
        let long = format!("app={}", "x".repeat(64));
        assert!(Selector::parse(&long).unwrap_err().message.contains("at most 63"));
    }
}

//! Kubernetes label selectors, as `kubectl get pods -l` takes them: `a=b`, `a==b`, `a!=b`,
//! `a`, `!a`, `a in (x,y)`, `a notin (x)`, comma-separated (all must hold). The empty
//! selector matches every pod. Keys and values are validated as the API server validates
//! them, so a typo is a rule-file error instead of a selector that silently matches nothing.
//! Set-based `>`/`<` (`gt`/`lt`) are not supported.

mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use parse::Parser;

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// One requirement on one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
}

/// What a requirement asks of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
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

    /// The selector holding exactly these requirements.
    pub fn from_requirements(requirements: Vec<Requirement>) -> Self {
        Selector { requirements }
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
            (Operator::Equals(want), Some(v)) => v == want,
            (Operator::NotEquals(other), Some(v)) => v != other,
            (Operator::In(set), Some(v)) => set.contains(v),
            (Operator::NotIn(set), Some(v)) => !set.contains(v),
            (Operator::Exists, Some(_)) => true,
            (Operator::DoesNotExist, Some(_)) => false,
            (Operator::Equals(_) | Operator::In(_) | Operator::Exists, None) => false,
            (Operator::NotEquals(_) | Operator::NotIn(_) | Operator::DoesNotExist, None) => true,
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
                Operator::Equals(v) => write!(f, "{}={v}", r.key)?,
                Operator::NotEquals(v) => write!(f, "{}!={v}", r.key)?,
                Operator::In(s) => write!(f, "{} in ({})", r.key, set(s))?,
                Operator::NotIn(s) => write!(f, "{} notin ({})", r.key, set(s))?,
                Operator::Exists => f.write_str(&r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
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

//! `automaton test`: rule files tested like `promtool test rules` tests alerts. A timeline's
//! `expect:` entries say which decisions must be made when; the timeline runs through the
//! engine exactly as `simulate` runs it, and every expectation must match a decision of its
//! time and rule. Every action taken must be expected too: a rule that acts twice, or acts
//! where the file says it waits, fails the test like a missing action does.

use std::fmt::Write;

use serde::Deserialize;

use crate::core::decision::{Decision, Verdict};
use crate::core::values::Dur;
use crate::rules::RuleSet;

/// One expected decision: its time and rule, and any of its target, verdict, action and
/// skip reason (those left out match anything).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub at: Dur,
    pub rule: String,
    #[serde(default)]
    pub target: Option<String>,
    /// `act`, `skip` or `none`.
    #[serde(default)]
    pub decision: Option<String>,
    /// The action kind (`scale`…), `notify` for a `notify_first`, `rollback`.
    #[serde(default)]
    pub action: Option<String>,
    /// The skip reason (`cooldown`, `budget`…).
    #[serde(default)]
    pub reason: Option<String>,
}

impl Expect {
    fn matches(&self, d: &Decision) -> bool {
        d.at == self.at.0
            && *d.rule == *self.rule
            && self.target.as_deref().is_none_or(|t| *d.target == *t)
            && self.decision.as_deref().is_none_or(|v| d.decision.as_str() == v)
            && self.action.as_deref().is_none_or(|a| d.kind.as_str() == a)
            && self
                .reason
                .as_deref()
                .is_none_or(|r| d.reason.map(|x| x.as_str()) == Some(r))
    }

    fn describe(&self) -> String {
        let mut out = format!("at {} rule {}", self.at, self.rule);
        for (name, value) in [
            ("target", &self.target),
            ("decision", &self.decision),
            ("action", &self.action),
            ("reason", &self.reason),
        ] {
            if let Some(v) = value {
                let _ = write!(out, " {name} {v}");
            }
        }
        out
    }
}

/// What the decisions did not do as the file said.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// No decision matched; `got` are the rule's decisions at that time.
    Missing { expect: Expect, got: Vec<String> },
    /// An action no expectation names.
    Unexpected(String),
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Missing { expect, got } => {
                write!(f, "  expected {}", expect.describe())?;
                if got.is_empty() {
                    write!(f, "\n       got no decision of that rule at that time")
                } else {
                    got.iter().try_for_each(|g| write!(f, "\n       got {g}"))
                }
            }
            Mismatch::Unexpected(d) => write!(f, "  unexpected {d}"),
        }
    }
}

/// A decision as the diff shows it.
pub fn describe(d: &Decision) -> String {
    let mut out = format!(
        "at {} rule {} target {} decision {} action {}",
        Dur(d.at),
        d.rule,
        d.target,
        d.decision.as_str(),
        d.kind.as_str()
    );
    if let Some(r) = d.reason {
        let _ = write!(out, " reason {}", r.as_str());
    }
    out
}

/// Every expectation that names no rule of the set, or an unknown verdict.
pub fn validate(expect: &[Expect], rules: &RuleSet) -> Vec<String> {
    let mut errors = Vec::new();
    for (i, e) in expect.iter().enumerate() {
        if !rules.rules.iter().any(|r| *r.name == *e.rule) {
            errors.push(format!("expect[{i}]: no rule named `{}` in the rule set", e.rule));
        }
        if let Some(v) = e.decision.as_deref() {
            if !Verdict::ALL.iter().any(|x| x.as_str() == v) {
                errors.push(format!("expect[{i}]: decision `{v}`: expected act, skip or none"));
            }
        }
    }
    errors
}

/// The mismatches between the decisions of a run and what the file expects.
pub fn check(decisions: &[Decision], expect: &[Expect]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for e in expect {
        if !decisions.iter().any(|d| e.matches(d)) {
            let got = decisions
                .iter()
                .filter(|d| d.at == e.at.0 && *d.rule == *e.rule)
                .map(describe)
                .collect();
            out.push(Mismatch::Missing {
                expect: e.clone(),
                got,
            });
        }
    }
    for d in decisions.iter().filter(|d| d.decision == Verdict::Act) {
        if !expect.iter().any(|e| e.matches(d)) {
            out.push(Mismatch::Unexpected(describe(d)));
        }
    }
    out
}

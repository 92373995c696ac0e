//! The rule file format (`rules/*.yaml`), parsed strictly: unknown fields are errors, and
//! every scalar is validated while serde_yaml still knows its `line:col`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::values::{Condition, Dur};
use crate::actions::ActionSpec;
use crate::signals::SignalSpec;

/// A rule file: a list of rules under `rules:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The rules of this file; names are unique across all files.
    pub rules: Vec<RuleSpec>,
}

/// One rule, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique across all files, `[a-z0-9-]+`; used in metrics, Events and annotations.
    pub name: RuleName,
    /// What the rule is for, shown in `/status`.
    #[serde(default)]
    pub description: String,
    /// Sets the default `for`: critical 0s, high 5m, medium 15m, low 1h.
    #[serde(default)]
    pub priority: Priority,
    /// What to observe (one kind).
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub signal: SignalSpec,
    /// The condition that, held for `for`, fires the rule.
    pub when: Condition,
    /// How long `when` must hold before acting; default from `priority`.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub hold_for: Option<Dur>,
    /// Hysteresis: once firing, the rule resets only when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear: Option<Condition>,
    /// What to do (one kind).
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub action: ActionSpec,
    /// Minimum time between two actions of this rule on one target (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Dur>,
    /// Plan and report, never execute.
    #[serde(default)]
    pub dry_run: bool,
    /// At most `max` actions of this rule (all targets together) in any `per`: a reading
    /// stuck above the threshold cannot walk a cache to zero one cooldown at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// After acting, the condition the signal must reach within a window; when it does not
    /// (or the signal gets worse), the action is rolled back and the target quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
    /// With `verify`: undo a change that did not help (default true). `false` keeps the
    /// change and only notifies and quarantines.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub rollback: bool,
    /// A webhook told before the action runs ("about to restart X, because…"), so a
    /// disruptive action never surprises the people on call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_first: Option<crate::actions::notify::Notify>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// `verify: {within: 10m, expect: "< 5000"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    pub within: Dur,
    pub expect: Condition,
}

/// `rate_limit: {max: 3, per: 1h}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: u32,
    pub per: Dur,
}

/// Default cooldown per rule and target.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    /// The default `for`: how long a condition must hold before a rule of this priority acts.
    pub fn default_for(self) -> Duration {
        Duration::from_secs(match self {
            Priority::Critical => 0,
            Priority::High => 300,
            Priority::Medium => 900,
            Priority::Low => 3600,
        })
    }
}

/// `[a-z0-9-]+`, at most 51 characters: it ends up in label values and in the annotation
/// name `last-action-<rule>`, which Kubernetes limits to 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RuleName(pub String);

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RuleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::values::parse_scalar(d, "a rule name", |s| {
            let ok = !s.is_empty()
                && s.len() <= 51
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if ok {
                Ok(RuleName(s.to_owned()))
            } else {
                Err(format!(
                    "invalid rule name `{s}`: expected 1 to 51 characters of [a-z0-9-]"
                ))
            }
        })
    }
}

impl RuleSpec {
    pub fn hold_for(&self) -> Duration {
        self.hold_for.map_or(self.priority.default_for(), |d| d.0)
    }

    pub fn cooldown(&self) -> Duration {
        self.cooldown.map_or(DEFAULT_COOLDOWN, |d| d.0)
    }

    /// Checks that involve several fields; every problem is returned.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = self.signal.validate();
        errors.extend(self.action.validate(&self.signal));
        if let Some(limit) = &self.rate_limit {
            if limit.max == 0 || limit.per.0.is_zero() {
                errors.push(format!(
                    "`rate_limit` needs `max` and `per` above 0, found max {} per {}",
                    limit.max, limit.per
                ));
            }
        }
        if let Some(v) = &self.verify {
            if v.within.0.is_zero() {
                errors.push("`verify.within` must be above 0".to_owned());
            }
        } else if !self.rollback {
            errors.push("`rollback: false` without `verify`: there is nothing to roll back".to_owned());
        }
        if let Some(notify) = &self.notify_first {
            errors.extend(
                notify
                    .validate()
                    .into_iter()
                    .map(|e| format!("`notify_first` {e}")),
            );
            if matches!(self.action, ActionSpec::Notify(_)) {
                errors.push("`notify_first` on a `notify` action: the action already notifies".to_owned());
            }
        }
        if let crate::signals::SignalSpec::MemoryPressure(m) = &self.signal {
            let w = m.weights;
            if [w.avg10, w.avg60, w.avg300]
                .iter()
                .any(|x| !x.is_finite() || *x < 0.0)
            {
                errors.push("memory_pressure `weights` must be non-negative numbers".to_owned());
            }
        }
        if let crate::signals::SignalSpec::PodOomKilled(p) = &self.signal {
            if self.cooldown() < p.window.0 {
                errors.push(format!(
                    "`cooldown` ({}) is shorter than the pod_oom_killed `window` ({}): one kill would be acted on twice",
                    super::values::Dur(self.cooldown()),
                    p.window
                ));
            }
        }
        errors
    }
}

//! A rule as written and as the engine runs it, generic over the signal and action kinds:
//! the core knows what every kind can be asked (its name, its dependency, its plan) through
//! [`SignalKind`] and [`ActionKind`], never which kinds exist. The registries in `signals/`
//! and `actions/` provide them. Rule files are parsed strictly: unknown fields are errors,
//! and every scalar is validated while serde_yaml still knows its `line:col`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::plan::{Plan, PlanCtx, PlanError};
use super::url::check_url;
use super::values::{Condition, Dur};

/// What the core asks of a signal kind.
pub trait SignalKind:
    fmt::Debug + Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The kind's name, as written in rule files and timelines.
    fn kind(&self) -> &'static str;
    /// Whether its series carry an `owner` label (the workload of a pod), so a rule may use
    /// `target: owner`.
    fn has_owner(&self) -> bool;

    /// The parameters as flat strings: what timeline samples are matched against.
    fn params(&self) -> BTreeMap<String, String> {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut out = BTreeMap::new();
        if let Some(inner) = value
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_object())
        {
            for (k, v) in inner {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.insert(k.clone(), text);
            }
        }
        out
    }

    /// `params` as `/status` shows them: every URL redacted (an RPC key, a token).
    fn shown_params(&self) -> BTreeMap<String, String> {
        self.params()
            .into_iter()
            .map(|(k, v)| (k, super::url::redact_text(&v)))
            .collect()
    }

    /// The source key as `/status` and `/readyz` show it: URLs redacted, and a short hash of
    /// the real key when that changed it, so two sources differing only in a secret stay
    /// apart.
    fn shown_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let key = self.source_key();
        let shown = super::url::redact_text(&key);
        if shown == key {
            return key;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        format!("{shown}#{:06x}", hasher.finish() & 0xff_ffff)
    }

    /// A canonical key: two rules with equal keys share one collection per tick.
    fn source_key(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.kind().to_owned())
    }
}

/// What the core asks of an action kind: everything the engine needs to guard and plan.
pub trait ActionKind:
    fmt::Debug + Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The kind's name, as written in rule files (`scale`, `run_job`…).
    fn kind(&self) -> &'static str;
    /// The external dependency the action goes through: the key of its circuit breaker.
    fn dependency(&self) -> String;
    /// The object acted on, which keys the rule's per-target state and cooldown.
    fn target(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError>;
    /// Whether the target depends on the series (one state per owner) or is fixed.
    fn target_from_series(&self) -> bool;
    /// The exact, bounded change. `Err` means it cannot be planned from what is known.
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError>;
    /// Whether a HorizontalPodAutoscaler owning the target's replicas refuses the action.
    fn yields_to_hpa(&self) -> bool {
        false
    }
}

/// A rule file: a list of rules under `rules:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound = "S: SignalKind, A: ActionKind")]
pub struct RuleFile<S, A> {
    /// The rules of this file; names are unique across all files.
    pub rules: Vec<RuleSpec<S, A>>,
}

/// One rule, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "S: SignalKind, A: ActionKind")]
pub struct RuleSpec<S, A> {
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
    pub signal: S,
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
    pub action: A,
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
    pub notify_first: Option<NotifyFirst>,
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

impl<S: SignalKind, A: ActionKind> RuleSpec<S, A> {
    pub fn hold_for(&self) -> Duration {
        self.hold_for.map_or(self.priority.default_for(), |d| d.0)
    }

    pub fn cooldown(&self) -> Duration {
        self.cooldown.map_or(DEFAULT_COOLDOWN, |d| d.0)
    }

    /// Checks that involve several fields of any rule; every problem is returned. The
    /// kinds' own checks are run by the loader, which knows them.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
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
            errors.extend(check_url("webhook", &notify.webhook).map(|e| format!("`notify_first` {e}")));
            if let Some(link) = &notify.link {
                errors.extend(check_url("link", link).map(|e| format!("`notify_first` {e}")));
            }
            if self.action.kind() == "notify" {
                errors.push("`notify_first` on a `notify` action: the action already notifies".to_owned());
            }
        }
        errors
    }
}

/// `notify_first: {webhook}`: a webhook told just before the rule's action. The URL is a
/// secret (chat webhooks embed their token): only its host is ever shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFirst {
    /// Webhook URL that receives a JSON POST (for `alertmanager`: Alertmanager's base URL).
    pub webhook: String,
    /// `generic` (default), `slack` or `alertmanager`.
    #[serde(default)]
    pub format: super::notice::NotifyFormat,
    /// Where a human sees more (Alertmanager's `generatorURL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl NotifyFirst {
    pub fn host(&self) -> String {
        url::Url::parse(&self.webhook)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "invalid".to_owned())
    }

    /// The breaker key of the webhook, as the `notify` action names it.
    pub fn dependency(&self) -> String {
        format!("webhook/{}", self.host())
    }
}

/// A validated rule, with its defaults resolved.
#[derive(Debug, Clone)]
pub struct Rule<S, A> {
    pub name: Arc<str>,
    pub spec: RuleSpec<S, A>,
    /// Where it is written, for `/status` and messages.
    pub file: PathBuf,
    pub line: usize,
    pub hold_for: Duration,
    pub cooldown: Duration,
    /// The signal's parameters as strings (timeline samples are matched against them).
    pub params: BTreeMap<String, String>,
    /// The fixed target, or `None` when each series names its own (`target: owner`).
    pub fixed_target: Option<Arc<str>>,
}

impl<S, A> Rule<S, A> {
    /// What a notification about this rule's decisions says of the rule.
    pub fn facts(&self) -> super::notice::RuleFacts<'_> {
        super::notice::RuleFacts {
            description: &self.spec.description,
            priority: self.spec.priority,
            when: self.spec.when,
            cooldown: self.cooldown,
        }
    }
}

impl<S: SignalKind, A: ActionKind> Rule<S, A> {
    pub fn new(spec: RuleSpec<S, A>, file: PathBuf, line: usize) -> Self {
        let fixed_target = if spec.action.target_from_series() {
            None
        } else {
            spec.action.target(&BTreeMap::new()).ok().map(Arc::from)
        };
        Rule {
            name: Arc::from(spec.name.0.as_str()),
            hold_for: spec.hold_for(),
            cooldown: spec.cooldown(),
            params: spec.signal.params(),
            fixed_target,
            spec,
            file,
            line,
        }
    }
}

/// A distinct signal source and the rules that read it: collected once per tick.
#[derive(Debug, Clone)]
pub struct Source<S> {
    pub key: String,
    /// The key as shown (`SignalKind::shown_key`): never a secret.
    pub shown: String,
    pub spec: S,
    pub rules: Vec<usize>,
}

/// A complete, valid set of rules (all files together).
#[derive(Debug, Clone)]
pub struct RuleSet<S, A> {
    pub rules: Vec<Rule<S, A>>,
    pub sources: Vec<Source<S>>,
}

impl<S, A> Default for RuleSet<S, A> {
    fn default() -> Self {
        RuleSet {
            rules: Vec::new(),
            sources: Vec::new(),
        }
    }
}

impl<S, A> RuleSet<S, A> {
    /// Qualifies each rule's fixed Kubernetes target with the automaton's own namespace
    /// (`deployment/api` → `HOME/deployment/api`, see [`super::target::qualify`]): the form
    /// every decision, state and Event names it by.
    pub fn in_namespace(mut self, home: &str) -> Self {
        for rule in &mut self.rules {
            if let Some(target) = &rule.fixed_target {
                rule.fixed_target = Some(Arc::from(super::target::qualify(target, home)));
            }
        }
        self
    }
}

impl<S: SignalKind, A: ActionKind> RuleSet<S, A> {
    pub fn new(rules: Vec<Rule<S, A>>) -> Self {
        let mut sources: Vec<Source<S>> = Vec::new();
        let mut by_key: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (index, rule) in rules.iter().enumerate() {
            let key = rule.spec.signal.source_key();
            match by_key.get(&key) {
                Some(&at) => sources[at].rules.push(index),
                None => {
                    by_key.insert(key.clone(), sources.len());
                    sources.push(Source {
                        shown: rule.spec.signal.shown_key(),
                        key,
                        spec: rule.spec.signal.clone(),
                        rules: vec![index],
                    });
                }
            }
        }
        RuleSet { rules, sources }
    }
}

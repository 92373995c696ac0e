//! The decision line: what the engine concluded for one (rule, target) at one evaluation.
//! It is the product's audit trail: `simulate` and `run --once` print it as JSON lines, the
//! daemon logs it, `/status` keeps the recent ones, and `notify` sends it.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::core::plan::Plan;

/// Where a rule stands for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Inactive,
    Pending,
    Firing,
    Unknown,
}

impl State {
    pub const ALL: [State; 4] = [State::Inactive, State::Pending, State::Firing, State::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
            State::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Act,
    Skip,
    None,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Act, Verdict::Skip, Verdict::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Act => "act",
            Verdict::Skip => "skip",
            Verdict::None => "none",
        }
    }
}

/// Why an action that was due did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    NotLeader,
    DryRun,
    Cooldown,
    Budget,
    Bound,
    Unknown,
    /// The plan could not be made from what is known (e.g. the current memory is unknown).
    Plan,
    /// The rule's own `rate_limit` is used up.
    RateLimit,
    /// The target carries `automaton.dev/paused: "true"`.
    Paused,
    /// An earlier action of this rule on this target failed its verification.
    Quarantined,
    /// The circuit breaker of the action's dependency is open.
    CircuitOpen,
    /// A HorizontalPodAutoscaler owns the target's replicas.
    HpaManaged,
    /// The target is managed by Argo CD or Flux and GITOPS_POLICY is `skip`.
    Gitops,
    /// A Job of the CronJob `run_job` would start is still running.
    JobActive,
    /// The guard state could not be read from or written to the cluster: an action whose
    /// record could be lost by a crash is not taken.
    StateUnsaved,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotLeader => "not_leader",
            SkipReason::DryRun => "dry_run",
            SkipReason::Cooldown => "cooldown",
            SkipReason::Budget => "budget",
            SkipReason::Bound => "bound",
            SkipReason::Unknown => "unknown",
            SkipReason::Plan => "plan",
            SkipReason::RateLimit => "rate_limit",
            SkipReason::Paused => "paused",
            SkipReason::Quarantined => "quarantined",
            SkipReason::CircuitOpen => "circuit_open",
            SkipReason::HpaManaged => "hpa_managed",
            SkipReason::Gitops => "gitops",
            SkipReason::JobActive => "job_active",
            SkipReason::StateUnsaved => "state_unsaved",
        }
    }
}

/// What a decision is: the evaluation of a rule's own action, the `notify_first` notice
/// placed just before it, or the rollback of an earlier action that failed its
/// verification. Serialized as the `action` of the decision line: the kind of the rule's
/// action, `notify` or `rollback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// The rule's action, by kind name (`scale`, `run_job`…).
    Action(&'static str),
    /// The rule's `notify_first`, just before its action.
    Notice,
    /// Undoing the rule's last action.
    Rollback,
}

impl DecisionKind {
    /// The name in decision lines, logs, metrics labels and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Action(kind) => kind,
            DecisionKind::Notice => "notify",
            DecisionKind::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DecisionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What the writer did with an `act` decision, as `automaton_action_outcomes_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// Executed: the change was made (or the call answered as expected).
    Succeeded,
    /// Executed and failed: the dependency or the object said no, or was unreachable.
    Failed,
    /// Cut at its deadline (ACTION_TIMEOUT, or what was left of the tick's write budget).
    Timeout,
    /// Never tried: this replica lost the Lease between planning and writing, or the tick's
    /// write budget was spent. A dropped action is taken back and decided again.
    Dropped,
    /// Not written by the executor's own check on the live state (the cooldown recorded
    /// on the object, already at the value, a dry run) or an open circuit breaker.
    Refused,
}

impl WriteOutcome {
    pub const ALL: [WriteOutcome; 5] = [
        WriteOutcome::Succeeded,
        WriteOutcome::Failed,
        WriteOutcome::Timeout,
        WriteOutcome::Dropped,
        WriteOutcome::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::Succeeded => "succeeded",
            WriteOutcome::Failed => "failed",
            WriteOutcome::Timeout => "timeout",
            WriteOutcome::Dropped => "dropped",
            WriteOutcome::Refused => "refused",
        }
    }
}

/// One evaluation of one (rule, target).
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The action's id, for `act` decisions: in the log line, the Event and the webhook, so
    /// one action can be followed everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Arc<str>>,
    /// Seconds since the engine started (simulated seconds in `simulate`).
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    pub rule: Arc<str>,
    pub target: Arc<str>,
    /// The sample evaluated; null when unknown.
    pub value: Option<f64>,
    pub state: State,
    pub decision: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SkipReason>,
    /// Human detail: why unknown, how long the cooldown lasts, what bound applied…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    #[serde(rename = "action")]
    pub kind: DecisionKind,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<serde_json::Value>,
    /// Whether the executed action succeeded (set by the executor; absent before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// What the writer did with an `act` (absent before it, and for other decisions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<WriteOutcome>,
    /// The end of the verification of an earlier action, when this evaluation ends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Box<super::verify::Verification>>,
    /// The GitOps tool that manages the target (GITOPS_POLICY=warn: acted anyway, the
    /// change must also go to Git).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitops: Option<String>,
    /// When the condition first held, for `healing_latency_seconds`.
    #[serde(skip)]
    pub active_since: Option<Duration>,
    /// The plan of an `act` decision, for the executor (boxed: most decisions have none).
    #[serde(skip)]
    pub plan: Option<Box<Plan>>,
    /// Index of the rule in the rule set the engine ran.
    #[serde(skip)]
    pub rule_index: usize,
    /// Whether the (rule, target) is quarantined after this evaluation.
    #[serde(skip)]
    pub quarantined: bool,
    /// For an `act`: the cooldown marks it replaced, so an action the writer dropped (never
    /// tried) can be given back (`Engine::report`). Boxed: acts are rare among decisions.
    #[serde(skip)]
    pub taken: Option<Box<Taken>>,
}

/// What an `act` changed in the guard's per-target books: the cooldown marks before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub last_act: Option<Duration>,
    pub last_dry_act: Option<Duration>,
}

/// The `detail` of a decision. Kept structured and rendered only when printed, because the
/// engine produces one decision per (rule, target) per tick and most are never printed.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Text(String),
    CooldownLeft(Duration),
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Detail::Text(t) => f.write_str(t),
            Detail::CooldownLeft(left) => write!(f, "{}s of cooldown left", left.as_secs()),
        }
    }
}

impl Serialize for Detail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<String> for Detail {
    fn from(text: String) -> Self {
        Detail::Text(text)
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl Decision {
    /// A decision that follows another one of the same evaluation (a `notify_first` notice,
    /// a rollback): not an evaluation of its own.
    pub fn follows_up(&self) -> bool {
        !matches!(self.kind, DecisionKind::Action(_))
    }

    /// Marks the decision as a skip for `reason`.
    pub fn skip(&mut self, reason: SkipReason, detail: Option<Detail>) {
        self.decision = Verdict::Skip;
        self.reason = Some(reason);
        self.detail = detail;
    }

    /// One line for humans (notifications, Events).
    pub fn summary(&self) -> String {
        let mut text = format!(
            "rule {} on {}: {} {}",
            self.rule,
            self.target,
            self.state.as_str(),
            self.kind
        );
        if let Some(reason) = self.reason {
            text.push_str(&format!(" skipped ({})", reason.as_str()));
        }
        if let Some(change) = &self.change {
            text.push_str(&format!(" change {change}"));
        }
        if let Some(value) = self.value {
            text.push_str(&format!(" at value {value}"));
        }
        text
    }

    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"unserializable decision: {e}\"}}"))
    }
}

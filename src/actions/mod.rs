//! Actions: what the automaton may do. Each kind is one file holding its rule-file
//! parameters (serde, a `///` on every field), its validation, its pure plan, its execution
//! through [`crate::clients`] and its tests, and one line in the registry below, which names
//! the client the kind needs. Planning is pure: from the observed world it computes the
//! exact, bounded change; execution happens later, and only for what the guard let through.

mod error;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use crate::core::target::{OwnerKind, Target};
pub use error::ActionError;

use crate::clients::http::{HttpClient, HttpError};
use crate::clients::kube::executor::{Act, KubeExecutor};
use crate::clients::pg::PgSource;
use crate::core::decision::Decision;
use crate::core::engine::Executable;
use crate::core::plan::{Effect, Outcome, Plan, PlanCtx, PlanError};
use crate::signals::SignalSpec;

/// A rule of this build's kinds, as executors see it.
pub type Rule = crate::core::rule::Rule<SignalSpec, ActionSpec>;

/// The client an action kind executes through. Without it the kind runs as dry-run, saying
/// so in its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// Every process has it.
    Http,
    /// A Kubernetes API (in-cluster or KUBECONFIG).
    Kubernetes,
    /// A PostgreSQL server (POSTGRES_HOST or DATABASE_URL).
    Postgres,
}

/// What every action kind provides. Implemented by the parameter struct of each kind.
pub trait Action: Send + Sync {
    /// The external dependency the action goes through: the key of its circuit breaker.
    fn dependency(&self) -> String;

    /// The object acted on, which keys the rule's per-target state and cooldown. Workload
    /// actions name their workload (`owner` resolves from the series' `owner` label); the
    /// others name what they touch, without secrets (a webhook URL is a credential).
    fn target(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError>;

    /// Whether the target depends on the series (one state per owner) or is fixed.
    fn target_from_series(&self) -> bool {
        false
    }

    /// What `target: owner` may act on (the signal's [`OwnerKind`]): workloads, unless the
    /// kind says otherwise.
    fn owner_kinds(&self) -> &'static [OwnerKind] {
        &[OwnerKind::Workload]
    }

    /// Whether a HorizontalPodAutoscaler owning the target's replicas refuses the action.
    fn yields_to_hpa(&self) -> bool {
        false
    }

    /// Every problem of the parameters, beside the rule's signal.
    fn validate(&self, _signal: &SignalSpec) -> Vec<String> {
        Vec::new()
    }

    /// The exact change. `Err` means it cannot be planned from what is known (the guard
    /// skips with the reason; nothing is guessed).
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError>;

    /// Executes the plan of an `act` decision. `Ok` with `skipped` set means the live state
    /// made the action unnecessary and nothing was written.
    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>>;

    /// Whether an action whose intent was recorded, by a process that stopped before
    /// recording its outcome, took place: read from the live object. The default, for kinds
    /// whose effect leaves nothing to read back (a webhook, a PostgreSQL `terminate`, an
    /// exec), is `Unknown`, which keeps the action counted: at most once.
    fn reconcile<'a>(&'a self, _cx: &'a ReconcileCtx<'a>) -> BoxFuture<'a, Result<Reconciled, ActionError>> {
        Box::pin(async { Ok(Reconciled::Unknown) })
    }
}

/// What reconciling an action found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// The live object shows it: it stays counted.
    Done,
    /// The live object shows no trace of it: it is taken back and decided again.
    NotDone,
    /// Nothing to read it from: it stays counted.
    Unknown,
}

impl Reconciled {
    pub fn as_str(self) -> &'static str {
        match self {
            Reconciled::Done => "done",
            Reconciled::NotDone => "not_done",
            Reconciled::Unknown => "assumed_done",
        }
    }
}

/// An action found recorded without its outcome.
pub struct ReconcileCtx<'a> {
    pub rule: &'a Rule,
    pub target: &'a str,
    /// Engine time (Unix time in the daemon) of the decision.
    pub acted_at: std::time::Duration,
    pub effect: &'a Effect,
    pub executors: &'a Executors,
}

impl ReconcileCtx<'_> {
    pub fn kube(&self) -> Result<&KubeExecutor, ActionError> {
        self.executors.kube.as_ref().ok_or(ActionError::NotConfigured(
            "no Kubernetes API configured: workload actions cannot be reconciled",
        ))
    }

    /// The earliest wall-clock time a write of this action can carry: the decision's second,
    /// less a few seconds for the skew between the monotonic engine clock and the wall
    /// clock that stamps annotations (never more than half the cooldown, so the rule's
    /// previous action cannot pass for this one).
    pub fn since(&self) -> jiff::Timestamp {
        let slack = std::time::Duration::from_secs(5).min(self.rule.cooldown / 2);
        let secs = self.acted_at.saturating_sub(slack).as_secs();
        jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX)).unwrap_or(jiff::Timestamp::MAX)
    }
}

/// Reconciles a workload action (`scale`, `restart`, `raise_memory`): each writes the rule's
/// last-action annotation in the same patch as its change, so the annotation at or after the
/// decision says the change was made.
fn reconcile_workload<'a>(cx: &'a ReconcileCtx<'a>) -> BoxFuture<'a, Result<Reconciled, ActionError>> {
    Box::pin(async move {
        let kube = cx.kube()?;
        let target = crate::clients::kube::executor::workload_ref(cx.target)?;
        let done = kube.acted_since(&target, &cx.rule.name, cx.since()).await?;
        Ok(if done {
            Reconciled::Done
        } else {
            Reconciled::NotDone
        })
    })
}

/// The clients actions execute through. Built once by the runtime; a client that is not
/// configured is `None`.
#[derive(Clone)]
pub struct Executors {
    pub http: HttpClient,
    pub kube: Option<KubeExecutor>,
    pub postgres: Option<Arc<PgSource>>,
}

impl Executors {
    pub fn new() -> Result<Self, HttpError> {
        Ok(Executors {
            http: HttpClient::new()?,
            kube: None,
            postgres: None,
        })
    }

    fn has(&self, client: Client) -> bool {
        match client {
            Client::Http => true,
            Client::Kubernetes => self.kube.is_some(),
            Client::Postgres => self.postgres.is_some(),
        }
    }

    /// The kinds these clients can execute, for the engine.
    pub fn executable(&self) -> Executable {
        Executable::Only(
            ActionSpec::CLIENTS
                .iter()
                .filter(|(_, client)| self.has(*client))
                .map(|(kind, _)| *kind)
                .collect::<BTreeSet<_>>(),
        )
    }
}

/// One execution: the rule and decision, and the clients.
pub struct ExecCtx<'a> {
    pub rule: &'a Rule,
    pub decision: &'a Decision,
    pub executors: &'a Executors,
}

impl ExecCtx<'_> {
    /// What the Kubernetes side names in annotations, Events and logs.
    pub fn act(&self) -> Act<'_> {
        Act {
            rule: &self.rule.name,
            cooldown: self.rule.cooldown,
            when: self.rule.spec.when,
            decision: self.decision,
        }
    }

    /// The planned effect the guard let through.
    pub fn effect(&self) -> Result<&Effect, ActionError> {
        self.decision
            .plan
            .as_deref()
            .map(|p| &p.effect)
            .ok_or(ActionError::NoPlan)
    }

    pub fn kube(&self) -> Result<&KubeExecutor, ActionError> {
        self.executors.kube.as_ref().ok_or(ActionError::NotConfigured(
            "no Kubernetes API configured: workload actions cannot execute",
        ))
    }

    pub fn postgres(&self) -> Result<&PgSource, ActionError> {
        self.executors
            .postgres
            .as_deref()
            .ok_or(ActionError::NotConfigured("no PostgreSQL configured"))
    }
}

/// The registry: `module => Kind (Client)` declares the kind's file, its variant of
/// [`ActionSpec`] and the client it executes through. The kind's name in rule files is the
/// module's name, which is also the variant's name in snake case (checked by a test).
macro_rules! actions {
    ($($module:ident => $kind:ident ($client:ident),)+) => {
        $(
            pub mod $module;
            pub use $module::$kind;
        )+

        /// The action of a rule: exactly one kind, with its parameters.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ActionSpec {
            $($kind($kind),)+
        }

        impl ActionSpec {
            /// Every kind's name and the client it executes through.
            pub const CLIENTS: &'static [(&'static str, Client)] =
                &[$((stringify!($module), Client::$client)),+];

            /// The kind's name, as written in rule files.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(ActionSpec::$kind(_) => stringify!($module),)+
                }
            }

            /// The kind's implementation.
            pub fn get(&self) -> &dyn Action {
                match self {
                    $(ActionSpec::$kind(a) => a,)+
                }
            }
        }
    };
}

actions! {
    scale => Scale (Kubernetes),
    restart => Restart (Kubernetes),
    raise_memory => RaiseMemory (Kubernetes),
    terminate_idle_connections => TerminateIdleConnections (Postgres),
    clean_logs => CleanLogs (Kubernetes),
    http => Http (Http),
    run_job => RunJob (Kubernetes),
    notify => Notify (Http),
}

impl ActionSpec {
    /// The key of the circuit breaker the action goes through.
    pub fn dependency(&self) -> String {
        self.get().dependency()
    }

    /// The object acted on, which keys the rule's per-target state and cooldown.
    pub fn target(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        self.get().target(labels)
    }

    /// Whether the target depends on the series (one state per owner) or is fixed.
    pub fn target_from_series(&self) -> bool {
        self.get().target_from_series()
    }

    /// Checks that need the whole rule (the signal beside the action). Every problem is
    /// returned, not just the first.
    pub fn validate(&self, signal: &SignalSpec) -> Vec<String> {
        let mut errors = Vec::new();
        if self.target_from_series() {
            let accepted = self.get().owner_kinds();
            match signal.owner_kind() {
                None => errors.push(format!(
                    "`target: owner` needs a signal whose series name their owner (pod_oom_killed, pod_crash_loop, pod_restarts, or prometheus or alert with a `target`), not `{}`",
                    signal.kind()
                )),
                Some(kind) if !accepted.contains(&kind) => errors.push(format!(
                    "`target: owner` of `{}` acts on {}, but the signal's series name {}",
                    self.kind(),
                    accepted.iter().map(|k| k.describe()).collect::<Vec<_>>().join(" or "),
                    kind.describe()
                )),
                Some(_) => {}
            }
        }
        errors.extend(self.get().validate(signal));
        errors
    }

    /// Computes the exact change.
    pub fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        self.get().plan(ctx)
    }

    /// Executes the plan of an `act` decision of `cx.rule`. A dry run writes nothing,
    /// whatever the kind: the engine never lets one act, and this is the last line of that.
    pub async fn execute(&self, cx: &ExecCtx<'_>) -> Result<Outcome, ActionError> {
        if cx.decision.dry_run {
            let d = cx.decision;
            return Ok(Outcome::skipped(
                crate::core::decision::SkipReason::DryRun,
                format!("{} on {} is a dry run: nothing written", d.kind, d.target),
            ));
        }
        self.get().execute(cx).await
    }
}

impl crate::core::rule::ActionKind for ActionSpec {
    fn kind(&self) -> &'static str {
        ActionSpec::kind(self)
    }

    fn dependency(&self) -> String {
        ActionSpec::dependency(self)
    }

    fn target(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        ActionSpec::target(self, labels)
    }

    fn target_from_series(&self) -> bool {
        ActionSpec::target_from_series(self)
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        ActionSpec::plan(self, ctx)
    }

    fn yields_to_hpa(&self) -> bool {
        self.get().yields_to_hpa()
    }
}

/// The error of an `act` decision whose plan is not of its kind (a bug, never guessed
/// around).
fn wrong_effect(cx: &ExecCtx<'_>) -> ActionError {
    let effect = cx.decision.plan.as_deref().map(|p| &p.effect);
    ActionError::Kubernetes(crate::clients::kube::error::ClusterError::Invalid(format!(
        "rule {}: a `{}` action cannot execute the effect {effect:?}",
        cx.rule.name,
        cx.rule.spec.action.kind()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_in_rule_files_by_its_module() {
        for (kind, _) in ActionSpec::CLIENTS {
            let yaml = format!("{kind}: {{}}\n");
            let err = serde_yaml::from_str::<ActionSpec>(&yaml)
                .map(|a| a.kind().to_owned())
                .unwrap_or_else(|e| e.to_string());
            assert!(
                err == *kind || !err.contains("unknown variant"),
                "`{kind}` is not a variant name of ActionSpec: {err}"
            );
        }
    }
}

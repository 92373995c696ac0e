//! Actions: what the automaton may do. Each kind is one variant of [`ActionSpec`] and one
//! file holding its rule-file parameters, its validation and its plan. Planning is pure:
//! from the observed world it computes the exact, bounded change; execution happens later
//! (see [`execute`]) and only for what the guard let through.

pub mod connections;
pub mod execute;
pub mod http;
pub mod job;
pub mod kube;
pub mod logs;
pub mod memory;
pub mod notify;
pub mod restart;
pub mod scale;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::plan::{Plan, PlanCtx, PlanError};
pub use crate::core::target::Target;
use crate::signals::SignalSpec;

/// A rule of this build's kinds, as executors see it.
pub type Rule = crate::core::rule::Rule<SignalSpec, ActionSpec>;

/// The action of a rule: exactly one kind, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionSpec {
    /// Set a Deployment's or StatefulSet's replicas (bounded by `max` and MAX_REPLICAS).
    Scale(scale::Scale),
    /// Rollout restart, as `kubectl rollout restart` does (never deletes pods).
    Restart(restart::Restart),
    /// Raise a container's memory request and limit (bounded by `max` and MAX_MEMORY).
    RaiseMemory(memory::RaiseMemory),
    /// Terminate idle PostgreSQL client connections (never active ones, never our own).
    TerminateIdleConnections(connections::TerminateIdle),
    /// Delete old log files inside pods (argv only, path allow-list).
    CleanLogs(logs::CleanLogs),
    /// Call an HTTP endpoint, such as a validator's admin API.
    Http(http::Http),
    /// Create a Job from a CronJob's template.
    RunJob(job::RunJob),
    /// Post the decision to a webhook.
    Notify(notify::Notify),
}

impl ActionSpec {
    /// The external dependency the action goes through: the key of its circuit breaker.
    pub fn dependency(&self) -> String {
        match self {
            ActionSpec::Scale(_)
            | ActionSpec::Restart(_)
            | ActionSpec::RaiseMemory(_)
            | ActionSpec::RunJob(_)
            | ActionSpec::CleanLogs(_) => "kubernetes".to_owned(),
            ActionSpec::TerminateIdleConnections(_) => "postgres".to_owned(),
            ActionSpec::Http(a) => format!("http/{}", crate::core::url::host_port(&a.url)),
            ActionSpec::Notify(a) => a.target(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ActionSpec::Scale(_) => "scale",
            ActionSpec::Restart(_) => "restart",
            ActionSpec::RaiseMemory(_) => "raise_memory",
            ActionSpec::TerminateIdleConnections(_) => "terminate_idle_connections",
            ActionSpec::CleanLogs(_) => "clean_logs",
            ActionSpec::Http(_) => "http",
            ActionSpec::RunJob(_) => "run_job",
            ActionSpec::Notify(_) => "notify",
        }
    }

    /// The object acted on, which keys the rule's per-target state and cooldown. Workload
    /// actions name their workload (`owner` resolves from the series' `owner` label);
    /// the others name what they touch, without secrets (a webhook URL is a credential).
    pub fn target(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        match self {
            ActionSpec::Scale(a) => a.target.resolve(labels),
            ActionSpec::Restart(a) => a.target.resolve(labels),
            ActionSpec::RaiseMemory(a) => a.target.resolve(labels),
            ActionSpec::TerminateIdleConnections(a) => Ok(a.target()),
            ActionSpec::CleanLogs(a) => Ok(format!("pods/{}", a.selector)),
            ActionSpec::Http(a) => Ok(a.target()),
            ActionSpec::RunJob(a) => Ok(format!("cronjob/{}", a.from_cronjob)),
            ActionSpec::Notify(a) => Ok(a.target()),
        }
    }

    /// Whether the target depends on the series (one state per owner) or is fixed.
    pub fn target_from_series(&self) -> bool {
        matches!(
            self,
            ActionSpec::Scale(scale::Scale {
                target: Target::Owner,
                ..
            }) | ActionSpec::Restart(restart::Restart {
                target: Target::Owner
            }) | ActionSpec::RaiseMemory(memory::RaiseMemory {
                target: Target::Owner,
                ..
            })
        )
    }

    /// Checks that need the whole rule (the signal beside the action). Every problem is
    /// returned, not just the first.
    pub fn validate(&self, signal: &SignalSpec) -> Vec<String> {
        let mut errors = Vec::new();
        if self.target_from_series() && !signal.is_pod_signal() {
            errors.push(format!(
                "`target: owner` needs a pod signal (pod_oom_killed, pod_crash_loop, pod_restarts), not `{}`",
                signal.kind()
            ));
        }
        match self {
            ActionSpec::Scale(a) => errors.extend(a.validate(signal)),
            ActionSpec::RaiseMemory(a) => errors.extend(a.validate()),
            ActionSpec::CleanLogs(a) => errors.extend(a.validate()),
            ActionSpec::Http(a) => errors.extend(a.validate()),
            ActionSpec::Notify(a) => errors.extend(a.validate()),
            ActionSpec::Restart(_) | ActionSpec::TerminateIdleConnections(_) | ActionSpec::RunJob(_) => {}
        }
        errors
    }

    /// Computes the exact change. `Err` means the plan cannot be made from what is known
    /// (the guard skips with the reason; nothing is guessed).
    pub fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        match self {
            ActionSpec::Scale(a) => a.plan(ctx),
            ActionSpec::Restart(a) => Ok(a.plan(ctx)),
            ActionSpec::RaiseMemory(a) => a.plan(ctx),
            ActionSpec::TerminateIdleConnections(a) => Ok(a.plan()),
            ActionSpec::CleanLogs(a) => Ok(a.plan()),
            ActionSpec::Http(a) => Ok(a.plan()),
            ActionSpec::RunJob(a) => Ok(a.plan()),
            ActionSpec::Notify(a) => Ok(a.plan()),
        }
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
        matches!(self, ActionSpec::Scale(_))
    }
}

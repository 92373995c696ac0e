//! What an action will do, computed before anything is executed: the plan, its effect on
//! the modelled world, and the hard bounds from the settings. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::decision::SkipReason;
use super::values::{Bytes, Op};
use super::world::World;

/// Why a plan cannot be made. The guard skips with the reason (`plan`); nothing is guessed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A fact the plan needs is not known (the current replicas, a container's memory).
    #[error("{0}")]
    Unknown(String),
    /// The target cannot be resolved from the series (no `owner` label).
    #[error("{0}")]
    Target(String),
}

/// Hard bounds from the settings; a rule can only narrow them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub max_memory: Bytes,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_replicas: 1,
            max_replicas: 10,
            max_memory: Bytes(8 << 30),
        }
    }
}

/// What planning sees: the resolved target, the sample that fired and the world.
pub struct PlanCtx<'a> {
    pub target: &'a str,
    pub value: f64,
    pub labels: &'a BTreeMap<String, String>,
    pub world: &'a dyn World,
    pub limits: &'a Limits,
    /// The operator of the rule's `when`: a rule that fires on a high value adds capacity,
    /// one that fires on a low value removes it (see `scale`).
    pub when: Op,
}

/// The exact change an action will make, computed before anything is executed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Shown in decisions, logs, Events: before → after, and why it is bounded.
    pub change: serde_json::Value,
    /// `Some(why)` when there is nothing to do (already at the bound): the guard skips it.
    pub noop: Option<String>,
    /// The effect on the world, applied by the simulator and by executors.
    pub effect: Effect,
    /// The effect that restores what the plan found (the replicas, the memory before), for a
    /// rollback after a failed verification; `None` when the change cannot be undone (a
    /// restart, a Job, a call).
    pub undo: Option<Effect>,
}

impl Plan {
    pub fn new(change: serde_json::Value, effect: Effect) -> Self {
        Plan {
            change,
            noop: None,
            effect,
            undo: None,
        }
    }
}

/// A structured description of what executing the plan changes. Serialized in the guard
/// state kept in the cluster (open verifications, action intents).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    SetReplicas {
        target: String,
        replicas: u32,
    },
    SetMemory {
        target: String,
        container: String,
        request: Bytes,
        limit: Bytes,
    },
    RolloutRestart {
        target: String,
    },
    /// Effects outside the modelled world (an HTTP call, a Job, a notification…).
    External,
}

/// What executing one decision did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// `Some` when nothing was written: the live object was inside the rule's cooldown
    /// (`cooldown`), already had the planned values (`bound`), or the decision was a dry run.
    pub skipped: Option<SkipReason>,
    /// One line for humans: what was done, or why not.
    pub detail: String,
    /// The live change, before → after, e.g. `{"replicas": [2, 6]}`.
    pub change: Option<serde_json::Value>,
}

impl Outcome {
    pub fn done(detail: String, change: serde_json::Value) -> Self {
        Outcome {
            skipped: None,
            detail,
            change: Some(change),
        }
    }

    /// Done, with nothing structured to add to the plan's change (an HTTP call answered).
    pub fn text(detail: String) -> Self {
        Outcome {
            skipped: None,
            detail,
            change: None,
        }
    }

    pub fn skipped(reason: SkipReason, detail: String) -> Self {
        Outcome {
            skipped: Some(reason),
            detail,
            change: None,
        }
    }
}

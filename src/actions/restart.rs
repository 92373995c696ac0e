//! `restart`: a rollout restart, exactly as `kubectl rollout restart` does it (the pod
//! template annotation `kubectl.kubernetes.io/restartedAt`), so the workload's own rollout
//! strategy replaces pods gradually. Pods are never deleted.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Target;
use crate::core::plan::{Effect, Plan, PlanCtx};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    /// `deployment/NAME`, `statefulset/NAME` or `owner`.
    pub target: Target,
}

impl Restart {
    pub fn plan(&self, ctx: &PlanCtx<'_>) -> Plan {
        Plan::new(
            json!({"rollout_restart": ctx.target}),
            Effect::RolloutRestart {
                target: ctx.target.to_owned(),
            },
        )
    }
}

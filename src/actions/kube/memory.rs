//! `raise_memory`: a strategic merge patch of one container's memory request and limit in
//! the pod template (containers merge by name), guarded by the `resourceVersion` just read.
//! On 409 the workload is read again and the change re-decided, at most three times. Memory
//! is only ever raised: a value someone already set higher is kept.

use kube::api::Patch;
use serde_json::json;
use tracing::debug;

use super::{Ctx, KubeExecutor, Outcome};
use crate::clients::kube::error::ClusterError;
use crate::clients::kube::last_action_key;
use crate::clients::kube::workload::{LiveWorkload, WorkloadRef};
use crate::core::decision::SkipReason;
use crate::core::values::Bytes;

/// Patch attempts when the object keeps changing under us.
const ATTEMPTS: u32 = 3;

/// A memory request and limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Memory {
    pub request: Bytes,
    pub limit: Bytes,
}

impl KubeExecutor {
    pub(super) async fn raise_memory(
        &self,
        ctx: &Ctx<'_>,
        target: &WorkloadRef,
        container: &str,
        want: Memory,
    ) -> Result<Outcome, ClusterError> {
        let mut attempt = 1;
        loop {
            let live = self.live(target).await?;
            let now = self.now();
            if let Some(skip) = self.inside_cooldown(ctx, &live, now) {
                return Ok(skip);
            }
            let before = current(&live, target, container)?;
            let after = Memory {
                request: want.request.max(before.request),
                limit: want.limit.max(before.limit),
            };
            let after = Memory {
                limit: after.limit.max(after.request),
                ..after
            };
            if after == before {
                return Ok(Outcome::skipped(
                    SkipReason::Bound,
                    format!(
                        "container `{container}` of {target} already has {}/{} (request/limit)",
                        before.request, before.limit
                    ),
                ));
            }
            let mut body = memory_patch(&live, container, after);
            body["metadata"]["annotations"] = json!({last_action_key(&ctx.rule.name): now.to_string()});
            match self.patch_workload(target, &Patch::Strategic(body)).await {
                Ok(()) => return Ok(self.raised(ctx, &live, container, before, after).await),
                Err(error) if error.is_conflict() && attempt < ATTEMPTS => {
                    debug!(%error, attempt, "the workload changed since it was read; reading it again");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn raised(
        &self,
        ctx: &Ctx<'_>,
        live: &LiveWorkload,
        container: &str,
        before: Memory,
        after: Memory,
    ) -> Outcome {
        let shown = |m: Memory| format!("{}/{}", m.request, m.limit);
        let note = ctx.note(
            &format!("container {container} memory {}", shown(before)),
            &format!("{} (request/limit)", shown(after)),
        );
        self.publish(&live.object_ref, "MemoryRaised", "RaiseMemory", note)
            .await;
        Outcome::done(
            format!(
                "memory of container `{container}` in {} raised from {} to {} (request/limit)",
                live.target(),
                shown(before),
                shown(after)
            ),
            json!({
                "container": container,
                "memory_request": [before.request, after.request],
                "memory_limit": [before.limit, after.limit],
            }),
        )
    }
}

/// The strategic merge patch that sets one container's memory request and limit (containers
/// merge by name), guarded by the `resourceVersion` just read.
pub(super) fn memory_patch(live: &LiveWorkload, container: &str, memory: Memory) -> serde_json::Value {
    json!({
        "metadata": {"resourceVersion": live.resource_version},
        "spec": {"template": {"spec": {"containers": [{
            "name": container,
            "resources": {
                "requests": {"memory": memory.request.to_string()},
                "limits": {"memory": memory.limit.to_string()},
            },
        }]}}},
    })
}

/// The container's memory as the live template has it; both must be known to raise them.
pub(super) fn current(
    live: &LiveWorkload,
    target: &WorkloadRef,
    container: &str,
) -> Result<Memory, ClusterError> {
    let res = live.containers.get(container).ok_or_else(|| {
        ClusterError::Invalid(format!(
            "{target} has no container `{container}` (containers: {})",
            live.containers.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    match (res.memory_request, res.memory_limit) {
        (Some(request), Some(limit)) => Ok(Memory { request, limit }),
        _ => Err(ClusterError::Invalid(format!(
            "container `{container}` of {target} has no memory request and limit in bytes to raise"
        ))),
    }
}

//! Rollback: after a failed verification, put back what an action found — the replicas, or
//! the memory request and limit (lowered again if need be). Only when the object still holds
//! what the action set: a value someone changed since is theirs, not ours to undo. Both
//! patches carry the `resourceVersion` just read, so they cannot land on an object that
//! changed in between.

use kube::api::Patch;
use serde_json::json;

use super::error::ClusterError;
use super::executor::{workload_ref, Act, KubeExecutor};
use super::memory::{current, memory_patch, Memory};
use crate::core::decision::SkipReason;
use crate::core::plan::{Effect, Outcome};

impl KubeExecutor {
    /// Executes a `rollback` decision: its plan's effect restores, its change says from what.
    pub async fn rollback(&self, act: &Act<'_>) -> Result<Outcome, ClusterError> {
        let decision = act.decision;
        if decision.dry_run {
            return Ok(Outcome::skipped(
                SkipReason::DryRun,
                format!("rollback of {} is a dry run: nothing written", decision.target),
            ));
        }
        let plan = decision.plan.as_deref().ok_or_else(|| {
            ClusterError::Invalid(format!("rule {}: the rollback carries no plan", act.rule))
        })?;
        let change = decision.change.clone().unwrap_or_default();
        match &plan.effect {
            Effect::SetReplicas { target, replicas } => {
                let target = workload_ref(target)?;
                let live = self.live(&target).await?;
                let set = change["replicas"][0].as_u64();
                if live.replicas.map(u64::from) != set {
                    return Ok(changed_since(&target.to_string(), live.replicas, set));
                }
                self.set_replicas(&target, &live.resource_version, *replicas)
                    .await?;
                let (from, to) = (
                    format!("{} replicas", set.unwrap_or(0)),
                    format!("{replicas} replicas"),
                );
                self.publish(
                    &live.object_ref,
                    "RolledBack",
                    "Rollback",
                    self.note(act, &from, &to),
                )
                .await;
                Ok(Outcome::done(
                    format!("{target} scaled back from {from} to {to}"),
                    json!({"replicas": [set, replicas]}),
                ))
            }
            Effect::SetMemory {
                target,
                container,
                request,
                limit,
            } => {
                let target = workload_ref(target)?;
                let live = self.live(&target).await?;
                let now = current(&live, &target, container)?;
                let set = (
                    change["memory_request"][0].as_str().and_then(|q| q.parse().ok()),
                    change["memory_limit"][0].as_str().and_then(|q| q.parse().ok()),
                );
                if (Some(now.request), Some(now.limit)) != set {
                    let shown = format!("{}/{}", now.request, now.limit);
                    return Ok(Outcome::skipped(
                        SkipReason::Bound,
                        format!("{target}: container `{container}` is now {shown}, not what the action set: left alone"),
                    ));
                }
                let back = Memory {
                    request: *request,
                    limit: *limit,
                };
                self.patch_workload(&target, &Patch::Strategic(memory_patch(&live, container, back)))
                    .await?;
                let shown = |m: Memory| format!("{}/{}", m.request, m.limit);
                let note = self.note(
                    act,
                    &format!("container {container} memory {}", shown(now)),
                    &format!("{} (request/limit)", shown(back)),
                );
                self.publish(&live.object_ref, "RolledBack", "Rollback", note)
                    .await;
                Ok(Outcome::done(
                    format!(
                        "memory of container `{container}` in {target} restored from {} to {} (request/limit)",
                        shown(now),
                        shown(back)
                    ),
                    json!({
                        "container": container,
                        "memory_request": [now.request, request],
                        "memory_limit": [now.limit, limit],
                    }),
                ))
            }
            other => Err(ClusterError::Invalid(format!(
                "rule {}: a rollback cannot execute the effect {other:?}",
                act.rule
            ))),
        }
    }
}

fn changed_since(target: &str, now: Option<u32>, set: Option<u64>) -> Outcome {
    let now = now.map_or("unknown".to_owned(), |n| n.to_string());
    let set = set.map_or("unknown".to_owned(), |n| n.to_string());
    Outcome::skipped(
        SkipReason::Bound,
        format!("{target} now has {now} replicas, not the {set} the action set: left alone"),
    )
}

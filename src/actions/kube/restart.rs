//! `restart`: exactly what `kubectl rollout restart` sends, a strategic merge patch of the pod
//! template annotation `kubectl.kubernetes.io/restartedAt`, so the workload's own rollout
//! strategy replaces the pods. Pods are never deleted. The last-action annotation rides in the
//! same patch.

use kube::api::Patch;
use serde_json::json;

use super::{Ctx, KubeExecutor, Outcome};
use crate::clients::kube::error::ClusterError;
use crate::clients::kube::last_action_key;
use crate::clients::kube::workload::{WorkloadRef, RESTARTED_AT};

impl KubeExecutor {
    pub(super) async fn restart(&self, ctx: &Ctx<'_>, target: &WorkloadRef) -> Result<Outcome, ClusterError> {
        let live = self.live(target).await?;
        let now = self.now();
        if let Some(skip) = self.inside_cooldown(ctx, &live, now) {
            return Ok(skip);
        }
        if live.paused {
            // kubectl refuses too: a paused Deployment would not roll until resumed.
            return Err(ClusterError::Invalid(format!(
                "{target} is paused: a rollout restart would not roll until `kubectl rollout resume {target}`"
            )));
        }
        let stamp = now.to_string();
        let body = json!({
            "metadata": {"annotations": {last_action_key(&ctx.rule.name): stamp}},
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}},
        });
        self.patch_workload(target, &Patch::Strategic(body)).await?;

        let mut detail = format!("{target} rollout restarted ({RESTARTED_AT}={stamp})");
        if live.strategy.as_deref() == Some("OnDelete") {
            detail.push_str("; its updateStrategy is OnDelete: pods are replaced only as they are deleted");
        }
        let before = live.restarted_at.clone();
        let note = ctx.note(
            &format!("restartedAt {}", before.as_deref().unwrap_or("never")),
            &format!("restartedAt {stamp}"),
        );
        self.publish(&live.object_ref, "RolloutRestarted", "RolloutRestart", note)
            .await;
        Ok(Outcome::done(detail, json!({"restarted_at": [before, stamp]})))
    }
}

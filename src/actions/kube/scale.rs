//! `scale`: `spec.replicas` through the scale subresource (a merge patch, the RBAC rule
//! `deployments/scale`), then the last-action annotation on the workload.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Patch;
use kube::Api;
use serde_json::json;
use tracing::warn;

use super::{patch_params, Ctx, KubeExecutor, Outcome};
use crate::actions::scale::Direction;
use crate::actions::ActionSpec;
use crate::clients::kube::error::ClusterError;
use crate::clients::kube::workload::{WorkloadKind, WorkloadRef};
use crate::core::decision::SkipReason;

impl KubeExecutor {
    pub(super) async fn scale(
        &self,
        ctx: &Ctx<'_>,
        target: &WorkloadRef,
        replicas: u32,
    ) -> Result<Outcome, ClusterError> {
        let live = self.live(target).await?;
        let now = self.now();
        if let Some(skip) = self.inside_cooldown(ctx, &live, now) {
            return Ok(skip);
        }
        let before = live.replicas;
        if before == Some(replicas) {
            return Ok(Outcome::skipped(
                SkipReason::Bound,
                format!("{target} already has {replicas} replicas"),
            ));
        }
        // Planned on what was read earlier; re-checked on the live object: a rule that adds
        // capacity never removes replicas someone added since (and the other way round).
        if let (ActionSpec::Scale(spec), Some(live_replicas)) = (&ctx.rule.spec.action, before) {
            let against = match spec.direction_for(ctx.rule.spec.when.op) {
                Direction::Up => live_replicas > replicas,
                Direction::Down => live_replicas < replicas,
                Direction::Either => false,
            };
            if against {
                return Ok(Outcome::skipped(
                    SkipReason::Bound,
                    format!(
                        "{target} now has {live_replicas} replicas: setting {replicas} would go against the rule's direction"
                    ),
                ));
            }
        }

        self.set_replicas(target, replicas).await?;

        let shown = before.map_or("?".to_owned(), |b| b.to_string());
        let mut detail = format!("{target} scaled from {shown} to {replicas} replicas");
        // The scale subresource cannot carry annotations: a second, merge patch records the
        // action. Replicas are already changed, so its failure is reported, not returned.
        if let Err(error) = self
            .patch_workload(target, &Patch::Merge(self.stamp(ctx, now)))
            .await
        {
            warn!(%error, "scaled, but the last-action annotation could not be written");
            detail.push_str(&format!("; the cooldown annotation was not written: {error}"));
        }
        let reason = if before.is_some_and(|b| replicas < b) {
            "ScaledDown"
        } else {
            "ScaledUp"
        };
        let note = ctx.note(&format!("{shown} replicas"), &format!("{replicas} replicas"));
        self.publish(&live.object_ref, reason, "Scale", note).await;
        Ok(Outcome::done(detail, json!({"replicas": [before, replicas]})))
    }

    /// `spec.replicas` through the scale subresource: an absolute value, so a retried
    /// request cannot apply a `step` twice.
    pub(super) async fn set_replicas(&self, target: &WorkloadRef, replicas: u32) -> Result<(), ClusterError> {
        let body = Patch::Merge(json!({"spec": {"replicas": replicas}}));
        let params = patch_params();
        let request = target.request("PATCH", "patch", &self.namespace, Some("scale"));
        match target.kind {
            WorkloadKind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
                self.call(&request, || api.patch_scale(&target.name, &params, &body))
                    .await?;
            }
            WorkloadKind::StatefulSet => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
                self.call(&request, || api.patch_scale(&target.name, &params, &body))
                    .await?;
            }
        }
        Ok(())
    }
}

//! `restart`: a rollout restart, exactly what `kubectl rollout restart` sends: a strategic
//! merge patch of the pod template annotation `kubectl.kubernetes.io/restartedAt`, so the
//! workload's own rollout strategy replaces the pods gradually. Pods are never deleted. The
//! last-action annotation rides in the same patch.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use kube::api::Patch;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, ActionError, ExecCtx, Target};
use crate::clients::kube::error::ClusterError;
use crate::clients::kube::executor::workload_ref;
use crate::clients::kube::executor::{Act, KubeExecutor, Write};
use crate::clients::kube::last_action_key;
use crate::clients::kube::workload::{LiveWorkload, WorkloadRef, RESTARTED_AT};
use crate::core::plan::Outcome;
use crate::core::plan::{Effect, Plan, PlanCtx, PlanError};

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

impl Action for Restart {
    fn dependency(&self) -> String {
        "kubernetes".to_owned()
    }

    fn target(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        self.target.resolve(labels)
    }

    fn target_from_series(&self) -> bool {
        self.target == Target::Owner
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        Ok(Restart::plan(self, ctx))
    }

    fn reconcile<'a>(
        &'a self,
        cx: &'a super::ReconcileCtx<'a>,
    ) -> BoxFuture<'a, Result<super::Reconciled, ActionError>> {
        super::reconcile_workload(cx)
    }

    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let Effect::RolloutRestart { target } = cx.effect()? else {
                return Err(super::wrong_effect(cx));
            };
            Ok(restart(cx.kube()?, &cx.act(), &workload_ref(target)?).await?)
        })
    }
}

async fn restart(kube: &KubeExecutor, act: &Act<'_>, target: &WorkloadRef) -> Result<Outcome, ClusterError> {
    let written = kube
        .write_once(act, target, |live, now| {
            if live.paused {
                // kubectl refuses too: a paused Deployment would not roll until resumed.
                return Err(ClusterError::Invalid(format!(
                    "{target} is paused: a rollout restart would not roll until `kubectl rollout resume {target}`"
                )));
            }
            let stamp = now.to_string();
            let body = json!({
                "metadata": {
                    "resourceVersion": live.resource_version,
                    "annotations": {last_action_key(act.rule): stamp},
                },
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}},
            });
            Ok(Write::Patch(Patch::Strategic(body), stamp))
        })
        .await?;
    Ok(match written {
        Ok((live, stamp)) => restarted(kube, act, &live, target, stamp).await,
        Err(skip) => skip,
    })
}

async fn restarted(
    kube: &KubeExecutor,
    act: &Act<'_>,
    live: &LiveWorkload,
    target: &WorkloadRef,
    stamp: String,
) -> Outcome {
    let mut detail = format!("{target} rollout restarted ({RESTARTED_AT}={stamp})");
    if live.strategy.as_deref() == Some("OnDelete") {
        detail.push_str("; its updateStrategy is OnDelete: pods are replaced only as they are deleted");
    }
    let before = live.restarted_at.clone();
    let note = kube.note(
        act,
        &format!("restartedAt {}", before.as_deref().unwrap_or("never")),
        &format!("restartedAt {stamp}"),
    );
    kube.publish(&live.object_ref, "RolloutRestarted", "RolloutRestart", note)
        .await;
    Outcome::done(detail, json!({"restarted_at": [before, stamp]}))
}

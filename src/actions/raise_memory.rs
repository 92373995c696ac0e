//! `raise_memory`: multiply (default ×2, as the seed: 512Mi/1Gi → 1Gi/2Gi) or step up a
//! container's memory request and limit in the workload's pod template, capped at the
//! rule's `max` and MAX_MEMORY. At the cap it is a no-op, so an OOM loop cannot grow a pod
//! without bound.
//!
//! Executed as a strategic merge patch of the one container (containers merge by name),
//! guarded by the `resourceVersion` just read. On 409 the workload is read again and the
//! change re-decided, at most three times. Memory is only ever raised: a value someone
//! already set higher is kept.

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
use crate::clients::kube::memory::{current, memory_patch, Memory};
use crate::clients::kube::workload::{LiveWorkload, WorkloadRef};
use crate::core::decision::SkipReason;
use crate::core::plan::Outcome;
use crate::core::plan::{Effect, Plan, PlanCtx, PlanError};
use crate::core::values::Bytes;
use crate::signals::SignalSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaiseMemory {
    /// `deployment/NAME`, `statefulset/NAME` or `owner`.
    pub target: Target,
    /// The container to raise; defaults to the series' `container` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Multiply request and limit by this (default 2 when no `step` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Add this much instead of multiplying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Bytes>,
    /// Never above this (and never above MAX_MEMORY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Bytes>,
}

const MI: u64 = 1 << 20;

impl RaiseMemory {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.factor.is_some() && self.step.is_some() {
            errors.push("raise_memory takes `factor` or `step`, not both".to_owned());
        }
        if let Some(f) = self.factor {
            if !(f > 1.0 && f <= 16.0) {
                errors.push(format!(
                    "raise_memory `factor` must be above 1 and at most 16, found {f}"
                ));
            }
        }
        if self.step == Some(Bytes(0)) {
            errors.push("raise_memory `step` must be above 0".to_owned());
        }
        errors
    }

    fn raise(&self, from: Bytes, cap: Bytes) -> Bytes {
        let raised = match self.step {
            Some(step) => from.0.saturating_add(step.0),
            // Whole Mi, rounded up, so the new value prints as a clean quantity.
            None => ((from.0 as f64 * self.factor.unwrap_or(2.0)) / MI as f64).ceil() as u64 * MI,
        };
        Bytes(raised.min(cap.0).max(from.0))
    }

    pub fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        let container = self
            .container
            .as_deref()
            .or_else(|| ctx.labels.get("container").map(String::as_str))
            .ok_or_else(|| {
                PlanError::Unknown(
                    "no `container` in the rule and no `container` label on the series".to_owned(),
                )
            })?;
        let res = ctx
            .world
            .workload(ctx.target)
            .and_then(|w| w.containers.get(container))
            .ok_or_else(|| {
                PlanError::Unknown(format!(
                    "memory of container `{container}` in {} is unknown",
                    ctx.target
                ))
            })?;
        let (Some(request), Some(limit)) = (res.memory_request, res.memory_limit) else {
            return Err(PlanError::Unknown(format!(
                "container `{container}` has no memory request and limit to raise"
            )));
        };
        let cap = Bytes(
            self.max
                .map_or(ctx.limits.max_memory.0, |m| m.0.min(ctx.limits.max_memory.0)),
        );
        let new_limit = self.raise(limit, cap);
        let new_request = self.raise(request, cap).min(new_limit);
        let change = json!({
            "container": container,
            "memory_request": [request, new_request],
            "memory_limit": [limit, new_limit],
            "max": cap,
        });
        let effect = Effect::SetMemory {
            target: ctx.target.to_owned(),
            container: container.to_owned(),
            request: new_request,
            limit: new_limit,
        };
        let mut plan = Plan::new(change, effect);
        plan.undo = Some(Effect::SetMemory {
            target: ctx.target.to_owned(),
            container: container.to_owned(),
            request,
            limit,
        });
        // The limit is what the kernel kills at: raising only the request cannot stop the
        // next OOM kill, so a limit at the cap is the end of what this action can do.
        if new_limit == limit {
            plan.noop = Some(format!(
                "container `{container}` memory limit {limit} is already at the cap {cap}: raising only the request cannot stop the next OOM kill"
            ));
        }
        Ok(plan)
    }
}

impl Action for RaiseMemory {
    fn dependency(&self) -> String {
        "kubernetes".to_owned()
    }

    fn target(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        self.target.resolve(labels)
    }

    fn target_from_series(&self) -> bool {
        self.target == Target::Owner
    }

    fn validate(&self, _signal: &SignalSpec) -> Vec<String> {
        RaiseMemory::validate(self)
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        RaiseMemory::plan(self, ctx)
    }

    fn reconcile<'a>(
        &'a self,
        cx: &'a super::ReconcileCtx<'a>,
    ) -> BoxFuture<'a, Result<super::Reconciled, ActionError>> {
        super::reconcile_workload(cx)
    }

    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let Effect::SetMemory {
                target,
                container,
                request,
                limit,
            } = cx.effect()?
            else {
                return Err(super::wrong_effect(cx));
            };
            let want = Memory {
                request: *request,
                limit: *limit,
            };
            let target = workload_ref(target)?;
            Ok(raise_memory(cx.kube()?, &cx.act(), &target, container, want).await?)
        })
    }
}

async fn raise_memory(
    kube: &KubeExecutor,
    act: &Act<'_>,
    target: &WorkloadRef,
    container: &str,
    want: Memory,
) -> Result<Outcome, ClusterError> {
    let written = kube
        .write_once(act, target, |live, now| {
            let before = current(live, target, container)?;
            let after = Memory {
                request: want.request.max(before.request),
                limit: want.limit.max(before.limit),
            };
            let after = Memory {
                limit: after.limit.max(after.request),
                ..after
            };
            if after.limit == before.limit {
                return Ok(Write::Skip(Outcome::skipped(
                    SkipReason::Bound,
                    format!(
                        "container `{container}` of {target} already has {}/{} (request/limit): its limit cannot go higher, and a request alone cannot stop an OOM kill",
                        before.request, before.limit
                    ),
                )));
            }
            let mut body = memory_patch(live, container, after);
            body["metadata"]["annotations"] = json!({last_action_key(act.rule): now.to_string()});
            Ok(Write::Patch(Patch::Strategic(body), (before, after)))
        })
        .await?;
    Ok(match written {
        Ok((live, (before, after))) => raised(kube, act, &live, container, before, after).await,
        Err(skip) => skip,
    })
}

async fn raised(
    kube: &KubeExecutor,
    act: &Act<'_>,
    live: &LiveWorkload,
    container: &str,
    before: Memory,
    after: Memory,
) -> Outcome {
    let shown = |m: Memory| format!("{}/{}", m.request, m.limit);
    let note = kube.note(
        act,
        &format!("container {container} memory {}", shown(before)),
        &format!("{} (request/limit)", shown(after)),
    );
    kube.publish(&live.object_ref, "MemoryRaised", "RaiseMemory", note)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::plan::Limits;
    use crate::core::world::{Resources, SimWorld, Workload};

    fn world(request: &str, limit: &str) -> SimWorld {
        let res = Resources {
            memory_request: Some(request.parse().unwrap()),
            memory_limit: Some(limit.parse().unwrap()),
        };
        SimWorld(BTreeMap::from([(
            "deployment/app".to_owned(),
            Workload {
                replicas: None,
                containers: BTreeMap::from([("app".to_owned(), res)]),
                ..Workload::default()
            },
        )]))
    }

    fn plan(spec: &RaiseMemory, w: &SimWorld) -> Result<Plan, PlanError> {
        let labels = BTreeMap::from([("container".to_owned(), "app".to_owned())]);
        let limits = Limits::default();
        spec.plan(&PlanCtx {
            target: "deployment/app",
            value: 1.0,
            labels: &labels,
            world: w,
            limits: &limits,
            when: crate::core::values::Op::Gt,
        })
    }

    fn spec(max: Option<&str>) -> RaiseMemory {
        RaiseMemory {
            target: Target::Owner,
            container: None,
            factor: None,
            step: None,
            max: max.map(|m| m.parse().unwrap()),
        }
    }

    #[test]
    fn doubles_like_the_seed() {
        let p = plan(&spec(None), &world("512Mi", "1Gi")).unwrap();
        assert_eq!(p.change["memory_request"], json!(["512Mi", "1Gi"]));
        assert_eq!(p.change["memory_limit"], json!(["1Gi", "2Gi"]));
        assert!(p.noop.is_none());
    }

    #[test]
    fn capped_at_rule_max_and_max_memory_then_noop() {
        let p = plan(&spec(Some("1536Mi")), &world("512Mi", "1Gi")).unwrap();
        assert_eq!(p.change["memory_limit"], json!(["1Gi", "1536Mi"]));
        let p = plan(&spec(Some("64Gi")), &world("6Gi", "6Gi")).unwrap();
        assert_eq!(p.change["memory_limit"], json!(["6Gi", "8Gi"]));
        let p = plan(&spec(None), &world("8Gi", "8Gi")).unwrap();
        assert!(p.noop.is_some());
    }

    #[test]
    fn a_limit_at_the_cap_is_bound_even_when_the_request_could_grow() {
        // 1Gi/2Gi with `max: 2Gi`: doubling would raise only the request to 2Gi, which cannot
        // stop the next kill at the 2Gi limit.
        let p = plan(&spec(Some("2Gi")), &world("1Gi", "2Gi")).unwrap();
        let why = p.noop.expect("bound");
        assert!(
            why.contains("already at the cap") && why.contains("OOM kill"),
            "{why}"
        );
    }

    #[test]
    fn unknown_memory_is_an_error_not_a_guess() {
        let err = plan(&spec(None), &SimWorld::default()).unwrap_err();
        assert!(err.to_string().contains("unknown"), "{err}");
    }
}

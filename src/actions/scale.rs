//! `scale`: set a workload's replicas. Exactly one of `replicas` (set),
//! `step` (add) or `per_lag` (KEDA-like: one replica per N of lag) decides the wish; `min`,
//! `max`, MIN_REPLICAS and MAX_REPLICAS bound it, and the change says which bound applied.
//!
//! A scale never moves against the pressure that fired it: a rule that fires on a high
//! value (`>`, `>=`) or has a positive `step` adds capacity and never removes any (a
//! workload someone scaled to 8 is not cut to the rule's 6, nor to its `max` of 5, in the
//! middle of a lag spike); one that fires on a low value (`<`, `<=`) or has a negative
//! `step` only removes capacity. `==` / `!=` rules set exactly what they say. The bounds
//! stop our changes; they are not orders to undo someone else's.
//!
//! Executed as one merge patch of the workload: `spec.replicas` and the last-action
//! annotation together, so a crash cannot leave replicas changed without the cooldown that
//! guards them, under the resourceVersion read just before (a 409 reads the object again
//! and re-checks the cooldown and the direction). The direction is re-checked on the live
//! object first.

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
use crate::clients::kube::workload::{LiveWorkload, WorkloadRef};
use crate::core::decision::SkipReason;
use crate::core::plan::Outcome;
use crate::core::plan::{Effect, Plan, PlanCtx, PlanError};
use crate::signals::SignalSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// `deployment/NAME`, `statefulset/NAME` or `owner`.
    pub target: Target,
    /// Set exactly this many replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Add this many replicas to the current count (negative scales down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    /// One replica per this much lag (kafka_lag only), capped by the partition count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_lag: Option<u64>,
    /// Never below this (and never below MIN_REPLICAS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Never above this (and never above MAX_REPLICAS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

impl Scale {
    pub fn validate(&self, signal: &SignalSpec) -> Vec<String> {
        let mut errors = Vec::new();
        let modes = [
            self.replicas.is_some(),
            self.step.is_some(),
            self.per_lag.is_some(),
        ];
        if modes.iter().filter(|m| **m).count() != 1 {
            errors.push("scale needs exactly one of `replicas`, `step` or `per_lag`".to_owned());
        }
        if self.per_lag == Some(0) {
            errors.push("`per_lag` must be at least 1".to_owned());
        }
        if self.per_lag.is_some() && !matches!(signal, SignalSpec::KafkaLag(_)) {
            errors.push(format!(
                "`per_lag` needs a kafka_lag signal, not `{}`",
                signal.kind()
            ));
        }
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min > max {
                errors.push(format!("scale `min` ({min}) is above `max` ({max})"));
            }
        }
        errors
    }

    pub fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        let current = ctx.world.workload(ctx.target).and_then(|w| w.replicas);
        let max = self
            .max
            .unwrap_or(ctx.limits.max_replicas)
            .min(ctx.limits.max_replicas);
        let min = self.min.unwrap_or(0).max(ctx.limits.min_replicas).min(max);
        let mut change = serde_json::Map::new();
        let wish: i64 = match (self.replicas, self.step, self.per_lag) {
            (Some(n), _, _) => i64::from(n),
            (_, Some(step), _) => {
                let cur = current.ok_or_else(|| {
                    PlanError::Unknown("current replicas unknown: a `step` cannot be planned".to_owned())
                })?;
                i64::from(cur) + step
            }
            (_, _, Some(per)) => {
                let lag = ctx.value.max(0.0);
                let wish = (lag / per as f64).ceil() as i64;
                change.insert("lag".into(), json!(lag));
                change.insert("per_lag".into(), json!(per));
                let partitions = ctx.labels.get("partitions").and_then(|p| p.parse::<i64>().ok());
                change.insert("partitions".into(), json!(partitions));
                match partitions {
                    Some(p) if wish > p => {
                        change.insert("cap".into(), json!("partitions"));
                        p
                    }
                    _ => wish,
                }
            }
            _ => {
                return Err(PlanError::Unknown(
                    "scale needs one of `replicas`, `step` or `per_lag`".to_owned(),
                ))
            }
        };
        let desired = if wish > i64::from(max) {
            change.insert("cap".into(), json!("max"));
            max
        } else if wish < i64::from(min) {
            change.insert("cap".into(), json!("min"));
            min
        } else {
            u32::try_from(wish).unwrap_or(min)
        };
        let desired = match (self.direction(ctx), current) {
            (Direction::Up, Some(cur)) if desired < cur => {
                change.insert(
                    "held".into(),
                    json!("this rule adds capacity: it never scales down"),
                );
                cur
            }
            (Direction::Down, Some(cur)) if desired > cur => {
                change.insert(
                    "held".into(),
                    json!("this rule removes capacity: it never scales up"),
                );
                cur
            }
            _ => desired,
        };
        change.insert("replicas".into(), json!([current, desired]));
        let held = change.get("held").and_then(|h| h.as_str()).map(str::to_owned);
        let effect = Effect::SetReplicas {
            target: ctx.target.to_owned(),
            replicas: desired,
        };
        let mut plan = Plan::new(serde_json::Value::Object(change), effect);
        plan.undo = current.map(|replicas| Effect::SetReplicas {
            target: ctx.target.to_owned(),
            replicas,
        });
        if current == Some(desired) {
            plan.noop = Some(match held {
                Some(held) => format!("at {desired} replicas, beyond what the rule would set: {held}"),
                None => format!("already at {desired} replicas (bounds {min}..={max})"),
            });
        }
        Ok(plan)
    }

    fn direction(&self, ctx: &PlanCtx<'_>) -> Direction {
        self.direction_for(ctx.when)
    }

    /// Which way this scale may move replicas, for a rule whose `when` uses `op`.
    pub fn direction_for(&self, op: crate::core::values::Op) -> Direction {
        use crate::core::values::Op;
        match (self.step, op) {
            (Some(step), _) if step > 0 => Direction::Up,
            (Some(step), _) if step < 0 => Direction::Down,
            (_, Op::Gt | Op::Ge) => Direction::Up,
            (_, Op::Lt | Op::Le) => Direction::Down,
            _ => Direction::Either,
        }
    }
}

/// Which way a scale may move the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Either,
}

impl Action for Scale {
    fn dependency(&self) -> String {
        "kubernetes".to_owned()
    }

    fn target(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        self.target.resolve(labels)
    }

    fn target_from_series(&self) -> bool {
        self.target == Target::Owner
    }

    fn yields_to_hpa(&self) -> bool {
        true
    }

    fn validate(&self, signal: &SignalSpec) -> Vec<String> {
        Scale::validate(self, signal)
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        Scale::plan(self, ctx)
    }

    fn reconcile<'a>(
        &'a self,
        cx: &'a super::ReconcileCtx<'a>,
    ) -> BoxFuture<'a, Result<super::Reconciled, ActionError>> {
        super::reconcile_workload(cx)
    }

    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let Effect::SetReplicas { target, replicas } = cx.effect()? else {
                return Err(super::wrong_effect(cx));
            };
            let direction = self.direction_for(cx.rule.spec.when.op);
            let kube = cx.kube()?;
            Ok(scale(kube, &cx.act(), &workload_ref(target)?, *replicas, direction).await?)
        })
    }
}

async fn scale(
    kube: &KubeExecutor,
    act: &Act<'_>,
    target: &WorkloadRef,
    replicas: u32,
    direction: Direction,
) -> Result<Outcome, ClusterError> {
    let written = kube
        .write_once(act, target, |live, now| {
            if let Some(skip) = against_live(live, target, replicas, direction) {
                return Ok(Write::Skip(skip));
            }
            let body = json!({
                "metadata": {
                    "resourceVersion": live.resource_version,
                    "annotations": {last_action_key(act.rule): now.to_string()},
                },
                "spec": {"replicas": replicas},
            });
            Ok(Write::Patch(Patch::Merge(body), ()))
        })
        .await?;
    Ok(match written {
        Ok((live, ())) => scaled(kube, act, &live, target, replicas).await,
        Err(skip) => skip,
    })
}

/// A skip when the live object makes the planned replicas wrong: already there, or against
/// the rule's direction. Planned on what was read earlier; re-checked on the live object: a
/// rule that adds capacity never removes replicas someone added since (and the other way).
fn against_live(
    live: &LiveWorkload,
    target: &WorkloadRef,
    replicas: u32,
    direction: Direction,
) -> Option<Outcome> {
    let live_replicas = live.replicas?;
    if live_replicas == replicas {
        return Some(Outcome::skipped(
            SkipReason::Bound,
            format!("{target} already has {replicas} replicas"),
        ));
    }
    let against = match direction {
        Direction::Up => live_replicas > replicas,
        Direction::Down => live_replicas < replicas,
        Direction::Either => false,
    };
    against.then(|| {
        Outcome::skipped(
            SkipReason::Bound,
            format!("{target} now has {live_replicas} replicas: setting {replicas} would go against the rule's direction"),
        )
    })
}

async fn scaled(
    kube: &KubeExecutor,
    act: &Act<'_>,
    live: &LiveWorkload,
    target: &WorkloadRef,
    replicas: u32,
) -> Outcome {
    let before = live.replicas;
    let shown = before.map_or("?".to_owned(), |b| b.to_string());
    let detail = format!("{target} scaled from {shown} to {replicas} replicas");
    let reason = if before.is_some_and(|b| replicas < b) {
        "ScaledDown"
    } else {
        "ScaledUp"
    };
    let note = kube.note(act, &format!("{shown} replicas"), &format!("{replicas} replicas"));
    kube.publish(&live.object_ref, reason, "Scale", note).await;
    Outcome::done(detail, json!({"replicas": [before, replicas]}))
}

#[cfg(test)]
mod tests;

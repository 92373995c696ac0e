//! Executing `act` decisions, each through its dependency's circuit breaker. An executor
//! that finds nothing to do (cooldown kept on the object, already there) turns the decision
//! into a skip; a failure counts against the breaker only when the dependency itself failed
//! (unreachable, timed out, 5xx), not when it answered "no" (403, 404, a wrong request).

use super::Daemon;
use crate::actions::{ActionError, ActionSpec, ExecCtx, Notify};
use crate::core::decision::{Decision, DecisionKind, Detail, SkipReason};
use crate::core::plan::Outcome;

impl Daemon {
    pub(super) async fn execute(&self, d: &mut Decision) {
        let rule = &self.engine.rules().rules[d.rule_index];
        // The rule's `notify_first`, just before its action, is executed as a `notify`. It is
        // best effort: the action goes ahead even if the webhook is down (the failure is
        // logged and counted).
        let notice = match (d.kind, &rule.spec.notify_first) {
            (DecisionKind::Notice, Some(n)) => Some(ActionSpec::Notify(Notify {
                webhook: n.webhook.clone(),
            })),
            _ => None,
        };
        let spec = notice.as_ref().unwrap_or(&rule.spec.action);
        let dependency = spec.dependency();
        if let Err(why) = self.breakers.admit(&dependency) {
            return d.skip(SkipReason::CircuitOpen, Some(Detail::Text(why)));
        }
        let cx = ExecCtx {
            rule,
            decision: d,
            executors: &self.executors,
        };
        let result = match d.kind {
            // Undoing an earlier change: the effect says what to put back.
            DecisionKind::Rollback => match cx.kube() {
                Ok(kube) => kube.rollback(&cx.act()).await.map_err(ActionError::from),
                Err(e) => Err(e),
            },
            DecisionKind::Action(_) | DecisionKind::Notice => spec.execute(&cx).await,
        };
        let down = result
            .as_ref()
            .err()
            .filter(|e| e.dependency_down())
            .map(ToString::to_string);
        self.breakers
            .record(&dependency, down.as_deref().map_or(Ok(()), Err));
        match result {
            Ok(Outcome {
                skipped: Some(reason),
                detail,
                ..
            }) => d.skip(reason, Some(Detail::Text(detail))),
            Ok(done) => {
                let latency = d
                    .active_since
                    .map(|since| self.epoch.elapsed().saturating_sub(since));
                self.metrics.action_done(d, true, latency);
                d.success = Some(true);
                d.detail = Some(Detail::Text(done.detail));
                if done.change.is_some() {
                    d.change = done.change;
                }
            }
            Err(failed) => {
                self.metrics.action_done(d, false, None);
                d.success = Some(false);
                if let Some(change) = failed.change() {
                    d.change = Some(change);
                }
                d.detail = Some(Detail::Text(failed.to_string()));
            }
        }
    }
}

impl Daemon {
    /// What follows a decision besides its own execution: a failed verification and an act
    /// on a GitOps-managed object are told to NOTIFY_WEBHOOK and recorded as Warning Events.
    pub(super) async fn follow_up(&self, d: &Decision) {
        let failed = d
            .verification
            .as_ref()
            .filter(|v| v.result == crate::core::verify::VerifyResult::Failed);
        if let Some(v) = failed {
            let note = format!(
                "rule {}: verification failed: {}; {}quarantined until its condition is inactive for a cooldown or an operator clears it",
                d.rule,
                v.detail,
                if self.engine.rules().rules[d.rule_index].spec.rollback { "rolled back, " } else { "" }
            );
            self.tell("VerificationFailed", d, note).await;
        }
        if let (Some(tool), Some(true)) = (&d.gitops, d.success) {
            let note = format!(
                "rule {} changed {} (action {}), which {tool} manages: it will revert the change unless it also goes to Git",
                d.rule,
                d.target,
                d.id.as_deref().unwrap_or("-")
            );
            self.tell("GitOpsDrift", d, note).await;
        }
    }

    async fn tell(&self, reason: &str, d: &Decision, note: String) {
        tracing::warn!(rule = %d.rule, target = %d.target, id = d.id.as_deref(), reason, "{note}");
        if let Some(k) = &self.executors.kube {
            // Events are recorded on workloads; other targets (endpoints, webhooks) have none.
            if d.target
                .parse::<crate::clients::kube::workload::WorkloadRef>()
                .is_ok()
            {
                k.warn(&d.target, reason, "Notify", note.clone()).await;
            }
        }
        let Some(webhook) = &self.settings.notify_webhook else {
            return;
        };
        let notify = Notify {
            webhook: webhook.clone(),
        };
        let dependency = notify.target();
        if let Err(why) = self.breakers.admit(&dependency) {
            tracing::warn!(reason, error = %why, "NOTIFY_WEBHOOK not told");
            return;
        }
        let mut notice = d.clone();
        notice.detail = Some(Detail::Text(note));
        let result = notify.send(&self.executors.http, &notice).await;
        let down = result
            .as_ref()
            .err()
            .filter(|e| e.is_transient())
            .map(|e| e.to_string());
        self.breakers
            .record(&dependency, down.as_deref().map_or(Ok(()), Err));
        if let Err(error) = result {
            tracing::warn!(reason, %error, "NOTIFY_WEBHOOK not told");
        }
    }
}

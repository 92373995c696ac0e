//! Executing `act` decisions, each through its dependency's circuit breaker. An executor
//! that finds nothing to do (cooldown kept on the object, already there) turns the decision
//! into a skip; a failure counts against the breaker only when the dependency itself failed
//! (unreachable, timed out, 5xx), not when it answered "no" (403, 404, a wrong request).

use serde_json::Value;

use super::Daemon;
use crate::actions::ActionSpec;
use crate::core::decision::{Decision, DecisionKind, Detail, SkipReason};

/// A finished execution: skipped by the executor, or done with its detail and actual change.
struct Done {
    skipped: Option<SkipReason>,
    detail: String,
    change: Option<Value>,
}

/// A failed execution.
struct Failed {
    error: String,
    /// The dependency did not answer properly: counts against its breaker.
    dependency_down: bool,
    /// What was changed anyway (some connections terminated before a refusal).
    change: Option<Value>,
}

impl Done {
    fn text(detail: String) -> Self {
        Done {
            skipped: None,
            detail,
            change: None,
        }
    }
}

impl Daemon {
    pub(super) async fn execute(&self, d: &mut Decision) {
        let rule = &self.engine.rules().rules[d.rule_index];
        // The rule's `notify_first`, just before its action, is executed as a `notify`. It is
        // best effort: the action goes ahead even if the webhook is down (the failure is
        // logged and counted).
        let notice = d
            .follows_up()
            .then(|| {
                rule.spec.notify_first.as_ref().map(|n| {
                    ActionSpec::Notify(crate::actions::notify::Notify {
                        webhook: n.webhook.clone(),
                    })
                })
            })
            .filter(|_| d.kind == DecisionKind::Notice)
            .flatten();
        let spec = notice.as_ref().unwrap_or(&rule.spec.action);
        let dependency = spec.dependency();
        if let Err(why) = self.breakers.admit(&dependency) {
            return d.skip(SkipReason::CircuitOpen, Some(Detail::Text(why)));
        }
        let result = self.run_action(spec, d).await;
        let outcome = match &result {
            Err(f) if f.dependency_down => Err(f.error.as_str()),
            _ => Ok(()),
        };
        self.breakers.record(&dependency, outcome);
        match result {
            Ok(Done {
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
                d.detail = Some(Detail::Text(failed.error));
                if failed.change.is_some() {
                    d.change = failed.change;
                }
            }
        }
    }

    async fn run_action(&self, spec: &ActionSpec, d: &Decision) -> Result<Done, Failed> {
        let rule = &self.engine.rules().rules[d.rule_index];
        match (spec, &self.kube) {
            (ActionSpec::Http(_) | ActionSpec::Notify(_), _) => self
                .executor
                .execute(spec, d)
                .await
                .map(Done::text)
                .map_err(|e| Failed {
                    dependency_down: e.is_transient()
                        || matches!(e, crate::actions::execute::ActionError::Timeout { .. }),
                    error: e.to_string(),
                    change: None,
                }),
            (ActionSpec::TerminateIdleConnections(spec), _) => match self.terminate_idle(spec).await {
                Ok((detail, change)) => Ok(Done {
                    skipped: None,
                    detail,
                    change: Some(change),
                }),
                Err((error, change, dependency_down)) => Err(Failed {
                    error,
                    dependency_down,
                    change,
                }),
            },
            (_, Some(k)) => {
                let executed = if d.kind == DecisionKind::Rollback {
                    k.executor.rollback(rule, d).await
                } else {
                    k.executor.execute(rule, d).await
                };
                match executed {
                    Ok(outcome) => Ok(Done {
                        skipped: outcome.skipped,
                        detail: outcome.detail,
                        change: outcome.change,
                    }),
                    Err(e) => Err(Failed {
                        dependency_down: e.is_transient(),
                        error: e.to_string(),
                        change: None,
                    }),
                }
            }
            (other, None) => Err(Failed {
                error: format!("no executor for `{}`", other.kind()),
                dependency_down: false,
                change: None,
            }),
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
        if let Some(k) = &self.kube {
            // Events are recorded on workloads; other targets (endpoints, webhooks) have none.
            if d.target
                .parse::<crate::clients::kube::workload::WorkloadRef>()
                .is_ok()
            {
                k.executor.warn(&d.target, reason, "Notify", note.clone()).await;
            }
        }
        let Some(webhook) = &self.settings.notify_webhook else {
            return;
        };
        let spec = ActionSpec::Notify(crate::actions::notify::Notify {
            webhook: webhook.clone(),
        });
        let dependency = spec.dependency();
        if let Err(why) = self.breakers.admit(&dependency) {
            tracing::warn!(reason, error = %why, "NOTIFY_WEBHOOK not told");
            return;
        }
        let mut notice = d.clone();
        notice.detail = Some(Detail::Text(note));
        let result = self.executor.execute(&spec, &notice).await;
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

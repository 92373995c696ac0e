//! What follows a decision besides its own execution (which is the writer's): a failed
//! verification, an act on a GitOps-managed object and an OOM fix that can do no more (a
//! `raise_memory` whose limit is at its cap) are told to NOTIFY_WEBHOOK and recorded as
//! Warning Events.

use super::Daemon;
use crate::actions::Notify;
use crate::core::decision::{Decision, DecisionKind, Detail, SkipReason, Verdict};

impl Daemon {
    /// What follows a decision besides its own execution: a failed verification, an act on
    /// a GitOps-managed object and a `raise_memory` at its cap are told to NOTIFY_WEBHOOK and
    /// recorded as Warning Events.
    pub(super) async fn follow_up(&mut self, d: &Decision) {
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
        if d.kind == DecisionKind::Action("raise_memory") {
            self.memory_at_cap(d).await;
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

    /// A `raise_memory` that can do no more is told once when it reaches the cap, not at
    /// every evaluation that finds it there; once it acts or its rule calms down, the next
    /// time it reaches the cap is told again.
    async fn memory_at_cap(&mut self, d: &Decision) {
        let key = (d.rule.clone(), d.target.clone());
        if d.reason == Some(SkipReason::Bound) {
            if self.at_cap.insert(key) {
                let detail = d.detail.as_ref().map(ToString::to_string).unwrap_or_default();
                let note = format!(
                    "rule {} can raise the memory of {} no further ({detail}): the OOM kills will go on until a human looks",
                    d.rule, d.target
                );
                self.tell("MemoryAtCap", d, note).await;
            }
        } else if d.decision != Verdict::Skip {
            self.at_cap.remove(&key);
        }
    }

    async fn tell(&self, reason: &str, d: &Decision, note: String) {
        tracing::warn!(rule = %d.rule, target = %d.target, id = d.id.as_deref(), reason, "{note}");
        if let Some(k) = &self.writer.executors.kube {
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
            format: self.settings.notify_format,
            link: None,
        };
        let dependency = notify.target();
        if let Err(why) = self.breakers.admit(&dependency) {
            tracing::warn!(reason, error = %why, "NOTIFY_WEBHOOK not told");
            return;
        }
        let mut notice = d.clone();
        notice.detail = Some(Detail::Text(note.clone()));
        let rule = self.engine.rules().rules.get(d.rule_index).map(|r| r.facts());
        let result = notify
            .send(&self.writer.executors.http, &notice, rule, Some(&note))
            .await;
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

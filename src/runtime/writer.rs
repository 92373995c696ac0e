//! The one writer: every `act` decision (the rules' actions, their `notify_first` notices,
//! rollbacks) is executed here, and nowhere else. Like linkerd2's policy controller, it
//! re-checks the Lease immediately before each write (a replica that lost it between
//! planning and writing never writes), gives each action a deadline (ACTION_TIMEOUT) and the
//! tick a write budget, goes through the dependency's circuit breaker, and counts every
//! outcome in `automaton_action_outcomes_total{action,outcome}`. The outcome is written into
//! the decision, which the engine then takes back ([`crate::rules::Engine::report`]): an
//! action that did not run starts no verification.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info_span, Instrument};

use super::clock::Clock;
use super::metrics::Metrics;
use crate::actions::{ActionError, ActionSpec, ExecCtx, Executors, Notify, Rule};
use crate::core::decision::{Decision, DecisionKind, Detail, SkipReason, WriteOutcome};
use crate::core::guard::breaker::Breakers;
use crate::core::plan::Outcome;

/// Whether this replica may write now.
#[derive(Clone)]
pub enum Lease {
    /// No Kubernetes API, so no Lease: this replica is alone and leads.
    Alone,
    /// The Lease campaign's latest verdict.
    Campaign(watch::Receiver<bool>),
}

impl Lease {
    pub fn held(&self) -> bool {
        match self {
            Lease::Alone => true,
            Lease::Campaign(leading) => *leading.borrow(),
        }
    }
}

pub struct Writer {
    /// The clients actions execute through.
    pub executors: Executors,
    pub lease: Lease,
    breakers: Arc<Breakers>,
    metrics: Arc<Metrics>,
    action_timeout: Duration,
    /// The engine's clock, for `healing_latency_seconds`.
    clock: Clock,
}

impl Writer {
    pub fn new(
        executors: Executors,
        breakers: Arc<Breakers>,
        metrics: Arc<Metrics>,
        action_timeout: Duration,
        clock: Clock,
    ) -> Self {
        let mut executors = executors;
        executors.http = executors.http.with_cap(action_timeout);
        Writer {
            executors,
            lease: Lease::Alone,
            breakers,
            metrics,
            action_timeout,
            clock,
        }
    }

    pub fn action_timeout(&self) -> Duration {
        self.action_timeout
    }

    /// Executes one `act` decision of `rule`, at the latest by `until` (the end of the
    /// tick's write budget), and records what became of it in the decision and the metrics.
    pub async fn write(&self, rule: &Rule, d: &mut Decision, until: Instant) -> WriteOutcome {
        let span = info_span!("write", rule = %d.rule, target = %d.target, action = d.kind.as_str(), id = d.id.as_deref());
        let outcome = self.attempt(rule, d, until).instrument(span).await;
        d.outcome = Some(outcome);
        self.metrics
            .action_outcomes
            .with_label_values(&[d.kind.as_str(), outcome.as_str()])
            .inc();
        outcome
    }

    async fn attempt(&self, rule: &Rule, d: &mut Decision, until: Instant) -> WriteOutcome {
        if !self.lease.held() {
            let text = "this replica lost the Lease between planning and writing: nothing written";
            d.skip(SkipReason::NotLeader, Some(Detail::Text(text.to_owned())));
            return WriteOutcome::Dropped;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            d.success = Some(false);
            d.detail = Some(Detail::Text(
                "the tick's write budget was spent before this action: not tried, decided again next tick"
                    .to_owned(),
            ));
            return WriteOutcome::Dropped;
        }
        // The rule's `notify_first`, just before its action, is executed as a `notify`. It is
        // best effort: the action goes ahead even if the webhook is down.
        let notice = match (d.kind, &rule.spec.notify_first) {
            (DecisionKind::Notice, Some(n)) => Some(ActionSpec::Notify(Notify {
                webhook: n.webhook.clone(),
                format: n.format,
                link: n.link.clone(),
            })),
            _ => None,
        };
        let spec = notice.as_ref().unwrap_or(&rule.spec.action);
        let dependency = spec.dependency();
        if let Err(why) = self.breakers.admit(&dependency) {
            d.skip(SkipReason::CircuitOpen, Some(Detail::Text(why.to_string())));
            return WriteOutcome::Refused;
        }
        let deadline = self.action_timeout.min(left);
        let cx = ExecCtx {
            rule,
            decision: d,
            executors: &self.executors,
        };
        let run = async {
            match d.kind {
                // Undoing an earlier change: the effect says what to put back.
                DecisionKind::Rollback => match cx.kube() {
                    Ok(kube) => kube.rollback(&cx.act()).await.map_err(ActionError::from),
                    Err(e) => Err(e),
                },
                DecisionKind::Action(_) | DecisionKind::Notice => spec.execute(&cx).await,
            }
        };
        let Ok(result) = tokio::time::timeout(deadline, run).await else {
            let text = format!(
                "did not finish within {}s (ACTION_TIMEOUT, or what was left of the tick's write budget): abandoned; it may have been applied, the live object decides next time",
                deadline.as_secs_f64()
            );
            self.breakers.record(&dependency, Err(&text));
            self.metrics.action_done(d, false, None);
            d.success = Some(false);
            d.detail = Some(Detail::Text(text));
            return WriteOutcome::Timeout;
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
            }) => {
                d.skip(reason, Some(Detail::Text(detail)));
                WriteOutcome::Refused
            }
            Ok(done) => {
                let latency = d.active_since.map(|since| self.clock.now().saturating_sub(since));
                self.metrics.action_done(d, true, latency);
                d.success = Some(true);
                d.detail = Some(Detail::Text(done.detail));
                if done.change.is_some() {
                    d.change = done.change;
                }
                WriteOutcome::Succeeded
            }
            Err(failed) => {
                self.metrics.action_done(d, false, None);
                d.success = Some(false);
                if let Some(change) = failed.change() {
                    d.change = Some(change);
                }
                d.detail = Some(Detail::Text(failed.to_string()));
                if failed.timed_out().is_some() {
                    WriteOutcome::Timeout
                } else {
                    WriteOutcome::Failed
                }
            }
        }
    }
}

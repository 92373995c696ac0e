//! One tick, the pipeline in order: collect → observe → evaluate → write → publish.

use std::time::{Duration, Instant};

use super::collect::Collected;
use super::Daemon;
use crate::core::decision::{Decision, Detail, SkipReason, Verdict, WriteOutcome};
use crate::core::world::NoWorld;
use crate::runtime::commands::Command;
use crate::runtime::status::{GuardStateInfo, KubeInfo, Status};

/// Which sources a tick collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every source (the periodic tick).
    All,
    /// Only sources that push (pod watches): a watch event evaluates at once, without
    /// waiting on slower sources, which keep their last reading.
    Pushed,
}

impl Daemon {
    /// One collection, evaluation and execution. Returns the decisions, as `run --once` prints.
    pub async fn tick(&mut self) -> Vec<Decision> {
        self.log_disabled();
        let started = Instant::now();
        let decisions = self.collect_and_act(Scope::All).await;
        self.metrics
            .tick_duration
            .observe(started.elapsed().as_secs_f64());
        decisions
    }

    pub(super) async fn collect_and_act(&mut self, scope: Scope) -> Vec<Decision> {
        let now = self.clock.now();
        let collected = self.collect(scope).await;
        self.observe(now, &collected);
        let leading = self.update_leadership();
        self.load_guard_state(leading).await;
        if leading {
            self.refresh_world(collected.owners()).await;
        }
        // Not through an open breaker, nor through a dependency that just failed every
        // collection this tick (its breaker may not have counted enough failures yet).
        let mut closed_to_actions = self.breakers.open();
        closed_to_actions.extend(collected.failed.iter().cloned());
        self.engine.set_open_circuits(closed_to_actions);
        self.apply_commands();
        let mut decisions = match &self.kube {
            Some(k) => self.engine.evaluate(now, &k.world),
            None => self.engine.evaluate(now, &NoWorld),
        };
        self.write(&mut decisions, now).await;
        if leading {
            self.save_guard_state(now).await;
        }
        self.publish(scope, leading, now, collected, &decisions);
        decisions
    }

    /// Hands every `act` to the writer and its outcome back to the engine, then tells,
    /// counts and logs every decision. The tick's write budget: the first action always has
    /// its whole ACTION_TIMEOUT, and whatever is not tried by then is dropped and decided
    /// again next tick, so a slow dependency delays the loop by one budget at most.
    /// An action is executed only once its intent is recorded in the guard state (durable.rs).
    async fn write(&mut self, decisions: &mut [Decision], now: Duration) {
        let until = Instant::now() + self.settings.check_interval.max(self.settings.action_timeout);
        let rules = self.engine.rules().clone();
        for i in 0..decisions.len() {
            let (done, later) = decisions.split_at_mut(i + 1);
            let d = &mut done[i];
            if let (Verdict::Act, Some(rule)) = (d.decision, rules.rules.get(d.rule_index)) {
                self.beat();
                if let Err(why) = self.record_intent(d, later, now).await {
                    d.skip(SkipReason::StateUnsaved, Some(Detail::Text(why)));
                    // Never tried: taken back, decided again once the state can be kept.
                    d.outcome = Some(WriteOutcome::Dropped);
                    self.engine.report(d);
                } else {
                    self.writer.write(rule, d, until).await;
                    self.beat();
                    self.engine.report(d);
                    self.record_outcome(d, later, now).await;
                    let target = d.target.clone();
                    self.forget_workload(&target);
                }
            }
            self.follow_up(d).await;
            self.metrics.record(d);
            self.log(d);
        }
    }

    /// What this tick shows in `/status` and `automaton_circuit_breaker_state`.
    fn publish(
        &mut self,
        scope: Scope,
        leading: bool,
        now: Duration,
        collected: Collected,
        decisions: &[Decision],
    ) {
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        self.publish_breakers(&mut status);
        status.set_sources(collected.infos, scope == Scope::All);
        for d in decisions.iter().filter(|d| d.decision != Verdict::None) {
            status.push_decision(d);
        }
        status.leader = leading;
        status.namespace = self.home().to_owned();
        status.kubernetes = self.kube.as_ref().map(|k| KubeInfo {
            lease_running: k.leader.running(),
            watch_namespaces: k.watched.to_string(),
        });
        status.guard_state = self.guard_store.as_ref().map(|g| GuardStateInfo {
            object: g.name().to_owned(),
            loaded: g.loaded(),
            open_intents: g.open_intents(),
            error: g.error.clone(),
        });
        status.alerts = self.sources.alerts.snapshot();
        status.kafka = self.kafka_report();
        status.refresh(&mut self.engine, now);
        self.metrics.budget_remaining.set(i64::from(status.budget.left));
        status.last_beat = Some(Instant::now());
        status.ticks += 1;
    }

    /// The loop is alive: `/healthz` follows these beats, not the end of the last action.
    fn beat(&self) {
        self.status().last_beat = Some(Instant::now());
    }

    /// What operators asked for since the last evaluation (`POST /quarantine/clear`).
    fn apply_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::ClearQuarantine { rule, target } => {
                    let cleared = self.engine.clear_quarantine(rule.as_deref(), target.as_deref());
                    tracing::info!(
                        rule = rule.as_deref(),
                        target = target.as_deref(),
                        cleared,
                        "quarantine cleared by an operator"
                    );
                }
            }
        }
    }

    /// The breakers' states into `automaton_circuit_breaker_state` and `/status`.
    fn publish_breakers(&self, status: &mut Status) {
        let infos = self.breakers.infos();
        for (dep, info) in &infos {
            self.metrics
                .circuit
                .with_label_values(&[dep])
                .set(info.state.gauge());
        }
        status.circuits = infos;
    }
}

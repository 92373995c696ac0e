//! One tick: collect every distinct source once, evaluate, execute, record.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tracing::{info_span, warn, Instrument};

use crate::core::guard::breaker::CircuitOpen;
use crate::core::series::{Series, Unknown};
use crate::signals::SignalError;

use super::Daemon;
use crate::core::decision::{Decision, Verdict};
use crate::core::series::Reading;
use crate::core::world::NoWorld;
use crate::runtime::status::SourceInfo;
use crate::signals::SignalSpec;

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
        self.collect_and_act(Scope::All).await
    }

    pub(super) async fn collect_and_act(&mut self, scope: Scope) -> Vec<Decision> {
        let now = self.epoch.elapsed();
        let sources: Vec<_> = self
            .engine
            .rules()
            .sources
            .iter()
            .filter(|s| scope == Scope::All || s.spec.is_pod_signal())
            .cloned()
            .collect();
        // One breaker decision per dependency per tick: its sources are collected together
        // (a half-open breaker's probe is this tick's collection) or not at all.
        let mut admitted: BTreeMap<String, Result<(), CircuitOpen>> = BTreeMap::new();
        for dep in sources.iter().filter_map(|s| s.spec.dependency()) {
            admitted
                .entry(dep)
                .or_insert_with_key(|dep| self.breakers.admit(dep));
        }
        let shared = &self.sources;
        let collections = sources.iter().map(|source| {
            let refused = source
                .spec
                .dependency()
                .and_then(|dep| admitted.get(&dep).and_then(|a| a.clone().err()));
            let span = info_span!(
                "collect",
                source = source.spec.source(),
                signal = source.spec.kind()
            );
            async move {
                match refused {
                    Some(why) => Err(SignalError::CircuitOpen(why)),
                    None => source.spec.collect(shared).await,
                }
            }
            .instrument(span)
        });
        let collected = futures::future::join_all(collections).await;
        for (source, result) in sources.iter().zip(&collected) {
            if let Err(e) = result {
                self.metrics
                    .signal_errors
                    .with_label_values(&[source.spec.source(), e.metric_label()])
                    .inc();
            }
        }
        // The engine and `/status` see the reason; the typed error was counted above.
        let results: Vec<Result<Vec<Series>, Unknown>> = collected
            .into_iter()
            .map(|r| r.map_err(|e| Unknown(e.to_string())))
            .collect();
        let failed_now = self.record_dependencies(&sources, &results, &admitted);
        let mut up: HashMap<&'static str, bool> = HashMap::new();
        let mut infos = BTreeMap::new();
        for (source, result) in sources.iter().zip(&results) {
            let ok = result.is_ok();
            *up.entry(source.spec.source()).or_insert(true) &= ok;
            if let Err(why) = result {
                if self.status().sources.get(&source.key).is_none_or(|s| s.up) {
                    warn!(source = source.spec.source(), signal = source.spec.kind(), error = %why, "signal source down");
                }
            }
            infos.insert(
                source.key.clone(),
                SourceInfo {
                    source: source.spec.source(),
                    kind: source.spec.kind(),
                    params: crate::core::rule::SignalKind::params(&source.spec),
                    up: ok,
                    error: result.as_ref().err().map(|e| e.0.clone()),
                },
            );
            for &rule in &source.rules {
                self.engine.observe(
                    rule,
                    Reading {
                        at: now,
                        result: result.clone(),
                    },
                );
            }
        }
        for series in sources
            .iter()
            .zip(&results)
            .filter(|(s, _)| matches!(s.spec, SignalSpec::KafkaLag(_)))
            .filter_map(|(_, r)| r.as_ref().ok())
            .flatten()
        {
            let label = |k: &str| series.labels.get(k).map_or("", String::as_str);
            self.metrics
                .kafka_lag
                .with_label_values(&[label("group"), label("topic")])
                .set(series.value);
        }
        for (source, ok) in up {
            self.metrics
                .source_up
                .with_label_values(&[source])
                .set(i64::from(ok));
        }
        let leading = self.update_leadership();
        if leading {
            let owners = owners_in(&sources, &results);
            self.refresh_world(owners).await;
        }
        // Not through an open breaker, nor through a dependency that just failed every
        // collection this tick (its breaker may not have counted enough failures yet).
        let mut closed_to_actions = self.breakers.open();
        closed_to_actions.extend(failed_now);
        self.engine.set_open_circuits(closed_to_actions);
        self.apply_clear_requests();
        let mut decisions = match &self.kube {
            Some(k) => self.engine.evaluate(now, &k.world),
            None => self.engine.evaluate(now, &NoWorld),
        };
        // The tick's write budget: the first action always has its whole ACTION_TIMEOUT, and
        // whatever is not tried by then is dropped and decided again next tick, so a slow
        // dependency can delay the loop by one budget at most.
        let until = Instant::now() + self.settings.check_interval.max(self.settings.action_timeout);
        let rules = self.engine.rules().clone();
        for d in &mut decisions {
            if d.decision == Verdict::Act {
                self.beat();
                self.writer.write(&rules.rules[d.rule_index], d, until).await;
                self.beat();
                self.engine.report(d);
                let target = d.target.clone();
                self.forget_workload(&target);
            }
            if d.verification.is_some() || d.gitops.is_some() {
                self.follow_up(d).await;
            }
            self.metrics.record(d);
            self.log(d);
        }
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        self.publish_breakers(&mut status);
        status.set_sources(infos, scope == Scope::All);
        for d in decisions.iter().filter(|d| d.decision != Verdict::None) {
            status.push_decision(d);
        }
        status.leader = leading;
        status.kafka = self.kafka_report();
        status.refresh(&mut self.engine, now);
        status.last_beat = Some(Instant::now());
        status.ticks += 1;
        decisions
    }
}

impl Daemon {
    /// The loop is alive: `/healthz` follows these beats, not the end of the last action.
    fn beat(&self) {
        self.status().last_beat = Some(Instant::now());
    }

    /// Feeds this tick's collections to the breakers: per dependency, one success when any of
    /// its sources answered, one failure when all failed (so one mistyped consumer group does
    /// not count as the cluster being down while its other groups answer). Returns the
    /// dependencies that failed.
    fn record_dependencies(
        &self,
        sources: &[crate::rules::Source],
        results: &[Result<Vec<Series>, Unknown>],
        admitted: &BTreeMap<String, Result<(), CircuitOpen>>,
    ) -> Vec<String> {
        let mut failed = Vec::new();
        for (dep, _) in admitted.iter().filter(|(_, a)| a.is_ok()) {
            let mut outcome: Option<Result<(), &str>> = None;
            for (source, result) in sources.iter().zip(results) {
                if source.spec.dependency().as_deref() != Some(dep.as_str()) {
                    continue;
                }
                outcome = match (outcome, result) {
                    (_, Ok(_)) | (Some(Ok(())), _) => Some(Ok(())),
                    (_, Err(e)) => Some(Err(e.0.as_str())),
                };
            }
            if let Some(outcome) = outcome {
                if outcome.is_err() {
                    failed.push(dep.clone());
                }
                self.breakers.record(dep, outcome);
            }
        }
        failed
    }

    /// Quarantine clears an operator asked for through `POST /quarantine/clear`.
    fn apply_clear_requests(&mut self) {
        let requests = std::mem::take(&mut self.status().clear_requests);
        for (rule, target) in requests {
            let cleared = self.engine.clear_quarantine(rule.as_deref(), target.as_deref());
            tracing::info!(
                rule = rule.as_deref(),
                target = target.as_deref(),
                cleared,
                "quarantine cleared by an operator"
            );
        }
    }

    /// The breakers' states into `circuit_breaker_state` and `/status`.
    fn publish_breakers(&self, status: &mut crate::runtime::status::Status) {
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

/// The `owner` labels of this tick's pod series: the workloads to read before planning.
fn owners_in(sources: &[crate::rules::Source], results: &[Result<Vec<Series>, Unknown>]) -> Vec<String> {
    let mut owners: Vec<String> = sources
        .iter()
        .zip(results)
        .filter(|(s, _)| s.spec.is_pod_signal())
        .filter_map(|(_, r)| r.as_ref().ok())
        .flatten()
        .filter_map(|series| series.labels.get("owner").cloned())
        .collect();
    owners.sort();
    owners.dedup();
    owners
}

//! One tick: collect every distinct source once, evaluate, execute, record.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tracing::{info_span, warn, Instrument};

use super::Daemon;
use crate::actions::world::NoWorld;
use crate::actions::ActionSpec;
use crate::decision::{Decision, Detail, Verdict};
use crate::signals::{Reading, SignalSpec};
use crate::status::SourceInfo;

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
        let timeout = self.settings.check_interval.min(Duration::from_secs(10));
        let mut results = vec![Err("collection did not finish".to_owned()); sources.len()];
        let mut tasks = tokio::task::JoinSet::new();
        for (i, source) in sources.iter().enumerate() {
            if source.spec.is_pod_signal() {
                // In memory, from the watch: no task needed.
                results[i] = self.collect_pods(&source.spec);
                continue;
            }
            let spec = source.spec.clone();
            let span = info_span!("collect", source = spec.source(), signal = spec.kind());
            if let SignalSpec::Postgres(p) = &spec {
                let work = self.collect_postgres(p, timeout);
                tasks.spawn(async move { (i, work.await) }.instrument(span));
                continue;
            }
            if let SignalSpec::KafkaLag(k) = &spec {
                let work = self.collect_kafka(k, timeout);
                tasks.spawn(async move { (i, work.await) }.instrument(span));
                continue;
            }
            let collectors = self.collectors.clone();
            tasks.spawn(async move { (i, collectors.collect(&spec, timeout).await) }.instrument(span));
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, result)) = joined {
                results[i] = result;
            }
        }
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
                    params: source.spec.params(),
                    up: ok,
                    error: result.as_ref().err().cloned(),
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
        let mut decisions = match &self.kube {
            Some(k) => self.engine.evaluate(now, &k.world),
            None => self.engine.evaluate(now, &NoWorld),
        };
        for d in &mut decisions {
            if d.decision == Verdict::Act {
                self.execute(d).await;
                let target = d.target.clone();
                self.forget_workload(&target);
            }
            self.metrics.record(d);
            self.log(d);
        }
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        status.set_sources(infos, scope == Scope::All);
        for d in decisions.iter().filter(|d| d.decision != Verdict::None) {
            status.push_decision(d);
        }
        status.leader = leading;
        status.kafka = self.kafka_report();
        status.refresh(&mut self.engine, now);
        status.last_tick = Some(Instant::now());
        status.ticks += 1;
        decisions
    }

    /// Executes an `act` decision; an executor that finds nothing to do (cooldown kept on
    /// the object, or already there) turns it into a skip.
    async fn execute(&self, d: &mut Decision) {
        let rule = &self.engine.rules().rules[d.rule_index];
        // The rule's `notify_first`, just before its action, is executed as a `notify`. It is
        // best effort: the action goes ahead even if the webhook is down (the failure is
        // logged and counted).
        let notice = d
            .notice
            .then(|| rule.spec.notify_first.clone().map(ActionSpec::Notify))
            .flatten();
        let result = match (notice.as_ref().unwrap_or(&rule.spec.action), &self.kube) {
            (spec @ (ActionSpec::Http(_) | ActionSpec::Notify(_)), _) => self
                .executor
                .execute(spec, d)
                .await
                .map(|detail| (None, detail, None))
                .map_err(|e| e.to_string()),
            (ActionSpec::TerminateIdleConnections(spec), _) => match self.terminate_idle(spec).await {
                Ok((detail, change)) => Ok((None, detail, Some(change))),
                Err((error, change)) => {
                    if change.is_some() {
                        d.change = change;
                    }
                    Err(error)
                }
            },
            (_, Some(k)) => match k.executor.execute(rule, d).await {
                Ok(outcome) => Ok((outcome.skipped, outcome.detail, outcome.change)),
                Err(e) => Err(e.to_string()),
            },
            (other, None) => Err(format!("no executor for `{}`", other.kind())),
        };
        match result {
            Ok((Some(reason), detail, _)) => d.skip(reason, Some(Detail::Text(detail))),
            Ok((None, detail, change)) => {
                let latency = d
                    .active_since
                    .map(|since| self.epoch.elapsed().saturating_sub(since));
                self.metrics.action_done(d, true, latency);
                d.success = Some(true);
                d.detail = Some(Detail::Text(detail));
                if change.is_some() {
                    d.change = change;
                }
            }
            Err(e) => {
                self.metrics.action_done(d, false, None);
                d.success = Some(false);
                d.detail = Some(Detail::Text(e));
            }
        }
    }
}

/// The `owner` labels of this tick's pod series: the workloads to read before planning.
fn owners_in(
    sources: &[crate::rules::Source],
    results: &[Result<Vec<crate::signals::Series>, String>],
) -> Vec<String> {
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

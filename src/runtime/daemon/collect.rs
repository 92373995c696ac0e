//! The first step of a tick: collect every distinct source once, through its dependency's
//! circuit breaker, and feed the readings to the engine. A collection's typed error is
//! counted by kind (`automaton_signal_errors_total`); the engine and `/status` see its text.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tracing::warn;

use super::tick::Scope;
use super::Daemon;
use crate::core::guard::breaker::CircuitOpen;
use crate::core::rule::SignalKind;
use crate::core::series::{Reading, Series, Unknown};
use crate::rules::Source;
use crate::runtime::status::SourceInfo;
use crate::signals::{SignalError, SignalSpec};

/// What one tick collected.
pub(super) struct Collected {
    pub sources: Vec<Source>,
    pub results: Vec<Result<Vec<Series>, Unknown>>,
    /// Dependencies that failed every collection of theirs this tick.
    pub failed: Vec<String>,
    /// What `/status` shows of each source.
    pub infos: BTreeMap<String, SourceInfo>,
}

impl Collected {
    /// The `owner` labels of this tick's pod series: the workloads to read before planning.
    pub fn owners(&self) -> Vec<String> {
        let mut owners: Vec<String> = self
            .sources
            .iter()
            .zip(&self.results)
            .filter(|(s, _)| s.spec.is_pod_signal())
            .filter_map(|(_, r)| r.as_ref().ok())
            .flatten()
            .filter_map(|series| series.labels.get("owner").cloned())
            .collect();
        owners.sort();
        owners.dedup();
        owners
    }
}

impl Daemon {
    /// Collects the sources of `scope`. One breaker decision per dependency per tick: its
    /// sources are collected together (a half-open breaker's probe is this tick's
    /// collection) or not at all.
    pub(super) async fn collect(&self, scope: Scope) -> Collected {
        let sources: Vec<Source> = self
            .engine
            .rules()
            .sources
            .iter()
            .filter(|s| scope == Scope::All || s.spec.pushes())
            .cloned()
            .collect();
        let mut admitted: BTreeMap<String, Result<(), CircuitOpen>> = BTreeMap::new();
        for dep in sources.iter().filter_map(|s| s.spec.dependency()) {
            admitted
                .entry(dep)
                .or_insert_with_key(|dep| self.breakers.admit(dep));
        }
        // Refused sources are answered at once; the rest are collected together, each
        // kind's in one batch (one Kafka Metadata for every group, ...).
        let refused: Vec<Option<CircuitOpen>> = sources
            .iter()
            .map(|source| {
                let dep = source.spec.dependency()?;
                admitted.get(&dep).and_then(|a| a.clone().err())
            })
            .collect();
        let asked: Vec<&SignalSpec> = sources
            .iter()
            .zip(&refused)
            .filter(|(_, refused)| refused.is_none())
            .map(|(source, _)| &source.spec)
            .collect();
        let mut answers = SignalSpec::collect_all(&asked, &self.sources).await.into_iter();
        let collected: Vec<Result<Vec<Series>, SignalError>> = refused
            .into_iter()
            .map(|refused| match refused {
                Some(why) => Err(SignalError::CircuitOpen(why)),
                None => answers
                    .next()
                    .unwrap_or_else(|| Err(SignalError::Task("no collection".to_owned()))),
            })
            .collect();
        for (source, result) in sources.iter().zip(&collected) {
            if let Err(e) = result {
                self.metrics
                    .signal_errors
                    .with_label_values(&[source.spec.source(), e.metric_label()])
                    .inc();
            }
        }
        let results: Vec<Result<Vec<Series>, Unknown>> = collected
            .into_iter()
            .map(|r| r.map_err(|e| Unknown(crate::core::url::redact_text(&e.to_string()))))
            .collect();
        let failed = self.record_dependencies(&sources, &results, &admitted);
        let infos = self.source_infos(&sources, &results);
        Collected {
            sources,
            results,
            failed,
            infos,
        }
    }

    /// Gives every rule the reading of its source, and exports the sources' health.
    pub(super) fn observe(&mut self, now: Duration, c: &Collected) {
        let mut up: HashMap<&'static str, bool> = HashMap::new();
        for (source, result) in c.sources.iter().zip(&c.results) {
            *up.entry(source.spec.source()).or_insert(true) &= result.is_ok();
            for &rule in &source.rules {
                let reading = Reading {
                    at: now,
                    result: result.clone(),
                };
                self.engine.observe(rule, reading);
            }
        }
        for (source, ok) in up {
            self.metrics
                .source_up
                .with_label_values(&[source])
                .set(i64::from(ok));
        }
        for series in c
            .sources
            .iter()
            .zip(&c.results)
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
    }

    /// What `/status` shows of each source; a source that just went down is logged once.
    fn source_infos(
        &self,
        sources: &[Source],
        results: &[Result<Vec<Series>, Unknown>],
    ) -> BTreeMap<String, SourceInfo> {
        let mut infos = BTreeMap::new();
        for (source, result) in sources.iter().zip(results) {
            if let Err(why) = result {
                if self.status().sources.get(&source.shown).is_none_or(|s| s.up) {
                    warn!(source = source.spec.source(), signal = source.spec.kind(), error = %why, "signal source down");
                }
            }
            let info = SourceInfo {
                source: source.spec.source(),
                kind: source.spec.kind(),
                params: source.spec.shown_params(),
                up: result.is_ok(),
                error: result.as_ref().err().map(|e| e.0.clone()),
            };
            infos.insert(source.shown.clone(), info);
        }
        infos
    }

    /// Feeds this tick's collections to the breakers: per dependency, one success when any of
    /// its sources answered, one failure when all failed (so one mistyped consumer group does
    /// not count as the cluster being down while its other groups answer). Returns the
    /// dependencies that failed.
    fn record_dependencies(
        &self,
        sources: &[Source],
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
}

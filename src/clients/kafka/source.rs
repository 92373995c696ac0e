//! One shared client for every rule, created on first use and reused: one connection per
//! broker ([`super::cluster`]), dialled again after an outage, so 1 000 groups cost no more
//! connections than one. It only reads (metadata, coordinators, committed and end offsets,
//! group states): the groups' members and offsets are untouched. Every request is bounded
//! by `KAFKA_TIMEOUT`.
//!
//! The specs of one tick are measured together ([`KafkaSource::collect_many`]); the requests
//! that takes are listed in [`super::measure`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tracing::Instrument;

use super::cluster::Cluster;
use super::lag::{StallTracker, TopicLag};
use super::measure::Batch;
use super::{KafkaError, KafkaSettings};
use super::{LagQuery, OffsetReset};

/// The Kafka signal source. Cheap to clone (the clones share clients and history).
#[derive(Clone)]
pub struct KafkaSource {
    inner: Arc<Inner>,
}

/// The last collection of one `kafka_lag` spec, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LagReport {
    pub group: String,
    /// The spec's topic; `None` measures every topic the group has committed offsets for.
    pub topic: Option<String>,
    pub offset_reset: OffsetReset,
    pub lags: Vec<TopicLag>,
    /// Why the last collection failed (then `lags` is empty).
    pub error: Option<String>,
}

struct Inner {
    settings: KafkaSettings,
    shared: Mutex<Option<Arc<Cluster>>>,
    stalls: Mutex<StallTracker>,
    /// Keyed by the spec's `Debug` form: one entry per distinct spec.
    reports: Mutex<BTreeMap<String, LagReport>>,
}

/// The mutexes guard plain data that every step leaves consistent, so a poisoned one is
/// still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KafkaSource {
    /// Does no I/O: clients are created on first use.
    pub fn new(settings: KafkaSettings) -> Self {
        KafkaSource {
            inner: Arc::new(Inner {
                settings,
                shared: Mutex::new(None),
                stalls: Mutex::new(StallTracker::default()),
                reports: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    pub fn settings(&self) -> &KafkaSettings {
        &self.inner.settings
    }

    /// One [`TopicLag`] per (group, topic) (its `series()` is the signal's reading), with
    /// the per-partition detail and the `stalled` flag. `Err` says why the lag is unknown
    /// (broker unreachable, group or topic missing); never a lag of 0 in its place.
    pub async fn collect_lags(&self, spec: &LagQuery) -> Result<Vec<TopicLag>, KafkaError> {
        let mut lags = self.collect_many(std::slice::from_ref(spec)).await;
        lags.pop()
            .unwrap_or_else(|| Err(KafkaError::Task("no answer".to_owned())))
    }

    /// [`Self::collect_lags`] of every spec, in their order, measured together: one
    /// Metadata, one FindCoordinator, one OffsetFetch per coordinator and one ListOffsets
    /// per broker for all of them.
    pub async fn collect_many(&self, specs: &[LagQuery]) -> Vec<Result<Vec<TopicLag>, KafkaError>> {
        let span = tracing::debug_span!("kafka_lag", specs = specs.len());
        let results = self.inner.measure(specs).instrument(span).await;
        specs
            .iter()
            .zip(results)
            .map(|(spec, result)| self.record(spec, result))
            .collect()
    }

    /// Flags stalled partitions and keeps the collection for `/status`.
    fn record(
        &self,
        spec: &LagQuery,
        result: Result<Vec<TopicLag>, KafkaError>,
    ) -> Result<Vec<TopicLag>, KafkaError> {
        let key = format!("{spec:?}");
        let result = result.map(|mut lags| {
            let mut stalls = lock(&self.inner.stalls);
            for lag in &mut lags {
                stalls.observe(&key, lag);
            }
            lags
        });
        let report = LagReport {
            group: spec.group.clone(),
            topic: spec.topic.clone(),
            offset_reset: spec.offset_reset,
            lags: result.as_ref().ok().cloned().unwrap_or_default(),
            error: result.as_ref().err().map(ToString::to_string),
        };
        lock(&self.inner.reports).insert(key, report);
        result
    }

    /// The last collection of every spec collected so far, per partition, for `/status`.
    pub fn partition_lags(&self) -> Vec<LagReport> {
        lock(&self.inner.reports).values().cloned().collect()
    }
}

impl Inner {
    fn shared(&self) -> Result<Arc<Cluster>, KafkaError> {
        let mut shared = lock(&self.shared);
        if let Some(cluster) = &*shared {
            return Ok(cluster.clone());
        }
        let security = self.settings.security().map_err(|reason| KafkaError::Client {
            bootstrap: self.settings.bootstrap_servers().to_owned(),
            reason,
        })?;
        let cluster = Arc::new(Cluster::new(self.settings.bootstrap_servers(), security));
        *shared = Some(cluster.clone());
        Ok(cluster)
    }

    async fn measure(&self, specs: &[LagQuery]) -> Vec<Result<Vec<TopicLag>, KafkaError>> {
        match self.shared() {
            Ok(cluster) => {
                Batch {
                    bootstrap: self.settings.bootstrap_servers(),
                    cluster: &cluster,
                }
                .measure(specs)
                .await
            }
            Err(e) => specs.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> KafkaSettings {
        KafkaSettings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .unwrap()
            .unwrap()
    }

    fn any_group() -> LagQuery {
        LagQuery {
            group: "g".into(),
            topic: None,
            offset_reset: OffsetReset::Latest,
        }
    }

    /// A client that cannot be built (its CA file is missing) is a clear, password-free
    /// reason (and no panic), and the next collection tries again.
    #[tokio::test]
    async fn a_client_that_cannot_be_built_is_an_error() {
        let source = KafkaSource::new(settings(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "automaton"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
            ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
        ]));
        for _ in 0..2 {
            let err = source.collect_lags(&any_group()).await.unwrap_err().to_string();
            assert!(
                err.starts_with(
                    "cannot create a Kafka client for 127.0.0.1:1: KAFKA_SSL_CA_LOCATION /nonexistent/ca.pem"
                ),
                "{err}"
            );
            assert!(!err.contains("hunter2"), "{err}");
        }
        assert_eq!(
            source.partition_lags()[0]
                .error
                .as_deref()
                .map(|e| e.contains("client")),
            Some(true)
        );
    }

    /// A `sasl_ssl` client is built, and an unreachable broker is an ordinary,
    /// password-free unknown.
    #[tokio::test]
    async fn tls_clients_are_built_and_fail_only_on_the_network() {
        let source = KafkaSource::new(settings(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_SASL_USERNAME", "automaton"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
            ("KAFKA_TIMEOUT", "1s"),
        ]));
        let err = source.collect_lags(&any_group()).await.unwrap_err().to_string();
        assert!(
            err.starts_with("Kafka at 127.0.0.1:1: reading metadata failed: cannot connect to 127.0.0.1:1"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}

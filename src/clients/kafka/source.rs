//! One shared client for every rule, created on first use and reused (librdkafka reconnects
//! by itself after an outage): committed offsets of every group go through it too (see
//! [`super::committed`]), so 1 000 groups cost one client, not 1 000. It never subscribes
//! and never commits, so the groups' members and offsets are untouched. Every request is
//! bounded by `KAFKA_TIMEOUT`; the blocking librdkafka calls run on tokio's blocking pool.
//!
//! The specs of one tick are measured together ([`KafkaSource::collect_many`]); the requests
//! that takes are listed in [`super::measure`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::BaseConsumer;
use serde::Serialize;
use tracing::Instrument;

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
    shared: Mutex<Option<Arc<BaseConsumer>>>,
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
    /// Metadata and one ListOffsets per broker for all of them, and one OffsetFetch per
    /// distinct group, all in flight at once.
    pub async fn collect_many(&self, specs: &[LagQuery]) -> Vec<Result<Vec<TopicLag>, KafkaError>> {
        let inner = self.inner.clone();
        let task_specs = specs.to_vec();
        let span = tracing::debug_span!("kafka_lag", specs = specs.len());
        let results = tokio::task::spawn_blocking(move || span.in_scope(|| inner.measure(&task_specs)))
            .instrument(tracing::Span::current())
            .await
            .unwrap_or_else(|e| {
                let e = KafkaError::Task(e.to_string());
                specs.iter().map(|_| Err(e.clone())).collect()
            });
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
    fn shared(&self) -> Result<Arc<BaseConsumer>, KafkaError> {
        let mut shared = lock(&self.shared);
        if let Some(client) = &*shared {
            return Ok(client.clone());
        }
        let client = self
            .settings
            .client_config()
            .create::<BaseConsumer>()
            .map(Arc::new)
            .map_err(|source| KafkaError::Client {
                bootstrap: self.settings.bootstrap_servers().to_owned(),
                source: Box::new(source),
            })?;
        *shared = Some(client.clone());
        Ok(client)
    }

    fn measure(&self, specs: &[LagQuery]) -> Vec<Result<Vec<TopicLag>, KafkaError>> {
        match self.shared() {
            Ok(client) => Batch {
                settings: &self.settings,
                client: &client,
            }
            .measure(specs),
            Err(e) => specs.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration librdkafka refuses (GSSAPI: not built in) is a clear, password-free
    /// reason (and no panic), and the next collection tries again.
    #[tokio::test]
    async fn a_client_librdkafka_refuses_is_an_error() {
        let vars = [
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "GSSAPI"),
            ("KAFKA_SASL_USERNAME", "automaton"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
        ];
        let settings = KafkaSettings::from_vars(vars.map(|(k, v)| (k.to_owned(), v.to_owned())))
            .unwrap()
            .unwrap();
        let source = KafkaSource::new(settings);
        let spec = LagQuery {
            group: "g".into(),
            topic: None,
            offset_reset: OffsetReset::Latest,
        };
        for _ in 0..2 {
            let err = source.collect_lags(&spec).await.unwrap_err().to_string();
            assert!(
                err.starts_with("cannot create a Kafka client for 127.0.0.1:1"),
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

    /// This build's librdkafka has TLS (OpenSSL): a `sasl_ssl` client is created, and an
    /// unreachable broker is an ordinary, password-free unknown.
    #[tokio::test]
    async fn tls_clients_are_built_and_fail_only_on_the_network() {
        let vars = [
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_SASL_USERNAME", "automaton"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
            ("KAFKA_TIMEOUT", "1s"),
        ];
        let settings = KafkaSettings::from_vars(vars.map(|(k, v)| (k.to_owned(), v.to_owned())))
            .unwrap()
            .unwrap();
        let spec = LagQuery {
            group: "g".into(),
            topic: None,
            offset_reset: OffsetReset::Latest,
        };
        let err = KafkaSource::new(settings)
            .collect_lags(&spec)
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.starts_with("cannot create a Kafka client"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

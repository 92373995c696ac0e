//! One shared client for every rule, created on first use and reused (librdkafka reconnects
//! by itself after an outage), plus one small consumer per measured group, because committed
//! offsets are read with the group's own `group.id`. Those consumers never subscribe and never
//! commit, so the group's members and offsets are untouched. Every request is bounded by
//! `KAFKA_TIMEOUT`; the blocking librdkafka calls run on tokio's blocking pool.
//!
//! Per collection: one Metadata request (the topic's partitions), one OffsetFetch for the
//! group naming exactly those partitions (the group's whole offset map is not requested: some
//! brokers answer that with nothing), one batched ListOffsets for the end offsets, and one for
//! the log start offsets only when an uncommitted partition counts from `earliest`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tracing::Instrument;

use super::lag::{partition_lag, PartitionLag, StallTracker, TopicLag};
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
    groups: Mutex<HashMap<String, Arc<BaseConsumer>>>,
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
                groups: Mutex::new(HashMap::new()),
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
        let inner = self.inner.clone();
        let task_spec = spec.clone();
        let span = tracing::debug_span!("kafka_lag", group = %spec.group, topic = ?spec.topic);
        let result = tokio::task::spawn_blocking(move || span.in_scope(|| inner.measure(&task_spec)))
            .instrument(tracing::Span::current())
            .await
            .unwrap_or_else(|e| Err(KafkaError::Task(e.to_string())));
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
            lags: result.as_ref().map(Vec::clone).unwrap_or_default(),
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
    fn bootstrap(&self) -> String {
        self.settings.bootstrap_servers().to_owned()
    }

    fn request(&self, what: &'static str) -> impl FnOnce(RdKafkaError) -> KafkaError + '_ {
        move |source| KafkaError::Request {
            bootstrap: self.bootstrap(),
            what,
            source: Box::new(source),
        }
    }

    fn create(&self, group: Option<&str>) -> Result<Arc<BaseConsumer>, KafkaError> {
        let mut config = self.settings.client_config();
        if let Some(group) = group {
            config.set("group.id", group);
        }
        config
            .create::<BaseConsumer>()
            .map(Arc::new)
            .map_err(|source| KafkaError::Client {
                bootstrap: self.bootstrap(),
                source: Box::new(source),
            })
    }

    fn shared(&self) -> Result<Arc<BaseConsumer>, KafkaError> {
        let mut shared = lock(&self.shared);
        match &*shared {
            Some(client) => Ok(client.clone()),
            None => {
                let client = self.create(None)?;
                *shared = Some(client.clone());
                Ok(client)
            }
        }
    }

    fn group_consumer(&self, group: &str) -> Result<Arc<BaseConsumer>, KafkaError> {
        let mut groups = lock(&self.groups);
        if let Some(consumer) = groups.get(group) {
            return Ok(consumer.clone());
        }
        let consumer = self.create(Some(group))?;
        groups.insert(group.to_owned(), consumer.clone());
        Ok(consumer)
    }

    /// The partitions to measure: the spec's topic, or every non-internal topic.
    fn partitions(&self, metadata: &Metadata, spec: &LagQuery) -> Result<Vec<(String, i32)>, KafkaError> {
        let mut out = Vec::new();
        for topic in metadata.topics() {
            let wanted = match &spec.topic {
                Some(name) => topic.name() == name,
                None => !topic.name().starts_with("__"),
            };
            if !wanted || topic.error().is_some() {
                continue;
            }
            out.extend(
                topic
                    .partitions()
                    .iter()
                    .map(|p| (topic.name().to_owned(), p.id())),
            );
        }
        if let (Some(topic), true) = (&spec.topic, out.is_empty()) {
            return Err(KafkaError::UnknownTopic {
                bootstrap: self.bootstrap(),
                topic: topic.clone(),
            });
        }
        Ok(out)
    }

    /// One batched ListOffsets: `at` is `Offset::End` (end offsets) or `Offset::Beginning`
    /// (log start offsets).
    fn list_offsets(
        &self,
        client: &BaseConsumer,
        partitions: &[(String, i32)],
        at: Offset,
        what: &'static str,
    ) -> Result<HashMap<(String, i32), i64>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in partitions {
            tpl.add_partition_offset(topic, *partition, at)
                .map_err(self.request(what))?;
        }
        let answer = client
            .offsets_for_times(tpl, self.settings.timeout())
            .map_err(self.request(what))?;
        let answer = self.offsets(&answer, what)?;
        partitions
            .iter()
            .map(|key| match answer.get(key).copied().flatten() {
                Some(offset) => Ok((key.clone(), offset)),
                None => Err(KafkaError::MissingOffset {
                    bootstrap: self.bootstrap(),
                    what,
                    partition: format!("{}/{}", key.0, key.1),
                }),
            })
            .collect()
    }

    /// The offsets of an answer; `None` for a partition without one.
    fn offsets(
        &self,
        tpl: &TopicPartitionList,
        what: &'static str,
    ) -> Result<HashMap<(String, i32), Option<i64>>, KafkaError> {
        tpl.elements()
            .iter()
            .map(|e| {
                e.error().map_err(|source| KafkaError::Partition {
                    bootstrap: self.bootstrap(),
                    what,
                    partition: format!("{}/{}", e.topic(), e.partition()),
                    source: Box::new(source),
                })?;
                let offset = match e.offset() {
                    Offset::Offset(n) if n >= 0 => Some(n),
                    _ => None,
                };
                Ok(((e.topic().to_owned(), e.partition()), offset))
            })
            .collect()
    }

    fn measure(&self, spec: &LagQuery) -> Result<Vec<TopicLag>, KafkaError> {
        let timeout = self.settings.timeout();
        let client = self.shared()?;
        let metadata = client
            .fetch_metadata(spec.topic.as_deref(), timeout)
            .map_err(self.request("reading metadata"))?;
        let mut partitions = self.partitions(&metadata, spec)?;

        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &partitions {
            tpl.add_partition(topic, *partition);
        }
        let committed = self
            .group_consumer(&spec.group)?
            .committed_offsets(tpl, timeout)
            .map_err(self.request("reading committed offsets"))?;
        let committed = self.offsets(&committed, "reading committed offsets")?;

        if committed.values().all(Option::is_none) {
            let groups = client
                .fetch_group_list(Some(&spec.group), timeout)
                .map_err(self.request("listing consumer groups"))?;
            let known = groups
                .groups()
                .iter()
                .any(|g| g.name() == spec.group && g.state() != "Dead");
            if !known {
                return Err(KafkaError::UnknownGroup {
                    bootstrap: self.bootstrap(),
                    group: spec.group.clone(),
                });
            }
            if spec.topic.is_none() {
                return Err(KafkaError::NothingCommitted {
                    bootstrap: self.bootstrap(),
                    group: spec.group.clone(),
                });
            }
        }
        if spec.topic.is_none() {
            let measured: std::collections::BTreeSet<&String> = committed
                .iter()
                .filter(|(_, offset)| offset.is_some())
                .map(|((topic, _), _)| topic)
                .collect();
            partitions.retain(|(topic, _)| measured.contains(topic));
        }

        let latest = self.list_offsets(&client, &partitions, Offset::End, "reading end offsets")?;
        let from_start: Vec<(String, i32)> = match spec.offset_reset {
            OffsetReset::Latest => Vec::new(),
            OffsetReset::Earliest => partitions
                .iter()
                .filter(|key| committed.get(*key).copied().flatten().is_none())
                .cloned()
                .collect(),
        };
        let log_start = if from_start.is_empty() {
            HashMap::new()
        } else {
            self.list_offsets(
                &client,
                &from_start,
                Offset::Beginning,
                "reading log start offsets",
            )?
        };

        let mut by_topic: BTreeMap<String, Vec<PartitionLag>> = BTreeMap::new();
        for key in partitions {
            let committed = committed.get(&key).copied().flatten();
            // `list_offsets` answers for every partition it was given, or fails.
            let latest = latest.get(&key).copied().unwrap_or_default();
            let log_start = log_start.get(&key).copied();
            by_topic.entry(key.0).or_default().push(PartitionLag {
                partition: key.1,
                committed,
                latest,
                log_start,
                lag: partition_lag(committed, latest, log_start, spec.offset_reset),
            });
        }
        Ok(by_topic
            .into_iter()
            .map(|(topic, mut partitions)| {
                partitions.sort_by_key(|p| p.partition);
                TopicLag {
                    group: spec.group.clone(),
                    topic,
                    lag: partitions.iter().fold(0i64, |sum, p| sum.saturating_add(p.lag)),
                    stalled: false,
                    partitions,
                }
            })
            .collect())
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

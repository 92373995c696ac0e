//! One collection of every `kafka_lag` spec of a tick, in as few requests as the protocol
//! allows ([`super::offsets`] sends them):
//! - one Metadata request (the topics the specs name, or all topics);
//! - one FindCoordinator for every group, then one OffsetFetch per coordinator for all of
//!   its groups, each naming exactly the partitions its specs measure;
//! - one ListOffsets per partition leader for the end offsets of every spec's partitions
//!   together, and one more only when an uncommitted partition counts from `earliest`;
//! - one DescribeGroups per coordinator, only when a group has committed nothing (unknown
//!   group or typo).
//!
//! A failure is charged to the specs it concerns: one missing group or topic does not make
//! the others unknown; a broker that does not answer makes all of them unknown.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kafka_protocol::messages::MetadataResponse;

use super::cluster::Cluster;
use super::lag::{partition_lag, PartitionLag, TopicLag};
use super::offsets::{Committed, Key, Offsets, PartitionOffsets, Reader, EARLIEST, LATEST};
use super::wire::{BrokerCode, WireError};
use super::{KafkaError, LagQuery, OffsetReset};

type Lags = Result<Vec<TopicLag>, KafkaError>;

/// 3: UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC: i16 = 3;

pub(super) struct Batch<'a> {
    pub bootstrap: &'a str,
    pub cluster: &'a Cluster,
}

impl Batch<'_> {
    fn reader(&self) -> Reader<'_> {
        Reader {
            bootstrap: self.bootstrap,
            cluster: self.cluster,
        }
    }

    fn bootstrap(&self) -> String {
        self.bootstrap.to_owned()
    }

    /// The lags of every spec, in their order.
    pub async fn measure(&self, specs: &[LagQuery]) -> Vec<Lags> {
        let named: BTreeSet<&str> = specs.iter().filter_map(|s| s.topic.as_deref()).collect();
        let named: Vec<&str> = named.into_iter().collect();
        let every = specs.iter().any(|s| s.topic.is_none());
        let metadata = match self.cluster.metadata((!every).then_some(&named[..])).await {
            Ok(metadata) => metadata,
            Err(source) => {
                let e = KafkaError::Request {
                    bootstrap: self.bootstrap(),
                    what: "reading metadata",
                    source,
                };
                return specs.iter().map(|_| Err(e.clone())).collect();
            }
        };
        let leaders: HashMap<Key, i32> = metadata
            .topics
            .iter()
            .filter_map(|t| Some((t.name.as_ref()?.as_str(), t)))
            .flat_map(|(topic, t)| {
                t.partitions
                    .iter()
                    .map(move |p| ((topic.to_owned(), p.partition_index), *p.leader_id))
            })
            .collect();
        let mut plans: Vec<Result<Vec<Key>, KafkaError>> =
            specs.iter().map(|s| self.partitions(&metadata, s)).collect();
        let committed = self.committed(specs, &plans).await;
        let unknown = self.unknown_groups(specs, &plans, &committed).await;
        for ((spec, plan), unknown) in specs.iter().zip(&mut plans).zip(unknown) {
            if let Some(e) = unknown {
                *plan = Err(e);
                continue;
            }
            if let (Ok(partitions), None) = (&mut *plan, &spec.topic) {
                // Without a topic: the topics the group has committed offsets on.
                let offsets = committed.get(spec.group.as_str());
                let measured: HashSet<String> = partitions
                    .iter()
                    .filter(|key| is_committed(offsets, key))
                    .map(|(topic, _)| topic.clone())
                    .collect();
                partitions.retain(|(topic, _)| measured.contains(topic));
            }
        }
        let reader = self.reader();
        let all: BTreeSet<&Key> = plans.iter().filter_map(|p| p.as_ref().ok()).flatten().collect();
        let latest = reader
            .list_offsets(all, &leaders, LATEST, "reading end offsets")
            .await;
        let from_start: BTreeSet<&Key> = specs
            .iter()
            .zip(&plans)
            .filter(|(spec, _)| spec.offset_reset == OffsetReset::Earliest)
            .filter_map(|(spec, plan)| Some((spec, plan.as_ref().ok()?)))
            .flat_map(|(spec, plan)| {
                let offsets = committed.get(spec.group.as_str());
                plan.iter().filter(move |key| !is_committed(offsets, key))
            })
            .collect();
        let log_start = reader
            .list_offsets(from_start, &leaders, EARLIEST, "reading log start offsets")
            .await;
        specs
            .iter()
            .zip(plans)
            .map(|(spec, plan)| {
                let partitions = plan?;
                match committed.get(spec.group.as_str()).map(|c| &c.offsets) {
                    Some(Ok(offsets)) => self.lags(spec, partitions, offsets, &latest, &log_start),
                    Some(Err(e)) => Err(e.clone()),
                    // Every spec with partitions asked for its group's offsets.
                    None => Err(KafkaError::Group {
                        bootstrap: self.bootstrap(),
                        group: spec.group.clone(),
                        reason: "not asked".to_owned(),
                    }),
                }
            })
            .collect()
    }

    /// The partitions to measure: the spec's topic, or every non-internal topic.
    fn partitions(&self, metadata: &MetadataResponse, spec: &LagQuery) -> Result<Vec<Key>, KafkaError> {
        let mut out = Vec::new();
        for topic in &metadata.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.as_str()) else {
                continue;
            };
            let wanted = match &spec.topic {
                Some(wanted) => name == wanted,
                None => !topic.is_internal && !name.starts_with("__"),
            };
            if !wanted {
                continue;
            }
            match (topic.error_code, &spec.topic) {
                (0, _) => {}
                (UNKNOWN_TOPIC, _) | (_, None) => continue,
                // Not authorized, or no leader yet: unknown, with the broker's reason.
                (code, Some(_)) => {
                    return Err(KafkaError::Request {
                        bootstrap: self.bootstrap(),
                        what: "reading metadata",
                        source: WireError::Broker {
                            what: format!("topic `{name}`"),
                            code: BrokerCode(code),
                        },
                    })
                }
            }
            out.extend(
                topic
                    .partitions
                    .iter()
                    .map(|p| (name.to_owned(), p.partition_index)),
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

    /// Per distinct group, its committed offsets on the union of its specs' partitions.
    async fn committed(
        &self,
        specs: &[LagQuery],
        plans: &[Result<Vec<Key>, KafkaError>],
    ) -> HashMap<String, Committed> {
        let mut wanted: BTreeMap<&str, BTreeSet<Key>> = BTreeMap::new();
        for (spec, plan) in specs.iter().zip(plans) {
            if let Ok(partitions) = plan {
                let set = wanted.entry(spec.group.as_str()).or_default();
                set.extend(partitions.iter().cloned());
            }
        }
        let mut out = HashMap::new();
        // Nothing asked is nothing committed: no request for it.
        wanted.retain(|group, partitions| {
            let empty = partitions.is_empty();
            if empty {
                let offsets = Ok(Offsets::new());
                out.insert(
                    (*group).to_owned(),
                    Committed {
                        offsets,
                        coordinator: None,
                    },
                );
            }
            !empty
        });
        if !wanted.is_empty() {
            out.extend(self.reader().committed(&wanted).await);
        }
        out
    }

    /// For each spec whose group has committed nothing on its partitions: why that is an
    /// error (the group is unknown, or no topic says what to measure), from one
    /// DescribeGroups per coordinator.
    async fn unknown_groups(
        &self,
        specs: &[LagQuery],
        plans: &[Result<Vec<Key>, KafkaError>],
        committed: &HashMap<String, Committed>,
    ) -> Vec<Option<KafkaError>> {
        let empty: Vec<bool> = specs
            .iter()
            .zip(plans)
            .map(|(spec, plan)| match (plan, committed.get(spec.group.as_str())) {
                (
                    Ok(plan),
                    Some(Committed {
                        offsets: Ok(offsets), ..
                    }),
                ) => plan
                    .iter()
                    .all(|key| offsets.get(key).copied().flatten().is_none()),
                _ => false,
            })
            .collect();
        let mut asked: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut no_coordinator = BTreeSet::new();
        for (spec, _) in specs.iter().zip(&empty).filter(|(_, e)| **e) {
            match committed
                .get(spec.group.as_str())
                .and_then(|c| c.coordinator.clone())
            {
                Some(addr) => {
                    let names = asked.entry(addr).or_default();
                    if !names.contains(&spec.group) {
                        names.push(spec.group.clone());
                    }
                }
                // Nothing was asked of a coordinator (no partitions): the group's state is
                // not needed to say nothing is measured.
                None => {
                    no_coordinator.insert(spec.group.clone());
                }
            }
        }
        let exist = if asked.is_empty() {
            HashMap::new()
        } else {
            self.reader().exist(&asked).await
        };
        specs
            .iter()
            .zip(empty)
            .map(|(spec, empty)| {
                if !empty {
                    return None;
                }
                let unknown = KafkaError::UnknownGroup {
                    bootstrap: self.bootstrap(),
                    group: spec.group.clone(),
                };
                match exist.get(&spec.group) {
                    Some(Err(e)) => Some(e.clone()),
                    Some(Ok(false)) => Some(unknown),
                    None if !no_coordinator.contains(&spec.group) => Some(unknown),
                    _ if spec.topic.is_none() => Some(KafkaError::NothingCommitted {
                        bootstrap: self.bootstrap(),
                        group: spec.group.clone(),
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// One spec's lag per topic from the offsets read for the whole batch.
    fn lags(
        &self,
        spec: &LagQuery,
        partitions: Vec<Key>,
        committed: &Offsets,
        latest: &PartitionOffsets,
        log_start: &PartitionOffsets,
    ) -> Lags {
        let mut by_topic: BTreeMap<String, Vec<PartitionLag>> = BTreeMap::new();
        for key in partitions {
            let committed = committed.get(&key).copied().flatten();
            let offset = |offsets: &PartitionOffsets, what| match offsets.get(&key) {
                Some(offset) => offset.clone(),
                None => Err(self.missing(what, &key)),
            };
            let latest = offset(latest, "reading end offsets")?;
            let log_start = match (committed, spec.offset_reset) {
                (None, OffsetReset::Earliest) => Some(offset(log_start, "reading log start offsets")?),
                _ => None,
            };
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

    fn missing(&self, what: &'static str, key: &Key) -> KafkaError {
        self.reader().missing(what, key)
    }
}

/// Whether the group committed an offset on `key`.
fn is_committed(committed: Option<&Committed>, key: &Key) -> bool {
    matches!(committed, Some(Committed { offsets: Ok(o), .. }) if o.get(key).copied().flatten().is_some())
}

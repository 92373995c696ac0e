//! One collection of every `kafka_lag` spec of a tick over the one shared client, in as few
//! requests as librdkafka can send:
//! - one Metadata request (the one topic every spec names, or all topics);
//! - one OffsetFetch per distinct group, all in flight at once ([`super::committed`]), each
//!   naming exactly the partitions its specs measure (the group's whole offset map is not
//!   requested: some brokers answer that with nothing);
//! - one ListOffsets per partition leader for the end offsets of every spec's partitions
//!   together, and one more only when an uncommitted partition counts from `earliest`;
//! - one group listing, only when a group has committed nothing (unknown group or typo).
//!
//! A failure is charged to the specs it concerns: one missing group or topic does not make
//! the others unknown; a broker that does not answer makes all of them unknown.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};

use super::committed::{self, Failure, Key, Offsets};
use super::lag::{partition_lag, PartitionLag, TopicLag};
use super::{KafkaError, KafkaSettings, LagQuery, OffsetReset};

type Lags = Result<Vec<TopicLag>, KafkaError>;

/// One offset per partition, or why that partition has none.
type PartitionOffsets = HashMap<Key, Result<i64, KafkaError>>;

pub(super) struct Batch<'a> {
    pub settings: &'a KafkaSettings,
    pub client: &'a BaseConsumer,
}

impl Batch<'_> {
    fn bootstrap(&self) -> String {
        self.settings.bootstrap_servers().to_owned()
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout()
    }

    fn request(&self, what: &'static str) -> impl FnOnce(RdKafkaError) -> KafkaError + '_ {
        move |source| KafkaError::Request {
            bootstrap: self.bootstrap(),
            what,
            source: Box::new(source),
        }
    }

    /// The lags of every spec, in their order.
    pub fn measure(&self, specs: &[LagQuery]) -> Vec<Lags> {
        let topics: BTreeSet<Option<&str>> = specs.iter().map(|s| s.topic.as_deref()).collect();
        let only = match topics.into_iter().collect::<Vec<_>>()[..] {
            [Some(topic)] => Some(topic),
            _ => None,
        };
        let metadata = match self.client.fetch_metadata(only, self.timeout()) {
            Ok(metadata) => metadata,
            Err(e) => {
                let e = self.request("reading metadata")(e);
                return specs.iter().map(|_| Err(e.clone())).collect();
            }
        };
        let mut plans: Vec<Result<Vec<Key>, KafkaError>> =
            specs.iter().map(|s| self.partitions(&metadata, s)).collect();
        let committed = self.committed(specs, &plans);
        let unknown = self.unknown_groups(specs, &plans, &committed);
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
        let all: BTreeSet<&Key> = plans.iter().filter_map(|p| p.as_ref().ok()).flatten().collect();
        let latest = self.list_offsets(all, Offset::End, "reading end offsets");
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
        let log_start = self.list_offsets(from_start, Offset::Beginning, "reading log start offsets");
        specs
            .iter()
            .zip(plans)
            .map(|(spec, plan)| {
                let partitions = plan?;
                match committed.get(spec.group.as_str()) {
                    Some(Ok(offsets)) => self.lags(spec, partitions, offsets, &latest, &log_start),
                    Some(Err(e)) => Err(self.failure(&spec.group, e.clone())),
                    // Every spec with partitions asked for its group's offsets.
                    None => Err(self.failure(&spec.group, Failure::Group("not asked".to_owned()))),
                }
            })
            .collect()
    }

    /// The partitions to measure: the spec's topic, or every non-internal topic.
    fn partitions(&self, metadata: &Metadata, spec: &LagQuery) -> Result<Vec<Key>, KafkaError> {
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

    /// Per distinct group, its committed offsets on the union of its specs' partitions.
    fn committed<'s>(
        &self,
        specs: &'s [LagQuery],
        plans: &[Result<Vec<Key>, KafkaError>],
    ) -> HashMap<&'s str, Result<Offsets, Failure>> {
        let mut wanted: BTreeMap<&str, BTreeSet<Key>> = BTreeMap::new();
        for (spec, plan) in specs.iter().zip(plans) {
            if let Ok(partitions) = plan {
                let set = wanted.entry(spec.group.as_str()).or_default();
                set.extend(partitions.iter().cloned());
            }
        }
        let mut out = HashMap::new();
        let mut requests: Vec<(&str, Vec<Key>)> = Vec::new();
        for (group, partitions) in wanted {
            // librdkafka refuses an empty list; nothing asked is nothing committed.
            if partitions.is_empty() {
                out.insert(group, Ok(Offsets::new()));
            } else {
                requests.push((group, partitions.into_iter().collect()));
            }
        }
        let asked: Vec<(&str, &[Key])> = requests.iter().map(|(g, p)| (*g, p.as_slice())).collect();
        let answers = committed::committed_offsets(self.client, &asked, self.timeout());
        out.extend(asked.iter().map(|(g, _)| *g).zip(answers));
        out
    }

    /// For each spec whose group has committed nothing on its partitions: why that is an
    /// error (the group is unknown, or no topic says what to measure), from one listing of
    /// the groups (of that one group when only one needs it).
    fn unknown_groups(
        &self,
        specs: &[LagQuery],
        plans: &[Result<Vec<Key>, KafkaError>],
        committed: &HashMap<&str, Result<Offsets, Failure>>,
    ) -> Vec<Option<KafkaError>> {
        let empty: Vec<bool> = specs
            .iter()
            .zip(plans)
            .map(|(spec, plan)| match (plan, committed.get(spec.group.as_str())) {
                (Ok(plan), Some(Ok(offsets))) => plan
                    .iter()
                    .all(|key| offsets.get(key).copied().flatten().is_none()),
                _ => false,
            })
            .collect();
        let asked: BTreeSet<&str> = specs
            .iter()
            .zip(&empty)
            .filter(|(_, e)| **e)
            .map(|(s, _)| s.group.as_str())
            .collect();
        if asked.is_empty() {
            return specs.iter().map(|_| None).collect();
        }
        let one = (asked.len() == 1).then(|| asked.iter().next().copied()).flatten();
        let listed = self
            .client
            .fetch_group_list(one, self.timeout())
            .map(|list| {
                list.groups()
                    .iter()
                    .filter(|g| g.state() != "Dead")
                    .map(|g| g.name().to_owned())
                    .collect::<HashSet<String>>()
            })
            .map_err(self.request("listing consumer groups"));
        specs
            .iter()
            .zip(empty)
            .map(|(spec, empty)| {
                if !empty {
                    return None;
                }
                match &listed {
                    Err(e) => Some(e.clone()),
                    Ok(known) if !known.contains(&spec.group) => Some(KafkaError::UnknownGroup {
                        bootstrap: self.bootstrap(),
                        group: spec.group.clone(),
                    }),
                    Ok(_) if spec.topic.is_none() => Some(KafkaError::NothingCommitted {
                        bootstrap: self.bootstrap(),
                        group: spec.group.clone(),
                    }),
                    Ok(_) => None,
                }
            })
            .collect()
    }

    /// One batched ListOffsets (librdkafka sends one request per partition leader): `at` is
    /// `Offset::End` (end offsets) or `Offset::Beginning` (log start offsets).
    fn list_offsets(&self, partitions: BTreeSet<&Key>, at: Offset, what: &'static str) -> PartitionOffsets {
        if partitions.is_empty() {
            return PartitionOffsets::new();
        }
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        let mut failed = None;
        for (topic, partition) in &partitions {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, at) {
                failed = Some(e);
            }
        }
        let answer = match failed {
            Some(e) => Err(e),
            None => self.client.offsets_for_times(tpl, self.timeout()),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                let e = self.request(what)(e);
                return partitions
                    .into_iter()
                    .map(|k| (k.clone(), Err(e.clone())))
                    .collect();
            }
        };
        let mut out: PartitionOffsets = answer
            .elements()
            .iter()
            .map(|e| {
                let key = (e.topic().to_owned(), e.partition());
                let offset = match (e.error(), e.offset()) {
                    (Err(source), _) => Err(KafkaError::Partition {
                        bootstrap: self.bootstrap(),
                        what,
                        partition: format!("{}/{}", key.0, key.1),
                        source: Box::new(source),
                    }),
                    (Ok(()), Offset::Offset(n)) if n >= 0 => Ok(n),
                    (Ok(()), _) => Err(self.missing(what, &key)),
                };
                (key, offset)
            })
            .collect();
        for key in partitions {
            if !out.contains_key(key) {
                out.insert(key.clone(), Err(self.missing(what, key)));
            }
        }
        out
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
        KafkaError::MissingOffset {
            bootstrap: self.bootstrap(),
            what,
            partition: format!("{}/{}", key.0, key.1),
        }
    }

    fn failure(&self, group: &str, failure: Failure) -> KafkaError {
        match failure {
            Failure::Group(reason) => KafkaError::Group {
                bootstrap: self.bootstrap(),
                group: group.to_owned(),
                reason,
            },
            Failure::Partition { key, source } => KafkaError::Partition {
                bootstrap: self.bootstrap(),
                what: "reading committed offsets",
                partition: format!("{}/{}", key.0, key.1),
                source: Box::new(source),
            },
        }
    }
}

/// Whether the group committed an offset on `key`.
fn is_committed(offsets: Option<&Result<Offsets, Failure>>, key: &Key) -> bool {
    matches!(offsets, Some(Ok(o)) if o.get(key).copied().flatten().is_some())
}

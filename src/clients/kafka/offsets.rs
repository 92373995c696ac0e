//! The offsets a lag needs, in as few requests as the protocol allows: end or log start
//! offsets in one ListOffsets per partition leader here, the groups' side in
//! [`super::groups`]. Requests to different brokers are in flight together. Errors stay with
//! the groups or partitions they concern.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::future::join_all;
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use super::cluster::Cluster;
use super::wire::{BrokerCode, WireError};
use super::KafkaError;

/// `(topic, partition)`.
pub(super) type Key = (String, i32);

/// A group's committed offset per partition asked for (`None`: nothing committed).
pub(super) type Offsets = HashMap<Key, Option<i64>>;

/// One offset per partition, or why that partition has none.
pub(super) type PartitionOffsets = HashMap<Key, Result<i64, KafkaError>>;

/// ListOffsets timestamps: the end of the log, and its start.
pub(super) const LATEST: i64 = -1;
pub(super) const EARLIEST: i64 = -2;

/// A group's committed offsets and the coordinator that answered them.
pub(super) struct Committed {
    pub offsets: Result<Offsets, KafkaError>,
    pub coordinator: Option<String>,
}

pub(super) struct Reader<'a> {
    pub bootstrap: &'a str,
    pub cluster: &'a Cluster,
}

pub(super) fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

impl Reader<'_> {
    pub(super) fn request(&self, what: &'static str, source: WireError) -> KafkaError {
        KafkaError::Request {
            bootstrap: self.bootstrap.to_owned(),
            what,
            source,
        }
    }

    pub(super) fn group_error(&self, group: &str, reason: String) -> KafkaError {
        KafkaError::Group {
            bootstrap: self.bootstrap.to_owned(),
            group: group.to_owned(),
            reason,
        }
    }

    pub(super) fn partition_error(&self, what: &'static str, key: &Key, code: i16) -> KafkaError {
        KafkaError::Partition {
            bootstrap: self.bootstrap.to_owned(),
            what,
            partition: format!("{}/{}", key.0, key.1),
            code: BrokerCode(code),
        }
    }

    pub fn missing(&self, what: &'static str, key: &Key) -> KafkaError {
        KafkaError::MissingOffset {
            bootstrap: self.bootstrap.to_owned(),
            what,
            partition: format!("{}/{}", key.0, key.1),
        }
    }

    /// The offsets at `timestamp` ([`LATEST`] or [`EARLIEST`]) of `partitions`, one
    /// ListOffsets per leader (`leaders`: by partition, from metadata).
    pub async fn list_offsets(
        &self,
        partitions: BTreeSet<&Key>,
        leaders: &HashMap<Key, i32>,
        timestamp: i64,
        what: &'static str,
    ) -> PartitionOffsets {
        let mut out = PartitionOffsets::new();
        let mut by_leader: BTreeMap<String, BTreeSet<Key>> = BTreeMap::new();
        for key in partitions {
            let leader = leaders.get(key).and_then(|node| self.cluster.broker(*node));
            match leader {
                Some(addr) => {
                    by_leader.entry(addr).or_default().insert(key.clone());
                }
                // No leader (an election under way): this partition is unknown this tick.
                None => {
                    out.insert(key.clone(), Err(self.missing(what, key)));
                }
            }
        }
        let requests = by_leader.iter().map(|(addr, keys)| {
            let build = move |_version: i16| {
                let mut request = ListOffsetsRequest::default();
                request.replica_id = (-1).into();
                // Read committed, as a consumer with librdkafka's default sees the log: open
                // transactions do not count as lag until they commit.
                request.isolation_level = 1;
                request.topics = by_topic(keys)
                    .into_iter()
                    .map(|(topic, indexes)| {
                        let mut t = ListOffsetsTopic::default();
                        t.name = TopicName(name(topic));
                        t.partitions = indexes
                            .into_iter()
                            .map(|partition_index| {
                                let mut p = ListOffsetsPartition::default();
                                p.partition_index = partition_index;
                                p.current_leader_epoch = -1;
                                p.timestamp = timestamp;
                                p
                            })
                            .collect();
                        t
                    })
                    .collect();
                request
            };
            self.cluster.send(addr, "ListOffsets", 7, build)
        });
        for (keys, answer) in by_leader.values().zip(join_all(requests).await) {
            match answer {
                Ok((_, answer)) => {
                    for t in &answer.topics {
                        for p in &t.partitions {
                            let key = (t.name.as_str().to_owned(), p.partition_index);
                            let offset = match (p.error_code, p.offset) {
                                (0, n) if n >= 0 => Ok(n),
                                (0, _) => Err(self.missing(what, &key)),
                                (code, _) => Err(self.partition_error(what, &key, code)),
                            };
                            out.insert(key, offset);
                        }
                    }
                    for key in keys {
                        if !out.contains_key(key) {
                            out.insert(key.clone(), Err(self.missing(what, key)));
                        }
                    }
                }
                Err(e) => {
                    let e = self.request(what, e);
                    out.extend(keys.iter().map(|k| (k.clone(), Err(e.clone()))));
                }
            }
        }
        out
    }
}

/// Partitions grouped by topic, in order.
pub(super) fn by_topic(keys: &BTreeSet<Key>) -> BTreeMap<&str, Vec<i32>> {
    let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in keys {
        out.entry(topic.as_str()).or_default().push(*partition);
    }
    out
}

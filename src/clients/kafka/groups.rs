//! The consumer groups' side of a lag, in as few requests as the protocol allows:
//! - the coordinators of every group in one FindCoordinator (v4, KIP-699; one per group on
//!   brokers older than Kafka 2.8);
//! - the committed offsets of every group a coordinator owns in one OffsetFetch (v8,
//!   KIP-709; one per group before Kafka 3.0), naming exactly the partitions measured (some
//!   brokers answer a request for a group's whole map with nothing);
//! - the state of groups that committed nothing in one DescribeGroups per coordinator.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::future::join_all;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{GroupId, TopicName};

use super::offsets::{by_topic, name, Committed, Key, Offsets, Reader};
use super::wire::BrokerCode;
use super::KafkaError;

impl Reader<'_> {
    /// Each group's coordinator address, or why it is unknown.
    async fn coordinators(&self, groups: &[&str]) -> HashMap<String, Result<String, String>> {
        let mut out = HashMap::new();
        let Some(any) = self.cluster.any() else {
            return groups
                .iter()
                .map(|g| ((*g).to_owned(), Err("no broker known".into())))
                .collect();
        };
        let mut rest = groups;
        while let Some(first) = rest.first() {
            let build = |version: i16| {
                let mut request = FindCoordinatorRequest::default();
                if version >= 4 {
                    request.coordinator_keys = rest.iter().map(|g| name(g)).collect();
                } else {
                    request.key = name(first);
                }
                request
            };
            match self
                .cluster
                .send(
                    &any,
                    "FindCoordinator",
                    self.cluster.caps().find_coordinator,
                    build,
                )
                .await
            {
                Ok((version, answer)) if version >= 4 => {
                    for c in answer.coordinators {
                        let found = match c.error_code {
                            0 => Ok(format!("{}:{}", c.host.as_str(), c.port)),
                            code => Err(format!("no coordinator: {}", BrokerCode(code))),
                        };
                        out.insert(c.key.as_str().to_owned(), found);
                    }
                    rest = &[];
                }
                Ok((_, answer)) => {
                    let found = match answer.error_code {
                        0 => Ok(format!("{}:{}", answer.host.as_str(), answer.port)),
                        code => Err(format!("no coordinator: {}", BrokerCode(code))),
                    };
                    out.insert((*first).to_owned(), found);
                    rest = &rest[1..];
                }
                Err(e) => {
                    for group in rest {
                        out.insert(
                            (*group).to_owned(),
                            Err(format!("finding its coordinator failed: {e}")),
                        );
                    }
                    rest = &[];
                }
            }
        }
        for group in groups {
            out.entry((*group).to_owned())
                .or_insert_with(|| Err("no coordinator in the answer".into()));
        }
        out
    }

    /// The committed offsets of each group on its partitions.
    pub async fn committed(&self, wanted: &BTreeMap<&str, BTreeSet<Key>>) -> HashMap<String, Committed> {
        let groups: Vec<&str> = wanted.keys().copied().collect();
        let coordinators = self.coordinators(&groups).await;
        let mut out = HashMap::new();
        let mut by_coordinator: BTreeMap<String, Vec<(&str, &BTreeSet<Key>)>> = BTreeMap::new();
        for (group, partitions) in wanted {
            match coordinators.get(*group) {
                Some(Ok(addr)) => by_coordinator
                    .entry(addr.clone())
                    .or_default()
                    .push((group, partitions)),
                Some(Err(reason)) => {
                    let offsets = Err(self.group_error(group, reason.clone()));
                    out.insert(
                        (*group).to_owned(),
                        Committed {
                            offsets,
                            coordinator: None,
                        },
                    );
                }
                None => {}
            }
        }
        let fetches = by_coordinator
            .iter()
            .map(|(addr, groups)| self.offset_fetch(addr, groups));
        for (addr, answers) in by_coordinator.keys().zip(join_all(fetches).await) {
            for (group, offsets) in answers {
                let coordinator = Some(addr.clone());
                out.insert(group, Committed { offsets, coordinator });
            }
        }
        out
    }

    /// One OffsetFetch for all of `groups` at their coordinator `addr` (one per group on a
    /// broker before OffsetFetch v8).
    async fn offset_fetch(
        &self,
        addr: &str,
        groups: &[(&str, &BTreeSet<Key>)],
    ) -> Vec<(String, Result<Offsets, KafkaError>)> {
        let mut out = Vec::new();
        let mut rest = groups;
        while let Some((first, _)) = rest.first() {
            let build = |version: i16| offset_fetch_request(version, rest);
            match self
                .cluster
                .send(addr, "OffsetFetch", self.cluster.caps().offset_fetch, build)
                .await
            {
                Ok((version, answer)) if version >= 8 => {
                    let mut answered: HashMap<String, Result<Offsets, KafkaError>> = HashMap::new();
                    for g in answer.groups {
                        let group = g.group_id.as_str().to_owned();
                        let offsets = self.offsets_of(
                            &group,
                            g.error_code,
                            g.topics.iter().flat_map(|t| {
                                t.partitions.iter().map(move |p| {
                                    let key = (t.name.as_str().to_owned(), p.partition_index);
                                    (key, p.committed_offset, p.error_code)
                                })
                            }),
                        );
                        answered.insert(group, offsets);
                    }
                    for (group, _) in rest {
                        let offsets = answered.remove(*group).unwrap_or_else(|| {
                            Err(self.group_error(group, "not in the OffsetFetch answer".into()))
                        });
                        out.push(((*group).to_owned(), offsets));
                    }
                    rest = &[];
                }
                Ok((_, answer)) => {
                    let offsets = self.offsets_of(
                        first,
                        answer.error_code,
                        answer.topics.iter().flat_map(|t| {
                            t.partitions.iter().map(move |p| {
                                let key = (t.name.as_str().to_owned(), p.partition_index);
                                (key, p.committed_offset, p.error_code)
                            })
                        }),
                    );
                    out.push(((*first).to_owned(), offsets));
                    rest = &rest[1..];
                }
                Err(e) => {
                    for (group, _) in rest {
                        let reason = format!("OffsetFetch failed: {e}");
                        out.push(((*group).to_owned(), Err(self.group_error(group, reason))));
                    }
                    rest = &[];
                }
            }
        }
        out
    }

    /// One group's answer: its error code, then each partition's offset and error code.
    fn offsets_of(
        &self,
        group: &str,
        error_code: i16,
        partitions: impl Iterator<Item = (Key, i64, i16)>,
    ) -> Result<Offsets, KafkaError> {
        if error_code != 0 {
            return Err(self.group_error(group, format!("OffsetFetch: {}", BrokerCode(error_code))));
        }
        let mut out = Offsets::new();
        for (key, offset, code) in partitions {
            if code != 0 {
                return Err(self.partition_error("reading committed offsets", &key, code));
            }
            out.insert(key, (offset >= 0).then_some(offset));
        }
        Ok(out)
    }

    /// Which of `groups` (by coordinator) exist: `Ok(false)` for a group the coordinator
    /// does not know (state `Dead`), one DescribeGroups per coordinator.
    pub async fn exist(
        &self,
        groups: &BTreeMap<String, Vec<String>>,
    ) -> HashMap<String, Result<bool, KafkaError>> {
        let requests = groups.iter().map(|(addr, names)| {
            let build = move |_version: i16| {
                let mut request = DescribeGroupsRequest::default();
                request.groups = names.iter().map(|g| GroupId(name(g))).collect();
                request
            };
            self.cluster.send(addr, "DescribeGroups", 5, build)
        });
        let mut out = HashMap::new();
        for (names, answer) in groups.values().zip(join_all(requests).await) {
            match answer {
                Ok((_, answer)) => {
                    for g in answer.groups {
                        // 69: GROUP_ID_NOT_FOUND (DescribeGroups v6 and later).
                        let exists = match g.error_code {
                            0 => Ok(g.group_state.as_str() != "Dead"),
                            69 => Ok(false),
                            code => Err(self.group_error(
                                g.group_id.as_str(),
                                format!("DescribeGroups: {}", BrokerCode(code)),
                            )),
                        };
                        out.insert(g.group_id.as_str().to_owned(), exists);
                    }
                }
                Err(e) => {
                    let e = self.request("listing consumer groups", e);
                    out.extend(names.iter().map(|g| (g.clone(), Err(e.clone()))));
                }
            }
        }
        out
    }
}

/// OffsetFetch for all of `groups` (v8 and later), or for the first one.
fn offset_fetch_request(version: i16, groups: &[(&str, &BTreeSet<Key>)]) -> OffsetFetchRequest {
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        request.groups = groups
            .iter()
            .map(|(group, partitions)| {
                let mut g = OffsetFetchRequestGroup::default();
                g.group_id = GroupId(name(group));
                g.topics = Some(
                    by_topic(partitions)
                        .into_iter()
                        .map(|(topic, indexes)| {
                            let mut t = OffsetFetchRequestTopics::default();
                            t.name = TopicName(name(topic));
                            t.partition_indexes = indexes;
                            t
                        })
                        .collect(),
                );
                g
            })
            .collect();
    } else if let Some((group, partitions)) = groups.first() {
        request.group_id = GroupId(name(group));
        request.topics = Some(
            by_topic(partitions)
                .into_iter()
                .map(|(topic, indexes)| {
                    let mut t = OffsetFetchRequestTopic::default();
                    t.name = TopicName(name(topic));
                    t.partition_indexes = indexes;
                    t
                })
                .collect(),
        );
    }
    request
}

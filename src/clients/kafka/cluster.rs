//! The brokers of the cluster and one connection to each, kept across ticks and dialled
//! again after a failure. A request goes to a broker by address: the bootstrap servers in
//! their order for metadata (the first that answers), then the brokers metadata names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};

use super::wire::{Conn, Security, VersionCaps, WireError};

/// One connection slot per broker address: one request at a time on it.
type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

pub(super) struct Cluster {
    bootstrap: Vec<String>,
    security: Security,
    /// Broker addresses by node id, from the last metadata answer.
    brokers: Mutex<HashMap<i32, String>>,
    /// The address that answered the last metadata request: any-broker requests go there.
    any: Mutex<Option<String>>,
    slots: Mutex<HashMap<String, Slot>>,
}

/// The plain maps stay consistent between statements: a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// Does no I/O. `bootstrap` is `KAFKA_BOOTSTRAP_SERVERS` (comma-separated `host:port`).
    pub fn new(bootstrap: &str, security: Security) -> Cluster {
        Cluster {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            security,
            brokers: Mutex::default(),
            any: Mutex::default(),
            slots: Mutex::default(),
        }
    }

    /// Sends the request `build` makes for the version both sides speak (at most `cap`) to
    /// the broker at `addr`, dialling it first when needed. A failed connection is dropped
    /// (an error code in an answer is not a failure of the connection). A kept connection
    /// the broker closed meanwhile (its idle timeout, a restart) is dialled again and the
    /// request sent once more: every request here only reads.
    pub async fn send<R: Request>(
        &self,
        addr: &str,
        api: &'static str,
        cap: i16,
        build: impl Fn(i16) -> R,
    ) -> Result<(i16, R::Response), WireError> {
        let slot = lock(&self.slots).entry(addr.to_owned()).or_default().clone();
        let mut conn = slot.lock().await;
        loop {
            let reused = conn.is_some();
            let open = match conn.as_mut() {
                Some(open) => open,
                None => conn.insert(Conn::open(addr, &self.security).await?),
            };
            // Built per attempt: a broker dialled again may speak other versions.
            let version = open.version::<R>(api, cap)?;
            match open.send(&build(version), version).await {
                Ok(answer) => return Ok((version, answer)),
                Err(e) => {
                    *conn = None;
                    if !(reused && matches!(e, WireError::Io { .. })) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The newest versions of the batched group requests to send.
    pub fn caps(&self) -> VersionCaps {
        self.security.caps
    }

    /// The address of broker `node`, as the last metadata named it.
    pub fn broker(&self, node: i32) -> Option<String> {
        lock(&self.brokers).get(&node).cloned()
    }

    /// A broker for requests any broker answers (FindCoordinator): the last one that
    /// answered metadata.
    pub fn any(&self) -> Option<String> {
        lock(&self.any).clone()
    }

    /// The metadata of `topics` (`None`: every topic), from the first bootstrap server that
    /// answers; the brokers it names are remembered for the requests that follow.
    pub async fn metadata(&self, topics: Option<&[&str]>) -> Result<MetadataResponse, WireError> {
        let mut last = None;
        // The broker that answered last time first: it answered before.
        let answered = self.any();
        let mut order: Vec<String> = answered.iter().cloned().collect();
        order.extend(
            self.bootstrap
                .iter()
                .filter(|b| answered.as_ref() != Some(*b))
                .cloned(),
        );
        for addr in order {
            let answer = self
                .send(&addr, "Metadata", 12, |version| metadata_request(topics, version))
                .await;
            match answer {
                Ok((_, metadata)) => {
                    let brokers: HashMap<i32, String> = metadata
                        .brokers
                        .iter()
                        .map(|b| (*b.node_id, format!("{}:{}", b.host.as_str(), b.port)))
                        .collect();
                    // A broker that left the cluster keeps no idle connection.
                    lock(&self.slots).retain(|addr, _| {
                        self.bootstrap.contains(addr) || brokers.values().any(|b| b == addr)
                    });
                    *lock(&self.brokers) = brokers;
                    *lock(&self.any) = Some(addr);
                    return Ok(metadata);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| WireError::Connect {
            addr: String::new(),
            reason: "KAFKA_BOOTSTRAP_SERVERS names no server".into(),
        }))
    }
}

fn metadata_request(topics: Option<&[&str]>, version: i16) -> MetadataRequest {
    let mut request = MetadataRequest::default();
    request.topics = match topics {
        Some(names) => Some(
            names
                .iter()
                .map(|name| {
                    let mut topic = MetadataRequestTopic::default();
                    topic.name = Some(TopicName(StrBytes::from_string((*name).to_owned())));
                    topic
                })
                .collect(),
        ),
        // Version 0 asks for every topic with an empty list; later ones with null.
        None if version == 0 => Some(Vec::new()),
        None => None,
    };
    // Reading lag must never create a topic a rule misspelled.
    request.allow_auto_topic_creation = false;
    request
}

//! The one error of the Kafka layer. No variant carries the SASL password: it only goes
//! into the SASL exchange ([`super::wire`]), and the settings render without it.

use thiserror::Error;

use super::wire::{BrokerCode, WireError};

#[derive(Debug, Clone, Error)]
pub enum KafkaError {
    /// The `KAFKA_*` variables are invalid; one line per problem, each naming its variable.
    #[error("invalid Kafka settings:\n  {}", .0.join("\n  "))]
    Settings(Vec<String>),

    /// The client cannot be built from the settings (an unreadable CA file).
    #[error("cannot create a Kafka client for {bootstrap}: {reason}")]
    Client { bootstrap: String, reason: String },

    /// A request failed or got no answer within `KAFKA_TIMEOUT` (broker down, unreachable).
    #[error("Kafka at {bootstrap}: {what} failed: {source}")]
    Request {
        bootstrap: String,
        what: &'static str,
        #[source]
        source: WireError,
    },

    /// A group's committed offsets could not be read (no coordinator, no answer within
    /// `KAFKA_TIMEOUT`, an error code for the whole group).
    #[error("Kafka at {bootstrap}: reading the committed offsets of group `{group}` failed: {reason}")]
    Group {
        bootstrap: String,
        group: String,
        reason: String,
    },

    /// One partition's answer carried an error.
    #[error("Kafka at {bootstrap}: {what} for {partition} failed: {code}")]
    Partition {
        bootstrap: String,
        what: &'static str,
        /// `topic/partition`.
        partition: String,
        code: BrokerCode,
    },

    /// The broker answered without an offset for a partition it was asked about.
    #[error("Kafka at {bootstrap}: {what}: no offset for {partition} in the answer")]
    MissingOffset {
        bootstrap: String,
        what: &'static str,
        /// `topic/partition`.
        partition: String,
    },

    #[error("Kafka at {bootstrap}: topic `{topic}` does not exist")]
    UnknownTopic { bootstrap: String, topic: String },

    /// No committed offsets and not in the broker's group list: a typo, or a group that has
    /// never run. Reported instead of a lag of 0.
    #[error("Kafka at {bootstrap}: consumer group `{group}` does not exist (no committed offsets, not in the group list)")]
    UnknownGroup { bootstrap: String, group: String },

    /// The group exists but has committed no offsets, and no `topic` says which to measure.
    #[error("Kafka at {bootstrap}: consumer group `{group}` has no committed offsets on any topic; set `topic` to measure it")]
    NothingCommitted { bootstrap: String, group: String },

    /// A collection gave no answer for a spec (a bug, reported rather than hidden).
    #[error("Kafka lag collection task failed: {0}")]
    Task(String),
}

impl KafkaError {
    /// A bounded label for metrics (`result` / `error` label values).
    pub fn metric_label(&self) -> &'static str {
        match self {
            KafkaError::Settings(_) | KafkaError::Client { .. } => "settings",
            KafkaError::Request { .. }
            | KafkaError::Group { .. }
            | KafkaError::Partition { .. }
            | KafkaError::MissingOffset { .. } => "request",
            KafkaError::UnknownTopic { .. } | KafkaError::UnknownGroup { .. } => "not_found",
            KafkaError::NothingCommitted { .. } => "no_offsets",
            KafkaError::Task(_) => "internal",
        }
    }
}

//! Kafka: the `kafka_lag` signal (a consumer group's lag per topic, read from the group's
//! committed offsets and the partitions' end offsets) over one shared client that speaks
//! the Kafka protocol itself ([`wire`]).
//!
//! ```no_run
//! # async fn wire() -> Result<(), automaton::clients::kafka::KafkaError> {
//! use automaton::clients::kafka::{KafkaSettings, KafkaSource};
//! if let Some(settings) = KafkaSettings::from_env()? {
//!     let source = KafkaSource::new(settings); // connects on first use
//!     # let _ = source;
//! }
//! # Ok(())
//! # }
//! ```

mod cluster;
mod error;
mod groups;
mod lag;
mod measure;
mod offsets;
mod settings;
mod source;
pub mod wire;

pub use error::KafkaError;
pub use lag::{PartitionLag, TopicLag, STALL_COLLECTIONS};
pub use settings::KafkaSettings;
pub use source::{KafkaSource, LagReport};
pub use wire::VersionCaps;

use serde::{Deserialize, Serialize};

/// What one lag measurement asks for: a consumer group, optionally one topic, and how a
/// partition without a committed offset counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagQuery {
    pub group: String,
    /// Only this topic; without it, every topic the group has committed offsets for.
    pub topic: Option<String>,
    pub offset_reset: OffsetReset,
}

/// How a partition without a committed offset counts: `latest` (lag 0) or `earliest`
/// (everything from the log start is lag), as a consumer's `auto.offset.reset` would read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    #[default]
    Latest,
    Earliest,
}

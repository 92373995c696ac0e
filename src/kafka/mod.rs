//! Kafka: the `kafka_lag` signal (a consumer group's lag per topic, read from the group's
//! committed offsets and the partitions' end offsets) over one shared client.
//!
//! ```no_run
//! # async fn wire() -> Result<(), automaton::kafka::KafkaError> {
//! use automaton::kafka::{KafkaSettings, KafkaSource};
//! if let Some(settings) = KafkaSettings::from_env()? {
//!     let source = KafkaSource::new(settings); // connects on first use
//!     # let _ = source;
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod lag;
mod settings;
mod source;

pub use error::KafkaError;
pub use lag::{PartitionLag, TopicLag, STALL_COLLECTIONS};
pub use settings::KafkaSettings;
pub use source::{KafkaSource, LagReport};

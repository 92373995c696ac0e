//! The daemon's Kafka side: one shared source for every `kafka_lag` signal.

use tracing::info;

use super::Daemon;
use crate::clients::kafka::KafkaSource;

impl Daemon {
    /// Uses `source` for the `kafka_lag` signal.
    pub fn attach_kafka(&mut self, source: KafkaSource) {
        info!(
            bootstrap = source.settings().bootstrap_servers(),
            "Kafka attached"
        );
        self.sources.kafka = Some(source);
        self.install_rules();
    }

    /// Per-partition lag and the stalled flags of the last collection, for `/status`.
    pub(super) fn kafka_report(&self) -> serde_json::Value {
        match &self.sources.kafka {
            Some(source) => serde_json::to_value(source.partition_lags()).unwrap_or_default(),
            None => serde_json::Value::Null,
        }
    }
}

//! The daemon's Kafka side: one shared source for every `kafka_lag` signal.

use std::time::Duration;

use tracing::info;

use super::Daemon;
use crate::clients::kafka::KafkaSource;
use crate::core::series::Series;
use crate::signals::KafkaLag;

impl Daemon {
    /// Uses `source` for the `kafka_lag` signal.
    pub fn attach_kafka(&mut self, source: KafkaSource) {
        info!(
            bootstrap = source.settings().bootstrap_servers(),
            "Kafka attached"
        );
        self.kafka = Some(source);
    }

    /// The collection of one `kafka_lag` signal, as a task-ready future.
    pub(super) fn collect_kafka(
        &self,
        spec: &KafkaLag,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Vec<Series>, String>> + Send + 'static {
        let (source, spec) = (self.kafka.clone(), spec.query());
        async move {
            let Some(source) = source else {
                return Err("no Kafka configured: set KAFKA_BOOTSTRAP_SERVERS".to_owned());
            };
            // The source bounds each request by KAFKA_TIMEOUT; this bounds the whole.
            match tokio::time::timeout(timeout * 3, source.collect(&spec)).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "Kafka did not answer within {}s",
                    (timeout * 3).as_secs_f64()
                )),
            }
        }
    }

    /// Per-partition lag and the stalled flags of the last collection, for `/status`.
    pub(super) fn kafka_report(&self) -> serde_json::Value {
        match &self.kafka {
            Some(source) => serde_json::to_value(source.partition_lags()).unwrap_or_default(),
            None => serde_json::Value::Null,
        }
    }
}

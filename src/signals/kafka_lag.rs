//! `kafka_lag`: a consumer group's lag, Σ(latest − committed) over its partitions, per
//! topic, read through the shared Kafka client. The series are labelled `group`, `topic` and
//! `partitions`; per-partition detail and stalled flags go to `/status`.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Signal, SignalError, Sources};
pub use crate::clients::kafka::OffsetReset;
use crate::clients::kafka::{LagQuery, TopicLag};
use crate::core::series::Series;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaLag {
    /// Consumer group whose lag is measured.
    pub group: String,
    /// Only this topic; without it, every topic the group has committed offsets for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// How a partition without a committed offset counts: `latest` (lag 0) or `earliest`
    /// (everything from the log start is lag).
    #[serde(default)]
    pub offset_reset: OffsetReset,
}

impl KafkaLag {
    /// What the Kafka client measures for this signal.
    pub fn query(&self) -> LagQuery {
        LagQuery {
            group: self.group.clone(),
            topic: self.topic.clone(),
            offset_reset: self.offset_reset,
        }
    }
}

impl Signal for KafkaLag {
    fn source(&self) -> &'static str {
        "kafka"
    }

    fn needs(&self) -> super::Need {
        super::Need::Kafka
    }

    fn dependency(&self) -> Option<String> {
        Some("kafka".to_owned())
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        Box::pin(async move {
            let source = sources.kafka.as_ref().ok_or(SignalError::NotConfigured(
                "no Kafka configured: set KAFKA_BOOTSTRAP_SERVERS",
            ))?;
            // The client bounds each request by KAFKA_TIMEOUT; this bounds the whole.
            let after = sources.timeout * 3;
            match tokio::time::timeout(after, source.collect_lags(&self.query())).await {
                Ok(lags) => Ok(lags?.iter().map(TopicLag::series).collect()),
                Err(_) => Err(SignalError::Timeout {
                    who: Some("Kafka"),
                    after,
                }),
            }
        })
    }
}

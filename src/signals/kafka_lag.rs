//! `kafka_lag`: a consumer group's lag, Σ(latest − committed) over its partitions, per
//! topic, read through the shared Kafka client. The series are labelled `group`, `topic` and
//! `partitions`; per-partition detail and stalled flags go to `/status`.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Collection, Signal, SignalError, Sources};
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
            let mut one = Self::collect_batch(&[self], sources).await;
            one.pop()
                .unwrap_or_else(|| Err(SignalError::Task("no collection".to_owned())))
        })
    }

    /// Every group of the tick in one measurement: one Metadata request and one ListOffsets
    /// per broker for all of them, one OffsetFetch per group, all in flight at once.
    fn collect_batch<'a>(batch: &'a [&'a Self], sources: &'a Sources) -> BoxFuture<'a, Vec<Collection>> {
        Box::pin(async move {
            let Some(source) = sources.kafka.as_ref() else {
                let why = "no Kafka configured: set KAFKA_BOOTSTRAP_SERVERS";
                return batch
                    .iter()
                    .map(|_| Err(SignalError::NotConfigured(why)))
                    .collect();
            };
            let queries: Vec<LagQuery> = batch.iter().map(|s| s.query()).collect();
            // The client bounds each request by KAFKA_TIMEOUT; this bounds the whole.
            let after = sources.timeout * 3;
            match tokio::time::timeout(after, source.collect_many(&queries)).await {
                Ok(lags) => lags
                    .into_iter()
                    .map(|lags| Ok(lags?.iter().map(TopicLag::series).collect()))
                    .collect(),
                Err(_) => batch
                    .iter()
                    .map(|_| {
                        Err(SignalError::Timeout {
                            who: Some("Kafka"),
                            after,
                        })
                    })
                    .collect(),
            }
        })
    }
}

//! Pure lag arithmetic and stall tracking: no I/O, so the rules are tested without a broker.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use super::OffsetReset;
use crate::core::series::Series;

/// A group is stalled when it has lag and its committed offsets were the same in this many
/// consecutive collections (this one included).
pub const STALL_COLLECTIONS: usize = 3;

/// One partition of one topic, as the last collection saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub partition: i32,
    /// The group's committed offset; `None` when it has none for this partition.
    pub committed: Option<i64>,
    /// The end offset (the offset the next message will get).
    pub latest: i64,
    /// The log start offset, read only for an uncommitted partition with `offset_reset:
    /// earliest`.
    pub log_start: Option<i64>,
    pub lag: i64,
}

/// One (group, topic): the value of one `kafka_lag` series and its per-partition detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicLag {
    pub group: String,
    pub topic: String,
    /// Σ of the partitions' lag.
    pub lag: i64,
    /// Lag > 0 and the committed offsets did not move over the last [`STALL_COLLECTIONS`]
    /// collections.
    pub stalled: bool,
    pub partitions: Vec<PartitionLag>,
}

impl TopicLag {
    /// The series of this (group, topic); `partitions` is what `scale.per_lag` caps at.
    pub fn series(&self) -> Series {
        let labels = BTreeMap::from([
            ("group".to_owned(), self.group.clone()),
            ("topic".to_owned(), self.topic.clone()),
            ("partitions".to_owned(), self.partitions.len().to_string()),
        ]);
        Series {
            labels,
            value: self.lag as f64,
        }
    }
}

/// `latest − committed`; without a commit, what the group would do on start: `latest` skips
/// to the end (0), `earliest` reads everything from the log start. Never negative (a commit
/// past the end, after a topic was recreated, counts as caught up).
pub fn partition_lag(committed: Option<i64>, latest: i64, log_start: Option<i64>, reset: OffsetReset) -> i64 {
    let lag = match (committed, reset) {
        // Saturating: offsets come from a broker, and one near i64::MAX (or a negative
        // sentinel) must not overflow.
        (Some(committed), _) => latest.saturating_sub(committed),
        (None, OffsetReset::Latest) => 0,
        (None, OffsetReset::Earliest) => latest.saturating_sub(log_start.unwrap_or(0)),
    };
    lag.max(0)
}

/// One collection's committed offsets of one topic, per partition.
type Committed = Vec<(i32, Option<i64>)>;

/// The committed offsets of the last collections per (spec, topic): each spec is collected
/// once per tick, so two rules measuring one group differently do not double its pace.
#[derive(Debug, Default)]
pub struct StallTracker {
    history: HashMap<(String, String), VecDeque<Committed>>,
}

impl StallTracker {
    /// Records this collection's committed offsets and sets `stalled`.
    pub fn observe(&mut self, spec: &str, lag: &mut TopicLag) {
        let offsets: Committed = lag
            .partitions
            .iter()
            .map(|p| (p.partition, p.committed))
            .collect();
        let seen = self
            .history
            .entry((spec.to_owned(), lag.topic.clone()))
            .or_default();
        seen.push_back(offsets);
        while seen.len() > STALL_COLLECTIONS {
            seen.pop_front();
        }
        let unchanged = seen.len() == STALL_COLLECTIONS && seen.iter().all(|o| *o == seen[0]);
        lag.stalled = lag.lag > 0 && unchanged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_of_a_partition() {
        assert_eq!(partition_lag(Some(40), 100, None, OffsetReset::Latest), 60);
        assert_eq!(partition_lag(None, 100, None, OffsetReset::Latest), 0);
        assert_eq!(partition_lag(None, 100, Some(30), OffsetReset::Earliest), 70);
        assert_eq!(partition_lag(Some(120), 100, None, OffsetReset::Earliest), 0);
    }

    fn topic(committed: i64, lag: i64) -> TopicLag {
        TopicLag {
            group: "g".into(),
            topic: "t".into(),
            lag,
            stalled: false,
            partitions: vec![PartitionLag {
                partition: 0,
                committed: Some(committed),
                latest: committed + lag,
                log_start: None,
                lag,
            }],
        }
    }

    #[test]
    fn offsets_at_the_ends_of_i64_saturate() {
        assert_eq!(
            partition_lag(Some(-1001), i64::MAX, None, OffsetReset::Latest),
            i64::MAX
        );
        assert_eq!(
            partition_lag(None, i64::MAX, Some(i64::MIN), OffsetReset::Earliest),
            i64::MAX
        );
        assert_eq!(
            partition_lag(Some(i64::MAX), i64::MIN, None, OffsetReset::Latest),
            0
        );
    }

    #[test]
    fn stalled_after_three_unmoved_collections_with_lag() {
        let mut tracker = StallTracker::default();
        let stalled: Vec<bool> = [(10, 5), (10, 6), (10, 7), (11, 7), (11, 0), (11, 0)]
            .into_iter()
            .map(|(c, l)| {
                let mut t = topic(c, l);
                tracker.observe("g", &mut t);
                t.stalled
            })
            .collect();
        assert_eq!(stalled, [false, false, true, false, false, false]);
    }
}

//! What a signal collection produces: series with labels, and readings that are either
//! series or "unknown" with the reason. A signal that could not be read is never 0.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// One observed time series of a signal: its labels (the pod, the partition, the path…)
/// and its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Series {
    pub fn single(value: f64) -> Self {
        Series {
            labels: BTreeMap::new(),
            value,
        }
    }
}

/// What one collection of a signal produced, and when (time since the engine's epoch).
/// An `Err` is "unknown" with the reason: a signal that could not be read is never 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub at: Duration,
    pub result: Result<Vec<Series>, Unknown>,
}

/// Why a reading is unknown, as decisions and `/status` show it. The collector's typed error
/// was counted by kind where it happened; the engine needs only the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unknown(pub String);

impl From<String> for Unknown {
    fn from(reason: String) -> Self {
        Unknown(reason)
    }
}

//! `memory_oom_kills`: the `oom_kill` counter of a cgroup v2 `memory.events` file, as the
//! increase since the previous sample. A container's OOM kill restarts it before any pod
//! watch shows `OOMKilled` for a process that is not PID 1 (a validator's helper, a forked
//! worker); the counter sees every kill in the cgroup and below it (the file is hierarchical).
//!
//! The counter is cumulative, so the collector remembers the last value per file:
//! - first sample of a file: the increase is 0 (nothing happened since we started
//!   watching; kills from before the automaton started are not acted on again);
//! - the counter went down: the cgroup was recreated (container restart), so everything it
//!   counts now is new, like Prometheus' `increase()` across a counter reset.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Signal, SignalError, Sources};
use crate::core::series::Series;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryOomKills {
    /// A cgroup v2 `memory.events` file; the automaton's own cgroup by default.
    #[serde(default = "default_events_path")]
    pub path: String,
}

fn default_events_path() -> String {
    "/sys/fs/cgroup/memory.events".to_owned()
}

impl Signal for MemoryOomKills {
    fn source(&self) -> &'static str {
        "cgroup"
    }

    fn needs(&self) -> super::Need {
        super::Need::Path(self.path.clone())
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        let (path, kills) = (self.path.clone(), sources.oom_kills.clone());
        Box::pin(sources.blocking(move || kills.sample(&path)))
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum EventsError {
    #[error("read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: line `{line}` is not `KEY VALUE` with an unsigned VALUE")]
    Malformed { path: String, line: String },
    #[error("{path}: no `oom_kill` entry (is this a cgroup v2 memory.events file?)")]
    NoOomKill { path: String },
}

/// The `oom_kill` value of a flat-keyed `memory.events` text. Entries are found by key, not
/// position: newer kernels add `oom_group_kill` and `sock_throttled`.
pub fn parse_oom_kill(path: &str, text: &str) -> Result<u64, EventsError> {
    let mut oom_kill = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let malformed = || EventsError::Malformed {
            path: path.to_owned(),
            line: line.to_owned(),
        };
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(malformed());
        };
        let value: u64 = value.parse().map_err(|_| malformed())?;
        if key == "oom_kill" {
            oom_kill = Some(value);
        }
    }
    oom_kill.ok_or_else(|| EventsError::NoOomKill {
        path: path.to_owned(),
    })
}

/// Remembers the last `oom_kill` value of each file between ticks.
#[derive(Debug, Default, Clone)]
pub struct OomKills {
    last: Arc<Mutex<HashMap<String, u64>>>,
}

impl OomKills {
    /// Reads `path` and returns the kills since the previous sample of it.
    pub fn sample(&self, path: &str) -> Result<Vec<Series>, SignalError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SignalError::Io(
                EventsError::Read {
                    path: path.to_owned(),
                    reason: e.to_string(),
                }
                .to_string(),
            )
        })?;
        let now = parse_oom_kill(path, &text).map_err(|e| SignalError::Parse(e.to_string()))?;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let increase = match last.insert(path.to_owned(), now) {
            None => 0,
            Some(before) if now >= before => now - before,
            Some(_) => now,
        };
        let mut series = Series::single(increase as f64);
        series.labels.insert("path".to_owned(), path.to_owned());
        series.labels.insert("oom_kill_total".to_owned(), now.to_string());
        Ok(vec![series])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh cgroup on a kernel with `oom_group_kill` (the kernel docs' entry order).
    const FRESH: &str = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n";

    #[test]
    fn finds_oom_kill_by_key_and_rejects_what_is_not_memory_events() {
        assert_eq!(parse_oom_kill("f", FRESH), Ok(0));
        assert_eq!(
            parse_oom_kill("f", "oom_kill 7\nlow 3\nsock_throttled 1\n"),
            Ok(7)
        );
        assert!(matches!(
            parse_oom_kill("f", "low 0\nhigh 0\n"),
            Err(EventsError::NoOomKill { .. })
        ));
        for bad in [
            "oom_kill x",
            "oom_kill -1",
            "oom_kill",
            "oom_kill 1 2",
            "some avg10=0.00 avg60=0.00",
        ] {
            assert!(
                matches!(parse_oom_kill("f", bad), Err(EventsError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reports_the_increase_since_the_last_sample_and_handles_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.events");
        let path = file.to_str().unwrap();
        let kills = OomKills::default();
        let write =
            |n: u64| std::fs::write(&file, format!("low 0\nhigh 0\nmax 4\noom {n}\noom_kill {n}\n")).unwrap();
        write(3);
        let value = |k: &OomKills| k.sample(path).unwrap()[0].value;
        assert_eq!(value(&kills), 0.0, "kills before the first sample are history");
        assert_eq!(value(&kills), 0.0);
        write(5);
        assert_eq!(value(&kills), 2.0);
        assert_eq!(value(&kills), 0.0);
        write(1);
        assert_eq!(value(&kills), 1.0, "a recreated cgroup counts from zero");
        std::fs::remove_file(&file).unwrap();
        let err = kills.sample(path).unwrap_err().to_string();
        assert!(
            err.contains("memory.events") && err.contains("No such file"),
            "{err}"
        );
    }
}

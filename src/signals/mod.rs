//! Signals: what the automaton observes. Each kind is one variant of [`SignalSpec`] (as
//! written in a rule file) and, where it is collected by this build, one file with its
//! collector. Collection is I/O; everything after it (rules, guard) is pure.

pub mod cgroup;
pub mod collect;
pub mod disk;
pub mod pods;
pub mod psi;
pub mod selector;
pub mod solana;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::clients::kafka::OffsetReset;
pub use crate::clients::pg::PostgresMetric;
use crate::core::values::Dur;

/// The signal of a rule: exactly one kind, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalSpec {
    /// Consumer-group lag: Σ(latest − committed) over the group's partitions.
    KafkaLag(KafkaLag),
    /// PostgreSQL connection usage and idle connections.
    Postgres(Postgres),
    /// OOM kills (a container's last termination `OOMKilled`) within a window.
    PodOomKilled(PodOomKilled),
    /// Containers waiting in `CrashLoopBackOff`.
    PodCrashLoop(PodSelector),
    /// Container restarts within a window.
    PodRestarts(PodRestarts),
    /// Percent used of the filesystem holding `path` (as `df` computes it).
    DiskUsage(DiskUsage),
    /// Weighted PSI memory pressure, `0.7*some.avg10 + 0.3*some.avg60` by default.
    MemoryPressure(MemoryPressure),
    /// OOM kills in a cgroup since the previous sample (`oom_kill` of `memory.events`).
    MemoryOomKills(MemoryOomKills),
    /// Solana slot lag: reference slot − local slot.
    SlotLag(SlotLag),
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// Which number to read from `pg_stat_activity`.
    pub metric: PostgresMetric,
    /// With `idle_connections`: count only connections idle at least this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_for: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSelector {
    /// Label selector of the pods to watch, e.g. `app=email-service`.
    pub selector: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodOomKilled {
    /// Label selector of the pods to watch, e.g. `app=email-service`.
    pub selector: String,
    /// Kills first seen within this window count (default 5m, at most 1h). The rule's
    /// cooldown must be at least this long, so one kill is acted on once.
    #[serde(default = "default_oom_window")]
    pub window: Dur,
}

fn default_oom_window() -> Dur {
    Dur(Duration::from_secs(300))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodRestarts {
    /// Label selector of the pods to watch.
    pub selector: String,
    /// Restarts are counted within this sliding window.
    pub window: Dur,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskUsage {
    /// Any path on the filesystem to measure.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPressure {
    /// A PSI file: `/proc/pressure/memory` or a cgroup v2 `memory.pressure`.
    #[serde(default = "default_psi_path")]
    pub path: String,
    /// Weights of the `some` averages; the seed's `0.7*avg10 + 0.3*avg60` by default.
    #[serde(default)]
    pub weights: PsiWeights,
}

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

fn default_psi_path() -> String {
    "/proc/pressure/memory".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PsiWeights {
    #[serde(default)]
    pub avg10: f64,
    #[serde(default)]
    pub avg60: f64,
    #[serde(default)]
    pub avg300: f64,
}

impl Default for PsiWeights {
    fn default() -> Self {
        PsiWeights {
            avg10: 0.7,
            avg60: 0.3,
            avg300: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotLag {
    /// The validator's JSON-RPC URL.
    pub rpc: String,
    /// Reference RPC URLs; the highest slot among them wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference: Vec<String>,
    /// Commitment level of `getSlot`.
    #[serde(default = "default_commitment")]
    pub commitment: String,
}

fn default_commitment() -> String {
    "processed".to_owned()
}

impl KafkaLag {
    /// What the Kafka client measures for this signal.
    pub fn query(&self) -> crate::clients::kafka::LagQuery {
        crate::clients::kafka::LagQuery {
            group: self.group.clone(),
            topic: self.topic.clone(),
            offset_reset: self.offset_reset,
        }
    }
}

impl Postgres {
    /// What the PostgreSQL client reads for this signal.
    pub fn query(&self) -> crate::clients::pg::ActivityQuery {
        crate::clients::pg::ActivityQuery {
            metric: self.metric,
            idle_for: self.idle_for.map(|d| d.0),
        }
    }
}

impl SignalSpec {
    /// The kind's name, as written in rule files and timelines.
    pub fn kind(&self) -> &'static str {
        match self {
            SignalSpec::KafkaLag(_) => "kafka_lag",
            SignalSpec::Postgres(_) => "postgres",
            SignalSpec::PodOomKilled(_) => "pod_oom_killed",
            SignalSpec::PodCrashLoop(_) => "pod_crash_loop",
            SignalSpec::PodRestarts(_) => "pod_restarts",
            SignalSpec::DiskUsage(_) => "disk_usage",
            SignalSpec::MemoryPressure(_) => "memory_pressure",
            SignalSpec::MemoryOomKills(_) => "memory_oom_kills",
            SignalSpec::SlotLag(_) => "slot_lag",
        }
    }

    /// The dependency behind the signal: the `source` label of `signal_source_up`.
    pub fn source(&self) -> &'static str {
        match self {
            SignalSpec::KafkaLag(_) => "kafka",
            SignalSpec::Postgres(_) => "postgres",
            SignalSpec::PodOomKilled(_) | SignalSpec::PodCrashLoop(_) | SignalSpec::PodRestarts(_) => {
                "kubernetes"
            }
            SignalSpec::DiskUsage(_) => "disk",
            SignalSpec::MemoryPressure(_) => "psi",
            SignalSpec::MemoryOomKills(_) => "cgroup",
            SignalSpec::SlotLag(_) => "solana_rpc",
        }
    }

    /// The external dependency the collection goes through: the key of its circuit breaker.
    /// Local files (disk, PSI, cgroup) have none.
    pub fn dependency(&self) -> Option<String> {
        match self {
            SignalSpec::KafkaLag(_) => Some("kafka".to_owned()),
            SignalSpec::Postgres(_) => Some("postgres".to_owned()),
            SignalSpec::PodOomKilled(_) | SignalSpec::PodCrashLoop(_) | SignalSpec::PodRestarts(_) => {
                Some("kubernetes".to_owned())
            }
            SignalSpec::SlotLag(s) => Some(format!("http/{}", crate::core::url::host_port(&s.rpc))),
            SignalSpec::DiskUsage(_) | SignalSpec::MemoryPressure(_) | SignalSpec::MemoryOomKills(_) => None,
        }
    }

    /// Whether series of this signal carry an `owner` label (the workload of the pod), so a
    /// rule may use `target: owner`.
    pub fn is_pod_signal(&self) -> bool {
        self.source() == "kubernetes"
    }

    /// Checks of the signal's own parameters (a pod `selector` must parse); every problem is
    /// returned.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let selector = match self {
            SignalSpec::PodOomKilled(p) => {
                if p.window.0.is_zero() || p.window.0 > pods::KILL_LOG_KEEP {
                    errors.push(format!(
                        "pod_oom_killed `window` must be above 0 and at most 1h, found {}",
                        p.window
                    ));
                }
                &p.selector
            }
            SignalSpec::PodCrashLoop(p) => &p.selector,
            SignalSpec::PodRestarts(p) => &p.selector,
            SignalSpec::SlotLag(s) => return solana::validate(s),
            _ => return errors,
        };
        if let Err(e) = selector::Selector::parse(selector) {
            errors.push(format!("{} `selector`: {e}", self.kind()));
        }
        errors
    }

    /// Checks that need the rule around the signal.
    pub fn validate_in_rule(&self, cooldown: Duration) -> Vec<String> {
        let mut errors = Vec::new();
        if let SignalSpec::MemoryPressure(m) = self {
            let w = m.weights;
            if [w.avg10, w.avg60, w.avg300]
                .iter()
                .any(|x| !x.is_finite() || *x < 0.0)
            {
                errors.push("memory_pressure `weights` must be non-negative numbers".to_owned());
            }
        }
        if let SignalSpec::PodOomKilled(p) = self {
            if cooldown < p.window.0 {
                errors.push(format!(
                    "`cooldown` ({}) is shorter than the pod_oom_killed `window` ({}): one kill would be acted on twice",
                    Dur(cooldown),
                    p.window
                ));
            }
        }
        errors
    }
}

impl crate::core::rule::SignalKind for SignalSpec {
    fn kind(&self) -> &'static str {
        SignalSpec::kind(self)
    }

    fn has_owner(&self) -> bool {
        self.is_pod_signal()
    }
}

//! What the daemon knows about itself, shared with the HTTP server: `/status` renders it,
//! `/healthz` and `/readyz` judge it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::core::decision::Decision;
use crate::rules::Engine;

/// How many decisions `/status` keeps.
pub const RECENT: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct RuleInfo {
    pub name: String,
    pub description: String,
    pub priority: crate::rules::Priority,
    pub signal: &'static str,
    pub action: &'static str,
    pub file: String,
    pub line: usize,
    pub for_seconds: u64,
    pub cooldown_seconds: u64,
    pub dry_run: bool,
    pub targets: Vec<TargetInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub target: String,
    pub state: crate::core::decision::State,
    pub value: Option<f64>,
    /// RFC 3339: when the condition first held in the current episode.
    pub active_since: Option<String>,
    /// RFC 3339: this rule's last action on the target.
    pub last_action: Option<String>,
    /// RFC 3339: when the action under verification was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifying_since: Option<String>,
    /// Why the (rule, target) is quarantined, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
}

/// The Kubernetes side of readiness.
#[derive(Debug, Clone, Serialize)]
pub struct KubeInfo {
    /// The Lease campaign's task is alive (this replica leads or stands by).
    pub lease_running: bool,
    /// WATCH_NAMESPACES as in force: `*` or the namespaces, comma-separated.
    pub watch_namespaces: String,
}

/// The guard state kept in the cluster (with Kubernetes only).
#[derive(Debug, Clone, Serialize)]
pub struct GuardStateInfo {
    /// The ConfigMap that holds it.
    pub object: String,
    /// Read and reconciled since this replica became leader (a follower: false).
    pub loaded: bool,
    /// Actions recorded without an outcome yet.
    pub open_intents: usize,
    /// Why it cannot be read or written now: no action is taken until it can.
    pub error: Option<String>,
}

/// A recent decision as `/status` shows it: the decision line and its wall-clock time.
#[derive(Debug, Clone, Serialize)]
pub struct Recent {
    /// RFC 3339.
    pub time: String,
    #[serde(flatten)]
    pub decision: Decision,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    pub source: &'static str,
    pub kind: &'static str,
    pub params: BTreeMap<String, String>,
    pub up: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadInfo {
    pub result: Option<&'static str>,
    pub at: Option<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetInfo {
    pub limit: u32,
    pub window_seconds: u64,
    pub left: u32,
}

#[derive(Debug, Serialize)]
pub struct Status {
    #[serde(skip)]
    pub started: Instant,
    /// The wall-clock time of the engine's time zero: `/status` shows times, not seconds.
    #[serde(skip)]
    pub epoch_wall: SystemTime,
    /// The loop's last sign of life: the end of a tick, or the start or end of an action.
    #[serde(skip)]
    pub last_beat: Option<Instant>,
    /// ACTION_TIMEOUT: the longest a beat can be late because one action is running.
    #[serde(skip)]
    pub action_timeout: Duration,
    #[serde(skip)]
    pub check_interval: Duration,
    pub version: &'static str,
    pub dry_run: bool,
    /// The automaton's own namespace: the one of a rule's target that names none.
    pub namespace: String,
    pub leader: bool,
    pub rules_loaded: bool,
    pub ticks: u64,
    pub rules: Vec<RuleInfo>,
    /// Valid rules not evaluated because a dependency they need is not configured here.
    pub disabled_rules: Vec<crate::rules::Disabled>,
    pub sources: BTreeMap<String, SourceInfo>,
    /// Sources that answered at least once since the start.
    #[serde(skip)]
    pub answered: std::collections::BTreeSet<String>,
    pub budget: BudgetInfo,
    pub reload: ReloadInfo,
    /// Per-partition consumer lag and stalled flags of the last Kafka collections.
    pub kafka: serde_json::Value,
    /// Present when a Kubernetes API is configured: what readiness needs of it.
    pub kubernetes: Option<KubeInfo>,
    pub guard_state: Option<GuardStateInfo>,
    /// What Alertmanager pushed (`POST /alertmanager`), firing or recently over.
    pub alerts: Vec<crate::signals::alerts::Alert>,
    /// The circuit breaker of every dependency used so far.
    pub circuits: BTreeMap<String, crate::core::guard::breaker::BreakerInfo>,
    pub recent_decisions: VecDeque<Recent>,
}

impl Status {
    pub fn new(check_interval: Duration, dry_run: bool) -> Self {
        Status {
            started: Instant::now(),
            epoch_wall: SystemTime::now(),
            last_beat: None,
            action_timeout: Duration::from_secs(30),
            check_interval,
            version: env!("CARGO_PKG_VERSION"),
            dry_run,
            namespace: "default".to_owned(),
            leader: true,
            rules_loaded: false,
            ticks: 0,
            rules: Vec::new(),
            disabled_rules: Vec::new(),
            sources: BTreeMap::new(),
            answered: Default::default(),
            budget: BudgetInfo {
                limit: 0,
                window_seconds: 0,
                left: 0,
            },
            reload: ReloadInfo::default(),
            kafka: serde_json::Value::Null,
            circuits: BTreeMap::new(),
            kubernetes: None,
            guard_state: None,
            alerts: Vec::new(),
            recent_decisions: VecDeque::with_capacity(RECENT),
        }
    }

    /// Alive while the loop beat within 3 × CHECK_INTERVAL + ACTION_TIMEOUT (counting from
    /// start before the first beat): the loop beats at every tick and around every action,
    /// and an action is cut at ACTION_TIMEOUT, so a slow action never gets the pod killed
    /// mid-write, while a loop that is stuck still is.
    pub fn healthy(&self, now: Instant) -> bool {
        let last = self.last_beat.unwrap_or(self.started);
        now.duration_since(last) < self.check_interval * 3 + self.action_timeout
    }

    /// Reasons not to be ready; empty when ready. Ready means "can do its job": rules
    /// loaded, the loop running (one evaluation done), and, when a Kubernetes API is
    /// configured, the API answering (its breaker closed, the pod watch listing) and the
    /// Lease campaign running (leading or standing by). A signal source that does not answer
    /// never makes the pod unready: it is listed by [`Status::degraded`], and the engine
    /// already refuses to act on its data; an unready pod would only leave its Service (and
    /// Prometheus' scrape, exactly when the metrics matter) and stall rollouts. Nor is the
    /// pod ever unhealthy for a dependency's outage: liveness follows the loop alone.
    pub fn not_ready(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.rules_loaded {
            reasons.push("no valid rule set loaded".to_owned());
        }
        if self.ticks == 0 {
            reasons.push("no evaluation has completed yet".to_owned());
        }
        let Some(kube) = &self.kubernetes else {
            return reasons;
        };
        if let Some(circuit) = self
            .circuits
            .get("kubernetes")
            .filter(|c| c.state != crate::core::guard::breaker::CircuitState::Closed)
        {
            reasons.push(format!(
                "the Kubernetes API is unreachable (circuit {:?}, last error: {}): no action is attempted",
                circuit.state,
                circuit.last_error.as_deref().unwrap_or("unknown")
            ));
        }
        for (key, s) in self
            .sources
            .iter()
            .filter(|(_, s)| s.source == "kubernetes" && !s.up)
        {
            reasons.push(format!(
                "the Kubernetes API is unreachable: source {key}: {}",
                s.error.as_deref().unwrap_or("unknown")
            ));
        }
        if !kube.lease_running {
            reasons.push(
                "the Lease campaign has stopped: this replica can neither lead nor stand by".to_owned(),
            );
        }
        reasons
    }

    /// Signal sources that do not answer (never yet, or not any more), with the reason.
    pub fn degraded(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|(_, s)| !s.up)
            .map(|(key, s)| {
                let state = if self.answered.contains(key) {
                    "is down"
                } else {
                    "has not answered yet"
                };
                format!(
                    "source {} ({key}) {state}: {}",
                    s.source,
                    s.error.as_deref().unwrap_or("unknown")
                )
            })
            .collect()
    }

    /// Takes this tick's source states: all of them, or (a pushed evaluation) only those
    /// collected, keeping the others.
    pub fn set_sources(&mut self, sources: BTreeMap<String, SourceInfo>, complete: bool) {
        for (key, s) in &sources {
            if s.up {
                self.answered.insert(key.clone());
            }
        }
        if complete {
            self.sources = sources;
        } else {
            self.sources.extend(sources);
        }
    }

    pub fn push_decision(&mut self, d: &Decision) {
        if self.recent_decisions.len() == RECENT {
            self.recent_decisions.pop_front();
        }
        self.recent_decisions.push_back(Recent {
            time: self.wall(d.at),
            decision: d.clone(),
        });
    }

    /// The wall-clock time of an engine time, in RFC 3339.
    pub fn wall(&self, at: Duration) -> String {
        humantime::format_rfc3339_seconds(self.epoch_wall + at).to_string()
    }

    /// Refreshes the rule and target tables from the engine.
    pub fn refresh(&mut self, engine: &mut Engine, now: Duration) {
        self.rules = engine
            .views()
            .map(|(rule, targets)| RuleInfo {
                name: rule.name.to_string(),
                description: rule.spec.description.clone(),
                priority: rule.spec.priority,
                signal: rule.spec.signal.kind(),
                action: rule.spec.action.kind(),
                file: rule.file.display().to_string(),
                line: rule.line,
                for_seconds: rule.hold_for.as_secs(),
                cooldown_seconds: rule.cooldown.as_secs(),
                dry_run: rule.spec.dry_run,
                targets: targets
                    .into_iter()
                    .map(|(target, v)| TargetInfo {
                        target: target.to_owned(),
                        state: v.state,
                        value: v.value,
                        active_since: v.active_since.map(|d| self.wall(d)),
                        last_action: v.last_action.map(|d| self.wall(d)),
                        verifying_since: v.verifying_since.map(|d| self.wall(d)),
                        quarantined: v
                            .quarantined
                            .map(|(since, why)| format!("since {}: {why}", self.wall(since))),
                    })
                    .collect(),
            })
            .collect();
        let (limit, window) = (engine.budget().limit(), engine.budget().window());
        self.budget = BudgetInfo {
            limit,
            window_seconds: window.as_secs(),
            left: engine.budget_left(now),
        };
    }
}

/// RFC 3339 wall-clock time, for humans reading `/status`.
pub fn wall_clock() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

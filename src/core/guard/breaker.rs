//! Circuit breakers, one per external dependency (the Kafka cluster, the PostgreSQL server,
//! the Kubernetes API, each HTTP endpoint): after `failures` consecutive failures the
//! dependency is left alone for `cool_off` (open); then one probe is let through
//! (half-open): its success closes the breaker, its failure opens it again. While open,
//! signals from the dependency are unknown and actions through it are skipped, both with
//! the reason `circuit_open`, so a dead dependency costs nothing and nobody acts on it.
//!
//! Why not a crate: the ones that exist (failsafe) hide the half-open state and read the
//! clock themselves; here the state is exported (`automaton_circuit_breaker_state`, `/status`), the
//! engine skips actions on it, and time is passed in so tests are exact. The machine is
//! three states and two counters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    /// The value of `automaton_circuit_breaker_state`: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long an open breaker waits before letting one probe through.
    pub cool_off: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            cool_off: Duration::from_secs(30),
        }
    }
}

/// One dependency's breaker. Times are durations since an epoch the owner chooses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Breaker {
    failures: u32,
    opened_at: Option<Duration>,
    /// When the half-open probe was let through; a probe whose outcome never arrives
    /// (its caller was cancelled) expires after a cool-off.
    probe_at: Option<Duration>,
    last_error: Option<String>,
}

impl Breaker {
    pub fn state(&self, now: Duration, s: &BreakerSettings) -> CircuitState {
        match self.opened_at {
            None => CircuitState::Closed,
            Some(at) if now.saturating_sub(at) >= s.cool_off => CircuitState::HalfOpen,
            Some(_) => CircuitState::Open,
        }
    }

    /// Whether a call may go now; `Err` says for how long the breaker stays open.
    pub fn admit(&mut self, now: Duration, s: &BreakerSettings) -> Result<(), Duration> {
        match self.state(now, s) {
            CircuitState::Closed => Ok(()),
            CircuitState::Open => {
                let at = self.opened_at.unwrap_or(now);
                Err((at + s.cool_off).saturating_sub(now))
            }
            CircuitState::HalfOpen => match self.probe_at {
                Some(p) if now.saturating_sub(p) < s.cool_off => Err(s.cool_off - now.saturating_sub(p)),
                _ => {
                    self.probe_at = Some(now);
                    Ok(())
                }
            },
        }
    }

    pub fn succeeded(&mut self) {
        *self = Breaker::default();
    }

    pub fn failed(&mut self, now: Duration, s: &BreakerSettings, error: &str) {
        self.last_error = Some(error.to_owned());
        self.probe_at = None;
        if self.opened_at.is_some() {
            // The half-open probe failed (or a call admitted before opening): open again.
            self.opened_at = Some(now);
            return;
        }
        self.failures += 1;
        if self.failures >= s.failures {
            self.opened_at = Some(now);
        }
    }
}

/// What `/status` shows of one breaker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerInfo {
    pub state: CircuitState,
    pub consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Seconds until an open breaker lets a probe through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_in_secs: Option<u64>,
}

/// A call refused because the dependency's breaker is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "circuit_open: {dependency} failed {failures} times in a row (last: {}); next probe in {}s",
    last_error.as_deref().unwrap_or("?"),
    probe_in.as_secs().max(1)
)]
pub struct CircuitOpen {
    pub dependency: String,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Until the next probe is let through.
    pub probe_in: Duration,
}

/// All breakers of the daemon, shared by collectors and executors.
#[derive(Debug)]
pub struct Breakers {
    settings: BreakerSettings,
    epoch: Instant,
    map: Mutex<BTreeMap<String, Breaker>>,
}

impl Breakers {
    pub fn new(settings: BreakerSettings) -> Self {
        Breakers {
            settings,
            epoch: Instant::now(),
            map: Mutex::default(),
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn with<T>(&self, dependency: &str, f: impl FnOnce(&mut Breaker, Duration) -> T) -> T {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let breaker = map.entry(dependency.to_owned()).or_default();
        f(breaker, self.now())
    }

    /// `Err` while the dependency's breaker is open; its text starts with `circuit_open`
    /// and says when the next probe goes.
    pub fn admit(&self, dependency: &str) -> Result<(), CircuitOpen> {
        let s = self.settings;
        self.with(dependency, |b, now| {
            b.admit(now, &s).map_err(|left| CircuitOpen {
                dependency: dependency.to_owned(),
                failures: b.failures.max(s.failures),
                last_error: b.last_error.clone(),
                probe_in: left,
            })
        })
    }

    /// Records the outcome of a call that [`Breakers::admit`] let through.
    pub fn record(&self, dependency: &str, outcome: Result<(), &str>) {
        let s = self.settings;
        self.with(dependency, |b, now| match outcome {
            Ok(()) => b.succeeded(),
            Err(e) => b.failed(now, &s, e),
        });
    }

    /// Dependencies an action must not be sent to now (open, not yet due for a probe).
    pub fn open(&self) -> BTreeSet<String> {
        let now = self.now();
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(_, b)| b.state(now, &self.settings) == CircuitState::Open)
            .map(|(d, _)| d.clone())
            .collect()
    }

    pub fn infos(&self) -> BTreeMap<String, BreakerInfo> {
        let now = self.now();
        let s = &self.settings;
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(d, b)| {
                let state = b.state(now, s);
                let probe_in_secs = (state == CircuitState::Open)
                    .then(|| {
                        b.opened_at
                            .map(|at| (at + s.cool_off).saturating_sub(now).as_secs())
                    })
                    .flatten();
                let info = BreakerInfo {
                    state,
                    consecutive_failures: b.failures,
                    last_error: b.last_error.clone(),
                    probe_in_secs,
                };
                (d.clone(), info)
            })
            .collect()
    }

    pub fn state(&self, dependency: &str) -> CircuitState {
        let s = self.settings;
        self.with(dependency, |b, now| b.state(now, &s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_open_half_open_and_one_probe() {
        let s = BreakerSettings {
            failures: 3,
            cool_off: Duration::from_secs(30),
        };
        let t = Duration::from_secs;
        let mut b = Breaker::default();
        for i in 0..2 {
            assert_eq!(b.admit(t(i), &s), Ok(()));
            b.failed(t(i), &s, "refused");
        }
        assert_eq!(b.state(t(2), &s), CircuitState::Closed);
        b.succeeded();
        for i in 0..3 {
            b.failed(t(10 + i), &s, "refused");
        }
        assert_eq!(b.state(t(12), &s), CircuitState::Open, "three in a row");
        assert_eq!(b.admit(t(20), &s), Err(t(22)));
        assert_eq!(b.state(t(42), &s), CircuitState::HalfOpen);
        assert_eq!(b.admit(t(42), &s), Ok(()), "the probe");
        assert!(b.admit(t(43), &s).is_err(), "one probe at a time");
        b.failed(t(44), &s, "refused");
        assert_eq!(
            b.state(t(44), &s),
            CircuitState::Open,
            "a failed probe opens again"
        );
        assert_eq!(b.state(t(74), &s), CircuitState::HalfOpen);
        assert_eq!(b.admit(t(74), &s), Ok(()));
        b.succeeded();
        assert_eq!(b.state(t(75), &s), CircuitState::Closed, "a good probe closes");
        assert_eq!(b.admit(t(75), &s), Ok(()));
    }

    #[test]
    fn a_probe_that_never_reports_expires() {
        let s = BreakerSettings {
            failures: 1,
            cool_off: Duration::from_secs(10),
        };
        let t = Duration::from_secs;
        let mut b = Breaker::default();
        b.failed(t(0), &s, "timeout");
        assert_eq!(b.admit(t(10), &s), Ok(()));
        assert!(b.admit(t(15), &s).is_err());
        assert_eq!(b.admit(t(20), &s), Ok(()), "the lost probe is replaced");
    }

    #[test]
    fn the_registry_names_the_dependency_in_the_reason() {
        let breakers = Breakers::new(BreakerSettings {
            failures: 2,
            cool_off: Duration::from_secs(60),
        });
        breakers.record("kafka", Err("broker down"));
        assert!(breakers.admit("kafka").is_ok());
        breakers.record("kafka", Err("broker down"));
        let why = breakers.admit("kafka").unwrap_err().to_string();
        assert!(
            why.starts_with("circuit_open: kafka failed 2 times in a row (last: broker down)"),
            "{why}"
        );
        assert_eq!(breakers.open(), BTreeSet::from(["kafka".to_owned()]));
        assert_eq!(breakers.infos()["kafka"].state, CircuitState::Open);
        assert!(breakers.admit("postgres").is_ok());
    }
}

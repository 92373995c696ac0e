//! The per-(rule, target) state machine: `inactive → pending → firing`, or `unknown` when
//! there is no trustworthy data. Small and explicit on purpose (Prometheus' alerting
//! states): time is passed in, so it is exact under test and in `simulate`.

use std::time::Duration;

use super::decision::State;
use super::values::Condition;

/// What one evaluation observed for a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// No trustworthy data (collection failed, stale, missing).
    Unknown,
    /// The source answered, but with no series for this target (e.g. the pod is gone).
    Absent,
    Value(f64),
}

/// The conditions of a rule.
#[derive(Debug, Clone, Copy)]
pub struct Conditions {
    pub when: Condition,
    pub clear: Option<Condition>,
    pub hold_for: Duration,
}

/// State of one (rule, target).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetState {
    pub state: Option<State>,
    /// When the condition first held in the current episode (for `for` and latency).
    pub active_since: Option<Duration>,
    /// Last real action on this target by this rule (drives the cooldown).
    pub last_act: Option<Duration>,
    /// Last would-be action in dry-run: a dry run shows the cadence a live run would have.
    pub last_dry_act: Option<Duration>,
    /// The last value seen.
    pub value: Option<f64>,
    /// The last action, while its `verify` window is open.
    pub verifying: Option<Box<super::verify::Verifying>>,
    /// Set when a verification failed: no more actions until cleared.
    pub quarantine: Option<super::verify::Quarantine>,
}

/// What operators see of a (rule, target): its state and the guard's facts, in engine
/// time, without the state machine's internals.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetView {
    pub state: State,
    pub value: Option<f64>,
    /// When the condition first held in the current episode.
    pub active_since: Option<Duration>,
    pub last_action: Option<Duration>,
    /// When the action under verification was taken.
    pub verifying_since: Option<Duration>,
    /// Since when, and why, the (rule, target) is quarantined.
    pub quarantined: Option<(Duration, String)>,
}

impl TargetState {
    /// What operators see of it.
    pub fn view(&self) -> TargetView {
        TargetView {
            state: self.state(),
            value: self.value,
            active_since: self.active_since,
            last_action: self.last_act,
            verifying_since: self.verifying.as_ref().map(|v| v.acted_at),
            quarantined: self.quarantine.as_ref().map(|q| (q.since, q.why.clone())),
        }
    }

    pub fn state(&self) -> State {
        self.state.unwrap_or(State::Inactive)
    }

    /// Advances the state machine. Unknown resets pending: the whole `for` must be observed
    /// again on good data. Firing with `clear` leaves only when `clear` holds.
    pub fn observe(&mut self, now: Duration, obs: Observation, c: &Conditions) -> State {
        let value = match obs {
            Observation::Unknown => {
                self.value = None;
                self.active_since = None;
                self.state = Some(State::Unknown);
                return State::Unknown;
            }
            Observation::Absent => None,
            Observation::Value(v) => Some(v),
        };
        self.value = value;
        let holds = value.is_some_and(|v| c.when.holds(v));
        let next = match (self.state(), holds) {
            (State::Firing, _) if c.clear.is_some() => {
                let cleared = value.is_none_or(|v| c.clear.is_some_and(|cl| cl.holds(v)));
                if cleared {
                    State::Inactive
                } else {
                    State::Firing
                }
            }
            (State::Firing, true) => State::Firing,
            (State::Pending, true) => {
                let since = self.active_since.unwrap_or(now);
                if now.saturating_sub(since) >= c.hold_for {
                    State::Firing
                } else {
                    State::Pending
                }
            }
            (_, true) => {
                self.active_since = Some(now);
                if c.hold_for.is_zero() {
                    State::Firing
                } else {
                    State::Pending
                }
            }
            (_, false) => State::Inactive,
        };
        if next == State::Inactive {
            self.active_since = None;
        }
        self.state = Some(next);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conds(when: &str, clear: Option<&str>, hold: u64) -> Conditions {
        Conditions {
            when: when.parse().unwrap(),
            clear: clear.map(|c| c.parse().unwrap()),
            hold_for: Duration::from_secs(hold),
        }
    }

    fn run(c: &Conditions, steps: &[(u64, Observation)]) -> Vec<State> {
        let mut st = TargetState::default();
        steps
            .iter()
            .map(|(t, o)| st.observe(Duration::from_secs(*t), *o, c))
            .collect()
    }

    use Observation::{Absent, Value};
    use State::{Firing, Inactive, Pending};

    #[test]
    fn pending_then_firing_after_for() {
        let c = conds("> 10", None, 60);
        let got = run(
            &c,
            &[
                (0, Value(11.0)),
                (30, Value(12.0)),
                (60, Value(11.0)),
                (75, Value(5.0)),
            ],
        );
        assert_eq!(got, vec![Pending, Pending, Firing, Inactive]);
    }

    #[test]
    fn zero_for_fires_at_once() {
        let c = conds("> 10", None, 0);
        assert_eq!(run(&c, &[(0, Value(11.0))]), vec![Firing]);
    }

    #[test]
    fn unknown_resets_pending() {
        let c = conds("> 10", None, 60);
        let got = run(
            &c,
            &[
                (0, Value(11.0)),
                (45, Observation::Unknown),
                (60, Value(11.0)),
                (105, Value(11.0)),
                (120, Value(11.0)),
            ],
        );
        assert_eq!(got, vec![Pending, State::Unknown, Pending, Pending, Firing]);
    }

    #[test]
    fn clear_gives_hysteresis() {
        let c = conds("> 15000", Some("< 5000"), 0);
        let got = run(
            &c,
            &[
                (0, Value(20000.0)),
                (15, Value(9000.0)),
                (30, Value(4000.0)),
                (45, Value(9000.0)),
            ],
        );
        assert_eq!(got, vec![Firing, Firing, Inactive, Inactive]);
    }

    #[test]
    fn absent_series_is_not_firing() {
        let c = conds("> 0", None, 0);
        assert_eq!(run(&c, &[(0, Value(1.0)), (15, Absent)]), vec![Firing, Inactive]);
    }
}

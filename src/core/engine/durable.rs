//! What of the engine's guard must outlive the process: each rule's last action on each
//! target (cooldowns), its rate-limit window, the global budget window, quarantines and
//! open verifications. The daemon keeps it in one cluster object and gives it back to the
//! engine at start and on becoming leader, so a restart, an OOM kill of the automaton or a
//! new leader allows no action the guard would not have allowed to the one process.
//!
//! Only what still binds is exported (a cooldown that has run out, a budget entry out of
//! its window are dropped), so the object stays small. Restoring merges: the later of two
//! last actions, the union of two windows, a quarantine or verification either side holds.
//! Both directions err on the side of acting less. Times are engine time in milliseconds
//! (the daemon's engine time is Unix time, runtime/clock.rs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::retired::Retired;
use super::{Engine, Targets};
use crate::core::decision::Decision;
use crate::core::guard::{Budget, RuleRate};
use crate::core::plan::Effect;
use crate::core::rule::{ActionKind, RateLimit, SignalKind};
use crate::core::state::TargetState;
use crate::core::target::qualify;
use crate::core::values::Dur;
use crate::core::verify::{Quarantine, Verifying};

/// The guard's lasting state, as kept in the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durable {
    /// Times of the live actions in the global budget's window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budget: Vec<u64>,
    /// By rule name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, DurableRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DurableRule {
    /// How long this state binds (ms): the rule's cooldown, or its longer rate-limit
    /// window. Kept so a process whose rule set lacks the rule still keeps its state that
    /// long (a reload may put it back).
    pub keep: u64,
    /// Times of the rule's live actions in its `rate_limit` window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate: Vec<u64>,
    /// By target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, DurableTarget>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DurableTarget {
    /// The last live action, while its cooldown runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_act: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<DurableQuarantine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying: Option<DurableVerifying>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurableQuarantine {
    pub since: u64,
    pub why: String,
}

/// An action whose `verify` window is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurableVerifying {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub acted_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acted_value: Option<f64>,
    pub done: Effect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Effect>,
}

impl Durable {
    /// Qualifies the targets of a state written before targets named their namespace
    /// (`deployment/api`, then in the automaton's own, `home`): an upgrade keeps every
    /// cooldown, quarantine and verification. When a qualified and an unqualified key name
    /// the same target, the qualified one (written later) stays.
    pub fn in_namespace(mut self, home: &str) -> Self {
        for rule in self.rules.values_mut() {
            let old = std::mem::take(&mut rule.targets);
            let (qualified, unqualified): (Vec<_>, Vec<_>) =
                old.into_iter().partition(|(t, _)| qualify(t, home) == *t);
            rule.targets.extend(qualified);
            for (target, state) in unqualified {
                rule.targets.entry(qualify(&target, home)).or_insert(state);
            }
        }
        self
    }

    /// Removes the marks of an `act` decision whose intent is not recorded yet. An engine
    /// decides a whole tick before the first action runs: written with an earlier action's
    /// intent, these marks would count an action a crash may never let happen.
    pub fn without(&mut self, d: &Decision) {
        let at = ms(d.at);
        if let Some(i) = self.budget.iter().rposition(|t| *t == at) {
            self.budget.remove(i);
        }
        let Some(rule) = self.rules.get_mut(&*d.rule) else {
            return;
        };
        if let Some(i) = rule.rate.iter().rposition(|t| *t == at) {
            rule.rate.remove(i);
        }
        if let Some(t) = rule.targets.get_mut(&*d.target) {
            if t.last_act == Some(at) {
                t.last_act = d.taken.as_ref().and_then(|taken| taken.last_act).map(ms);
            }
            if t.verifying.as_ref().is_some_and(|v| v.acted_at == at) {
                t.verifying = None;
            }
            if *t == DurableTarget::default() {
                rule.targets.remove(&*d.target);
            }
        }
        if rule.rate.is_empty() && rule.targets.is_empty() {
            self.rules.remove(&*d.rule);
        }
    }
}

/// A quarantine reason is shown, not parsed: a long one is cut so the object stays small.
const WHY_MAX: usize = 300;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn at(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn cut(why: &str) -> String {
    let mut end = why.len().min(WHY_MAX);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    why[..end].to_owned()
}

impl DurableTarget {
    fn export(st: &TargetState, now: Duration, cooldown: Duration) -> Option<Self> {
        let out = DurableTarget {
            last_act: st.last_act.filter(|t| now < *t + cooldown).map(ms),
            quarantine: st.quarantine.as_ref().map(|q| DurableQuarantine {
                since: ms(q.since),
                why: cut(&q.why),
            }),
            verifying: st.verifying.as_deref().map(|v| DurableVerifying {
                id: v.id.as_deref().map(str::to_owned),
                acted_at: ms(v.acted_at),
                acted_value: v.acted_value,
                done: v.done.clone(),
                undo: v.undo.clone(),
            }),
        };
        (out != DurableTarget::default()).then_some(out)
    }

    /// Merges into a live state: the later last action; a quarantine or verification
    /// either side holds.
    fn merge_into(&self, st: &mut TargetState) {
        if let Some(t) = self.last_act.map(at) {
            st.last_act = Some(st.last_act.map_or(t, |mine| mine.max(t)));
        }
        if st.quarantine.is_none() {
            st.quarantine = self.quarantine.as_ref().map(|q| Quarantine {
                since: at(q.since),
                why: q.why.clone(),
                inactive_since: None,
            });
        }
        if st.verifying.is_none() {
            st.verifying = self.verifying.as_ref().map(|v| {
                Box::new(Verifying {
                    id: v.id.as_deref().map(Arc::from),
                    acted_at: at(v.acted_at),
                    acted_value: v.acted_value,
                    done: v.done.clone(),
                    undo: v.undo.clone(),
                })
            });
        }
    }
}

fn export_rule(
    targets: &Targets,
    rate: Option<&RuleRate>,
    keep: Duration,
    cooldown: Duration,
    now: Duration,
) -> Option<DurableRule> {
    let out = DurableRule {
        keep: ms(keep),
        rate: rate
            .map(|r| r.live_times(now).map(ms).collect())
            .unwrap_or_default(),
        targets: targets
            .iter()
            .filter_map(|(t, st)| Some((t.to_string(), DurableTarget::export(st, now, cooldown)?)))
            .collect(),
    };
    (!out.rate.is_empty() || !out.targets.is_empty()).then_some(out)
}

fn merge_targets(targets: &mut Targets, from: &DurableRule) {
    for (target, kept) in &from.targets {
        let st = match targets.get_mut(target.as_str()) {
            Some(st) => st,
            None => targets.entry(Arc::from(target.as_str())).or_default(),
        };
        kept.merge_into(st);
    }
}

impl<S: SignalKind, A: ActionKind> Engine<S, A> {
    /// The guard's lasting state at `now`, pruned of what no longer binds.
    pub fn durable(&self, now: Duration) -> Durable {
        let mut rules = BTreeMap::new();
        for ((rule, targets), rate) in self.rules.rules.iter().zip(&self.states).zip(&self.rates) {
            let window = rule.spec.rate_limit.as_ref().map_or(Duration::ZERO, |l| l.per.0);
            let keep = rule.cooldown.max(window);
            if let Some(r) = export_rule(targets, rate.as_ref(), keep, rule.cooldown, now) {
                rules.insert(rule.name.to_string(), r);
            }
        }
        for (name, r) in self.retired.iter() {
            if let Some(r) = export_rule(&r.targets, r.rate.as_ref(), r.keep, r.keep, now) {
                rules.entry(name.to_string()).or_insert(r);
            }
        }
        Durable {
            budget: self.guard.budget.times(now).map(ms).collect(),
            rules,
        }
    }

    /// Merges a lasting state read from the cluster into the engine (at start, on becoming
    /// leader, after a write lost a race). A rule this set lacks keeps its state as a
    /// retired rule, for as long as it binds.
    pub fn restore(&mut self, kept: &Durable) {
        self.guard.budget.merge(kept.budget.iter().copied().map(at));
        for (name, from) in &kept.rules {
            let index = self.rules.rules.iter().position(|r| *r.name == **name);
            match index {
                Some(i) => {
                    merge_targets(&mut self.states[i], from);
                    if let Some(rate) = self.rates[i].as_mut() {
                        rate.merge(from.rate.iter().copied().map(at));
                    }
                }
                None => {
                    let retired = self.retired.entry(Arc::from(name.as_str()), || {
                        let keep = at(from.keep);
                        Retired {
                            targets: Targets::new(),
                            rate: (!from.rate.is_empty()).then(|| {
                                RuleRate::new(&RateLimit {
                                    max: u32::try_from(from.rate.len()).unwrap_or(u32::MAX),
                                    per: Dur(keep),
                                })
                            }),
                            keep,
                            since: None,
                        }
                    });
                    merge_targets(&mut retired.targets, from);
                    if let Some(rate) = retired.rate.as_mut() {
                        rate.merge(from.rate.iter().copied().map(at));
                    }
                }
            }
        }
    }

    /// Takes back an action found not to have happened (its intent was recorded, the
    /// process died before the write, and the live object shows no trace of it): the
    /// cooldown, budget and rate-limit marks it left, and its verification. Only marks
    /// still this action's own (set at `acted_at`) are touched.
    pub fn take_back(&mut self, rule: &str, target: &str, acted_at: Duration) {
        self.guard.budget.refund(acted_at);
        let Some(i) = self.rules.rules.iter().position(|r| *r.name == *rule) else {
            return;
        };
        if let Some(rate) = self.rates[i].as_mut() {
            rate.refund(acted_at);
        }
        if let Some(st) = self.states[i].get_mut(target) {
            if st.last_act == Some(acted_at) {
                st.last_act = None;
            }
            if st.verifying.as_ref().is_some_and(|v| v.acted_at == acted_at) {
                st.verifying = None;
            }
        }
    }
}

impl Budget {
    /// The times of the actions still in the window at `now`.
    pub fn times(&self, now: Duration) -> impl Iterator<Item = Duration> + '_ {
        let window = self.window();
        self.taken_times().filter(move |t| now < *t + window)
    }
}

impl RuleRate {
    /// The live actions still in the window at `now`.
    pub fn live_times(&self, now: Duration) -> impl Iterator<Item = Duration> + '_ {
        self.live().times(now)
    }

    /// Adds live actions recorded elsewhere.
    pub fn merge(&mut self, times: impl Iterator<Item = Duration>) {
        self.live_mut().merge(times);
    }
}

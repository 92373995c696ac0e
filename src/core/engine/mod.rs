//! The engine: a pure function of (time, readings, state, world) → decisions. It joins the
//! pipeline's stages (rules' state machine → guard → action plan) without doing any I/O or
//! reading the clock, so the daemon, `run --once` and `simulate` all run the same code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

mod durable;
mod retired;
mod step;

pub use durable::{Durable, DurableQuarantine, DurableRule, DurableTarget, DurableVerifying};

use retired::{Retired, RetiredStates};
use step::Step;

use super::decision::{Decision, DecisionKind, WriteOutcome};
use super::guard::{Budget, Guard, RuleRate};
use super::plan::Limits;
use super::rule::{ActionKind, Rule, RuleSet, SignalKind};
use super::series::{Reading, Series};
use super::state::{Observation, TargetState, TargetView};
use super::world::World;

/// Engine settings that do not come from rules.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: Limits,
    /// Samples older than this are unknown (3 × CHECK_INTERVAL).
    pub stale_after: Duration,
    pub dry_run: bool,
    pub budget_limit: u32,
    pub budget_window: Duration,
    /// Which action kinds can be executed here; the others run as dry-run, saying so.
    pub executable: Executable,
    /// GITOPS_POLICY=skip: never change an object Argo CD or Flux manages (else: act, warn).
    pub gitops_skip: bool,
    /// Action ids are `PREFIX-N`: the daemon's start time, `sim` in `simulate`.
    pub id_prefix: Arc<str>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: Limits::default(),
            stale_after: Duration::from_secs(45),
            dry_run: false,
            budget_limit: 10,
            budget_window: Duration::from_secs(600),
            executable: Executable::All,
            gitops_skip: false,
            id_prefix: Arc::from("sim"),
        }
    }
}

/// The action kinds this process has an executor for (the Kubernetes ones need an API
/// server, `terminate_idle_connections` a PostgreSQL server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executable {
    /// Every kind, as `simulate` models it.
    All,
    /// Only these kinds, by name.
    Only(BTreeSet<&'static str>),
}

impl Executable {
    pub fn contains(&self, kind: &str) -> bool {
        match self {
            Executable::All => true,
            Executable::Only(kinds) => kinds.contains(kind),
        }
    }
}

/// The states of one rule, by target.
pub type Targets = BTreeMap<Arc<str>, TargetState>;

pub struct Engine<S, A> {
    rules: Arc<RuleSet<S, A>>,
    readings: Vec<Option<Reading>>,
    states: Vec<Targets>,
    /// Each rule's `rate_limit` window, when it has one.
    rates: Vec<Option<RuleRate>>,
    guard: Guard,
    config: EngineConfig,
    /// Dependencies whose circuit breaker is open, as the daemon last saw them.
    open_circuits: BTreeSet<String>,
    /// Actions taken so far: the sequence of action ids.
    next_id: u64,
    /// The state of rules that left the set, kept for a cooldown (retired.rs).
    retired: RetiredStates,
}

fn rate_of<S, A>(rule: &Rule<S, A>) -> Option<RuleRate> {
    rule.spec.rate_limit.as_ref().map(RuleRate::new)
}

impl<S: SignalKind, A: ActionKind> Engine<S, A> {
    pub fn new(rules: Arc<RuleSet<S, A>>, config: EngineConfig) -> Self {
        let n = rules.rules.len();
        Engine {
            rates: rules.rules.iter().map(rate_of).collect(),
            rules,
            readings: vec![None; n],
            states: vec![BTreeMap::new(); n],
            guard: Guard {
                leader: true,
                dry_run: config.dry_run,
                budget: Budget::new(config.budget_limit, config.budget_window),
            },
            config,
            open_circuits: BTreeSet::new(),
            next_id: 0,
            retired: RetiredStates::default(),
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet<S, A>> {
        &self.rules
    }

    /// Which action kinds can be executed (the others run as dry-run, saying so).
    pub fn set_executable(&mut self, executors: Executable) {
        self.config.executable = executors;
    }

    /// The dependencies whose circuit breaker is open: actions through them are skipped.
    pub fn set_open_circuits(&mut self, open: BTreeSet<String>) {
        self.open_circuits = open;
    }

    /// Clears quarantines: of one rule (and target), or all. Returns how many were cleared.
    pub fn clear_quarantine(&mut self, rule: Option<&str>, target: Option<&str>) -> usize {
        let mut cleared = 0;
        for (r, targets) in self.rules.rules.iter().zip(&mut self.states) {
            if rule.is_some_and(|name| *r.name != *name) {
                continue;
            }
            for (t, st) in targets.iter_mut() {
                if target.is_none_or(|name| **t == *name) && st.quarantine.take().is_some() {
                    cleared += 1;
                }
            }
        }
        cleared
    }

    pub fn set_leader(&mut self, leader: bool) {
        self.guard.leader = leader;
    }

    pub fn budget_left(&mut self, now: Duration) -> u32 {
        self.guard.budget.left(now)
    }

    pub fn budget(&self) -> &Budget {
        &self.guard.budget
    }

    /// States by rule index and target.
    pub fn states(&self) -> &[Targets] {
        &self.states
    }

    /// Every rule with what operators see of each of its targets.
    pub fn views(&self) -> impl Iterator<Item = (&Rule<S, A>, Vec<(&str, TargetView)>)> {
        self.rules.rules.iter().zip(&self.states).map(|(rule, targets)| {
            let views = targets.iter().map(|(t, st)| (&**t, st.view())).collect();
            (rule, views)
        })
    }

    /// Swaps in a new rule set. Cooldowns always carry over (a reload must never allow a
    /// double action); pending/firing progress carries over only for unchanged rules. A
    /// rule that leaves keeps its state for its cooldown, so putting it back changes nothing.
    pub fn replace_rules(&mut self, rules: Arc<RuleSet<S, A>>) {
        let mut old_states: BTreeMap<Arc<str>, (usize, Targets, Option<RuleRate>)> = BTreeMap::new();
        let old_rates = std::mem::take(&mut self.rates);
        for ((i, states), rate) in std::mem::take(&mut self.states)
            .into_iter()
            .enumerate()
            .zip(old_rates)
        {
            old_states.insert(self.rules.rules[i].name.clone(), (i, states, rate));
        }
        let mut readings = Vec::with_capacity(rules.rules.len());
        let mut states = Vec::with_capacity(rules.rules.len());
        let mut rates = Vec::with_capacity(rules.rules.len());
        for rule in &rules.rules {
            match old_states.remove(&rule.name) {
                Some((i, mut kept, rate)) => {
                    // Like cooldowns, the actions already taken keep counting.
                    rates.push(match (rate, &rule.spec.rate_limit) {
                        (Some(rate), Some(limit)) => Some(rate.relimited(limit)),
                        (None, Some(limit)) => Some(RuleRate::new(limit)),
                        (_, None) => None,
                    });
                    let old = &self.rules.rules[i];
                    if old.spec != rule.spec {
                        for st in kept.values_mut() {
                            *st = TargetState {
                                last_act: st.last_act,
                                last_dry_act: st.last_dry_act,
                                quarantine: st.quarantine.take(),
                                ..Default::default()
                            };
                        }
                    }
                    let same_source = old.spec.signal == rule.spec.signal;
                    readings.push(if same_source {
                        self.readings[i].take()
                    } else {
                        None
                    });
                    states.push(kept);
                }
                None => {
                    readings.push(None);
                    // Back within its cooldown: its actions still count; its progress
                    // (pending, firing) starts over like a changed rule's.
                    let back = self.retired.take(&rule.name);
                    let (kept, rate) = back.map_or((BTreeMap::new(), None), |r| (r.targets, r.rate));
                    states.push(
                        kept.into_iter()
                            .map(|(target, st)| {
                                let st = TargetState {
                                    last_act: st.last_act,
                                    last_dry_act: st.last_dry_act,
                                    quarantine: st.quarantine,
                                    ..Default::default()
                                };
                                (target, st)
                            })
                            .collect(),
                    );
                    rates.push(match (rate, &rule.spec.rate_limit) {
                        (Some(rate), Some(limit)) => Some(rate.relimited(limit)),
                        (_, limit) => limit.as_ref().map(RuleRate::new),
                    });
                }
            }
        }
        for (name, (i, targets, rate)) in old_states {
            let old = &self.rules.rules[i];
            let window = old.spec.rate_limit.as_ref().map_or(Duration::ZERO, |l| l.per.0);
            self.retired.insert(
                name,
                Retired {
                    targets,
                    rate,
                    keep: old.cooldown.max(window),
                    since: None,
                },
            );
        }
        self.rules = rules;
        self.readings = readings;
        self.states = states;
        self.rates = rates;
    }

    /// Takes what the writer did with an `act` decision of this engine. An action that
    /// changed nothing (refused, failed, timed out, dropped) starts no verification: there
    /// is nothing to judge, and a rollback must never undo what was not done. One the writer
    /// dropped (never tried) is taken back entirely (cooldown, budget, rate limit), so it is
    /// decided again at the next evaluation as if it had never been planned.
    pub fn report(&mut self, d: &Decision) {
        let Some(outcome) = d.outcome else { return };
        if !matches!(d.kind, DecisionKind::Action(_)) || d.id.is_none() {
            return;
        }
        let Some(st) = self
            .states
            .get_mut(d.rule_index)
            .and_then(|targets| targets.get_mut(&d.target))
        else {
            return;
        };
        if outcome == WriteOutcome::Succeeded {
            return;
        }
        if st.verifying.as_ref().is_some_and(|v| v.id == d.id) {
            st.verifying = None;
        }
        // Given back only while the marks are still this act's own.
        let ours = st.last_act == Some(d.at);
        if let (WriteOutcome::Dropped, Some(taken), true) = (outcome, d.taken.as_deref(), ours) {
            st.last_act = taken.last_act;
            st.last_dry_act = taken.last_dry_act;
            self.guard.budget.refund(d.at);
            if let Some(rate) = self.rates.get_mut(d.rule_index).and_then(Option::as_mut) {
                rate.refund(d.at);
            }
        }
    }

    /// Records the latest reading for a rule.
    pub fn observe(&mut self, rule: usize, reading: Reading) {
        if let Some(slot) = self.readings.get_mut(rule) {
            *slot = Some(reading);
        }
    }

    /// Evaluates every (rule, target) at `now`: one decision each, in rule then target order.
    pub fn evaluate(&mut self, now: Duration, world: &dyn World) -> Vec<Decision> {
        let mut out = Vec::new();
        self.evaluate_into(now, world, &mut out);
        out
    }

    /// [`Engine::evaluate`] into a reused buffer (cleared first), so a steady daemon does not
    /// allocate and fault in a fresh decision array every tick.
    pub fn evaluate_into(&mut self, now: Duration, world: &dyn World, out: &mut Vec<Decision>) {
        out.clear();
        self.retired.expire(now);
        let pairs: usize = self.states.iter().map(|t| t.len().max(1)).sum();
        out.reserve(pairs);
        let rules = self.rules.clone();
        for (index, rule) in rules.rules.iter().enumerate() {
            let mut step = Step {
                index,
                rule,
                now,
                world,
                guard: &mut self.guard,
                rate: self.rates[index].as_mut(),
                config: &self.config,
                open_circuits: &self.open_circuits,
                next_id: &mut self.next_id,
                out,
            };
            evaluate_rule(&mut step, &mut self.readings[index], &mut self.states[index]);
        }
    }
}

fn evaluate_rule<S: SignalKind, A: ActionKind>(
    step: &mut Step<'_, S, A>,
    reading: &mut Option<Reading>,
    targets: &mut Targets,
) {
    let now = step.now;
    let unknown = match reading.as_ref() {
        None => Some("no sample yet".to_owned()),
        Some(r) if now.saturating_sub(r.at) > step.config.stale_after => Some(format!(
            "the last sample is {}s old, older than 3 × CHECK_INTERVAL",
            now.saturating_sub(r.at).as_secs()
        )),
        Some(Reading { result: Err(why), .. }) => Some(why.0.clone()),
        Some(Reading { result: Ok(_), .. }) => None,
    };
    if let Some(why) = unknown {
        let why = Some(why.as_str());
        match &step.rule.fixed_target {
            Some(target) => {
                let st = targets.entry(target.clone()).or_default();
                step.target(target.clone(), st, Observation::Unknown, why, None);
            }
            // No owner seen yet: still say why nothing can be evaluated, under the
            // placeholder target `owner`, without keeping state for it.
            None if targets.is_empty() => {
                let mut scratch = TargetState::default();
                step.target(Arc::from("owner"), &mut scratch, Observation::Unknown, why, None);
            }
            None => {
                for (target, st) in targets.iter_mut() {
                    step.target(target.clone(), st, Observation::Unknown, why, None);
                }
            }
        }
        return;
    }
    let Some(Reading {
        result: Ok(series), ..
    }) = reading.as_ref()
    else {
        return;
    };
    let prefers_low = step.rule.spec.when.op.prefers_low();
    if let Some(target) = &step.rule.fixed_target {
        let best = pick(series.iter(), prefers_low);
        let obs = best.map_or(Observation::Absent, |s| Observation::Value(s.value));
        let st = targets.entry(target.clone()).or_default();
        step.target(target.clone(), st, obs, None, best);
        return;
    }
    // One state per owner. Few series per rule: a sorted Vec beats a map, and a merge with
    // the (sorted) known targets finds present, absent and new targets in one pass.
    let mut groups: Vec<(&str, &Series)> = Vec::with_capacity(series.len());
    groups.extend(
        series
            .iter()
            .filter_map(|s| s.labels.get("owner").map(|o| (o.as_str(), s))),
    );
    // Sorted by owner, the deepest series of each owner first; then one per owner.
    groups.sort_unstable_by(|a, b| {
        let deeper = if prefers_low {
            a.1.value.total_cmp(&b.1.value)
        } else {
            b.1.value.total_cmp(&a.1.value)
        };
        a.0.cmp(b.0).then(deeper)
    });
    groups.dedup_by(|later, first| later.0 == first.0);
    let mut next = 0;
    let mut new_targets = Vec::new();
    for (target, st) in targets.iter_mut() {
        while next < groups.len() && groups[next].0 < &**target {
            new_targets.push(groups[next]);
            next += 1;
        }
        if next < groups.len() && groups[next].0 == &**target {
            let s = groups[next].1;
            step.target(target.clone(), st, Observation::Value(s.value), None, Some(s));
            next += 1;
        } else {
            step.target(target.clone(), st, Observation::Absent, None, None);
        }
    }
    new_targets.extend_from_slice(&groups[next..]);
    for (target, s) in new_targets {
        let target: Arc<str> = Arc::from(target);
        let st = targets.entry(target.clone()).or_default();
        step.target(target, st, Observation::Value(s.value), None, Some(s));
    }
}

/// Whether `a` is deeper into the condition than `b`.
fn better(a: f64, b: f64, prefers_low: bool) -> bool {
    if prefers_low {
        a < b
    } else {
        a > b
    }
}

fn pick<'a>(series: impl Iterator<Item = &'a Series>, prefers_low: bool) -> Option<&'a Series> {
    series.fold(None, |best: Option<&Series>, s| match best {
        Some(b) if !better(s.value, b.value, prefers_low) => Some(b),
        _ => Some(s),
    })
}

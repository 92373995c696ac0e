//! The engine: a pure function of (time, readings, state, world) → decisions. It joins the
//! pipeline's stages (rules' state machine → guard → action plan) without doing any I/O or
//! reading the clock, so the daemon, `run --once` and `simulate` all run the same code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::actions::{execute::can_execute, Limits, PlanCtx, World};
use crate::decision::{Decision, SkipReason, State, Verdict};
use crate::guard::{Budget, Guard};
use crate::rules::state::{Conditions, Observation, TargetState};
use crate::rules::{Rule, RuleSet};
use crate::signals::{Reading, Series};

/// Engine settings that do not come from rules.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: Limits,
    /// Samples older than this are unknown (3 × CHECK_INTERVAL).
    pub stale_after: Duration,
    pub dry_run: bool,
    pub budget_limit: u32,
    pub budget_window: Duration,
    /// Whether an action kind can be executed here; the others run as dry-run.
    pub executable: fn(&crate::actions::ActionSpec) -> bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: Limits::default(),
            stale_after: Duration::from_secs(45),
            dry_run: false,
            budget_limit: 10,
            budget_window: Duration::from_secs(600),
            executable: can_execute,
        }
    }
}

/// The states of one rule, by target.
pub type Targets = BTreeMap<Arc<str>, TargetState>;

pub struct Engine {
    rules: Arc<RuleSet>,
    readings: Vec<Option<Reading>>,
    states: Vec<Targets>,
    guard: Guard,
    config: EngineConfig,
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>, config: EngineConfig) -> Self {
        let n = rules.rules.len();
        Engine {
            rules,
            readings: vec![None; n],
            states: vec![BTreeMap::new(); n],
            guard: Guard {
                leader: true,
                dry_run: config.dry_run,
                budget: Budget::new(config.budget_limit, config.budget_window),
            },
            config,
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
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

    /// Swaps in a new rule set. Cooldowns always carry over (a reload must never allow a
    /// double action); pending/firing progress carries over only for unchanged rules.
    pub fn replace_rules(&mut self, rules: Arc<RuleSet>) {
        let mut old_states: BTreeMap<Arc<str>, (usize, Targets)> = BTreeMap::new();
        for (i, states) in std::mem::take(&mut self.states).into_iter().enumerate() {
            old_states.insert(self.rules.rules[i].name.clone(), (i, states));
        }
        let mut readings = Vec::with_capacity(rules.rules.len());
        let mut states = Vec::with_capacity(rules.rules.len());
        for rule in &rules.rules {
            match old_states.remove(&rule.name) {
                Some((i, mut kept)) => {
                    let old = &self.rules.rules[i];
                    if old.spec != rule.spec {
                        for st in kept.values_mut() {
                            *st = TargetState {
                                last_act: st.last_act,
                                last_dry_act: st.last_dry_act,
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
                    states.push(BTreeMap::new());
                }
            }
        }
        self.rules = rules;
        self.readings = readings;
        self.states = states;
    }

    /// Records the latest reading for a rule.
    pub fn observe(&mut self, rule: usize, reading: Reading) {
        if let Some(slot) = self.readings.get_mut(rule) {
            *slot = Some(reading);
        }
    }

    /// Evaluates every (rule, target) at `now`: one decision each, in rule then target order.
    pub fn evaluate(&mut self, now: Duration, world: &dyn World) -> Vec<Decision> {
        let rules = self.rules.clone();
        let mut out = Vec::with_capacity(rules.rules.len());
        for (index, rule) in rules.rules.iter().enumerate() {
            self.evaluate_rule(index, rule, now, world, &mut out);
        }
        out
    }

    fn evaluate_rule(
        &mut self,
        index: usize,
        rule: &Rule,
        now: Duration,
        world: &dyn World,
        out: &mut Vec<Decision>,
    ) {
        let unknown = match &self.readings[index] {
            None => Some("no sample yet".to_owned()),
            Some(r) if now.saturating_sub(r.at) > self.config.stale_after => Some(format!(
                "the last sample is {}s old, older than 3 × CHECK_INTERVAL",
                now.saturating_sub(r.at).as_secs()
            )),
            Some(Reading { result: Err(why), .. }) => Some(why.clone()),
            Some(Reading { result: Ok(_), .. }) => None,
        };
        let prefers_low = rule.spec.when.op.prefers_low();
        if let Some(why) = unknown {
            let targets: Vec<Arc<str>> = match &rule.fixed_target {
                Some(t) => vec![t.clone()],
                None => self.states[index].keys().cloned().collect(),
            };
            if targets.is_empty() {
                // No owner seen yet: still say why nothing can be evaluated, under the
                // placeholder target `owner`, without keeping state for it.
                self.step(
                    index,
                    rule,
                    Arc::from("owner"),
                    Observation::Unknown,
                    Some(&why),
                    None,
                    now,
                    world,
                    out,
                );
                self.states[index].remove("owner");
            }
            for target in targets {
                self.step(
                    index,
                    rule,
                    target,
                    Observation::Unknown,
                    Some(&why),
                    None,
                    now,
                    world,
                    out,
                );
            }
            return;
        }
        let reading = self.readings[index].take();
        let Some(Reading {
            result: Ok(series), ..
        }) = &reading
        else {
            return;
        };
        match &rule.fixed_target {
            Some(target) => {
                let best = pick(series.iter(), prefers_low);
                let obs = best.map_or(Observation::Absent, |s| Observation::Value(s.value));
                self.step(index, rule, target.clone(), obs, None, best, now, world, out);
            }
            None => {
                let mut groups: BTreeMap<Arc<str>, &Series> = BTreeMap::new();
                for s in series {
                    let Ok(target) = rule.spec.action.target(&s.labels) else {
                        continue;
                    };
                    let target: Arc<str> = match self.states[index].get_key_value(target.as_str()) {
                        Some((k, _)) => k.clone(),
                        None => Arc::from(target),
                    };
                    let slot = groups.entry(target).or_insert(s);
                    if better(s.value, slot.value, prefers_low) {
                        *slot = s;
                    }
                }
                let absent: Vec<Arc<str>> = self.states[index]
                    .keys()
                    .filter(|k| !groups.contains_key(*k))
                    .cloned()
                    .collect();
                for target in absent {
                    self.step(
                        index,
                        rule,
                        target,
                        Observation::Absent,
                        None,
                        None,
                        now,
                        world,
                        out,
                    );
                }
                for (target, s) in groups {
                    self.step(
                        index,
                        rule,
                        target,
                        Observation::Value(s.value),
                        None,
                        Some(s),
                        now,
                        world,
                        out,
                    );
                }
            }
        }
        self.readings[index] = reading;
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        index: usize,
        rule: &Rule,
        target: Arc<str>,
        obs: Observation,
        why_unknown: Option<&str>,
        series: Option<&Series>,
        now: Duration,
        world: &dyn World,
        out: &mut Vec<Decision>,
    ) {
        let conditions = Conditions {
            when: rule.spec.when,
            clear: rule.spec.clear,
            hold_for: rule.hold_for,
        };
        let executable = (self.config.executable)(&rule.spec.action);
        let dry_run = self.guard.dry_run || rule.spec.dry_run || !executable;
        let st = self.states[index].entry(target.clone()).or_default();
        let state = st.observe(now, obs, &conditions);
        let mut d = Decision {
            at: now,
            rule: rule.name.clone(),
            target,
            value: st.value,
            state,
            decision: Verdict::None,
            reason: None,
            detail: None,
            action: rule.spec.action.kind(),
            dry_run,
            change: None,
            success: None,
            active_since: st.active_since,
            plan: None,
            rule_index: index,
        };
        match state {
            State::Unknown => {
                d.decision = Verdict::Skip;
                d.reason = Some(SkipReason::Unknown);
                d.detail = why_unknown.map(str::to_owned);
            }
            State::Inactive | State::Pending => {}
            State::Firing => {
                let skip = |d: &mut Decision, reason, detail: Option<String>| {
                    d.decision = Verdict::Skip;
                    d.reason = Some(reason);
                    d.detail = detail;
                };
                if !self.guard.leader {
                    skip(&mut d, SkipReason::NotLeader, None);
                    out.push(d);
                    return;
                }
                let last = if dry_run { st.last_dry_act } else { st.last_act };
                if let Some(last) = last.filter(|t| now < *t + rule.cooldown) {
                    let left = (last + rule.cooldown - now).as_secs();
                    skip(
                        &mut d,
                        SkipReason::Cooldown,
                        Some(format!("{left}s of cooldown left")),
                    );
                    out.push(d);
                    return;
                }
                let empty = BTreeMap::new();
                let ctx = PlanCtx {
                    target: &d.target,
                    value: st.value.unwrap_or(0.0),
                    labels: series.map_or(&empty, |s| &s.labels),
                    world,
                    limits: &self.config.limits,
                };
                let plan = match rule.spec.action.plan(&ctx) {
                    Ok(plan) => plan,
                    Err(why) => {
                        skip(&mut d, SkipReason::Plan, Some(why));
                        out.push(d);
                        return;
                    }
                };
                d.change = Some(plan.change.clone());
                if let Some(why) = &plan.noop {
                    skip(&mut d, SkipReason::Bound, Some(why.clone()));
                } else if dry_run {
                    st.last_dry_act = Some(now);
                    let why = if executable {
                        None
                    } else {
                        Some(format!(
                            "no executor for `{}` in this build: dry-run only",
                            d.action
                        ))
                    };
                    skip(&mut d, SkipReason::DryRun, why);
                } else if !self.guard.budget.try_take(now) {
                    let b = &self.guard.budget;
                    skip(
                        &mut d,
                        SkipReason::Budget,
                        Some(format!(
                            "{} actions in the last {}s",
                            b.limit(),
                            b.window().as_secs()
                        )),
                    );
                } else {
                    st.last_act = Some(now);
                    st.last_dry_act = Some(now);
                    d.decision = Verdict::Act;
                    d.plan = Some(plan);
                }
            }
        }
        out.push(d);
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

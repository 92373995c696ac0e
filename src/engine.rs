//! The engine: a pure function of (time, readings, state, world) → decisions. It joins the
//! pipeline's stages (rules' state machine → guard → action plan) without doing any I/O or
//! reading the clock, so the daemon, `run --once` and `simulate` all run the same code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::actions::{execute::Executors, Limits, PlanCtx, World};
use crate::decision::{Decision, Detail, SkipReason, State, Verdict};
use crate::guard::{Budget, Guard, RuleRate};
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
    pub executable: Executors,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: Limits::default(),
            stale_after: Duration::from_secs(45),
            dry_run: false,
            budget_limit: 10,
            budget_window: Duration::from_secs(600),
            executable: Executors::HTTP_ONLY,
        }
    }
}

/// The states of one rule, by target.
pub type Targets = BTreeMap<Arc<str>, TargetState>;

pub struct Engine {
    rules: Arc<RuleSet>,
    readings: Vec<Option<Reading>>,
    states: Vec<Targets>,
    /// Each rule's `rate_limit` window, when it has one.
    rates: Vec<Option<RuleRate>>,
    guard: Guard,
    config: EngineConfig,
}

fn rate_of(rule: &Rule) -> Option<RuleRate> {
    rule.spec.rate_limit.as_ref().map(RuleRate::new)
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>, config: EngineConfig) -> Self {
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
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Which action kinds can be executed (the others run as dry-run, saying so).
    pub fn set_executors(&mut self, executors: Executors) {
        self.config.executable = executors;
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
                    rates.push(rate_of(rule));
                }
            }
        }
        self.rules = rules;
        self.readings = readings;
        self.states = states;
        self.rates = rates;
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
                out,
            };
            evaluate_rule(&mut step, &mut self.readings[index], &mut self.states[index]);
        }
    }
}

/// Everything one evaluation of one rule needs besides the per-target state.
struct Step<'a> {
    index: usize,
    rule: &'a Rule,
    now: Duration,
    world: &'a dyn World,
    guard: &'a mut Guard,
    rate: Option<&'a mut RuleRate>,
    config: &'a EngineConfig,
    out: &'a mut Vec<Decision>,
}

fn evaluate_rule(step: &mut Step<'_>, reading: &mut Option<Reading>, targets: &mut Targets) {
    let now = step.now;
    let unknown = match reading.as_ref() {
        None => Some("no sample yet".to_owned()),
        Some(r) if now.saturating_sub(r.at) > step.config.stale_after => Some(format!(
            "the last sample is {}s old, older than 3 × CHECK_INTERVAL",
            now.saturating_sub(r.at).as_secs()
        )),
        Some(Reading { result: Err(why), .. }) => Some(why.clone()),
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

impl Step<'_> {
    /// Advances one (rule, target) and runs the guard chain when it is firing.
    fn target(
        &mut self,
        target: Arc<str>,
        st: &mut TargetState,
        obs: Observation,
        why_unknown: Option<&str>,
        series: Option<&Series>,
    ) {
        let (rule, now) = (self.rule, self.now);
        let conditions = Conditions {
            when: rule.spec.when,
            clear: rule.spec.clear,
            hold_for: rule.hold_for,
        };
        let executable = self.config.executable.can_execute(&rule.spec.action);
        let dry_run = self.guard.dry_run || rule.spec.dry_run || !executable;
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
            rule_index: self.index,
            notice: false,
        };
        match state {
            State::Unknown => d.skip(
                SkipReason::Unknown,
                why_unknown.map(|w| Detail::Text(w.to_owned())),
            ),
            State::Inactive | State::Pending => {}
            State::Firing => self.guard_and_plan(&mut d, st, series, executable),
        }
        if d.decision == Verdict::Act {
            if let Some(notify) = &rule.spec.notify_first {
                self.out.push(notice(&d, notify));
            }
        }
        self.out.push(d);
    }

    /// The guard chain (see [`crate::guard`]) and the plan.
    fn guard_and_plan(
        &mut self,
        d: &mut Decision,
        st: &mut TargetState,
        series: Option<&Series>,
        executable: bool,
    ) {
        let (rule, now) = (self.rule, self.now);
        if !self.guard.leader {
            return d.skip(SkipReason::NotLeader, None);
        }
        let last = if d.dry_run { st.last_dry_act } else { st.last_act };
        if let Some(last) = last.filter(|t| now < *t + rule.cooldown) {
            return d.skip(
                SkipReason::Cooldown,
                Some(Detail::CooldownLeft(last + rule.cooldown - now)),
            );
        }
        let empty = BTreeMap::new();
        let ctx = PlanCtx {
            target: &d.target,
            value: st.value.unwrap_or(0.0),
            labels: series.map_or(&empty, |s| &s.labels),
            world: self.world,
            limits: &self.config.limits,
        };
        let plan = match rule.spec.action.plan(&ctx) {
            Ok(plan) => plan,
            Err(why) => return d.skip(SkipReason::Plan, Some(Detail::Text(why))),
        };
        d.change = Some(plan.change.clone());
        if let Some(why) = &plan.noop {
            d.skip(SkipReason::Bound, Some(Detail::Text(why.clone())));
        } else if self
            .rate
            .as_deref_mut()
            .is_some_and(|r| !r.has_room(now, d.dry_run))
        {
            let text = self.rate.as_deref().map(RuleRate::describe).unwrap_or_default();
            d.skip(SkipReason::RateLimit, Some(Detail::Text(text)));
        } else if d.dry_run {
            if let Some(rate) = self.rate.as_deref_mut() {
                rate.take(now, true);
            }
            st.last_dry_act = Some(now);
            let why =
                (!executable).then(|| format!("no executor for `{}` in this build: dry-run only", d.action));
            d.skip(SkipReason::DryRun, why.map(Detail::Text));
        } else if !self.guard.budget.try_take(now) {
            let b = &self.guard.budget;
            let text = format!("{} actions in the last {}s", b.limit(), b.window().as_secs());
            d.skip(SkipReason::Budget, Some(Detail::Text(text)));
        } else {
            if let Some(rate) = self.rate.as_deref_mut() {
                rate.take(now, false);
            }
            st.last_act = Some(now);
            st.last_dry_act = Some(now);
            d.decision = Verdict::Act;
            d.plan = Some(Box::new(plan));
        }
    }
}

/// The decision of a rule's `notify_first`: an `act` of `notify` carrying the change about to
/// be made, placed just before the action's own decision so whoever executes the decisions
/// in order tells the humans first. It shares the action's cooldown and uses no budget.
fn notice(d: &Decision, notify: &crate::actions::notify::Notify) -> Decision {
    let mut n = d.clone();
    n.action = "notify";
    n.notice = true;
    n.change = Some(serde_json::json!({
        "notify": notify.host(),
        "before": d.action,
        "change": d.change,
    }));
    n.plan = Some(Box::new(crate::actions::Plan {
        change: n.change.clone().unwrap_or_default(),
        noop: None,
        effect: crate::actions::Effect::External,
    }));
    n
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

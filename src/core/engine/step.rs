//! One (rule, target) at one evaluation: the state machine, the end of an earlier action's
//! verification (and its rollback), then, when firing, the guard chain and the plan. The
//! order of the guard is documented in [`crate::core::guard`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::EngineConfig;
use crate::core::decision::{Decision, DecisionKind, Detail, SkipReason, State, Taken, Verdict};
use crate::core::guard::{Guard, RuleRate};
use crate::core::plan::{Effect, Plan, PlanCtx};
use crate::core::rule::{ActionKind, NotifyFirst, Rule, SignalKind};
use crate::core::series::Series;
use crate::core::state::{Conditions, Observation, TargetState};
use crate::core::verify::{self, Quarantine, VerifyResult, Verifying};
use crate::core::world::World;

/// Everything one evaluation of one rule needs besides the per-target state.
pub(super) struct Step<'a, S, A> {
    pub index: usize,
    pub rule: &'a Rule<S, A>,
    pub now: Duration,
    pub world: &'a dyn World,
    pub guard: &'a mut Guard,
    pub rate: Option<&'a mut RuleRate>,
    pub config: &'a EngineConfig,
    /// Dependencies whose circuit breaker is open right now.
    pub open_circuits: &'a BTreeSet<String>,
    /// The sequence number of the next action id.
    pub next_id: &'a mut u64,
    pub out: &'a mut Vec<Decision>,
}

impl<S: SignalKind, A: ActionKind> Step<'_, S, A> {
    /// Advances one (rule, target) and runs the guard chain when it is firing.
    pub fn target(
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
        let executable = self.config.executable.contains(rule.spec.action.kind());
        let dry_run = self.guard.dry_run || rule.spec.dry_run || !executable;
        let state = st.observe(now, obs, &conditions);
        let mut d = Decision {
            id: None,
            at: now,
            rule: rule.name.clone(),
            target,
            value: st.value,
            state,
            decision: Verdict::None,
            reason: None,
            detail: None,
            kind: DecisionKind::Action(rule.spec.action.kind()),
            dry_run,
            change: None,
            success: None,
            outcome: None,
            verification: None,
            gitops: None,
            active_since: st.active_since,
            plan: None,
            rule_index: self.index,
            quarantined: false,
            taken: None,
        };
        let rollback = self.verification(&mut d, st);
        self.release_quarantine(st, state);
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
                let mut n = notice(&d, notify);
                if self.open_circuits.contains(&notify.dependency()) {
                    n.skip(SkipReason::CircuitOpen, None);
                }
                self.out.push(n);
            }
        }
        d.quarantined = st.quarantine.is_some();
        if let Some(rollback) = rollback {
            self.out.push(rollback);
        }
        self.out.push(d);
    }

    fn id(&mut self) -> Arc<str> {
        *self.next_id += 1;
        Arc::from(format!("{}-{}", self.config.id_prefix, self.next_id))
    }

    /// Ends the verification of the last action when this evaluation decides it. A failure
    /// quarantines the (rule, target) and returns the rollback's decision (unless the rule
    /// says `rollback: false` or the change cannot be undone).
    fn verification(&mut self, d: &mut Decision, st: &mut TargetState) -> Option<Decision> {
        let spec = self.rule.spec.verify.as_ref()?;
        let v = st.verifying.as_deref()?;
        let prefers_low = self.rule.spec.when.op.prefers_low();
        let ended = verify::check(v, spec, self.now, d.value, prefers_low)?;
        let v = st.verifying.take()?;
        let result = ended.result;
        if result == VerifyResult::Failed {
            st.quarantine = Some(Quarantine {
                since: self.now,
                why: ended.detail.clone(),
                inactive_since: None,
            });
        }
        d.verification = Some(Box::new(ended));
        if result != VerifyResult::Failed || !self.rule.spec.rollback {
            return None;
        }
        let undo = v.undo.clone()?;
        let mut r = d.clone();
        r.kind = DecisionKind::Rollback;
        r.verification = None;
        r.change = Some(verify::reversing_change(&v.done, &undo));
        r.plan = Some(Box::new(Plan::new(r.change.clone().unwrap_or_default(), undo)));
        if !self.guard.leader {
            r.skip(SkipReason::NotLeader, None);
        } else if self.paused(&r.target) {
            r.skip(SkipReason::Paused, None);
        } else if self.open_circuits.contains(&self.rule.spec.action.dependency()) {
            r.skip(SkipReason::CircuitOpen, None);
        } else {
            // Undoing our own change: no cooldown, no budget, no rate limit stands in its way.
            r.decision = Verdict::Act;
            // Named after the action it undoes, so logs and Events tie the two together.
            r.id = match &v.id {
                Some(id) => Some(Arc::from(format!("{id}-rollback"))),
                None => Some(self.id()),
            };
        }
        Some(r)
    }

    /// A quarantine ends once the rule's condition has been inactive for one cooldown.
    fn release_quarantine(&self, st: &mut TargetState, state: State) {
        let Some(q) = st.quarantine.as_mut() else { return };
        if state != State::Inactive {
            q.inactive_since = None;
            return;
        }
        let since = *q.inactive_since.get_or_insert(self.now);
        if self.now.saturating_sub(since) >= self.rule.cooldown {
            st.quarantine = None;
        }
    }

    fn paused(&self, target: &str) -> bool {
        self.world.workload(target).is_some_and(|w| w.paused)
    }

    /// The guard chain (see [`crate::core::guard`]) and the plan.
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
        // One look-up of the target for every guard fact it carries (paused, HPA, GitOps).
        let workload = self.world.workload(&d.target);
        if workload.is_some_and(|w| w.paused) {
            let text = "the target is annotated automaton.dev/paused: \"true\"".to_owned();
            return d.skip(SkipReason::Paused, Some(Detail::Text(text)));
        }
        if let Some(q) = &st.quarantine {
            let text = format!(
                "quarantined since {}s: {}; clears after the condition is inactive for {}s, or by an operator",
                q.since.as_secs(),
                q.why,
                rule.cooldown.as_secs()
            );
            return d.skip(SkipReason::Quarantined, Some(Detail::Text(text)));
        }
        // Named only when some breaker is open: the dependency's name is built per call.
        let dependency = (!self.open_circuits.is_empty()).then(|| rule.spec.action.dependency());
        if let Some(dependency) = dependency.filter(|d| self.open_circuits.contains(d)) {
            let text =
                format!("{dependency} is unavailable: its circuit breaker is open, or it failed this tick");
            return d.skip(SkipReason::CircuitOpen, Some(Detail::Text(text)));
        }
        if let Some(hpa) = workload
            .and_then(|w| w.hpa.as_ref())
            .filter(|_| rule.spec.action.yields_to_hpa())
        {
            let text = format!("HorizontalPodAutoscaler {hpa} owns the replicas of {}", d.target);
            return d.skip(SkipReason::HpaManaged, Some(Detail::Text(text)));
        }
        if let Some(tool) = workload.and_then(|w| w.gitops.as_ref()) {
            if self.config.gitops_skip {
                let text = format!("managed by {tool}, which would revert the change (GITOPS_POLICY=skip)");
                return d.skip(SkipReason::Gitops, Some(Detail::Text(text)));
            }
            d.gitops = Some(tool.clone());
        }
        if let Some(v) = st.verifying.as_deref() {
            // Acting again before the last action is judged would blur the verdict (and a
            // `step` would stack on a change that may be rolled back).
            let until = v.acted_at + rule.spec.verify.map_or(Duration::ZERO, |s| s.within.0);
            let text = format!("the last action is being verified until {}s", until.as_secs());
            return d.skip(SkipReason::Cooldown, Some(Detail::Text(text)));
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
            when: rule.spec.when.op,
        };
        let plan = match rule.spec.action.plan(&ctx) {
            Ok(plan) => plan,
            Err(why) => return d.skip(SkipReason::Plan, Some(Detail::Text(why.to_string()))),
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
                (!executable).then(|| format!("no executor for `{}` in this build: dry-run only", d.kind));
            d.skip(SkipReason::DryRun, why.map(Detail::Text));
        } else if !self.guard.budget.try_take(now) {
            let b = &self.guard.budget;
            let text = format!("{} actions in the last {}s", b.limit(), b.window().as_secs());
            d.skip(SkipReason::Budget, Some(Detail::Text(text)));
        } else {
            if let Some(rate) = self.rate.as_deref_mut() {
                rate.take(now, false);
            }
            d.taken = Some(Box::new(Taken {
                last_act: st.last_act,
                last_dry_act: st.last_dry_act,
            }));
            st.last_act = Some(now);
            st.last_dry_act = Some(now);
            d.id = Some(self.id());
            if rule.spec.verify.is_some() {
                st.verifying = Some(Box::new(Verifying {
                    id: d.id.clone(),
                    acted_at: now,
                    acted_value: st.value,
                    done: plan.effect.clone(),
                    undo: plan.undo.clone(),
                }));
            }
            d.decision = Verdict::Act;
            d.plan = Some(Box::new(plan));
        }
    }
}

/// The decision of a rule's `notify_first`: an `act` of `notify` carrying the change about to
/// be made, placed just before the action's own decision so whoever executes the decisions
/// in order tells the humans first. It shares the action's cooldown and uses no budget.
fn notice(d: &Decision, notify: &NotifyFirst) -> Decision {
    let mut n = d.clone();
    n.kind = DecisionKind::Notice;
    n.id = d.id.as_ref().map(|id| Arc::from(format!("{id}-notice")));
    n.change = Some(serde_json::json!({
        "notify": notify.host(),
        "before": d.kind,
        "change": d.change,
    }));
    n.plan = Some(Box::new(Plan::new(
        n.change.clone().unwrap_or_default(),
        Effect::External,
    )));
    n
}

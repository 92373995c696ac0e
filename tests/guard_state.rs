//! The guard's lasting state (`Engine::durable` / `Engine::restore`): what a process hands
//! to the next one through the cluster. A fresh engine given the state of one that acted
//! allows exactly what the first would still have allowed: cooldowns, rate-limit windows,
//! the budget, quarantines and open verifications carry over, through JSON; what no longer
//! binds is pruned; an action found not done is taken back.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use automaton::core::decision::{SkipReason, Verdict, WriteOutcome};
use automaton::core::engine::{Durable, EngineConfig};
use automaton::core::series::{Reading, Series};
use automaton::core::world::NoWorld;
use automaton::rules::{self, Engine, RuleSet};

const RULES: &str = r#"
rules:
  - name: lag
    priority: critical
    signal: {kafka_lag: {group: g, topic: t}}
    when: "> 10"
    action: {notify: {webhook: "http://127.0.0.1:9/hook"}}
    cooldown: 10m
    rate_limit: {max: 1, per: 1h}
  - name: other
    priority: critical
    signal: {kafka_lag: {group: h, topic: t}}
    when: "> 10"
    action: {notify: {webhook: "http://127.0.0.1:9/other"}}
    cooldown: 1m
  - name: verified
    priority: critical
    signal: {kafka_lag: {group: v, topic: t}}
    when: "> 10"
    action: {notify: {webhook: "http://127.0.0.1:9/verified"}}
    cooldown: 1m
    verify: {within: 10m, expect: "< 1"}
"#;

/// A large Unix-like time, as the daemon's engine time is.
const T0: u64 = 1_780_000_000;

fn set(text: &str) -> Arc<RuleSet> {
    Arc::new(rules::load_texts(&[(Path::new("r.yaml"), text)], &|_| None).expect("valid"))
}

fn engine(budget: u32) -> Engine {
    let config = EngineConfig {
        budget_limit: budget,
        budget_window: Duration::from_secs(600),
        ..EngineConfig::default()
    };
    Engine::new(set(RULES), config)
}

fn at(s: u64) -> Duration {
    Duration::from_secs(T0 + s)
}

/// Feeds every rule `value` at `s`, evaluates, reports acts as succeeded; returns
/// (rule, verdict, reason) of each rule's own decision.
fn tick(engine: &mut Engine, s: u64, value: f64) -> Vec<(String, Verdict, Option<SkipReason>)> {
    let now = at(s);
    for i in 0..engine.rules().rules.len() {
        engine.observe(
            i,
            Reading {
                at: now,
                result: Ok(vec![Series::single(value)]),
            },
        );
    }
    let mut out = Vec::new();
    for mut d in engine.evaluate(now, &NoWorld) {
        if d.decision == Verdict::Act {
            d.outcome = Some(WriteOutcome::Succeeded);
            d.success = Some(true);
            engine.report(&d);
        }
        out.push((d.rule.to_string(), d.decision, d.reason));
    }
    out
}

fn acted(ticks: &[(String, Verdict, Option<SkipReason>)]) -> Vec<&str> {
    ticks
        .iter()
        .filter(|(_, v, _)| *v == Verdict::Act)
        .map(|(r, _, _)| r.as_str())
        .collect()
}

fn reason(ticks: &[(String, Verdict, Option<SkipReason>)], rule: &str) -> Option<SkipReason> {
    ticks.iter().find(|(r, _, _)| r == rule).and_then(|t| t.2)
}

/// Through JSON, as the state object holds it.
fn handed_over(from: &Engine, s: u64) -> Durable {
    let text = serde_json::to_string(&from.durable(at(s))).expect("serializable");
    serde_json::from_str(&text).expect("read back")
}

#[test]
fn a_fresh_engine_given_the_state_allows_nothing_the_first_would_not() {
    let mut first = engine(10);
    assert_eq!(acted(&tick(&mut first, 0, 100.0)), ["lag", "other", "verified"]);
    let kept = handed_over(&first, 30);

    let mut next = engine(10);
    next.restore(&kept);
    let t = tick(&mut next, 30, 100.0);
    assert!(acted(&t).is_empty(), "{t:?}");
    assert_eq!(reason(&t, "lag"), Some(SkipReason::Cooldown));
    assert_eq!(reason(&t, "other"), Some(SkipReason::Cooldown));
    assert_eq!(
        reason(&t, "verified"),
        Some(SkipReason::Cooldown),
        "being verified"
    );
    // `other` after its 1m cooldown; `lag` after its 10m cooldown is still rate limited.
    assert_eq!(acted(&tick(&mut next, 61, 100.0)), ["other"]);
    let t = tick(&mut next, 700, 100.0);
    assert_eq!(reason(&t, "lag"), Some(SkipReason::RateLimit), "{t:?}");
    assert!(acted(&tick(&mut next, 3600, 100.0)).contains(&"lag"));
}

#[test]
fn the_budget_window_carries_over() {
    let mut first = engine(3);
    assert_eq!(acted(&tick(&mut first, 0, 100.0)).len(), 3);
    let mut next = engine(3);
    next.restore(&handed_over(&first, 1));
    assert_eq!(next.budget_left(at(1)), 0);
    let t = tick(&mut next, 120, 100.0);
    assert_eq!(reason(&t, "other"), Some(SkipReason::Budget), "{t:?}");
    assert_eq!(next.budget_left(at(600)), 3, "the window moved on");
}

#[test]
fn a_failed_verification_quarantines_across_the_handover() {
    let mut first = engine(10);
    tick(&mut first, 0, 100.0);
    // Still high when the window ends: the verification fails, the target is quarantined.
    tick(&mut first, 601, 100.0);
    let kept = handed_over(&first, 602);
    let verified = &kept.rules["verified"].targets;
    let q = verified.values().next().and_then(|t| t.quarantine.as_ref());
    assert!(q.is_some(), "{kept:?}");
    let mut next = engine(10);
    next.restore(&kept);
    let t = tick(&mut next, 700, 100.0);
    assert_eq!(reason(&t, "verified"), Some(SkipReason::Quarantined), "{t:?}");
}

#[test]
fn what_no_longer_binds_is_pruned() {
    let mut first = engine(10);
    tick(&mut first, 0, 100.0);
    tick(&mut first, 5, 0.0);
    let soon = first.durable(at(30));
    assert_eq!(soon.budget.len(), 3);
    assert!(soon.rules["other"].targets.values().all(|t| t.last_act.is_some()));
    // After `other`'s cooldown its target has nothing left to keep.
    let later = first.durable(at(120));
    assert!(!later.rules.contains_key("other"), "{later:?}");
    assert!(later.rules["lag"].targets.values().all(|t| t.last_act.is_some()));
    // Past every window (the budget's 10m, `lag`'s 1h rate limit) only the verification's
    // verdict remains: `verified` was inactive at its end, a success, so nothing at all.
    tick(&mut first, 700, 0.0);
    let empty = first.durable(at(3700));
    assert_eq!(empty, Durable::default(), "{empty:?}");
}

#[test]
fn an_action_found_not_done_is_taken_back() {
    let mut first = engine(10);
    tick(&mut first, 0, 100.0);
    let mut next = engine(10);
    next.restore(&handed_over(&first, 1));
    let taken: Vec<(String, String)> = next
        .rules()
        .rules
        .iter()
        .zip(next.states())
        .map(|(rule, targets)| {
            assert_eq!(targets.len(), 1, "one target each");
            (
                rule.name.to_string(),
                targets.keys().next().expect("a target").to_string(),
            )
        })
        .collect();
    for (rule, target) in &taken {
        next.take_back(rule, target, at(0));
    }
    assert_eq!(acted(&tick(&mut next, 2, 100.0)), ["lag", "other", "verified"]);
}

#[test]
fn a_rule_missing_from_this_set_keeps_its_state_until_it_comes_back() {
    let mut first = engine(10);
    tick(&mut first, 0, 100.0);
    let kept = handed_over(&first, 1);
    // A process whose rule set lacks `lag` (a bad ConfigMap apply) still carries it...
    let only_other = RULES.split("  - name: other").nth(1).expect("the other rules");
    let mut partial = Engine::new(
        set(&format!("rules:\n  - name: other{only_other}")),
        EngineConfig::default(),
    );
    partial.restore(&kept);
    tick(&mut partial, 2, 100.0);
    assert!(partial.durable(at(3)).rules.contains_key("lag"), "handed on");
    // ...and when the fix puts it back, its cooldown is still there.
    partial.replace_rules(set(RULES));
    let t = tick(&mut partial, 60, 100.0);
    assert_eq!(reason(&t, "lag"), Some(SkipReason::Cooldown), "{t:?}");
}

#[test]
fn an_intent_carries_only_its_own_actions_marks_not_those_of_the_tick_still_to_run() {
    let mut first = engine(10);
    let now = at(0);
    for i in 0..first.rules().rules.len() {
        first.observe(
            i,
            Reading {
                at: now,
                result: Ok(vec![Series::single(100.0)]),
            },
        );
    }
    let decisions: Vec<_> = first
        .evaluate(now, &NoWorld)
        .into_iter()
        .filter(|d| d.decision == Verdict::Act)
        .collect();
    assert_eq!(decisions.len(), 3);
    // Written with the first action's intent: the engine has decided all three already.
    let mut kept = first.durable(now);
    for later in &decisions[1..] {
        kept.without(later);
    }
    assert_eq!(kept.budget.len(), 1, "{kept:?}");
    assert_eq!(kept.rules.keys().collect::<Vec<_>>(), ["lag"]);
    // The process dies there: the next one may still take the other two.
    let mut next = engine(10);
    next.restore(&kept);
    let t = tick(&mut next, 1, 100.0);
    assert_eq!(acted(&t), ["other", "verified"], "{t:?}");
}

#[test]
fn a_state_written_before_targets_named_their_namespace_keeps_its_cooldowns() {
    let rules = r#"rules:
  - name: scale-app
    priority: critical
    signal: {kafka_lag: {group: g, topic: t}}
    when: "> 10"
    action: {scale: {target: deployment/app, replicas: 3}}
    cooldown: 10m
"#;
    // As the daemon installs them: the rule's target in the automaton's namespace.
    let installed = rules::load_texts(&[(Path::new("r.yaml"), rules)], &|_| None)
        .expect("valid")
        .in_namespace("prod");
    assert_eq!(
        installed.rules[0].fixed_target.as_deref(),
        Some("prod/deployment/app")
    );
    // What an earlier version wrote: the unqualified target, acted on at T0.
    let old: Durable = serde_json::from_value(serde_json::json!({"rules": {"scale-app": {
        "keep": 600_000, "targets": {"deployment/app": {"last_act": T0 * 1000}}}}}))
    .expect("an old state document");
    let mut next = Engine::new(Arc::new(installed), EngineConfig::default());
    next.restore(&old.in_namespace("prod"));
    let world: automaton::core::world::SimWorld =
        serde_yaml::from_str("prod/deployment/app: {replicas: 1}").expect("a world");
    next.observe(
        0,
        Reading {
            at: at(60),
            result: Ok(vec![Series::single(100.0)]),
        },
    );
    let d = next.evaluate(at(60), &world);
    assert_eq!(
        (d[0].decision, d[0].reason),
        (Verdict::Skip, Some(SkipReason::Cooldown)),
        "{d:#?}"
    );
    assert_eq!(&*d[0].target, "prod/deployment/app");
}

//! Reloads never disarm: a rule that leaves the set keeps its state for its cooldown, so
//! putting it back (a bad ConfigMap apply, then the fix) never allows a second action; and a
//! rule set of zero rules is rejected like an invalid one (tests/daemon.rs covers the rest
//! of hot reload).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use automaton::core::decision::{Verdict, WriteOutcome};
use automaton::core::engine::EngineConfig;
use automaton::core::series::{Reading, Series};
use automaton::core::world::NoWorld;
use automaton::rules::{self, Engine, RuleSet};
use automaton::runtime::daemon::Daemon;
use automaton::settings::Settings;

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
"#;

fn set(text: &str) -> Arc<RuleSet> {
    Arc::new(rules::load_texts(&[(Path::new("r.yaml"), text)], &|_| None).expect("valid"))
}

/// Feeds every rule a high reading at `now`, evaluates, reports acts as succeeded; returns
/// the names of the rules that acted.
fn tick(engine: &mut Engine, now: Duration) -> Vec<String> {
    for i in 0..engine.rules().rules.len() {
        engine.observe(
            i,
            Reading {
                at: now,
                result: Ok(vec![Series::single(100.0)]),
            },
        );
    }
    let mut acted = Vec::new();
    for mut d in engine.evaluate(now, &NoWorld) {
        if d.decision == Verdict::Act {
            d.outcome = Some(WriteOutcome::Succeeded);
            d.success = Some(true);
            engine.report(&d);
            acted.push(d.rule.to_string());
        }
    }
    acted
}

#[test]
fn a_rule_put_back_within_its_cooldown_does_not_act_again() {
    let mut engine = Engine::new(set(RULES), EngineConfig::default());
    assert_eq!(tick(&mut engine, Duration::from_secs(0)), ["lag", "other"]);
    // A bad apply drops `lag`; the fix puts it back a minute later, unchanged.
    let only_other = RULES.split("  - name: other").nth(1).expect("the second rule");
    engine.replace_rules(set(&format!("rules:\n  - name: other{only_other}")));
    assert!(tick(&mut engine, Duration::from_secs(30)).is_empty());
    engine.replace_rules(set(RULES));
    for at in [60, 300, 599] {
        assert!(
            !tick(&mut engine, Duration::from_secs(at)).contains(&"lag".to_owned()),
            "acted again at {at}s, inside its 10m cooldown"
        );
    }
    // After the cooldown, the rate limit (1 per hour) still holds: its window came back too.
    let lag = "lag".to_owned();
    assert!(!tick(&mut engine, Duration::from_secs(700)).contains(&lag));
    assert!(tick(&mut engine, Duration::from_secs(3700)).contains(&lag));
}

#[test]
fn a_rule_gone_for_longer_than_its_cooldown_starts_afresh() {
    let mut engine = Engine::new(set(RULES), EngineConfig::default());
    assert_eq!(tick(&mut engine, Duration::from_secs(0)), ["lag", "other"]);
    let only_other = RULES.split("  - name: other").nth(1).expect("the second rule");
    engine.replace_rules(set(&format!("rules:\n  - name: other{only_other}")));
    tick(&mut engine, Duration::from_secs(10));
    // Kept for max(cooldown, rate-limit window) = 1h after it left, then forgotten.
    tick(&mut engine, Duration::from_secs(3611));
    engine.replace_rules(set(RULES));
    assert!(tick(&mut engine, Duration::from_secs(3612)).contains(&"lag".to_owned()));
}

fn settings() -> Settings {
    Settings::from_vars([("CHECK_INTERVAL".to_owned(), "15s".to_owned())]).expect("settings")
}

#[test]
fn a_rule_directory_without_rules_is_rejected_at_start_and_at_reload() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // At start: nothing to run is an error, not a silent daemon that heals nothing.
    let err = Daemon::new(settings(), dir.path().to_path_buf())
        .err()
        .expect("zero rules at start is an error");
    assert!(err.to_string().contains("no rules"), "{err}");

    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, RULES).expect("rules written");
    let mut daemon = Daemon::new(settings(), dir.path().to_path_buf()).expect("a daemon");
    // A bad apply: the file is emptied of rules.
    std::fs::write(&file, "rules: []\n").expect("rules emptied");
    daemon.maybe_reload();
    assert_eq!(daemon.metrics.reloads.with_label_values(&["error"]).get(), 1);
    let status = daemon.status.read().expect("status");
    // Kafka is not configured here, so both are kept as disabled: still the last good set.
    assert_eq!(
        status.rules.len() + status.disabled_rules.len(),
        2,
        "the last good set keeps running"
    );
    assert!(
        status.reload.errors[0].contains("no rules"),
        "{:?}",
        status.reload.errors
    );
}

//! The writer, the one place actions are executed, against the scripted API server of
//! `kube_support` and the real engine: the Lease is re-checked right before the write, every
//! action has a deadline, every outcome is counted, and what did not run is reported back to
//! the engine (no verification; a dropped action is decided again).

mod kube_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use automaton::actions::Executors;
use automaton::clients::http::HttpClient;
use automaton::clients::kube::executor::KubeExecutor;
use automaton::core::decision::{Decision, SkipReason, Verdict, WriteOutcome};
use automaton::core::guard::breaker::{BreakerSettings, Breakers, CircuitState};
use automaton::core::world::SimWorld;
use automaton::rules::{Engine, Rule};
use automaton::runtime::metrics::Metrics;
use automaton::runtime::writer::{Lease, Writer};
use kube_support::*;
use serde_json::json;
use tokio::sync::watch;

/// A scale rule whose action is verified: a verification that starts for an action that
/// never ran would later "fail" and roll back what was not done.
const RULES: &str = r#"
rules:
  - name: kafka-consumer-lag
    priority: critical
    signal:
      kafka_lag: {group: email-service-group}
    when: "> 1000"
    action:
      scale: {target: deployment/hello-world, replicas: 6, max: 10}
    cooldown: 5m
    verify: {within: 10m, expect: "< 1000"}
"#;

/// As the engine keys it: the test engine's rules are installed in `default`.
const TARGET: &str = "default/deployment/hello-world";

fn writer(
    kube: KubeExecutor,
    lease: Lease,
    action_timeout: Duration,
) -> (Writer, Arc<Metrics>, Arc<Breakers>) {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let breakers = Arc::new(Breakers::new(BreakerSettings::default()));
    let executors = Executors {
        http: HttpClient::new().expect("an HTTP client"),
        kube: Some(kube),
        postgres: None,
    };
    let mut writer = Writer::new(
        executors,
        breakers.clone(),
        metrics.clone(),
        action_timeout,
        automaton::runtime::clock::Clock::start(),
    );
    writer.lease = lease;
    (writer, metrics, breakers)
}

/// The engine's `act` decision at `t` seconds, on a lag of 20 000.
fn act_at(engine: &mut Engine, t: u64) -> Decision {
    sample(engine, t, &[("group", "email-service-group")], 20000.0);
    let world: SimWorld =
        serde_yaml::from_str("default/deployment/hello-world: {replicas: 1}").expect("a world");
    engine
        .evaluate(Duration::from_secs(t), &world)
        .into_iter()
        .find(|d| d.decision == Verdict::Act)
        .unwrap_or_else(|| panic!("the engine acts at {t}s"))
}

fn outcomes(metrics: &Metrics, outcome: &str) -> String {
    let line = format!("automaton_action_outcomes_total{{action=\"scale\",outcome=\"{outcome}\"}}");
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(&line))
        .map(|l| l[line.len()..].trim().to_owned())
        .unwrap_or_else(|| "absent".to_owned())
}

fn verifying(engine: &Engine) -> bool {
    engine.states()[0]
        .get(TARGET)
        .is_some_and(|st| st.verifying.is_some())
}

fn rule(engine: &Engine) -> Rule {
    engine.rules().rules[0].clone()
}

#[tokio::test]
async fn a_lease_lost_between_plan_and_write_writes_nothing_and_the_action_is_decided_again() {
    let (_, mut engine) = engine(RULES);
    let mut d = act_at(&mut engine, 60);
    assert!(verifying(&engine), "the engine expects the action to run");

    // The Lease is lost after planning: the write must not happen (no request at all).
    let (lease, lost) = watch::channel(true);
    let (kube, server) = executor(vec![]);
    let (writer, metrics, _) = writer(kube, Lease::Campaign(lost), Duration::from_secs(30));
    lease.send(false).expect("the writer holds the receiver");
    let written = writer.write(&rule(&engine), &mut d, far()).await;
    drop(writer);
    server.await.expect("no request reached the API server");

    assert_eq!(written, WriteOutcome::Dropped);
    assert_eq!(d.outcome, Some(WriteOutcome::Dropped));
    assert_eq!(
        (d.decision, d.reason),
        (Verdict::Skip, Some(SkipReason::NotLeader))
    );
    assert_eq!(outcomes(&metrics, "dropped"), "1");
    assert_eq!(outcomes(&metrics, "succeeded"), "absent");

    // Reported back: no verification of what never ran, and no cooldown, budget or rate
    // spent on it, so the next evaluation (as leader again) acts at once.
    engine.report(&d);
    assert!(!verifying(&engine));
    assert_eq!(engine.budget_left(Duration::from_secs(61)), 10);
    let again = act_at(&mut engine, 75);
    assert_eq!(again.id.as_deref(), Some("sim-2"));
}

#[tokio::test]
async fn an_action_with_no_budget_left_in_the_tick_is_dropped_not_tried() {
    let (_, mut engine) = engine(RULES);
    let mut d = act_at(&mut engine, 60);
    let (kube, server) = executor(vec![]);
    let (writer, metrics, _) = writer(kube, Lease::Alone, Duration::from_secs(30));
    let spent = Instant::now();
    assert_eq!(
        writer.write(&rule(&engine), &mut d, spent).await,
        WriteOutcome::Dropped
    );
    drop(writer);
    server.await.expect("no request reached the API server");
    assert_eq!(d.success, Some(false));
    assert!(
        d.detail
            .as_ref()
            .is_some_and(|t| t.to_string().contains("write budget")),
        "{:?}",
        d.detail
    );
    assert_eq!(outcomes(&metrics, "dropped"), "1");
    engine.report(&d);
    assert!(!verifying(&engine));
}

#[tokio::test(start_paused = true)]
async fn an_action_past_its_deadline_is_a_counted_timeout_without_verification() {
    let (_, mut engine) = engine(RULES);
    let mut d = act_at(&mut engine, 60);
    // The API server takes the read and never answers it: only the deadline ends the write
    // (the request's own timeout is 10s, and would be retried).
    let (kube, server) = executor(vec![get(DEPLOYMENT).hang()]);
    let deadline = Duration::from_millis(200);
    let (writer, metrics, breakers) = writer(kube, Lease::Alone, deadline);

    let started = tokio::time::Instant::now();
    let written = writer.write(&rule(&engine), &mut d, far()).await;
    let took = started.elapsed();
    drop(writer);
    server.await.expect("the script ran");

    assert_eq!(written, WriteOutcome::Timeout);
    // The loop goes on at the deadline, not when (or whether) the API server answers.
    assert!(took >= deadline && took < deadline * 2, "the write took {took:?}");
    assert_eq!(d.success, Some(false));
    let detail = d.detail.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(detail.contains("did not finish within 0.2s"), "{detail}");
    assert_eq!(outcomes(&metrics, "timeout"), "1");
    assert_eq!(breakers.infos()["kubernetes"].consecutive_failures, 1);
    assert_eq!(breakers.state("kubernetes"), CircuitState::Closed);

    engine.report(&d);
    assert!(
        !verifying(&engine),
        "no verification for an action that may not have run"
    );
    // Unlike a dropped action, one that may have been applied keeps its cooldown.
    sample(&mut engine, 75, &[("group", "email-service-group")], 20000.0);
    let world = SimWorld::default();
    let next = engine.evaluate(Duration::from_secs(75), &world);
    assert_eq!(next[0].reason, Some(SkipReason::Cooldown));
}

#[tokio::test]
async fn a_write_that_succeeds_is_counted_and_verified() {
    let (_, mut engine) = engine(RULES);
    let mut d = act_at(&mut engine, 60);
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(
            DEPLOYMENT,
            MERGE,
            scale_patch("kafka-consumer-lag", DEPLOYMENT_RV, 6),
        )
        .reply(200, &deployment().replicas(6).json()),
        event(json!({"reason": "ScaledUp"})),
    ];
    let (kube, server) = executor(script);
    let (writer, metrics, _) = writer(kube, Lease::Alone, Duration::from_secs(30));
    assert_eq!(
        writer.write(&rule(&engine), &mut d, far()).await,
        WriteOutcome::Succeeded
    );
    drop(writer);
    server.await.expect("the script ran");
    assert_eq!(d.success, Some(true));
    assert_eq!(d.change, Some(json!({"replicas": [1, 6]})));
    assert_eq!(outcomes(&metrics, "succeeded"), "1");
    engine.report(&d);
    assert!(verifying(&engine), "a change that was made is verified");
}

/// A write budget that does not run out during a test.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

//! The Kubernetes executor under API faults, against the scripted API server of
//! `kube_support`: every request is listed, so a duplicate write fails the test. Covered
//! elsewhere: 409 then a fresh read and retry (`kube_actions`: raise_memory_reads_again_…),
//! 403 never retried (`kube_actions`: forbidden_is_a_clear_error_…), a watch ending in 410
//! Gone and its re-list counting nothing twice (`pod_signals`: a_relist_after_410_gone_…).

mod kube_support;

use std::time::{Duration, Instant};

use automaton::clients::kube::error::ClusterError;
use automaton::core::decision::Decision;
use automaton::core::guard::breaker::{BreakerSettings, Breakers, CircuitState};
use automaton::rules::Rule;
use kube_support::*;
use serde_json::json;

/// `scale` by `step: 2` from the 3 replicas the engine saw: the plan is the absolute 5.
fn step_up() -> (Rule, Decision) {
    decide(
        &rule(
            "kafka-consumer-lag",
            "kafka_lag: {group: email-service-group}",
            "scale: {target: deployment/hello-world, step: 2, max: 10}",
        ),
        "deployment/hello-world: {replicas: 3}",
        &[("group", "email-service-group")],
        20000.0,
    )
}

/// The one patch of the scale: replicas and the last-action annotation, under the
/// resourceVersion read.
fn scale_to(replicas: u32) -> Exchange {
    patch(
        DEPLOYMENT,
        MERGE,
        scale_patch("kafka-consumer-lag", DEPLOYMENT_RV, replicas),
    )
}

/// The request after a successful scale to 5: the Event.
fn scaled_to_5() -> Vec<Exchange> {
    vec![event(
        json!({"reason": "ScaledUp", "note": "rule kafka-consumer-lag: 3 replicas → 5 replicas (action sim-1 at 2025-06-01T12:00:00Z: value 20000, when > 0)"}),
    )]
}

#[tokio::test]
async fn server_errors_on_the_read_then_exactly_one_write_of_the_absolute_value() {
    let busy = || get(DEPLOYMENT).fail(failure("kubeclient/namespace_exception"));
    let mut script = vec![
        busy(),
        busy(),
        get(DEPLOYMENT).reply(200, &deployment().replicas(3).json()),
        scale_to(5).reply(200, &deployment().replicas(5).json()),
    ];
    script.extend(scaled_to_5());
    let outcome = execute(script, &step_up()).await.expect("scaled after two 500s");
    assert_eq!(outcome.change, Some(json!({"replicas": [3, 5]})));
}

#[tokio::test]
async fn a_retried_step_write_sends_the_same_absolute_value_never_adds_twice() {
    // The 503 may have come after the API server applied the patch: the retry sets 5
    // again, it does not add 2 to what is there now.
    let mut script = vec![
        get(DEPLOYMENT).reply(200, &deployment().replicas(3).json()),
        scale_to(5).fail((503, String::new())),
        scale_to(5).fail(failure("kubeclient/namespace_exception")),
        scale_to(5).reply(200, &deployment().replicas(5).json()),
    ];
    script.extend(scaled_to_5());
    let outcome = execute(script, &step_up()).await.expect("scaled");
    assert_eq!(outcome.change, Some(json!({"replicas": [3, 5]})));
}

#[tokio::test]
async fn a_write_without_answer_times_out_and_is_retried_with_the_same_absolute_value() {
    let mut script = vec![
        get(DEPLOYMENT).reply(200, &deployment().replicas(3).json()),
        scale_to(5).hang(),
        scale_to(5).reply(200, &deployment().replicas(5).json()),
    ];
    script.extend(scaled_to_5());
    let (executor, server) = executor(script);
    let executor = executor.with_timeouts(Duration::from_millis(100), Duration::from_secs(1));
    let (rule, decision) = step_up();
    let outcome = run(&executor, &rule, &decision).await.expect("scaled");
    drop(executor);
    server.await.expect("the API server script failed");
    assert_eq!(outcome.change, Some(json!({"replicas": [3, 5]})));
}

#[tokio::test]
async fn too_many_requests_waits_the_retry_after_the_status_asks_for() {
    let mut script = vec![
        get(DEPLOYMENT).fail(failure("derived/429-too-many-requests-retry-after")),
        get(DEPLOYMENT).reply(200, &deployment().replicas(3).json()),
        scale_to(5).reply(200, &deployment().replicas(5).json()),
    ];
    script.extend(scaled_to_5());
    let started = Instant::now();
    let outcome = execute(script, &step_up()).await.expect("scaled");
    let waited = started.elapsed();
    assert_eq!(outcome.skipped, None);
    // The test backoff is at most 5 ms: only `retryAfterSeconds: 1` explains a second.
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before the 1 s asked"
    );
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_fails_now_instead_of_holding_the_tick() {
    let script = vec![get(DEPLOYMENT).fail(failure("derived/500-server-timeout-retry-after-60"))];
    let started = Instant::now();
    let err = execute(script, &step_up()).await.expect_err("not waited for");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn a_plain_text_429_without_a_status_falls_back_to_the_backoff() {
    // API Priority and Fairness: plain text, the Retry-After header is not visible through
    // kube's Error::Api, so the computed backoff applies.
    let mut script = vec![
        get(DEPLOYMENT).fail((429, "Too many requests, please try again later.".to_owned())),
        get(DEPLOYMENT).reply(200, &deployment().replicas(3).json()),
        scale_to(5).reply(200, &deployment().replicas(5).json()),
    ];
    script.extend(scaled_to_5());
    let started = Instant::now();
    execute(script, &step_up()).await.expect("scaled");
    assert!(started.elapsed() < Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------
// The breaker the daemon puts around the executor (runtime/writer.rs): a failure counts
// only when the API server did not answer properly (`ClusterError::is_transient`).

/// One execution through the breaker, as the daemon runs it.
async fn through(breakers: &Breakers, script: Vec<Exchange>) -> Result<(), String> {
    breakers.admit("kubernetes").map_err(|e| e.to_string())?;
    let result = execute(script, &step_up()).await;
    let down = result
        .as_ref()
        .err()
        .filter(|e| e.is_transient())
        .map(ClusterError::to_string);
    breakers.record("kubernetes", down.as_deref().map_or(Ok(()), Err));
    result.map(drop).map_err(|e| e.to_string())
}

/// An API server that answers 503 to the read and to its three retries.
fn unavailable() -> Vec<Exchange> {
    (0..4)
        .map(|_| get(DEPLOYMENT).fail((503, String::new())))
        .collect()
}

#[tokio::test]
async fn five_failed_actions_open_the_kubernetes_breaker_and_one_probe_closes_it() {
    let breakers = Breakers::new(BreakerSettings {
        failures: 5,
        cool_off: Duration::from_millis(300),
    });
    for _ in 0..4 {
        through(&breakers, unavailable()).await.expect_err("503");
    }
    // A 403 is the API server answering: it is not a failure of the dependency.
    let forbidden = vec![
        get(DEPLOYMENT).reply(200, &deployment().replicas(3).json()),
        scale_to(5).fail(failure("derived/403-forbidden-rbac")),
    ];
    through(&breakers, forbidden).await.expect_err("forbidden");
    assert_eq!(breakers.state("kubernetes"), CircuitState::Closed);
    assert_eq!(breakers.infos()["kubernetes"].consecutive_failures, 0);

    for _ in 0..5 {
        through(&breakers, unavailable()).await.expect_err("503");
    }
    assert_eq!(breakers.state("kubernetes"), CircuitState::Open);
    assert!(breakers.open().contains("kubernetes"));
    // While open, nothing is sent: the empty script fails on any request.
    let why = through(&breakers, vec![]).await.expect_err("refused");
    assert!(
        why.starts_with(
            "circuit_open: kubernetes failed 5 times in a row (last: GET deployments.apps \"hello-world\""
        ),
        "{why}"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(breakers.state("kubernetes"), CircuitState::HalfOpen);
    breakers.admit("kubernetes").expect("the one probe");
    assert!(breakers.admit("kubernetes").is_err(), "one probe at a time");
    let mut probe = vec![
        get(DEPLOYMENT).reply(200, &deployment().replicas(3).json()),
        scale_to(5).reply(200, &deployment().replicas(5).json()),
    ];
    probe.extend(scaled_to_5());
    let outcome = execute(probe, &step_up())
        .await
        .map(drop)
        .map_err(|e| e.to_string());
    assert_eq!(outcome, Ok(()));
    breakers.record("kubernetes", Ok(()));
    assert_eq!(breakers.state("kubernetes"), CircuitState::Closed);
    assert!(breakers.admit("kubernetes").is_ok());
}

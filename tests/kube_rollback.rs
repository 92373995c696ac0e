//! `KubeExecutor::rollback` against the scripted API server of `kube_support`. The rollback
//! decisions come from the real engine: a rule with `verify` acts at 60 s, its signal has
//! not improved when the 10 minute window ends at 660 s, and the engine emits the `rollback`
//! act (its own action id, the reversing change, the undo as its plan).

mod kube_support;

use std::time::Duration;

use automaton::core::decision::{Decision, SkipReason, Verdict};
use automaton::core::world::SimWorld;
use automaton::rules::Rule;
use kube_support::*;
use serde_json::json;

const VERIFY: &str = "    verify: {within: 10m, expect: \"< 1\"}\n";

/// The rollback the engine decides for `action` after it did not help.
fn rollback_of(
    name: &str,
    signal: &str,
    action: &str,
    world: &str,
    labels: &[(&str, &str)],
) -> (Rule, Decision) {
    let (rule, mut engine) = engine(&format!("{}{VERIFY}", rule(name, signal, action)));
    let world: SimWorld = serde_yaml::from_str(world).expect("a world");
    sample(&mut engine, 60, labels, 1.0);
    let acted = engine.evaluate(Duration::from_secs(60), &world);
    assert!(acted.iter().any(|d| d.decision == Verdict::Act), "{acted:#?}");
    sample(&mut engine, 660, labels, 1.0);
    let rollback = engine
        .evaluate(Duration::from_secs(660), &world)
        .into_iter()
        .find(|d| d.kind.as_str() == "rollback")
        .expect("a rollback");
    assert_eq!(rollback.decision, Verdict::Act);
    assert_eq!(rollback.id.as_deref(), Some("sim-1-rollback"));
    (rule, rollback)
}

fn scale_rollback() -> (Rule, Decision) {
    rollback_of(
        "kafka-consumer-lag",
        "kafka_lag: {group: g}",
        "scale: {target: deployment/hello-world, replicas: 6}",
        "default/deployment/hello-world: {replicas: 2}",
        &[("group", "g")],
    )
}

fn memory_rollback() -> (Rule, Decision) {
    rollback_of(
        "pod-oom-killed",
        "pod_oom_killed: {selector: automaton.dev/heal=true}",
        "raise_memory: {target: owner, factor: 2}",
        "default/deployment/hello-world: {containers: {hello-world: {memory_request: 512Mi, memory_limit: 1Gi}}}",
        &[
            ("pod", "hello-world-6b9d85fbd6-klpv2"),
            ("container", "hello-world"),
            ("owner", "default/deployment/hello-world"),
        ],
    )
}

async fn roll_back(
    script: Vec<Exchange>,
    (rule, decision): &(Rule, Decision),
) -> Result<automaton::core::plan::Outcome, automaton::clients::kube::error::ClusterError> {
    let (executor, server) = executor(script);
    let act = automaton::clients::kube::executor::Act {
        rule: &rule.name,
        cooldown: rule.cooldown,
        when: rule.spec.when,
        decision,
    };
    let result = executor.rollback(&act).await;
    drop(executor);
    server.await.expect("the API server script failed");
    result
}

#[test]
fn the_engine_plans_the_undo() {
    let (_, d) = scale_rollback();
    assert_eq!(d.change, Some(json!({"replicas": [6, 2]})));
    let (_, d) = memory_rollback();
    assert_eq!(
        d.change,
        Some(
            json!({"container": "hello-world", "memory_request": ["1Gi", "512Mi"], "memory_limit": ["2Gi", "1Gi"]})
        )
    );
}

#[tokio::test]
async fn scale_rollback_puts_back_the_replicas_the_action_found() {
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().replicas(6).json()),
        patch(
            DEPLOYMENT,
            MERGE,
            json!({"metadata": {"resourceVersion": DEPLOYMENT_RV}, "spec": {"replicas": 2}}),
        )
        .reply(200, &deployment().replicas(2).json()),
        event(event_fields(
            "RolledBack",
            "Rollback",
            "rule kafka-consumer-lag: 6 replicas → 2 replicas (action sim-1-rollback at 2025-06-01T12:00:00Z: value 1, when > 0)",
            regarding_hello(),
        )),
    ];
    let outcome = roll_back(script, &scale_rollback()).await.expect("rolled back");
    assert_eq!(outcome.skipped, None);
    assert_eq!(outcome.change, Some(json!({"replicas": [6, 2]})));
    assert_eq!(
        outcome.detail,
        "default/deployment/hello-world scaled back from 6 replicas to 2 replicas"
    );
}

#[tokio::test]
async fn scale_rollback_leaves_replicas_someone_changed_since() {
    let script = vec![get(DEPLOYMENT).reply(200, &deployment().replicas(8).json())];
    let outcome = roll_back(script, &scale_rollback()).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
    assert_eq!(
        outcome.detail,
        "default/deployment/hello-world now has 8 replicas, not the 6 the action set: left alone"
    );
    assert_eq!(outcome.change, None);
}

/// The strategic merge patch lowering hello-world back to 512Mi/1Gi, guarded by `rv`.
fn memory_restore(rv: &str) -> Exchange {
    patch(
        DEPLOYMENT,
        STRATEGIC,
        json!({
            "metadata": {"resourceVersion": rv},
            "spec": {"template": {"spec": {"containers": [{
                "name": "hello-world",
                "resources": {"requests": {"memory": "512Mi"}, "limits": {"memory": "1Gi"}},
            }]}}},
        }),
    )
}

#[tokio::test]
async fn memory_rollback_lowers_request_and_limit_exactly_with_a_resource_version() {
    let raised = deployment().memory("1Gi", "2Gi").resource_version("649500");
    let script = vec![
        get(DEPLOYMENT).reply(200, &raised.json()),
        memory_restore("649500").reply(200, &deployment().memory("512Mi", "1Gi").json()),
        event(event_fields(
            "RolledBack",
            "Rollback",
            "rule pod-oom-killed: container hello-world memory 1Gi/2Gi → 512Mi/1Gi (request/limit) (action sim-1-rollback at 2025-06-01T12:00:00Z: value 1, when > 0)",
            regarding_hello(),
        )),
    ];
    let outcome = roll_back(script, &memory_rollback()).await.expect("rolled back");
    assert_eq!(
        outcome.change,
        Some(
            json!({"container": "hello-world", "memory_request": ["1Gi", "512Mi"], "memory_limit": ["2Gi", "1Gi"]})
        )
    );
}

#[tokio::test]
async fn memory_rollback_on_a_conflict_is_an_error_not_a_blind_retry() {
    let raised = deployment().memory("1Gi", "2Gi").resource_version("649500");
    let script = vec![
        get(DEPLOYMENT).reply(200, &raised.json()),
        memory_restore("649500").fail(failure("derived/409-conflict-optimistic-lock")),
    ];
    let err = roll_back(script, &memory_rollback())
        .await
        .expect_err("a conflict");
    assert!(err.is_conflict(), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn memory_rollback_leaves_resources_someone_changed_since() {
    let script = vec![get(DEPLOYMENT).reply(200, &deployment().memory("1Gi", "4Gi").json())];
    let outcome = roll_back(script, &memory_rollback()).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
    assert_eq!(
        outcome.detail,
        "default/deployment/hello-world: container `hello-world` is now 1Gi/4Gi, not what the action set: left alone"
    );
}

#[tokio::test]
async fn a_dry_run_rollback_sends_nothing() {
    let (rule, mut decision) = scale_rollback();
    decision.dry_run = true;
    let outcome = roll_back(vec![], &(rule, decision)).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::DryRun));
}

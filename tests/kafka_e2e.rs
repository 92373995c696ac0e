//! Seed scenario 1 end to end: a real Kafka-protocol broker (nisshi) with a lagging consumer
//! group, the fake Kubernetes API server, and the whole binary between them. The lag rule
//! fires and the exact scale request (replicas and the last-action annotation in one patch,
//! under the resourceVersion read) reaches the Deployment, once.

mod common;
mod kafka_support;

use std::time::Duration;

use common::{eventually, Automaton, FakeKube};
use kafka_support::Broker;
use serde_json::json;

const SCENARIO: &str = r#"namespace: prod
objects:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: email-service, labels: {app: email-service}}
    spec:
      replicas: 1
      selector: {matchLabels: {app: email-service}}
      template:
        metadata: {labels: {app: email-service}}
        spec: {containers: [{name: app, image: "registry.example/email:1.0"}]}
    status: {replicas: 1, readyReplicas: 1, observedGeneration: 1}
"#;

const RULES: &str = r#"rules:
  - name: kafka-consumer-lag
    priority: critical
    signal:
      kafka_lag: {group: email-service-group, topic: email.received}
    when: "> 15000"
    action:
      scale: {target: deployment/email-service, replicas: 6, max: 10}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_scales_the_deployment_once() {
    let broker = Broker::start();
    broker.seed_email_lag().await;
    let fake = FakeKube::start(SCENARIO);
    let rules = fake.dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(rules.join("kafka.yaml"), RULES).expect("rules");
    let bootstrap = broker.bootstrap();
    let a = Automaton::start(
        &fake.kubeconfig,
        &rules,
        "automaton-a",
        &[("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)],
    );

    let scale_path = "/apis/apps/v1/namespaces/prod/deployments/email-service";
    let patch = fake.wait_for("the scale request", Duration::from_secs(60), |r| {
        r["method"] == "PATCH" && r["path"] == scale_path
    });
    assert_eq!(patch["body"]["spec"], json!({"replicas": 6}), "{patch}");
    let meta = &patch["body"]["metadata"];
    assert!(meta["resourceVersion"].is_string(), "a precondition: {patch}");
    assert!(
        meta["annotations"]["automaton.dev/last-action-kafka-consumer-lag"].is_string(),
        "the cooldown in the same patch: {patch}"
    );
    assert_eq!(patch["query"]["fieldManager"], "automaton", "{patch}");
    fake.wait_for("the ScaledUp Event", Duration::from_secs(10), |r| {
        r["method"] == "POST" && r["body"]["reason"] == "ScaledUp"
    });
    let metric = |prefix: &str| {
        let (_, text) = a.get("/metrics")?;
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let acted =
        r#"healing_actions_total{action="scale",dry_run="false",rule="kafka-consumer-lag",success="true"}"#;
    eventually("the action counted", Duration::from_secs(10), || {
        (metric(acted) == Some(1.0)).then_some(())
    });
    assert_eq!(
        metric(r#"automaton_kafka_consumer_lag{group="email-service-group",topic="email.received"}"#),
        Some(17_000.0)
    );
    // More ticks: still firing, inside the cooldown: still one scale request.
    let checks = || metric(r#"healing_checks_total{rule="kafka-consumer-lag"}"#).unwrap_or(0.0);
    let seen = checks();
    eventually("two more ticks", Duration::from_secs(30), || {
        (checks() >= seen + 2.0).then_some(())
    });
    let scales = fake
        .requests()
        .iter()
        .filter(|r| r["method"] == "PATCH" && r["path"] == scale_path)
        .count();
    assert_eq!(scales, 1, "exactly one scale request");
}

//! The Kubernetes API going away under a running automaton (the whole binary against the
//! fake API server, which is stopped and later started again on the same port): evaluation
//! goes on, `/readyz` turns 503 with the reason while `/healthz` stays 200, no action is
//! attempted, the breaker shows it, and when the API is back everything resumes — the pod
//! watch, readiness, the Lease and a real action — without restarting the automaton.

mod common;

use std::time::Duration;

use common::scenario::{oom_scenario, OOM_RULES};
use common::{eventually, Automaton, FakeKube};
use serde_json::Value;

fn json(a: &Automaton, path: &str) -> Option<(u16, Value)> {
    let (code, body) = a.get(path)?;
    Some((code, serde_json::from_str(&body).ok()?))
}

fn metric(a: &Automaton, prefix: &str) -> Option<f64> {
    let (_, text) = a.get("/metrics")?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

const RESTART_RULE: &str = r#"
  - name: disk
    priority: critical
    signal: {disk_usage: {path: /}}
    when: ">= 0"
    action: {restart: {target: deployment/app-0}}
    cooldown: 1h
"#;

#[test]
fn an_unreachable_api_is_unready_never_unhealthy_never_acted_on_and_recovers() {
    // No kill in the first API server's life.
    let mut fake = FakeKube::start(&oom_scenario(1, 3600.0, 0.0));
    let port = fake.port();
    let rules = fake.dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("rules.yaml"), format!("{OOM_RULES}{RESTART_RULE}")).unwrap();
    let env = [
        ("BREAKER_FAILURES", "2"),
        ("BREAKER_COOL_OFF", "1s"),
        ("LEASE_DURATION", "3"),
    ];
    let a = Automaton::start(&fake.kubeconfig, &rules, "automaton-a", &env);

    eventually("ready", Duration::from_secs(60), || {
        json(&a, "/readyz").filter(|(code, _)| *code == 200).map(|_| ())
    });
    // The restart rule acted once, through the API.
    fake.wait_for("the rollout restart", Duration::from_secs(30), |r| {
        r["method"] == "PATCH" && r["path"] == "/apis/apps/v1/namespaces/prod/deployments/app-0"
    });
    let acted = r#"healing_actions_total{action="restart",dry_run="false",rule="disk",success="true"}"#;
    assert_eq!(metric(&a, acted), Some(1.0));

    fake.stop();
    let (_, body) = eventually("unready with the reason", Duration::from_secs(30), || {
        json(&a, "/readyz").filter(|(code, _)| *code == 503)
    });
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("Kubernetes API is unreachable"), "{reasons}");
    eventually("the kubernetes breaker open", Duration::from_secs(30), || {
        (metric(&a, r#"circuit_breaker_state{dependency="kubernetes"}"#)? >= 1.0).then_some(())
    });
    // A while into the outage: still alive, still evaluating, never an attempted action.
    let checks = |a: &Automaton| metric(a, r#"healing_checks_total{rule="disk"}"#).unwrap_or(0.0);
    let seen = checks(&a);
    eventually("evaluation going on", Duration::from_secs(30), || {
        (checks(&a) >= seen + 3.0).then_some(())
    });
    assert_eq!(a.get("/healthz").map(|(code, _)| code), Some(200));
    let failed = r#"healing_actions_total{action="restart",dry_run="false",rule="disk",success="false"}"#;
    assert_eq!(metric(&a, failed), None, "no action attempted against a dead API");
    let (_, status) = json(&a, "/status").unwrap();
    assert_eq!(
        status["circuits"]["kubernetes"]["state"], "open",
        "{}",
        status["circuits"]
    );
    let disk = status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "disk")
        .unwrap()
        .clone();
    assert_eq!(disk["targets"][0]["state"], "firing", "{disk}");

    // The API is back (a fresh server on the same port) with an OOM kill 2 s after the
    // automaton's watch returns: healed through the API, without restarting the automaton.
    fake.restart(port, &oom_scenario(1, 2.0, 0.0));
    eventually("ready again", Duration::from_secs(90), || {
        json(&a, "/readyz").filter(|(code, _)| *code == 200).map(|_| ())
    });
    let patch = fake.wait_for("the memory patch after recovery", Duration::from_secs(90), |r| {
        r["method"] == "PATCH"
            && r["path"] == "/apis/apps/v1/namespaces/prod/deployments/app-0"
            && r["body"]["spec"]["template"]["spec"]["containers"].is_array()
    });
    assert_eq!(
        patch["body"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "2Gi"
    );
    assert_eq!(
        metric(&a, r#"circuit_breaker_state{dependency="kubernetes"}"#),
        Some(0.0)
    );
    assert_eq!(metric(&a, failed), None);
}

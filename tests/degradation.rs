//! The Kubernetes API going away under a running automaton (the whole binary against the
//! fake API server, reached through a TCP proxy that is taken off the network and put back
//! on the same port, so the server keeps its state as a real one keeps etcd's): evaluation
//! goes on, `/readyz` turns 503 with the reason while `/healthz` stays 200, no action is
//! attempted, the breaker shows it, and when the API is back everything resumes — the pod
//! watch, readiness, the Lease and a real action — without restarting the automaton.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::scenario::{oom_scenario, OOM_RULES};
use common::{eventually, Automaton, FakeKube};
use serde_json::Value;

fn json(a: &Automaton, path: &str) -> Option<(u16, Value)> {
    let (code, body) = a.get(path)?;
    Some((code, serde_json::from_str(&body).ok()?))
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
    // No kill on the timeline: the kill comes later, from the test, as a kubelet's report.
    let fake = FakeKube::start(&oom_scenario(1, 3600.0, 0.0));
    let mut proxy = Proxy::start(fake.port());
    let rules = fake.dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("rules.yaml"), format!("{OOM_RULES}{RESTART_RULE}")).unwrap();
    let env = [
        ("BREAKER_FAILURES", "2"),
        ("BREAKER_COOL_OFF", "1s"),
        ("LEASE_DURATION", "3"),
    ];
    let a = Automaton::start(&fake.kubeconfig_via(proxy.port), &rules, "automaton-a", &env);

    eventually("ready", Duration::from_secs(60), || {
        json(&a, "/readyz").filter(|(code, _)| *code == 200).map(|_| ())
    });
    // The restart rule acted once, through the API.
    fake.wait_for("the rollout restart", Duration::from_secs(30), |r| {
        r["method"] == "PATCH" && r["path"] == "/apis/apps/v1/namespaces/prod/deployments/app-0"
    });
    let acted = r#"healing_actions_total{action="restart",dry_run="false",rule="disk",success="true"}"#;
    // Counted once the action has finished (its Event follows the PATCH).
    eventually("the restart counted", Duration::from_secs(10), || {
        (a.metric(acted) == Some(1.0)).then_some(())
    });

    proxy.stop();
    let (_, body) = eventually("unready with the reason", Duration::from_secs(30), || {
        json(&a, "/readyz").filter(|(code, _)| *code == 503)
    });
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("Kubernetes API is unreachable"), "{reasons}");
    eventually("the kubernetes breaker open", Duration::from_secs(30), || {
        (a.metric(r#"automaton_circuit_breaker_state{dependency="kubernetes"}"#)? >= 1.0).then_some(())
    });
    // A while into the outage: still alive, still evaluating, never an attempted action.
    let checks = |a: &Automaton| a.metric(r#"healing_checks_total{rule="disk"}"#).unwrap_or(0.0);
    let seen = checks(&a);
    eventually("evaluation going on", Duration::from_secs(30), || {
        (checks(&a) >= seen + 3.0).then_some(())
    });
    assert_eq!(a.get("/healthz").map(|(code, _)| code), Some(200));
    let failed = r#"healing_actions_total{action="restart",dry_run="false",rule="disk",success="false"}"#;
    assert_eq!(a.metric(failed), None, "no action attempted against a dead API");
    let (_, status) = json(&a, "/status").unwrap();
    // Open, or half-open between a failed probe and the next (the cool-off is 1 s here).
    let state = &status["circuits"]["kubernetes"]["state"];
    assert!(state == "open" || state == "half_open", "{}", status["circuits"]);
    let disk = status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "disk")
        .unwrap()
        .clone();
    assert_eq!(disk["targets"][0]["state"], "firing", "{disk}");

    // The API is back on the same port: ready again, and an OOM kill reported now (as the
    // kubelet would) is healed through the API, without restarting the automaton.
    proxy.resume();
    let resumed = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = json(&a, "/readyz");
        if ready.as_ref().is_some_and(|(code, _)| *code == 200) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let logs = a.logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            let requests: Vec<String> = fake
                .requests()
                .iter()
                .rev()
                .take(15)
                .map(|r| format!("{} {} {} {}", r["t"], r["method"], r["path"], r["status"]))
                .collect();
            panic!(
                "not ready again within 60 s: {ready:?}\nstatus circuits: {}\nlast log lines (newest first):\n{}\nlast requests:\n{}",
                json(&a, "/status").map(|(_, s)| s["circuits"].to_string()).unwrap_or_default(),
                tail.join("\n"),
                requests.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("ready again {:?} after the API came back", resumed.elapsed());
    let now = common::rfc3339_ago(0);
    let kill = serde_json::json!({"status": {"containerStatuses": [{
        "name": "app", "ready": false, "restartCount": 1, "image": "registry.example/app:1.0", "imageID": "",
        "state": {"running": {"startedAt": now}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": common::rfc3339_ago(3600),
            "finishedAt": now, "containerID": format!("containerd://{:064}", 7)}}}]}});
    let (code, body) = fake.request(
        "PATCH",
        "/api/v1/namespaces/prod/pods/app-0-5d8f7-x0/status",
        "application/merge-patch+json",
        &kill.to_string(),
    );
    assert_eq!(code, 200, "{body}");
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
        a.metric(r#"automaton_circuit_breaker_state{dependency="kubernetes"}"#),
        Some(0.0)
    );
    assert_eq!(a.metric(failed), None);
}

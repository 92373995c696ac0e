//! The `alert` signal: a real Alertmanager (Debian's `prometheus-alertmanager`, started here
//! on 127.0.0.1) routes an alert to the binary's `POST /alertmanager` with the bearer token,
//! and the rule on it scales the alert's Deployment through the fake API server, once;
//! resolved, the rule is inactive. The receiver refuses requests without the token, bodies
//! that are not webhooks or are too large; a rule on `alert` without ALERTMANAGER_TOKEN is
//! refused at load. And the whole chain: a Prometheus alerting rule over a scraped series,
//! sent to Alertmanager, routed to the binary, heals once and goes inactive once resolved.

mod common;

use std::time::{Duration, Instant};

use common::alertmanager::Alertmanager;
use common::prometheus::{Exporter, Prometheus};
use common::scenario::deployments;
use common::{eventually, free_port, run_automaton, Automaton, FakeKube};
use serde_json::{json, Value};

const TOKEN: &str = "am-token-0123456789abcdef";

const RULES: &str = "rules:\n  - name: memory-alert\n    priority: critical\n    signal:\n      alert: {name: MemoryHigh, matchers: {namespace: prod}, target: \"deployment/{{deployment}}\"}\n    when: \"> 0\"\n    action: {scale: {target: owner, step: 1, max: 5}}\n    cooldown: 1h\n";

#[test]
fn a_rule_on_alert_without_the_token_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), RULES).expect("rules");
    let rules = dir.path().display().to_string();
    let (listen, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (code, _, err) = run_automaton(
        &["run", "--rules", &rules],
        &[
            ("KUBERNETES", "off"),
            ("LISTEN_ADDR", &listen),
            ("ADMIN_ADDR", &admin),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("a.yaml:2:1: rule `memory-alert`: the `alert` signal needs ALERTMANAGER_TOKEN (a Secret) to be set"),
        "{err}"
    );
}

/// An Alertmanager sending every alert, at once and when resolved, to `receiver`.
fn alertmanager(receiver: &str) -> Alertmanager {
    Alertmanager::start(&format!(
        "route: {{receiver: automaton, group_by: ['...'], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}\nreceivers:\n  - name: automaton\n    webhook_configs:\n      - url: {receiver}\n        send_resolved: true\n        http_config: {{authorization: {{type: Bearer, credentials: {TOKEN}}}}}\n"
    ))
}

/// A raw request: (status, body).
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes());
    let _ = s.write_all(body.as_bytes());
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (
        code,
        resp.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    )
}

fn status(a: &Automaton) -> Value {
    serde_json::from_str(&a.get("/status").expect("status").1).expect("json")
}

/// Waits until every target of `rule` is inactive in `/status`.
fn wait_inactive(a: &Automaton, rule: &str) {
    eventually(&format!("{rule} inactive"), Duration::from_secs(30), || {
        let st = status(a);
        let rule = st["rules"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == rule)?
            .clone();
        let states: Vec<Value> = rule["targets"]
            .as_array()?
            .iter()
            .map(|t| t["state"].clone())
            .collect();
        (!states.is_empty() && states.iter().all(|s| s == "inactive")).then_some(())
    });
}

fn alert(ends_in: i64) -> String {
    let now = jiff::Timestamp::now();
    let ends = now + jiff::SignedDuration::from_secs(ends_in);
    json!([{"labels": {"alertname": "MemoryHigh", "namespace": "prod", "deployment": "api"},
            "startsAt": (now - jiff::SignedDuration::from_secs(60)).to_string(), "endsAt": ends.to_string()}])
    .to_string()
}

#[test]
fn an_alert_routed_by_alertmanager_scales_its_deployment_once_and_resolves() {
    let fake = FakeKube::start(&deployments(&["api", "web"]));
    let rules = fake.dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(rules.join("alert.yaml"), RULES).expect("rules");
    let a = Automaton::start(
        &fake.kubeconfig,
        &rules,
        "automaton-a",
        &[("ALERTMANAGER_TOKEN", TOKEN), ("CHECK_INTERVAL", "5s")],
    );
    eventually("the daemon serves", Duration::from_secs(30), || {
        a.get("/status").map(drop)
    });

    // The receiver: the token, a webhook body, at most 1 MiB.
    let hook = r#"{"version":"4","alerts":[]}"#;
    assert_eq!(request(a.port, "POST", "/alertmanager", &[], hook).0, 401);
    let wrong = [("Authorization", "Bearer not-the-token-at-all")];
    assert_eq!(request(a.port, "POST", "/alertmanager", &wrong, hook).0, 401);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(request(a.port, "POST", "/alertmanager", &auth, "{}").0, 400);
    let big = format!("{{\"alerts\":[],\"pad\":\"{}\"}}", "x".repeat(1024 * 1024));
    assert_eq!(request(a.port, "POST", "/alertmanager", &auth, &big).0, 413);
    assert_eq!(request(a.port, "POST", "/alertmanager", &auth, hook).0, 200);

    let am = alertmanager(&format!("http://127.0.0.1:{}/alertmanager", a.port));
    let posted = Instant::now();
    let (code, body) = request(am.port, "POST", "/api/v2/alerts", &[], &alert(300));
    assert_eq!(code, 200, "{body}");
    let path = "/apis/apps/v1/namespaces/prod/deployments/api";
    let patch = fake.wait_for("the scale of api", Duration::from_secs(30), |r| {
        r["method"] == "PATCH" && r["path"] == path
    });
    let latency = posted.elapsed();
    eprintln!("alert posted to Alertmanager → the PATCH: {latency:?} (group_wait 0s; CHECK_INTERVAL 5s: the push evaluates at once)");
    assert!(
        latency < Duration::from_secs(5),
        "pushed, not polled: {latency:?}"
    );
    assert_eq!(patch["body"]["spec"], json!({"replicas": 2}), "{patch}");
    // `/status` is published at the end of the tick that wrote the PATCH.
    let shown = eventually("the alert in /status", Duration::from_secs(10), || {
        let alerts = status(&a)["alerts"].clone();
        (alerts[0]["status"] == "firing").then_some(alerts)
    });
    assert_eq!(shown[0]["labels"]["deployment"], "api", "{shown}");

    // Resolved in Alertmanager: it tells the receiver, the rule goes inactive.
    let (code, _) = request(am.port, "POST", "/api/v2/alerts", &[], &alert(0));
    assert_eq!(code, 200);
    eventually("the alert resolved in /status", Duration::from_secs(30), || {
        (status(&a)["alerts"][0]["status"] == "resolved").then_some(())
    });
    wait_inactive(&a, "memory-alert");
    let patches = fake
        .requests()
        .iter()
        .filter(|r| r["method"] == "PATCH" && r["path"] == path)
        .count();
    assert_eq!(patches, 1, "one alert, one scale");
}

/// A Prometheus alerting rule firing above 85% of a scraped gauge, as teams write them.
const PROMETHEUS_RULES: &str = "groups:\n  - name: app\n    rules:\n      - alert: VolumeFilling\n        expr: app_volume_used_percent > 85\n        labels: {severity: warning}\n        annotations: {summary: 'volume of {{ $labels.deployment }} filling up'}\n";

fn volume(api: f64) -> String {
    format!("# TYPE app_volume_used_percent gauge\napp_volume_used_percent{{deployment=\"api\"}} {api}\napp_volume_used_percent{{deployment=\"web\"}} 20\n")
}

#[test]
fn a_prometheus_alerting_rule_through_alertmanager_heals_once_and_resolves() {
    let fake = FakeKube::start(&deployments(&["api", "web"]));
    let rules = fake.dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(
        rules.join("alert.yaml"),
        "rules:\n  - name: volume-alert\n    priority: critical\n    signal:\n      alert: {name: VolumeFilling, matchers: {severity: warning}, target: \"deployment/{{deployment}}\"}\n    when: \"> 0\"\n    action: {scale: {target: owner, step: 1, max: 5}}\n    cooldown: 1h\n",
    )
    .expect("rules");
    let a = Automaton::start(
        &fake.kubeconfig,
        &rules,
        "automaton-a",
        &[("ALERTMANAGER_TOKEN", TOKEN), ("CHECK_INTERVAL", "5s")],
    );
    let am = alertmanager(&format!("http://127.0.0.1:{}/alertmanager", a.port));
    let exporter = Exporter::start(&volume(50.0));
    let prometheus = Prometheus::with_rules(&exporter, Some(PROMETHEUS_RULES), Some(am.port));
    prometheus.wait_for_series("app_volume_used_percent", 2);
    eventually("the daemon serves", Duration::from_secs(30), || {
        a.get("/status").map(drop)
    });

    // The series crosses the rule's threshold: scraped, evaluated, sent, routed, pushed.
    let crossed = Instant::now();
    exporter.set(&volume(92.0));
    let path = "/apis/apps/v1/namespaces/prod/deployments/api";
    let patch = fake.wait_for("the scale of api", Duration::from_secs(30), |r| {
        r["method"] == "PATCH" && r["path"] == path
    });
    eprintln!(
        "series over the alerting rule's threshold in the exporter → the PATCH: {:?} (scrape and evaluation 1 s, group_wait 0s, CHECK_INTERVAL 5s)",
        crossed.elapsed()
    );
    assert_eq!(patch["body"]["spec"], json!({"replicas": 2}), "{patch}");
    let shown = eventually("the alert in /status", Duration::from_secs(10), || {
        let alerts = status(&a)["alerts"].clone();
        (alerts[0]["status"] == "firing").then_some(alerts)
    });
    assert_eq!(shown[0]["labels"]["alertname"], "VolumeFilling", "{shown}");
    assert_eq!(shown[0]["labels"]["deployment"], "api", "{shown}");

    // Back under the threshold: Prometheus resolves the alert, Alertmanager says so.
    exporter.set(&volume(50.0));
    wait_inactive(&a, "volume-alert");
    let patches: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "PATCH" && r["path"].as_str().is_some_and(|p| p.contains("/deployments/")))
        .collect();
    assert_eq!(
        patches.len(),
        1,
        "one alert, one scale, web untouched: {patches:?}"
    );
}

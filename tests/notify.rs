//! `notify` in each format against receivers that check what they get: a local server for
//! the generic and Slack bodies, and a real Alertmanager (Debian's `prometheus-alertmanager`,
//! started here on 127.0.0.1) for the `alertmanager` format, whose API must then list the
//! alert with every fact.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automaton::actions::Notify;
use automaton::clients::http::HttpClient;
use automaton::core::decision::{Decision, DecisionKind, State, Verdict};
use automaton::core::notice::NotifyFormat;
use automaton::rules::{self, Rule};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use common::alertmanager::Alertmanager;

const RULES: &str = r#"
rules:
  - name: kafka-consumer-lag
    description: Scale email-service consumers when the group falls behind
    priority: high
    signal: {kafka_lag: {group: email-service-group, topic: email.received}}
    when: "> 15000"
    action: {scale: {target: deployment/email-service, replicas: 6}}
    cooldown: 5m
"#;

fn rule() -> Rule {
    let set = rules::load_texts(&[(Path::new("kafka.yaml"), RULES)], &|_| None).expect("valid");
    set.rules[0].clone()
}

fn decision() -> Decision {
    Decision {
        id: Some(Arc::from("act-t3k9q2-17")),
        at: Duration::from_secs(120),
        rule: Arc::from("kafka-consumer-lag"),
        target: Arc::from("deployment/email-service"),
        value: Some(20000.0),
        state: State::Firing,
        decision: Verdict::Act,
        reason: None,
        detail: None,
        kind: DecisionKind::Action("scale"),
        dry_run: false,
        change: Some(json!({"replicas": [1, 6]})),
        success: None,
        outcome: None,
        verification: None,
        gitops: None,
        active_since: None,
        plan: None,
        rule_index: 0,
        quarantined: false,
        taken: None,
    }
}

/// Every fact a human needs, as text.
const FACTS: [&str; 7] = [
    "kafka-consumer-lag",
    "deployment/email-service",
    "20000",
    "> 15000",
    "scale",
    "act-t3k9q2-17",
    "{\"replicas\":[1,6]}",
];

/// A receiver that records (path, body) of every POST.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let keep = seen.clone();
    let app = Router::new().fallback(post(move |uri: axum::http::Uri, Json(body): Json<Value>| {
        let keep = keep.clone();
        async move {
            keep.lock().unwrap().push((uri.path().to_owned(), body));
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn notify(webhook: String, format: NotifyFormat) -> Notify {
    Notify {
        webhook,
        format,
        link: Some("http://self-healing-automaton.prod:8000/status".to_owned()),
    }
}

/// RFC 3339 within the last minute.
fn recent(text: &str) {
    let at: jiff::Timestamp = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    let age = jiff::Timestamp::now().duration_since(at);
    assert!(
        age >= jiff::SignedDuration::from_secs(-1) && age.as_secs() < 60,
        "{text}"
    );
}

#[tokio::test]
async fn generic_and_slack_bodies_carry_every_fact() {
    let (base, seen) = receiver().await;
    let http = HttpClient::new().unwrap();
    let (rule, d) = (rule(), decision());
    notify(format!("{base}/hooks/generic"), NotifyFormat::Generic)
        .send(&http, &d, Some(rule.facts()), None)
        .await
        .expect("the generic receiver accepts");
    notify(format!("{base}/services/T000/B000/secret"), NotifyFormat::Slack)
        .send(&http, &d, Some(rule.facts()), None)
        .await
        .expect("the Slack receiver accepts");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);

    let (path, generic) = &seen[0];
    assert_eq!(path, "/hooks/generic");
    let m = &generic["message"];
    assert_eq!(m["rule"], "kafka-consumer-lag");
    assert_eq!(m["target"], "deployment/email-service");
    assert_eq!(
        (m["value"].as_f64(), m["threshold"].as_f64()),
        (Some(20000.0), Some(15000.0))
    );
    assert_eq!(m["action"], "scale");
    assert_eq!(m["change"], json!({"replicas": [1, 6]}));
    assert_eq!(m["id"], "act-t3k9q2-17");
    recent(m["time"].as_str().expect("a time"));
    assert_eq!(generic["decision"]["rule"], "kafka-consumer-lag");

    let (path, slack) = &seen[1];
    assert_eq!(path, "/services/T000/B000/secret");
    let text = slack["text"].as_str().expect("Slack's `text`");
    for fact in FACTS {
        assert!(text.contains(fact), "{fact} missing from {text}");
    }
    assert_eq!(slack["blocks"][0]["type"], "section");
}

#[tokio::test]
async fn a_real_alertmanager_accepts_and_lists_the_alert() {
    let am = Alertmanager::start("route: {receiver: nobody, group_wait: 1h}\nreceivers: [{name: nobody}]\n");
    let http = HttpClient::new().unwrap();
    let (rule, d) = (rule(), decision());
    // The base URL, as rules write it: the format adds /api/v2/alerts.
    let sent = notify(am.base(), NotifyFormat::Alertmanager)
        .send(&http, &d, Some(rule.facts()), None)
        .await
        .expect("Alertmanager accepts the alert");
    assert!(sent.contains("200"), "{sent}");

    let alerts: Value = reqwest::get(format!("{}/api/v2/alerts", am.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alerts = alerts.as_array().expect("a list");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["labels"]["alertname"], "AutomatonAction");
    assert_eq!(a["labels"]["rule"], "kafka-consumer-lag");
    assert_eq!(a["labels"]["target"], "deployment/email-service");
    assert_eq!(a["labels"]["action"], "scale");
    assert_eq!(a["labels"]["severity"], "warning");
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(a["annotations"]["value"], "20000");
    assert_eq!(a["annotations"]["threshold"], "> 15000");
    assert_eq!(a["annotations"]["change"], "{\"replicas\":[1,6]}");
    assert_eq!(a["annotations"]["decision_id"], "act-t3k9q2-17");
    recent(a["annotations"]["time"].as_str().expect("a time"));
    assert_eq!(
        a["generatorURL"],
        "http://self-healing-automaton.prod:8000/status"
    );
    // It ends by itself after the rule's cooldown (5m): nobody resolves a notification.
    let starts: jiff::Timestamp = a["startsAt"].as_str().unwrap().parse().unwrap();
    let ends: jiff::Timestamp = a["endsAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(ends.duration_since(starts).as_secs(), 300);
}

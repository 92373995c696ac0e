use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::core::decision::{DecisionKind, State, Verdict};
use crate::core::values::Op;

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

fn message(d: &Decision) -> Message<'_> {
    Message {
        decision: d,
        rule: Some(RuleFacts {
            description: "Scale email-service consumers when the group falls behind",
            priority: Priority::High,
            when: Condition {
                op: Op::Gt,
                threshold: 15000.0,
            },
            cooldown: Duration::from_secs(300),
        }),
        time: "2026-12-07T03:00:00Z".to_owned(),
        ends: "2026-12-07T03:05:00Z".to_owned(),
        link: Some("http://self-healing-automaton:8000/status"),
        note: None,
    }
}

/// Every fact a human needs, whatever the format.
const FACTS: [&str; 8] = [
    "kafka-consumer-lag",
    "deployment/email-service",
    "20000",
    "> 15000",
    "scale",
    "{\"replicas\":[1,6]}",
    "act-t3k9q2-17",
    "2026-12-07T03:00:00Z",
];

#[test]
fn the_text_carries_every_fact() {
    let d = decision();
    let text = message(&d).text();
    assert_eq!(
        text,
        "rule kafka-consumer-lag on deployment/email-service: value 20000 (when > 15000), action scale \
         change {\"replicas\":[1,6]} (id act-t3k9q2-17, 2026-12-07T03:00:00Z)"
    );
}

#[test]
fn generic_keeps_the_decision_and_adds_the_facts() {
    let d = decision();
    let body = message(&d).body(NotifyFormat::Generic);
    assert_eq!(body["decision"]["rule"], "kafka-consumer-lag");
    assert_eq!(body["message"]["threshold"], 15000.0);
    assert_eq!(body["message"]["condition"], "> 15000");
    assert_eq!(body["message"]["value"], 20000.0);
    assert_eq!(body["message"]["action"], "scale");
    assert_eq!(body["message"]["id"], "act-t3k9q2-17");
    assert_eq!(body["message"]["time"], "2026-12-07T03:00:00Z");
    assert_eq!(body["message"]["priority"], "high");
}

#[test]
fn slack_is_an_incoming_webhook_message_with_every_fact() {
    let d = decision();
    let body = message(&d).body(NotifyFormat::Slack);
    let text = body["text"].as_str().expect("text");
    let blocks = body["blocks"].to_string();
    for fact in FACTS {
        assert!(text.contains(fact), "{fact} missing from {text}");
        let escaped = serde_json::to_string(fact).expect("a string");
        assert!(
            blocks.contains(escaped.trim_matches('"')),
            "{fact} missing from {blocks}"
        );
    }
    assert_eq!(body["blocks"][0]["type"], "section");
    assert_eq!(body["blocks"][0]["fields"].as_array().map(Vec::len), Some(6));
}

#[test]
fn alertmanager_is_a_list_of_one_v2_alert() {
    let d = decision();
    let body = message(&d).body(NotifyFormat::Alertmanager);
    let alerts = body.as_array().expect("a list");
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        a["labels"],
        json!({"alertname": "AutomatonAction", "source": "automaton", "rule": "kafka-consumer-lag",
               "target": "deployment/email-service", "action": "scale", "severity": "warning"})
    );
    assert_eq!(a["annotations"]["value"], "20000");
    assert_eq!(a["annotations"]["threshold"], "> 15000");
    assert_eq!(a["annotations"]["change"], "{\"replicas\":[1,6]}");
    assert_eq!(a["annotations"]["decision_id"], "act-t3k9q2-17");
    assert_eq!(a["startsAt"], "2026-12-07T03:00:00Z");
    assert_eq!(a["endsAt"], "2026-12-07T03:05:00Z");
    assert_eq!(a["generatorURL"], "http://self-healing-automaton:8000/status");
    // Annotations and labels are strings only: Alertmanager rejects anything else.
    for part in ["labels", "annotations"] {
        for (k, v) in a[part].as_object().expect("an object") {
            assert!(v.is_string(), "{part}.{k} = {v}");
        }
    }
}

#[test]
fn alertmanager_posts_to_its_alerts_endpoint() {
    let f = NotifyFormat::Alertmanager;
    assert_eq!(f.url("http://am:9093"), "http://am:9093/api/v2/alerts");
    assert_eq!(f.url("http://am:9093/"), "http://am:9093/api/v2/alerts");
    assert_eq!(
        f.url("http://am:9093/api/v2/alerts"),
        "http://am:9093/api/v2/alerts"
    );
    assert_eq!(
        NotifyFormat::Slack.url("https://hooks.slack.com/x"),
        "https://hooks.slack.com/x"
    );
}

#[test]
fn a_notice_outside_a_rule_says_what_happened() {
    let mut d = decision();
    d.value = None;
    let mut m = message(&d);
    m.rule = None;
    m.note = Some("verification failed: lag did not fall");
    let text = m.text();
    assert!(
        text.contains("value unknown") && text.ends_with(": verification failed: lag did not fall"),
        "{text}"
    );
    let am = m.body(NotifyFormat::Alertmanager);
    assert_eq!(am[0]["labels"]["severity"], "warning");
    assert_eq!(am[0]["annotations"]["threshold"], "");
    let slack = m.body(NotifyFormat::Slack);
    assert_eq!(
        slack["blocks"][0]["text"]["text"],
        "verification failed: lag did not fall"
    );
}

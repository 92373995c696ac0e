//! What a notification says, and how each receiver wants it. Pure: the time is passed in.
//! Every format carries the same facts (rule, target, the value and the threshold that
//! fired, the action and its change, the decision id, the wall-clock time), so what a human
//! reads in Slack, Alertmanager or a generic receiver never differs.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::decision::Decision;
use super::rule::Priority;
use super::values::Condition;

/// The body a receiver accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFormat {
    /// `{"text", "message", "decision"}`: the facts, and the whole decision line.
    #[default]
    Generic,
    /// A Slack incoming webhook: `{"text", "blocks"}`.
    Slack,
    /// Alertmanager's API: `webhook` is its base URL, the body a list of one alert POSTed
    /// to `/api/v2/alerts`.
    Alertmanager,
}

/// Alertmanager's alert endpoint, under its base URL.
const ALERTS_PATH: &str = "/api/v2/alerts";

impl NotifyFormat {
    /// Where to POST: Alertmanager's alert endpoint under its base URL (unless the URL
    /// already names it); the URL as given for the others.
    pub fn url(self, webhook: &str) -> String {
        match self {
            NotifyFormat::Alertmanager if !webhook.trim_end_matches('/').ends_with(ALERTS_PATH) => {
                format!("{}{ALERTS_PATH}", webhook.trim_end_matches('/'))
            }
            _ => webhook.to_owned(),
        }
    }
}

/// What the rule around a decision tells a notification.
#[derive(Debug, Clone, Copy)]
pub struct RuleFacts<'a> {
    pub description: &'a str,
    pub priority: Priority,
    /// The condition that fired.
    pub when: Condition,
    /// The rule's cooldown: how long an Alertmanager alert of the action stays active.
    pub cooldown: std::time::Duration,
}

/// One notification: a decision, its rule's facts, when.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub decision: &'a Decision,
    /// `None` for the automaton's own notices (a failed verification) outside any rule.
    pub rule: Option<RuleFacts<'a>>,
    /// RFC 3339, when the message is sent.
    pub time: String,
    /// RFC 3339, when an Alertmanager alert stops firing by itself (a notification is an
    /// event, not a state: nobody resolves it).
    pub ends: String,
    /// Where a human sees more (`/status`): Alertmanager's `generatorURL`.
    pub link: Option<&'a str>,
    /// What the message is about when it is not the decision itself (a failed
    /// verification, a GitOps drift).
    pub note: Option<&'a str>,
}

impl Message<'_> {
    fn value(&self) -> String {
        self.decision
            .value
            .map_or_else(|| "unknown".to_owned(), |v| v.to_string())
    }

    fn threshold(&self) -> String {
        self.rule.map_or_else(String::new, |r| r.when.to_string())
    }

    fn change(&self) -> String {
        self.decision
            .change
            .as_ref()
            .map_or_else(|| "none".to_owned(), ToString::to_string)
    }

    fn id(&self) -> &str {
        self.decision.id.as_deref().unwrap_or("-")
    }

    /// One line with every fact, for chat and for `text`.
    pub fn text(&self) -> String {
        let d = self.decision;
        let mut text = format!("rule {} on {}: value {}", d.rule, d.target, self.value());
        if let Some(r) = self.rule {
            text.push_str(&format!(" (when {})", r.when));
        }
        text.push_str(&format!(
            ", action {} change {} (id {}, {})",
            d.kind,
            self.change(),
            self.id(),
            self.time
        ));
        if let Some(note) = self.note {
            text.push_str(&format!(": {note}"));
        }
        text
    }

    /// The facts, as fields.
    fn facts(&self) -> Value {
        let d = self.decision;
        json!({
            "rule": d.rule,
            "target": d.target,
            "value": d.value,
            "threshold": self.rule.map(|r| r.when.threshold),
            "condition": self.rule.map(|r| r.when.to_string()),
            "priority": self.rule.map(|r| r.priority),
            "action": d.kind,
            "change": d.change,
            "dry_run": d.dry_run,
            "id": d.id,
            "time": self.time,
            "note": self.note,
        })
    }

    /// The body `format` expects.
    pub fn body(&self, format: NotifyFormat) -> Value {
        match format {
            NotifyFormat::Generic => json!({
                "text": self.text(),
                "message": self.facts(),
                "decision": self.decision,
            }),
            NotifyFormat::Slack => self.slack(),
            NotifyFormat::Alertmanager => self.alertmanager(),
        }
    }

    fn slack(&self) -> Value {
        let d = self.decision;
        let field =
            |name: &str, value: String| json!({"type": "mrkdwn", "text": format!("*{name}*\n{value}")});
        let mut fields = vec![
            field("Rule", format!("`{}`", d.rule)),
            field("Target", format!("`{}`", d.target)),
            field("Value", self.value()),
            field("Threshold", self.threshold()),
            field("Action", format!("{} {}", d.kind, self.change())),
            field("Id", format!("{} at {}", self.id(), self.time)),
        ];
        fields.retain(|f| !f["text"].as_str().is_some_and(|t| t.ends_with('\n')));
        let mut blocks = vec![json!({"type": "section", "fields": fields})];
        if let Some(note) = self.note {
            blocks.insert(
                0,
                json!({"type": "section", "text": {"type": "mrkdwn", "text": note}}),
            );
        }
        // `text` is what notifications and clients without blocks show.
        json!({"text": self.text(), "blocks": blocks})
    }

    fn alertmanager(&self) -> Value {
        let d = self.decision;
        let severity = match self.rule.map(|r| r.priority) {
            Some(Priority::Critical) => "critical",
            Some(Priority::High) | None => "warning",
            Some(Priority::Medium | Priority::Low) => "info",
        };
        // Labels identify the alert (bounded values: rule, target, action); the id and
        // the numbers go to annotations, so a repeat of one action updates one alert.
        let mut alert = json!({
            "labels": {
                "alertname": "AutomatonAction",
                "source": "automaton",
                "rule": d.rule,
                "target": d.target,
                "action": d.kind,
                "severity": severity,
            },
            "annotations": {
                "summary": self.text(),
                "description": self.rule.map_or("", |r| r.description),
                "value": self.value(),
                "threshold": self.threshold(),
                "change": self.change(),
                "decision_id": self.id(),
                "time": self.time,
            },
            "startsAt": self.time,
            "endsAt": self.ends,
        });
        if let Some(link) = self.link {
            alert["generatorURL"] = json!(link);
        }
        json!([alert])
    }
}

#[cfg(test)]
mod tests;

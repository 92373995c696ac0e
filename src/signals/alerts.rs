//! The alerts Alertmanager pushed (`POST /alertmanager`, its webhook format version 4), by
//! fingerprint, for the `alert` signal to read (shared like `pods/`: the receiver writes,
//! the signal reads, `/status` shows). A resolved alert, or one past its `endsAt`
//! (Alertmanager stopped hearing of it), reads 0; it is forgotten an hour after its end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How long an alert that ended stays readable (as 0) and shown.
const KEEP_ENDED: Duration = Duration::from_secs(3600);
/// At most this many alerts are kept: a flood is cut, oldest end first.
const MAX_ALERTS: usize = 10_000;

/// Alertmanager's webhook body (the parts read here).
#[derive(Debug, Deserialize)]
pub struct Webhook {
    #[serde(default)]
    pub version: Option<String>,
    pub alerts: Vec<WebhookAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: Option<Timestamp>,
    #[serde(default)]
    pub ends_at: Option<Timestamp>,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// One alert as last pushed, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    /// `firing` or `resolved`, as Alertmanager last said.
    pub status: String,
    pub starts_at: Option<Timestamp>,
    /// Alertmanager's `endsAt`: past it, the alert is over even without a resolved push.
    pub ends_at: Option<Timestamp>,
    pub received_at: Timestamp,
}

impl Alert {
    /// Firing now: said so, and not past its end.
    pub fn firing(&self, now: Timestamp) -> bool {
        self.status == "firing" && self.ends_at.is_none_or(|end| end.as_second() <= 0 || end > now)
    }

    fn ended_at(&self, now: Timestamp) -> Option<Timestamp> {
        if self.firing(now) {
            None
        } else {
            Some(
                self.ends_at
                    .filter(|e| e.as_second() > 0 && *e < self.received_at)
                    .unwrap_or(self.received_at),
            )
        }
    }
}

/// Every alert pushed, shared by the receiver and the signal.
#[derive(Debug, Default)]
pub struct AlertStore {
    alerts: Mutex<BTreeMap<String, Alert>>,
}

/// A fingerprint from the labels when the webhook carries none (older Alertmanagers).
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl AlertStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Alert>> {
        self.alerts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a webhook's alerts; returns how many it carried.
    pub fn receive(&self, hook: Webhook, now: Timestamp) -> usize {
        let n = hook.alerts.len();
        let mut alerts = self.lock();
        for a in hook.alerts {
            let key = a.fingerprint.clone().unwrap_or_else(|| fingerprint(&a.labels));
            alerts.insert(
                key,
                Alert {
                    labels: a.labels,
                    status: a.status,
                    starts_at: a.starts_at,
                    ends_at: a.ends_at,
                    received_at: now,
                },
            );
        }
        prune(&mut alerts, now);
        n
    }

    /// The alerts named `name` whose labels include `matchers`: 1 firing, 0 over.
    pub fn matching(
        &self,
        name: &str,
        matchers: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut alerts = self.lock();
        prune(&mut alerts, now);
        alerts
            .values()
            .filter(|a| a.labels.get("alertname").is_some_and(|n| n == name))
            .filter(|a| matchers.iter().all(|(k, v)| a.labels.get(k) == Some(v)))
            .map(|a| (a.labels.clone(), if a.firing(now) { 1.0 } else { 0.0 }))
            .collect()
    }

    /// Every alert kept, for `/status`.
    pub fn snapshot(&self) -> Vec<Alert> {
        self.lock().values().cloned().collect()
    }
}

fn prune(alerts: &mut BTreeMap<String, Alert>, now: Timestamp) {
    let keep = jiff::SignedDuration::try_from(KEEP_ENDED).unwrap_or(jiff::SignedDuration::MAX);
    alerts.retain(|_, a| a.ended_at(now).is_none_or(|end| now.duration_since(end) < keep));
    while alerts.len() > MAX_ALERTS {
        let oldest = alerts
            .iter()
            .min_by_key(|(_, a)| a.received_at)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => alerts.remove(&k),
            None => break,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Webhook {
        serde_json::from_str(json).expect("a webhook body")
    }

    #[test]
    fn firing_then_resolved_then_forgotten() {
        let store = AlertStore::default();
        let t0: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let firing = r#"{"version":"4","status":"firing","alerts":[
            {"status":"firing","labels":{"alertname":"MemoryHigh","deployment":"api"},"startsAt":"2026-12-07T09:59:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"a1"},
            {"status":"firing","labels":{"alertname":"MemoryHigh","deployment":"web"},"startsAt":"2026-12-07T09:59:00Z","endsAt":"2026-12-07T10:04:00Z","fingerprint":"b2"},
            {"status":"firing","labels":{"alertname":"DiskFull"},"fingerprint":"c3"}]}"#;
        assert_eq!(store.receive(hook(firing), t0), 3);
        let none = BTreeMap::new();
        let got = store.matching("MemoryHigh", &none, t0);
        assert_eq!(got.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [1.0, 1.0]);
        let api = BTreeMap::from([("deployment".to_owned(), "api".to_owned())]);
        assert_eq!(store.matching("MemoryHigh", &api, t0).len(), 1);
        // Past web's endsAt without a resolved push: over.
        let later = t0 + jiff::SignedDuration::from_secs(300);
        let got = store.matching("MemoryHigh", &none, later);
        assert_eq!(
            got.iter()
                .map(|(l, v)| (l["deployment"].as_str(), *v))
                .collect::<Vec<_>>(),
            [("api", 1.0), ("web", 0.0)]
        );
        // Resolved: 0, then forgotten an hour later.
        let resolved = r#"{"alerts":[{"status":"resolved","labels":{"alertname":"MemoryHigh","deployment":"api"},"endsAt":"2026-12-07T10:05:00Z","fingerprint":"a1"}]}"#;
        store.receive(hook(resolved), later);
        assert_eq!(store.matching("MemoryHigh", &api, later)[0].1, 0.0);
        let gone = later + jiff::SignedDuration::from_secs(3601);
        assert!(store.matching("MemoryHigh", &none, gone).is_empty());
        assert_eq!(store.snapshot().len(), 1, "DiskFull still firing");
    }
}

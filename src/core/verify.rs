//! After an action: did it help? A rule with `verify: {within, expect}` watches its signal
//! for `within` after acting. The expectation holding ends the verification as a success;
//! the window ending without it, or the signal being worse than when the action ran once
//! half the window has passed (the first half lets the change take effect: new consumers
//! join, pods roll), is a failure, which rolls the change back and quarantines the
//! (rule, target). An unknown signal at the end decides nothing: no rollback on unknown data.
//! Pure: time and values are passed in.

use std::time::Duration;

use serde::Serialize;

use super::plan::Effect;
use super::rule::Verify;

/// An action under verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Verifying {
    /// The id of the action under verification: a rollback is named after it.
    pub id: Option<std::sync::Arc<str>>,
    pub acted_at: Duration,
    /// The value that fired the action: "worse" is measured against it.
    pub acted_value: Option<f64>,
    /// What the action did, and what restores the state it found.
    pub done: Effect,
    pub undo: Option<Effect>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyResult {
    Success,
    Failed,
    Unknown,
}

impl VerifyResult {
    pub const ALL: [VerifyResult; 3] = [VerifyResult::Success, VerifyResult::Failed, VerifyResult::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            VerifyResult::Success => "success",
            VerifyResult::Failed => "failed",
            VerifyResult::Unknown => "unknown",
        }
    }
}

/// The end of a verification, shown on the decision that ends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub result: VerifyResult,
    pub detail: String,
}

/// A (rule, target) that is not acted on any more: its last action did not help.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantine {
    pub since: Duration,
    pub why: String,
    /// Since when the rule's condition has been inactive: a whole cooldown of it clears
    /// the quarantine.
    pub inactive_since: Option<Duration>,
}

/// Whether `now`'s evaluation ends the verification, and how. `prefers_low` is the rule's
/// direction: a `<` rule fires on low values, so lower than when it acted is worse.
pub fn check(
    v: &Verifying,
    spec: &Verify,
    now: Duration,
    value: Option<f64>,
    prefers_low: bool,
) -> Option<Verification> {
    let after = now.saturating_sub(v.acted_at);
    let end = |result, detail| Some(Verification { result, detail });
    if let Some(x) = value {
        if spec.expect.holds(x) {
            return end(
                VerifyResult::Success,
                format!("{x} met `{}` {}s after the action", spec.expect, after.as_secs()),
            );
        }
        // A `>` rule fires on high values: higher than when we acted is worse.
        let worse = v
            .acted_value
            .filter(|a| if prefers_low { x < *a } else { x > *a });
        if let Some(acted) = worse.filter(|_| after >= spec.within.0 / 2) {
            return end(
                VerifyResult::Failed,
                format!(
                    "{x} is worse than {acted} when the action ran, {}s after it",
                    after.as_secs()
                ),
            );
        }
    }
    if after < spec.within.0 {
        return None;
    }
    match value {
        Some(x) => end(
            VerifyResult::Failed,
            format!(
                "`{}` not met within {}: the value is {x}",
                spec.expect, spec.within
            ),
        ),
        None => end(
            VerifyResult::Unknown,
            format!(
                "the signal is unknown at the end of the {} window: nothing is rolled back on unknown data",
                spec.within
            ),
        ),
    }
}

/// The decision's `change` of a rollback: what the action set, back to what it found.
pub fn reversing_change(done: &Effect, undo: &Effect) -> serde_json::Value {
    match (done, undo) {
        (Effect::SetReplicas { replicas: after, .. }, Effect::SetReplicas { replicas: before, .. }) => {
            serde_json::json!({"replicas": [after, before]})
        }
        (
            Effect::SetMemory {
                request: req_after,
                limit: lim_after,
                container,
                ..
            },
            Effect::SetMemory {
                request: req_before,
                limit: lim_before,
                ..
            },
        ) => serde_json::json!({
            "container": container,
            "memory_request": [req_after, req_before],
            "memory_limit": [lim_after, lim_before],
        }),
        (_, undo) => serde_json::json!({"undo": format!("{undo:?}")}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::values::Dur;

    fn spec() -> Verify {
        Verify {
            within: Dur(Duration::from_secs(600)),
            expect: "< 5000".parse().unwrap(),
        }
    }

    fn acted(value: f64) -> Verifying {
        Verifying {
            id: None,
            acted_at: Duration::from_secs(100),
            acted_value: Some(value),
            done: Effect::SetReplicas {
                target: "deployment/app".into(),
                replicas: 6,
            },
            undo: Some(Effect::SetReplicas {
                target: "deployment/app".into(),
                replicas: 2,
            }),
        }
    }

    fn at(v: &Verifying, secs: u64, value: Option<f64>) -> Option<VerifyResult> {
        check(v, &spec(), Duration::from_secs(secs), value, false).map(|x| x.result)
    }

    #[test]
    fn success_failure_worse_and_unknown() {
        let v = acted(20000.0);
        assert_eq!(
            at(&v, 200, Some(30000.0)),
            None,
            "worse, but within the first half"
        );
        assert_eq!(
            at(&v, 400, Some(30000.0)),
            Some(VerifyResult::Failed),
            "worse after half"
        );
        assert_eq!(at(&v, 400, Some(15000.0)), None, "better, not there yet");
        assert_eq!(at(&v, 450, Some(4000.0)), Some(VerifyResult::Success));
        assert_eq!(
            at(&v, 700, Some(15000.0)),
            Some(VerifyResult::Failed),
            "window over"
        );
        assert_eq!(at(&v, 699, None), None);
        assert_eq!(at(&v, 700, None), Some(VerifyResult::Unknown));
        let change = reversing_change(&v.done, v.undo.as_ref().unwrap());
        assert_eq!(change, serde_json::json!({"replicas": [6, 2]}));
    }
}

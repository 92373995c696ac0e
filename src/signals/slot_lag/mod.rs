//! `slot_lag`: how many slots a Solana validator trails the cluster, read over JSON-RPC.
//!
//! With `reference` RPCs the lag is measured: `getSlot` on the validator and on every
//! reference at once, lag = highest reference slot − local slot (0 when the validator is
//! ahead: a reference behind us is no evidence of lag). Without references the validator's
//! own view is used: `getHealth`. Its `"ok"` only means "within the node's
//! `--health-check-slot-distance`" (default 128 slots), so it reads as 0; a node further
//! behind answers error -32005 with `data.numSlotsBehind`. That count may be `null` (the node
//! cannot tell), which is unknown, never 0: a lag that cannot be read must not look healthy.

pub mod rpc;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use rpc::{get_health, get_slot};
use serde::{Deserialize, Serialize};

use super::{RuleContext, Signal, SignalError, Sources};
use crate::core::series::Series;
use crate::core::url::{check_url, host_port, redacted};

const COMMITMENTS: [&str; 3] = ["processed", "confirmed", "finalized"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotLag {
    /// The validator's JSON-RPC URL.
    pub rpc: String,
    /// Reference RPC URLs; the highest slot among them wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference: Vec<String>,
    /// Commitment level of `getSlot`.
    #[serde(default = "default_commitment")]
    pub commitment: String,
}

fn default_commitment() -> String {
    "processed".to_owned()
}

impl Signal for SlotLag {
    fn source(&self) -> &'static str {
        "solana_rpc"
    }

    fn dependency(&self) -> Option<String> {
        Some(format!("http/{}", host_port(&self.rpc)))
    }

    fn validate(&self, _rule: &RuleContext) -> Vec<String> {
        validate(self)
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        Box::pin(collect(&sources.http, self, sources.timeout))
    }
}

/// Collects one slot_lag reading. Err(reason) = unknown, never 0.
pub async fn collect(
    client: &reqwest::Client,
    spec: &SlotLag,
    timeout: Duration,
) -> Result<Vec<Series>, SignalError> {
    let rpc = redacted(&spec.rpc);
    if spec.reference.is_empty() {
        let lag = get_health(client, &spec.rpc, timeout)
            .await
            .map_err(|e| SignalError::Rpc(format!("getHealth {rpc}: {e}")))?;
        return Ok(vec![series(rpc, "getHealth", lag, None)]);
    }
    let commitment = spec.commitment.as_str();
    let references = spec
        .reference
        .iter()
        .map(|url| get_slot(client, url, commitment, timeout));
    let (local, references) = tokio::join!(
        get_slot(client, &spec.rpc, commitment, timeout),
        futures::future::join_all(references)
    );
    let local = local.map_err(|e| SignalError::Rpc(format!("getSlot {rpc} (local): {e}")))?;
    let mut highest = None;
    let mut failed = Vec::new();
    for (url, answer) in spec.reference.iter().zip(references) {
        match answer {
            Ok(slot) => highest = highest.max(Some(slot)),
            Err(e) => failed.push(format!("{}: {e}", redacted(url))),
        }
    }
    let Some(reference) = highest else {
        return Err(SignalError::Rpc(format!(
            "getSlot: every reference failed: {}",
            failed.join("; ")
        )));
    };
    if !failed.is_empty() {
        // Still answered from the others, but a reference that stays down narrows the view.
        tracing::warn!(rpc = %rpc, failed = %failed.join("; "), "slot_lag: some references failed");
    }
    let lag = reference.saturating_sub(local);
    Ok(vec![series(rpc, "getSlot", lag, Some((local, reference)))])
}

/// Rule-load checks of the parameters (every problem returned).
fn validate(spec: &SlotLag) -> Vec<String> {
    let mut errors: Vec<String> = check_url("rpc", &spec.rpc).into_iter().collect();
    for (i, url) in spec.reference.iter().enumerate() {
        errors.extend(check_url(&format!("reference[{i}]"), url));
    }
    if !COMMITMENTS.contains(&spec.commitment.as_str()) {
        errors.push(format!(
            "`commitment` must be one of {}, found `{}`",
            COMMITMENTS.join(", "),
            spec.commitment
        ));
    }
    errors
}

fn series(rpc: String, method: &str, lag: u64, slots: Option<(u64, u64)>) -> Series {
    let mut labels = BTreeMap::from([("rpc".to_owned(), rpc), ("method".to_owned(), method.to_owned())]);
    if let Some((local, reference)) = slots {
        labels.insert("local_slot".to_owned(), local.to_string());
        labels.insert("reference_slot".to_owned(), reference.to_string());
    }
    Series {
        labels,
        value: lag as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_reports_every_problem_with_its_field() {
        let spec = SlotLag {
            rpc: "localhost:8899".to_owned(),
            reference: vec![
                "https://api.mainnet-beta.solana.com".to_owned(),
                "ftp://x".to_owned(),
            ],
            commitment: "max".to_owned(),
        };
        let errors = validate(&spec);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("`rpc`"), "{errors:?}");
        assert!(errors[1].starts_with("`reference[1]`"), "{errors:?}");
        assert!(
            errors[2].contains("`commitment`") && errors[2].contains("`max`"),
            "{errors:?}"
        );
        let good = SlotLag {
            rpc: "http://127.0.0.1:8899".to_owned(),
            reference: vec![],
            commitment: "finalized".to_owned(),
        };
        assert!(validate(&good).is_empty());
    }
}

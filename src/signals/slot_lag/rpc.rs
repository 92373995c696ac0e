//! The Solana JSON-RPC client of `slot_lag`: `getSlot` and `getHealth`, each answer checked against
//! the JSON-RPC 2.0 envelope (version, our id) and bounded in size. Errors say why no number
//! could be read; callers decide what that means (a signal reads it as unknown, never 0).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

/// A getSlot/getHealth answer is a few dozen bytes; anything near this is not an RPC node.
const MAX_BODY: usize = 64 * 1024;
/// agave `NODE_UNHEALTHY` (rpc-client-api custom_error.rs).
const NODE_UNHEALTHY: i64 = -32005;

/// Request ids differ per call, so an answer meant for another request (a confused proxy, a
/// cached response) is caught instead of being read as this node's slot.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Why one JSON-RPC call gave no number. The Display is the reason shown for "unknown".
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("response body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("response is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("response `jsonrpc` is {0}, expected \"2.0\"")]
    Version(String),
    #[error("response `id` is {found}, expected {expected}")]
    Id { expected: u64, found: String },
    #[error("response has neither `result` nor `error`")]
    NoResult,
    #[error("JSON-RPC error {code}: {message}")]
    Rpc {
        code: i64,
        message: String,
        data: Option<Value>,
    },
    #[error("node unhealthy (-32005: {0}) and numSlotsBehind is null or missing: slots behind unknown")]
    BehindUnknown(String),
    #[error("{0}")]
    BadResult(String),
}

pub async fn get_slot(
    client: &reqwest::Client,
    url: &str,
    commitment: &str,
    timeout: Duration,
) -> Result<u64, RpcError> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let request =
        json!({"jsonrpc": "2.0", "id": id, "method": "getSlot", "params": [{"commitment": commitment}]});
    parse_slot(&post(client, url, &request, timeout).await?, id)
}

pub async fn get_health(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<u64, RpcError> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let request = json!({"jsonrpc": "2.0", "id": id, "method": "getHealth"});
    parse_health(&post(client, url, &request, timeout).await?, id)
}

/// One POST, bounded as a whole (connect, headers and body) by `timeout`.
async fn post(
    client: &reqwest::Client,
    url: &str,
    request: &Value,
    timeout: Duration,
) -> Result<Vec<u8>, RpcError> {
    let call = async {
        let mut response = client.post(url).json(request).send().await.map_err(transport)?;
        if !response.status().is_success() {
            return Err(RpcError::Status(response.status()));
        }
        if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(RpcError::TooLarge);
        }
        // Chunk by chunk: a misbehaving endpoint must not make the daemon buffer without end.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(RpcError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| RpcError::Timeout(timeout))?
}

/// reqwest's Display names the full URL, credentials included; only the causes are kept.
fn transport(e: reqwest::Error) -> RpcError {
    if e.is_timeout() {
        return RpcError::Transport("timed out".to_owned());
    }
    let what = if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut cause = std::error::Error::source(&e);
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c.to_string());
        cause = c.source();
    }
    RpcError::Transport(match innermost {
        Some(c) => format!("{what}: {c}"),
        None => what.to_owned(),
    })
}

/// `getSlot`: the result is the slot number.
pub fn parse_slot(body: &[u8], id: u64) -> Result<u64, RpcError> {
    let result = parse_envelope(body, id)?;
    result.as_u64().ok_or_else(|| {
        RpcError::BadResult(format!("getSlot result is not a slot number: {}", brief(&result)))
    })
}

/// `getHealth`: `"ok"` → 0; -32005 with `data.numSlotsBehind` → that count. Decided on the
/// code and data only: the message differs between the docs and agave ("Node is unhealthy"
/// vs "Node is behind by N slots") and is documented as unstable.
pub fn parse_health(body: &[u8], id: u64) -> Result<u64, RpcError> {
    match parse_envelope(body, id) {
        Ok(Value::String(s)) if s == "ok" => Ok(0),
        Ok(other) => Err(RpcError::BadResult(format!(
            "getHealth result is {}, expected \"ok\"",
            brief(&other)
        ))),
        Err(RpcError::Rpc {
            code: NODE_UNHEALTHY,
            message,
            data,
        }) => match data.as_ref().and_then(|d| d.get("numSlotsBehind")) {
            None | Some(Value::Null) => Err(RpcError::BehindUnknown(message)),
            Some(n) => n.as_u64().ok_or_else(|| {
                RpcError::BadResult(format!("numSlotsBehind is not a slot count: {}", brief(n)))
            }),
        },
        Err(e) => Err(e),
    }
}

/// Checks the JSON-RPC 2.0 envelope and returns `result`, or the `error` as [`RpcError::Rpc`].
fn parse_envelope(body: &[u8], id: u64) -> Result<Value, RpcError> {
    let mut v: Value = serde_json::from_slice(body).map_err(RpcError::NotJson)?;
    match v.get("jsonrpc") {
        Some(Value::String(s)) if s == "2.0" => {}
        other => return Err(RpcError::Version(other.map_or("missing".to_owned(), brief))),
    }
    if v.get("id").and_then(Value::as_u64) != Some(id) {
        let found = v.get("id").map_or("missing".to_owned(), brief);
        return Err(RpcError::Id { expected: id, found });
    }
    if let Some(error) = v.get("error") {
        return Err(RpcError::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| brief(error), str::to_owned),
            data: error.get("data").cloned(),
        });
    }
    v.get_mut("result").map(Value::take).ok_or(RpcError::NoResult)
}

/// A value for a reason string: short, since reasons end up in logs and the status page.
fn brief(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A documented payload from the fixture, as the bytes a node would send.
    fn payload(method: &str, key: &str) -> Vec<u8> {
        let fixture: serde_yaml::Value = serde_yaml::from_str(include_str!(
            "../../../tests/fixtures/solana/jsonrpc-examples.yaml"
        ))
        .unwrap();
        serde_json::to_vec(&fixture[method][key]).unwrap()
    }

    fn edited(method: &str, key: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(&payload(method, key)).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn health_ok_reads_as_zero_and_behind_as_the_count_in_either_message_variant() {
        assert_eq!(
            parse_health(&payload("getHealth", "healthy_response"), 1).unwrap(),
            0
        );
        assert_eq!(
            parse_health(&payload("getHealth", "unhealthy_response_docs"), 1).unwrap(),
            42
        );
        assert_eq!(
            parse_health(&payload("getHealth", "unhealthy_behind_response_agave"), 1).unwrap(),
            42
        );
    }

    #[test]
    fn health_with_null_or_missing_slots_behind_is_unknown_not_zero() {
        let err = parse_health(&payload("getHealth", "unhealthy_unknown_response_agave"), 1).unwrap_err();
        assert!(matches!(err, RpcError::BehindUnknown(_)), "{err}");
        assert!(err.to_string().contains("numSlotsBehind"), "{err}");
        let no_data = edited("getHealth", "unhealthy_unknown_response_agave", |v| {
            v["error"].as_object_mut().unwrap().remove("data");
        });
        assert!(matches!(
            parse_health(&no_data, 1),
            Err(RpcError::BehindUnknown(_))
        ));
    }

    #[test]
    fn health_is_decided_on_code_and_data_not_on_the_message() {
        let other_code = edited("getHealth", "unhealthy_response_docs", |v| {
            v["error"]["code"] = json!(-32601)
        });
        let err = parse_health(&other_code, 1).unwrap_err().to_string();
        assert_eq!(err, "JSON-RPC error -32601: Node is unhealthy");
        let negative = edited("getHealth", "unhealthy_response_docs", |v| {
            v["error"]["data"]["numSlotsBehind"] = json!(-1)
        });
        assert!(parse_health(&negative, 1)
            .unwrap_err()
            .to_string()
            .contains("numSlotsBehind"));
        let not_ok = edited("getHealth", "healthy_response", |v| v["result"] = json!("behind"));
        assert!(parse_health(&not_ok, 1)
            .unwrap_err()
            .to_string()
            .contains("expected \"ok\""));
    }

    #[test]
    fn slot_is_the_u64_result() {
        assert_eq!(parse_slot(&payload("getSlot", "response"), 1).unwrap(), 1234);
        for bad in [json!("1234"), json!(-1), json!(12.5), json!(null)] {
            let body = edited("getSlot", "response", |v| v["result"] = bad.clone());
            let err = parse_slot(&body, 1).unwrap_err();
            assert!(matches!(err, RpcError::BadResult(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn the_envelope_must_be_json_rpc_2_with_our_id() {
        let err = parse_slot(br#"{"jsonrpc": "2.0", "result": "#, 1).unwrap_err();
        assert!(matches!(err, RpcError::NotJson(_)), "{err}");
        let v1 = edited("getSlot", "response", |v| v["jsonrpc"] = json!("1.0"));
        assert_eq!(
            parse_slot(&v1, 1).unwrap_err().to_string(),
            "response `jsonrpc` is \"1.0\", expected \"2.0\""
        );
        let missing = edited("getSlot", "response", |v| {
            v.as_object_mut().unwrap().remove("jsonrpc");
        });
        assert!(matches!(parse_slot(&missing, 1), Err(RpcError::Version(_))));
        let err = parse_slot(&payload("getSlot", "response"), 7)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "response `id` is 1, expected 7");
        let empty = edited("getSlot", "response", |v| {
            v.as_object_mut().unwrap().remove("result");
        });
        assert!(matches!(parse_slot(&empty, 1), Err(RpcError::NoResult)));
    }
}

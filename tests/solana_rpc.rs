//! `slot_lag` against a local JSON-RPC server that answers each path with a payload from
//! tests/fixtures/solana/jsonrpc-examples.yaml and records every request it receives, so each
//! test pins both the value read and the exact request sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automaton::signals::slot_lag::collect;
use automaton::signals::SlotLag;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_millis(300);

/// Requests received, by path.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A documented payload from the fixture (by method and key), as JSON.
fn payload(method: &str, key: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/solana/jsonrpc-examples.yaml"
    ))
    .unwrap();
    let fixture: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    serde_json::to_value(&fixture[method][key]).unwrap()
}

/// The answer of one scenario; the fixture's `id` is replaced by the request's, as a node does.
async fn answer(scenario: &str, request: &Value) -> Response {
    let mut body = match scenario {
        "healthy" => payload("getHealth", "healthy_response"),
        "behind-docs" => payload("getHealth", "unhealthy_response_docs"),
        "behind-agave" => payload("getHealth", "unhealthy_behind_response_agave"),
        "behind-unknown" => payload("getHealth", "unhealthy_unknown_response_agave"),
        "slow" => {
            tokio::time::sleep(TIMEOUT * 10).await;
            payload("getHealth", "healthy_response")
        }
        "http-500" => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "malformed" => return r#"{"jsonrpc": "2.0", "result": "#.into_response(),
        "jsonrpc-1" => {
            let mut v = payload("getHealth", "healthy_response");
            v["jsonrpc"] = json!("1.0");
            v
        }
        "huge" => return "x".repeat(100 * 1024).into_response(),
        // No Content-Length: the limit must hold while reading, too.
        "huge-chunked" => {
            let chunks = (0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024]));
            return Body::from_stream(futures::stream::iter(chunks)).into_response();
        }
        slot => {
            let mut v = payload("getSlot", "response");
            v["result"] = json!(slot.parse::<u64>().expect("scenario"));
            v
        }
    };
    body["id"] = request["id"].clone();
    Json(body).into_response()
}

/// Starts the server; returns its base URL and what it has received.
async fn server() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/{scenario}",
            post(|State(seen): State<Seen>, Path(scenario): Path<String>, Json(request): Json<Value>| async move {
                seen.lock().unwrap().push((scenario.clone(), request.clone()));
                answer(&scenario, &request).await
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// An address nothing listens on: a reference that is down.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}

fn spec(rpc: String, reference: Vec<String>, commitment: &str) -> SlotLag {
    SlotLag {
        rpc,
        reference,
        commitment: commitment.to_owned(),
    }
}

async fn health(scenario: &str) -> (Result<f64, String>, Seen) {
    let (base, seen) = server().await;
    let result = collect(
        &reqwest::Client::new(),
        &spec(format!("{base}/{scenario}"), vec![], "processed"),
        TIMEOUT,
    )
    .await
    .map(|s| {
        assert_eq!(s.len(), 1);
        s[0].value
    })
    .map_err(|e| e.to_string());
    (result, seen)
}

/// The server got exactly these (path, method, params) requests, each JSON-RPC 2.0.
fn assert_requests(seen: &Seen, expected: &[(&str, &str, Option<Value>)]) {
    let mut got: Vec<(String, String, Option<Value>)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(path, r)| {
            assert_eq!(r["jsonrpc"], "2.0", "{r}");
            assert!(r["id"].is_u64(), "{r}");
            (
                path.clone(),
                r["method"].as_str().unwrap().to_owned(),
                r.get("params").cloned(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<_> = expected
        .iter()
        .map(|(p, m, params)| (p.to_string(), m.to_string(), params.clone()))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
}

fn get_slot(commitment: &str) -> Option<Value> {
    Some(json!([{ "commitment": commitment }]))
}

#[tokio::test]
async fn healthy_node_is_zero_with_labels() {
    let (base, seen) = server().await;
    let series = collect(
        &reqwest::Client::new(),
        &spec(format!("{base}/healthy"), vec![], "processed"),
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].value, 0.0);
    assert_eq!(series[0].labels["rpc"], format!("{base}/healthy"));
    assert_eq!(series[0].labels["method"], "getHealth");
    assert_eq!(series[0].labels.len(), 2);
    assert_requests(&seen, &[("healthy", "getHealth", None)]);
}

#[tokio::test]
async fn behind_node_reads_num_slots_behind_in_both_message_variants() {
    for scenario in ["behind-docs", "behind-agave"] {
        let (result, seen) = health(scenario).await;
        assert_eq!(result, Ok(42.0), "{scenario}");
        assert_requests(&seen, &[(scenario, "getHealth", None)]);
    }
}

#[tokio::test]
async fn null_num_slots_behind_is_unknown_not_zero() {
    let err = health("behind-unknown").await.0.unwrap_err();
    assert!(err.contains("numSlotsBehind") && err.contains("unknown"), "{err}");
}

#[tokio::test]
async fn slow_node_times_out() {
    let started = std::time::Instant::now();
    let err = health("slow").await.0.unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    assert!(started.elapsed() < TIMEOUT * 5, "{:?}", started.elapsed());
}

#[tokio::test]
async fn broken_answers_are_unknown_with_the_cause() {
    for (scenario, cause) in [
        ("http-500", "500"),
        ("malformed", "not JSON"),
        ("jsonrpc-1", "jsonrpc"),
        ("huge", "larger than 65536 bytes"),
        ("huge-chunked", "larger than 65536 bytes"),
    ] {
        let err = health(scenario).await.0.unwrap_err();
        assert!(err.contains(cause), "{scenario}: {err}");
        assert!(
            err.starts_with("getHealth http://127.0.0.1:"),
            "{scenario}: {err}"
        );
    }
}

#[tokio::test]
async fn lag_is_the_highest_reference_minus_local_with_the_default_commitment() {
    let (base, seen) = server().await;
    let rpc = format!("{base}/1234");
    let spec = spec(
        rpc.clone(),
        vec![format!("{base}/1300"), format!("{base}/1250")],
        "processed",
    );
    let series = collect(&reqwest::Client::new(), &spec, TIMEOUT).await.unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].value, 66.0);
    let labels: Vec<_> = series[0]
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("local_slot", "1234"),
            ("method", "getSlot"),
            ("reference_slot", "1300"),
            ("rpc", rpc.as_str())
        ]
    );
    let processed = get_slot("processed");
    assert_requests(
        &seen,
        &[
            ("1234", "getSlot", processed.clone()),
            ("1300", "getSlot", processed.clone()),
            ("1250", "getSlot", processed),
        ],
    );
}

#[tokio::test]
async fn configured_commitment_is_sent_and_a_reference_behind_is_lag_zero() {
    let (base, seen) = server().await;
    let spec = spec(format!("{base}/1234"), vec![format!("{base}/1200")], "finalized");
    let series = collect(&reqwest::Client::new(), &spec, TIMEOUT).await.unwrap();
    assert_eq!(series[0].value, 0.0);
    assert_eq!(series[0].labels["reference_slot"], "1200");
    let finalized = get_slot("finalized");
    assert_requests(
        &seen,
        &[
            ("1234", "getSlot", finalized.clone()),
            ("1200", "getSlot", finalized),
        ],
    );
}

#[tokio::test]
async fn one_reference_down_is_answered_from_the_other() {
    let (base, _) = server().await;
    let spec = spec(
        format!("{base}/1234"),
        vec![closed_port().await, format!("{base}/1250")],
        "processed",
    );
    let series = collect(&reqwest::Client::new(), &spec, TIMEOUT).await.unwrap();
    assert_eq!(series[0].value, 16.0);
}

#[tokio::test]
async fn every_reference_down_is_unknown_naming_each() {
    let (base, _) = server().await;
    let down = closed_port().await;
    let spec = spec(
        format!("{base}/1234"),
        vec![down.clone(), format!("{base}/http-500")],
        "processed",
    );
    let err = collect(&reqwest::Client::new(), &spec, TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("every reference failed"), "{err}");
    assert!(err.contains(&format!("{down}: connection failed")), "{err}");
    assert!(
        err.contains(&format!("{base}/http-500: HTTP status 500")),
        "{err}"
    );
}

#[tokio::test]
async fn local_down_is_unknown() {
    let (base, _) = server().await;
    let spec = spec(format!("{base}/slow"), vec![format!("{base}/1300")], "processed");
    let err = collect(&reqwest::Client::new(), &spec, TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("(local)") && err.contains("timed out"), "{err}");
}

#[tokio::test]
async fn credentials_never_appear_in_reasons_or_labels() {
    let (base, _) = server().await;
    let with_secret =
        |path: &str| base.replace("http://", "http://user:hunter2@") + path + "?api-key=hunter2";
    let spec = spec(
        with_secret("/1234"),
        vec![with_secret("/http-500"), closed_port().await],
        "processed",
    );
    let err = collect(&reqwest::Client::new(), &spec, TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    let spec = SlotLag {
        reference: vec![with_secret("/1300")],
        ..spec
    };
    let series = collect(&reqwest::Client::new(), &spec, TIMEOUT).await.unwrap();
    assert_eq!(series[0].value, 66.0);
    assert!(
        series[0].labels.values().all(|v| !v.contains("hunter2")),
        "{:?}",
        series[0].labels
    );
}

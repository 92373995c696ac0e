//! The guard state object (clients/kube/state.rs) against the scripted API server: the
//! exact requests that read it, create it the first time and replace it under the
//! resourceVersion last seen, and a lost race surfacing as a conflict, never as a silent
//! overwrite.

mod kube_support;

use automaton::clients::kube::state::{StateObject, Stored};
use automaton::clients::kube::Cluster;
use kube_support::*;
use serde_json::{json, Value};

const PATH: &str = "/api/v1/namespaces/default/configmaps/automaton-state";
const COLLECTION: &str = "/api/v1/namespaces/default/configmaps";

fn object(script: Vec<Exchange>) -> (StateObject, tokio::task::JoinHandle<()>) {
    let (client, server) = client(script);
    let cluster = Cluster {
        client,
        namespace: NS.to_owned(),
        namespaces: automaton::core::namespaces::Namespaces::only(NS),
        identity: IDENTITY.to_owned(),
    };
    (StateObject::new(&cluster, "automaton-state"), server)
}

/// The ConfigMap as written: labels, and the document under `state.json`.
fn body(text: &str, rv: Option<&str>) -> Value {
    let mut metadata = json!({
        "name": "automaton-state",
        "namespace": NS,
        "labels": {"app.kubernetes.io/name": "automaton", "app.kubernetes.io/component": "guard-state"},
    });
    if let Some(rv) = rv {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"state.json": text}})
}

fn stored(text: &str, rv: &str) -> Value {
    let mut cm = body(text, Some(rv));
    cm["metadata"]["uid"] = json!("7b0cd7b0-0000-4000-8000-00000000c0de");
    cm
}

fn write(method: &'static str, path: &str, text: &str, rv: Option<&str>) -> Exchange {
    let mut ex = exchange(method, path, Expect::Exact(body(text, rv))).query("fieldManager", "automaton");
    ex.content_type = Some("application/json");
    ex
}

#[tokio::test]
async fn a_missing_object_is_an_empty_state_and_the_first_write_creates_it() {
    let script = vec![
        get(PATH).fail(failure("kube-rs/failure_with_details3/status1")),
        write("POST", COLLECTION, "{\"version\":1}", None).reply(201, &stored("{\"version\":1}", "41")),
        write("PUT", PATH, "{\"version\":2}", Some("41")).reply(200, &stored("{\"version\":2}", "42")),
    ];
    let (state, server) = object(script);
    assert_eq!(state.read().await.expect("read"), Stored::default());
    let rv = state
        .write("{\"version\":1}".to_owned(), None)
        .await
        .expect("created");
    assert_eq!(rv, "41");
    let rv = state
        .write("{\"version\":2}".to_owned(), Some(&rv))
        .await
        .expect("replaced");
    assert_eq!(rv, "42");
    drop(state);
    server.await.expect("the API server script failed");
}

#[tokio::test]
async fn a_read_gives_the_document_and_the_version_to_write_under() {
    let script = vec![get(PATH).reply(200, &stored("{\"guard\":{}}", "7"))];
    let (state, server) = object(script);
    let got = state.read().await.expect("read");
    assert_eq!(
        got,
        Stored {
            text: Some("{\"guard\":{}}".to_owned()),
            resource_version: Some("7".to_owned()),
        }
    );
    drop(state);
    server.await.expect("the API server script failed");
}

#[tokio::test]
async fn another_writer_in_between_is_a_conflict_not_an_overwrite() {
    let script = vec![
        write("PUT", PATH, "{}", Some("7")).fail(failure("derived/409-conflict-optimistic-lock")),
        write("POST", COLLECTION, "{}", None).fail(failure("kubeclient/namespace_already_exists")),
    ];
    let (state, server) = object(script);
    let err = state
        .write("{}".to_owned(), Some("7"))
        .await
        .expect_err("a conflict");
    assert!(err.is_conflict(), "{err}");
    // Two replicas creating it at once: the second is told it exists.
    let err = state
        .write("{}".to_owned(), None)
        .await
        .expect_err("already there");
    assert!(err.is_already_exists(), "{err}");
    drop(state);
    server.await.expect("the API server script failed");
}

//! The workloads planning reads, from kube-runtime reflectors against a `tower_test` mock
//! API server: one list (pages of 500, no selector) and then one watch per kind
//! (Deployments, StatefulSets, HorizontalPodAutoscalers, in whatever order the three
//! reflectors start), no request per tick afterwards; nothing is trusted before its list
//! completed; a forbidden HPA list names the missing grant and keeps every workload unknown.
//! With WATCH_NAMESPACES, three per namespace listed, or three across the cluster for `*`;
//! a workload is looked up in its own namespace only.

mod kube_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use automaton::clients::kube::managers::hpa_for;
use automaton::clients::kube::reflect::Workloads;
use automaton::clients::kube::workload::WorkloadRef;
use automaton::core::namespaces::Namespaces;
use http::{Request, Response};
use kube::client::Body;
use kube_support::{failure, fixture};
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const STATEFULSETS: &str = "/apis/apps/v1/namespaces/default/statefulsets";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";

type Server = Handle<Request<Body>, Response<Body>>;

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "100"}, "items": items})
}

fn query(req: &Request<Body>) -> BTreeMap<String, String> {
    kube_support::query_pairs(req.uri().query().unwrap_or_default())
        .into_iter()
        .collect()
}

fn respond(reply: mock::SendResponse<Response<Body>>, status: u16, body: String) {
    let response = Response::builder()
        .status(status)
        .body(Body::from(body.into_bytes()));
    reply.send_response(response.expect("a response"));
}

/// Answers the three lists with `answer(path)` and parks the watches that follow; returns
/// the paths listed and the parked watches (dropping them would end the watches).
async fn serve(
    server: &mut Server,
    requests: usize,
    answer: impl Fn(&str) -> (u16, Value),
) -> (BTreeSet<String>, Vec<mock::SendResponse<Response<Body>>>) {
    let (mut listed, mut parked) = (BTreeSet::new(), Vec::new());
    for _ in 0..requests {
        let (req, reply) = tokio::time::timeout(Duration::from_secs(15), server.next_request())
            .await
            .expect("a request came")
            .expect("the client is alive");
        let path = req.uri().path().to_owned();
        let q = query(&req);
        assert_eq!(req.method(), "GET");
        assert!(!q.contains_key("labelSelector"), "{}", req.uri());
        if q.get("watch").map(String::as_str) == Some("true") {
            // From the list's resourceVersion, not from scratch.
            assert!(
                q.get("resourceVersion")
                    .is_some_and(|rv| !rv.is_empty() && rv != "0"),
                "{}",
                req.uri()
            );
            parked.push(reply);
            continue;
        }
        assert_eq!(q.get("limit").map(String::as_str), Some("500"), "{}", req.uri());
        let (status, body) = answer(&path);
        respond(reply, status, body.to_string());
        listed.insert(path);
    }
    (listed, parked)
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn workloads_come_from_one_list_and_one_watch_per_kind() {
    let (service, mut server) = mock::pair::<Request<Body>, Response<Body>>();
    let workloads = Workloads::spawn(
        kube::Client::new(service, "default"),
        &Namespaces::only("default"),
    );
    let hello: WorkloadRef = "default/deployment/hello-world".parse().expect("a target");
    let err = workloads.get(&hello).expect_err("nothing listed yet");
    assert!(err.contains("not listed yet"), "{err}");

    let (listed, _parked) = serve(&mut server, 6, |path| match path {
        DEPLOYMENTS => (
            200,
            list(
                "DeploymentList",
                vec![fixture("deployment-apps-v1-hello-world.yaml")],
            ),
        ),
        STATEFULSETS => (200, list("StatefulSetList", vec![])),
        HPAS => (200, fixture("hpa-autoscaling-v2-list.yaml")),
        other => panic!("unexpected list of {other}"),
    })
    .await;
    let want: BTreeSet<String> = [DEPLOYMENTS, STATEFULSETS, HPAS].map(String::from).into();
    assert_eq!(listed, want);

    let live = eventually("the Deployment in the store", || {
        workloads.get(&hello).ok().flatten()
    })
    .await;
    assert_eq!((live.name.as_str(), live.replicas), ("hello-world", Some(1)));
    let redis: WorkloadRef = "default/statefulset/redis".parse().expect("a target");
    assert_eq!(workloads.get(&redis), Ok(None), "listed, and not there");
    let hpas = workloads.hpas("default").expect("listed");
    assert_eq!(
        hpa_for(&hpas, &"default/deployment/php-apache".parse().expect("a target")).as_deref(),
        Some("php-apache")
    );
    assert_eq!(workloads.unreachable(), None);
    // Reading again costs nothing: no request is waiting.
    for _ in 0..3 {
        assert!(workloads.get(&hello).expect("known").is_some());
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), server.next_request())
            .await
            .is_err(),
        "no request per read"
    );
}

#[tokio::test]
async fn a_forbidden_hpa_list_names_the_missing_grant_and_leaves_workloads_unknown() {
    let (service, mut server) = mock::pair::<Request<Body>, Response<Body>>();
    let workloads = Workloads::spawn(
        kube::Client::new(service, "default"),
        &Namespaces::only("default"),
    );
    let (status, body) = failure("derived/403-forbidden-rbac");
    let forbidden: Value = serde_json::from_str(&body).expect("a Status");
    // The two lists that succeed, their two watches, and the forbidden list.
    let (_listed, _parked) = serve(&mut server, 5, |path| match path {
        HPAS => (status, forbidden.clone()),
        DEPLOYMENTS => (200, list("DeploymentList", vec![])),
        _ => (200, list("StatefulSetList", vec![])),
    })
    .await;
    let err = eventually("the HPA list to fail", || workloads.hpas("default").err()).await;
    assert!(
        err.contains("forbidden: the automaton's Role lacks `list` on horizontalpodautoscalers.autoscaling"),
        "{err}"
    );
    // An answer, not an outage: the breaker does not count it.
    assert_eq!(workloads.unreachable(), None);
}

/// A Deployment named `name` in `namespace`, with `replicas`.
fn deployment(namespace: &str, name: &str, replicas: u32) -> Value {
    json!({"metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}-{name}"),
        "resourceVersion": "7"},
        "spec": {"replicas": replicas, "selector": {}, "template": {"spec": {"containers": []}}}})
}

#[tokio::test]
async fn each_watched_namespace_has_its_own_reflectors_and_a_workload_is_found_in_its_own() {
    let (service, mut server) = mock::pair::<Request<Body>, Response<Body>>();
    let namespaces = Namespaces::parse("team-b,team-a").expect("namespaces");
    let workloads = Workloads::spawn(kube::Client::new(service, "default"), &namespaces);
    let (listed, _parked) = serve(&mut server, 12, |path| {
        let ns = path.split('/').nth(5).unwrap_or_default();
        if path.ends_with("/deployments") {
            // The same name in both namespaces, scaled differently.
            (
                200,
                list(
                    "DeploymentList",
                    vec![deployment(ns, "api", if ns == "team-a" { 2 } else { 5 })],
                ),
            )
        } else {
            (200, list("List", vec![]))
        }
    })
    .await;
    let want: BTreeSet<String> = ["team-a", "team-b"]
        .iter()
        .flat_map(|ns| {
            [
                format!("/apis/apps/v1/namespaces/{ns}/deployments"),
                format!("/apis/apps/v1/namespaces/{ns}/statefulsets"),
                format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"),
            ]
        })
        .collect();
    assert_eq!(
        listed, want,
        "one list per kind and namespace, nothing across the cluster"
    );
    let api = |ns: &str| -> WorkloadRef { format!("{ns}/deployment/api").parse().expect("a target") };
    let a = eventually("team-a's api", || workloads.get(&api("team-a")).ok().flatten()).await;
    let b = eventually("team-b's api", || workloads.get(&api("team-b")).ok().flatten()).await;
    assert_eq!((a.replicas, b.replicas), (Some(2), Some(5)));
    assert_eq!(b.target().to_string(), "team-b/deployment/api");
    let err = workloads.get(&api("prod")).expect_err("prod is not watched");
    assert!(
        err.contains("\"prod\" is not watched (WATCH_NAMESPACES=team-a,team-b)"),
        "{err}"
    );
    assert_eq!(workloads.hpas("team-a"), Ok(vec![]));
}

#[tokio::test]
async fn a_star_watches_each_kind_once_across_the_cluster() {
    let (service, mut server) = mock::pair::<Request<Body>, Response<Body>>();
    let workloads = Workloads::spawn(kube::Client::new(service, "default"), &Namespaces::All);
    let (listed, _parked) = serve(&mut server, 6, |path| {
        if path.ends_with("/deployments") {
            let items = vec![deployment("team-a", "api", 2), deployment("team-b", "api", 5)];
            (200, list("DeploymentList", items))
        } else {
            (200, list("List", vec![]))
        }
    })
    .await;
    let want: BTreeSet<String> = [
        "/apis/apps/v1/deployments",
        "/apis/apps/v1/statefulsets",
        "/apis/autoscaling/v2/horizontalpodautoscalers",
    ]
    .map(String::from)
    .into();
    assert_eq!(listed, want);
    let api: WorkloadRef = "team-b/deployment/api".parse().expect("a target");
    let b = eventually("team-b's api", || workloads.get(&api).ok().flatten()).await;
    assert_eq!(b.replicas, Some(5));
    let none: WorkloadRef = "team-c/deployment/api".parse().expect("a target");
    assert_eq!(workloads.get(&none), Ok(None), "listed, and not there");
}

//! The Kubernetes executor against a scripted API server, kube-rs style: the client runs over
//! `tower_test::mock::pair`, and an `ApiServer` task takes each request in turn (with a
//! timeout, so a request that never comes fails the test), asserts its exact method, path,
//! query, content type and JSON body, and answers with a real payload from
//! `tests/fixtures/kubernetes/`. When the executor is dropped, the server asserts that no
//! request is left: a test that expects "no write" fails on any write.
//!
//! Decisions come from the real engine (rules loaded from YAML, one sample, one evaluation),
//! so the plans executed here are the ones the daemon would execute.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use automaton::actions::SimWorld;
use automaton::cluster::actions::{KubeExecutor, Outcome};
use automaton::cluster::error::ClusterError;
use automaton::cluster::Cluster;
use automaton::decision::{Decision, SkipReason, Verdict};
use automaton::engine::{Engine, EngineConfig};
use automaton::rules::{load_texts, Rule};
use automaton::signals::{Reading, Series};
use backon::ExponentialBuilder;
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

const NS: &str = "default";
const IDENTITY: &str = "automaton-6d4cf56db6-x2x9q";
/// The executor's clock in every test, so annotations and bodies are exact.
const NOW: &str = "2025-06-01T12:00:00Z";
const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/hello-world";
const STATEFULSET: &str = "/apis/apps/v1/namespaces/default/statefulsets/redis-master";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const HELLO_UID: &str = "4ecf82fc-0f0a-44e0-9469-cebbb07f7a31";

fn now() -> jiff::Timestamp {
    NOW.parse().expect("NOW is RFC 3339")
}

/// `NOW` moved by `secs`.
fn at(secs: i64) -> String {
    (now() + jiff::SignedDuration::from_secs(secs)).to_string()
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// A payload from tests/fixtures/kubernetes, its `#` source header stripped.
fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubernetes")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body: Vec<&str> = text.lines().skip_while(|line| line.starts_with('#')).collect();
    // is-healthy fixtures carry `@now-5m` placeholders for their own harness.
    let body = body.join("\n").replace("@now-5m", &at(-300));
    serde_yaml::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// An API `Status` failure from status-failures.yaml: (HTTP code, body).
fn failure(id: &str) -> (u16, String) {
    let cases = fixture("status-failures.yaml");
    let case = cases["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no status case {id}"));
    let code = case["http_code"].as_u64().expect("an HTTP code") as u16;
    (code, case["body"].as_str().expect("a body").to_owned())
}

/// A Deployment or StatefulSet payload, edited fluently from its fixture.
struct Obj(Value);

fn deployment() -> Obj {
    Obj(fixture("deployment-apps-v1-hello-world.yaml"))
}

fn statefulset() -> Obj {
    Obj(fixture("statefulset-apps-v1-redis-ondelete.yaml"))
}

impl Obj {
    fn replicas(mut self, n: u32) -> Self {
        self.0["spec"]["replicas"] = json!(n);
        self
    }

    fn memory(mut self, request: &str, limit: &str) -> Self {
        self.0["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"requests": {"memory": request, "cpu": "100m"}, "limits": {"memory": limit}});
        self
    }

    fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["annotations"][key] = json!(value);
        self
    }

    fn resource_version(mut self, rv: &str) -> Self {
        self.0["metadata"]["resourceVersion"] = json!(rv);
        self
    }

    fn json(&self) -> Value {
        self.0.clone()
    }
}

// ---------------------------------------------------------------------------------------
// The scripted API server

enum Expect {
    Empty,
    Exact(Value),
    /// Every field given is present with this value (Events carry a time-based name).
    Contains(Value),
}

/// One request the server expects and its answer.
struct Exchange {
    method: &'static str,
    path: String,
    query: Vec<(String, String)>,
    content_type: Option<&'static str>,
    body: Expect,
    upgrade: bool,
    /// Never answered: the client's timeout has to fire.
    hang: bool,
    status: u16,
    reply: Vec<u8>,
}

fn exchange(method: &'static str, path: &str, body: Expect) -> Exchange {
    Exchange {
        method,
        path: path.to_owned(),
        query: Vec::new(),
        content_type: None,
        body,
        upgrade: false,
        hang: false,
        status: 200,
        reply: b"{}".to_vec(),
    }
}

fn get(path: &str) -> Exchange {
    exchange("GET", path, Expect::Empty)
}

/// A PATCH with `?fieldManager=automaton` and this content type and exact body.
fn patch(path: &str, content_type: &'static str, body: Value) -> Exchange {
    let mut ex = exchange("PATCH", path, Expect::Exact(body));
    ex.content_type = Some(content_type);
    ex.query("fieldManager", "automaton")
}

/// The Event the Recorder creates, with these fields among others; answered with itself.
fn event(fields: Value) -> Exchange {
    let mut ex = exchange("POST", EVENTS, Expect::Contains(fields));
    ex.status = 201;
    ex
}

impl Exchange {
    fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }

    fn reply(mut self, status: u16, body: &Value) -> Self {
        self.status = status;
        self.reply = serde_json::to_vec(body).expect("JSON");
        self
    }

    fn hang(mut self) -> Self {
        self.hang = true;
        self
    }

    fn fail(mut self, (status, body): (u16, String)) -> Self {
        self.status = status;
        self.reply = body.into_bytes();
        self
    }
}

/// Percent-decoded `key=value` pairs of a query (kube writes `?&a=b`: empty pairs dropped).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
                    out.push(u8::from_str_radix(hex, 16).expect("a percent escape"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("UTF-8")
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Whether `actual` has every field of `expected` with the same value.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|actual| contains(actual, v))),
        _ => actual == expected,
    }
}

async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Exchange>) {
    let mut unanswered = Vec::new();
    for (i, ex) in script.into_iter().enumerate() {
        let what = format!("request #{} ({} {})", i + 1, ex.method, ex.path);
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("{what} never came"))
            .unwrap_or_else(|| panic!("the client was dropped before {what}"));
        assert_eq!(request.method().as_str(), ex.method, "{what}: method");
        assert_eq!(request.uri().path(), ex.path, "{what}: path");
        assert_eq!(
            query_pairs(request.uri().query().unwrap_or("")),
            ex.query,
            "{what}: query"
        );
        if let Some(content_type) = ex.content_type {
            assert_eq!(
                request.headers()["content-type"],
                content_type,
                "{what}: content type"
            );
        }
        if ex.upgrade {
            assert_eq!(request.headers()["upgrade"], "websocket", "{what}: upgrade");
        }
        let bytes = request.into_body().collect().await.expect("a body").to_bytes();
        let mut reply = ex.reply;
        match ex.body {
            Expect::Empty => assert!(bytes.is_empty(), "{what}: unexpected body"),
            Expect::Exact(expected) => {
                let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
                assert_eq!(body, expected, "{what}: body");
            }
            Expect::Contains(expected) => {
                let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
                assert!(
                    contains(&body, &expected),
                    "{what}: body {body:#}\nlacks {expected:#}"
                );
                reply = bytes.to_vec();
            }
        }
        if ex.hang {
            unanswered.push(send);
            continue;
        }
        let response = Response::builder()
            .status(ex.status)
            .header("content-type", "application/json")
            .body(Body::from(reply))
            .expect("a response");
        send.send_response(response);
    }
    let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("the executor was not dropped");
    if let Some((request, _)) = next {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

/// Runs one decision against the script and checks the server saw exactly the script.
async fn execute(
    script: Vec<Exchange>,
    (rule, decision): &(Rule, Decision),
) -> Result<Outcome, ClusterError> {
    let (executor, server) = executor(script);
    let result = executor.execute(rule, decision).await;
    drop(executor);
    server.await.expect("the API server script failed");
    result
}

fn executor(script: Vec<Exchange>) -> (KubeExecutor, JoinHandle<()>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let cluster = Cluster {
        client: kube::Client::new(service, "client-default"),
        namespace: NS.to_owned(),
        identity: IDENTITY.to_owned(),
    };
    let backoff = ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(Duration::from_millis(1))
        .with_max_delay(Duration::from_millis(5))
        .with_max_times(3);
    let executor = KubeExecutor::new(&cluster).with_backoff(backoff).with_clock(now);
    (executor, tokio::spawn(serve(handle, script)))
}

// ---------------------------------------------------------------------------------------
// Decisions from the real engine

/// The `act` decision of the first rule of `rules` for one sample, planned against `world`.
fn decide(rules: &str, world: &str, labels: &[(&str, &str)], value: f64) -> (Rule, Decision) {
    let set = load_texts(&[(Path::new("rules.yaml"), rules)], &|_| None)
        .unwrap_or_else(|errors| panic!("invalid test rules: {errors:#?}"));
    let rule = set.rules[0].clone();
    let config = EngineConfig {
        executable: automaton::actions::execute::Executors::ALL,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(Arc::new(set), config);
    let t = Duration::from_secs(60);
    let series = Series {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    };
    engine.observe(
        0,
        Reading {
            at: t,
            result: Ok(vec![series]),
        },
    );
    let world: SimWorld = serde_yaml::from_str(world).expect("a world");
    let decision = engine
        .evaluate(t, &world)
        .into_iter()
        .find(|d| d.decision == Verdict::Act)
        .expect("the engine acts");
    (rule, decision)
}

fn rule(name: &str, signal: &str, action: &str) -> String {
    format!(
        "rules:\n  - name: {name}\n    priority: critical\n    signal:\n      {signal}\n    when: \"> 0\"\n    action:\n      {action}\n    cooldown: 5m\n"
    )
}

fn scale_to(replicas: u32, world_replicas: u32) -> (Rule, Decision) {
    decide(
        &rule(
            "kafka-consumer-lag",
            "kafka_lag: {group: email-service-group}",
            &format!("scale: {{target: deployment/hello-world, replicas: {replicas}, max: 10}}"),
        ),
        &format!("deployment/hello-world: {{replicas: {world_replicas}}}"),
        &[("group", "email-service-group")],
        20000.0,
    )
}

fn restart(target: &str) -> (Rule, Decision) {
    decide(
        &rule(
            "crash-loop",
            "pod_crash_loop: {selector: automaton.dev/heal=true}",
            &format!("restart: {{target: {target}}}"),
        ),
        "{}",
        &[("pod", "p"), ("container", "c")],
        1.0,
    )
}

fn raise_memory() -> (Rule, Decision) {
    decide(
        &rule(
            "pod-oom-killed",
            "pod_oom_killed: {selector: automaton.dev/heal=true}",
            "raise_memory: {target: owner, factor: 2}",
        ),
        "deployment/hello-world: {containers: {hello-world: {memory_request: 512Mi, memory_limit: 1Gi}}}",
        &[
            ("pod", "hello-world-6b9d85fbd6-klpv2"),
            ("container", "hello-world"),
            ("owner", "deployment/hello-world"),
        ],
        1.0,
    )
}

/// The annotation key and value every successful write on a workload carries.
fn stamp(rule: &str) -> Value {
    json!({"metadata": {"annotations": {format!("automaton.dev/last-action-{rule}"): NOW}}})
}

/// The Scale the API server answers a scale patch with.
fn scale_reply(replicas: u32) -> Value {
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": "hello-world", "namespace": NS, "uid": HELLO_UID, "resourceVersion": "649500"},
        "spec": {"replicas": replicas},
        "status": {"replicas": 1, "selector": "name=hello-world"}
    })
}

fn regarding_hello() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "hello-world", "namespace": NS, "uid": HELLO_UID})
}

fn event_fields(reason: &str, action: &str, note: &str, regarding: Value) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"namespace": NS},
        "type": "Normal", "reason": reason, "action": action, "note": note,
        "reportingController": "automaton", "reportingInstance": IDENTITY,
        "regarding": regarding,
    })
}

// ---------------------------------------------------------------------------------------
// scale

#[tokio::test]
async fn scale_patches_the_scale_subresource_then_the_annotation_and_records_an_event() {
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(
            &format!("{DEPLOYMENT}/scale"),
            MERGE,
            json!({"spec": {"replicas": 6}}),
        )
        .reply(200, &scale_reply(6)),
        patch(DEPLOYMENT, MERGE, stamp("kafka-consumer-lag")).reply(200, &deployment().replicas(6).json()),
        event(event_fields(
            "ScaledUp",
            "Scale",
            "rule kafka-consumer-lag: 1 replicas → 6 replicas (decision at 60s)",
            regarding_hello(),
        )),
    ];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("scaled");
    assert_eq!(outcome.skipped, None);
    assert_eq!(outcome.change, Some(json!({"replicas": [1, 6]})));
    assert_eq!(
        outcome.detail,
        "deployment/hello-world scaled from 1 to 6 replicas"
    );
}

#[tokio::test]
async fn scale_down_after_the_cooldown_expired() {
    let live = deployment()
        .replicas(5)
        .annotation("automaton.dev/last-action-kafka-consumer-lag", &at(-600));
    let script = vec![
        get(DEPLOYMENT).reply(200, &live.json()),
        patch(
            &format!("{DEPLOYMENT}/scale"),
            MERGE,
            json!({"spec": {"replicas": 2}}),
        )
        .reply(200, &scale_reply(2)),
        patch(DEPLOYMENT, MERGE, stamp("kafka-consumer-lag")).reply(200, &live.json()),
        event(
            json!({"reason": "ScaledDown", "note": "rule kafka-consumer-lag: 5 replicas → 2 replicas (decision at 60s)"}),
        ),
    ];
    let outcome = execute(script, &scale_to(2, 5)).await.expect("scaled down");
    assert_eq!(outcome.change, Some(json!({"replicas": [5, 2]})));
}

#[tokio::test]
async fn scale_already_at_the_target_is_bound_and_writes_nothing() {
    // The engine planned from a stale world (1 replica); the live object already has 6.
    let script = vec![get(DEPLOYMENT).reply(200, &deployment().replicas(6).json())];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
    assert_eq!(outcome.detail, "deployment/hello-world already has 6 replicas");
    assert_eq!(outcome.change, None);
}

#[tokio::test]
async fn a_restarted_daemon_inside_the_cooldown_reads_it_from_the_annotation_and_writes_nothing() {
    // A fresh engine has no cooldown in memory and acts; the target remembers the last action
    // of another replica (or of this one before its restart) a minute ago.
    let live = deployment().annotation("automaton.dev/last-action-kafka-consumer-lag", &at(-60));
    let script = vec![get(DEPLOYMENT).reply(200, &live.json())];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Cooldown));
    assert_eq!(
        outcome.detail,
        "deployment/hello-world: rule kafka-consumer-lag last acted at 2025-06-01T11:59:00Z \
         (automaton.dev/last-action-kafka-consumer-lag); 240s of cooldown left"
    );
}

#[tokio::test]
async fn scale_of_a_statefulset_goes_through_its_scale_subresource() {
    let (rule, decision) = decide(
        &rule(
            "slot-lag",
            "kafka_lag: {group: g}",
            "scale: {target: statefulset/redis-master, replicas: 3}",
        ),
        "statefulset/redis-master: {replicas: 1}",
        &[("group", "g")],
        1.0,
    );
    let script = vec![
        get(STATEFULSET).reply(200, &statefulset().json()),
        patch(
            &format!("{STATEFULSET}/scale"),
            MERGE,
            json!({"spec": {"replicas": 3}}),
        )
        .reply(200, &scale_reply(3)),
        patch(STATEFULSET, MERGE, stamp("slot-lag")).reply(200, &statefulset().replicas(3).json()),
        event(
            json!({"reason": "ScaledUp", "regarding": {"kind": "StatefulSet", "name": "redis-master",
            "uid": "1f80ab97-8bf6-11e8-aff0-42010a8a0fc6"}}),
        ),
    ];
    let outcome = execute(script, &(rule, decision)).await.expect("scaled");
    assert_eq!(outcome.change, Some(json!({"replicas": [1, 3]})));
}

// ---------------------------------------------------------------------------------------
// restart

#[tokio::test]
async fn restart_sends_kubectls_patch_and_never_deletes_pods() {
    let body = json!({
        "metadata": {"annotations": {"automaton.dev/last-action-crash-loop": NOW}},
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": NOW}}}},
    });
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(DEPLOYMENT, STRATEGIC, body).reply(200, &deployment().json()),
        event(event_fields(
            "RolloutRestarted",
            "RolloutRestart",
            "rule crash-loop: restartedAt never → restartedAt 2025-06-01T12:00:00Z (decision at 60s)",
            regarding_hello(),
        )),
    ];
    let outcome = execute(script, &restart("deployment/hello-world"))
        .await
        .expect("restarted");
    assert_eq!(outcome.change, Some(json!({"restarted_at": [null, NOW]})));
}

#[tokio::test]
async fn restart_of_an_on_delete_statefulset_says_pods_roll_only_when_deleted() {
    let body = json!({
        "metadata": {"annotations": {"automaton.dev/last-action-crash-loop": NOW}},
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": NOW}}}},
    });
    let script = vec![
        get(STATEFULSET).reply(200, &statefulset().json()),
        patch(STATEFULSET, STRATEGIC, body).reply(200, &statefulset().json()),
        event(
            json!({"reason": "RolloutRestarted", "regarding": {"kind": "StatefulSet", "name": "redis-master"}}),
        ),
    ];
    let outcome = execute(script, &restart("statefulset/redis-master"))
        .await
        .expect("restarted");
    assert!(outcome.detail.contains("OnDelete"), "{}", outcome.detail);
}

// ---------------------------------------------------------------------------------------
// raise_memory

/// The strategic merge patch raising hello-world to 1Gi/2Gi, guarded by `rv`.
fn memory_patch(rv: &str) -> Exchange {
    let body = json!({
        "metadata": {
            "resourceVersion": rv,
            "annotations": {"automaton.dev/last-action-pod-oom-killed": NOW},
        },
        "spec": {"template": {"spec": {"containers": [{
            "name": "hello-world",
            "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        }]}}},
    });
    patch(DEPLOYMENT, STRATEGIC, body)
}

#[tokio::test]
async fn raise_memory_doubles_request_and_limit_with_a_resource_version_precondition() {
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().memory("512Mi", "1Gi").json()),
        memory_patch("649432").reply(200, &deployment().memory("1Gi", "2Gi").json()),
        event(event_fields(
            "MemoryRaised",
            "RaiseMemory",
            "rule pod-oom-killed: container hello-world memory 512Mi/1Gi → 1Gi/2Gi (request/limit) (decision at 60s)",
            regarding_hello(),
        )),
    ];
    let outcome = execute(script, &raise_memory()).await.expect("raised");
    assert_eq!(
        outcome.change,
        Some(
            json!({"container": "hello-world", "memory_request": ["512Mi", "1Gi"], "memory_limit": ["1Gi", "2Gi"]})
        )
    );
}

#[tokio::test]
async fn raise_memory_reads_again_after_a_conflict_and_retries() {
    let changed = deployment().memory("512Mi", "1Gi").resource_version("649500");
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().memory("512Mi", "1Gi").json()),
        memory_patch("649432").fail(failure("derived/409-conflict-optimistic-lock")),
        get(DEPLOYMENT).reply(200, &changed.json()),
        memory_patch("649500").reply(200, &deployment().memory("1Gi", "2Gi").json()),
        event(json!({"reason": "MemoryRaised"})),
    ];
    let outcome = execute(script, &raise_memory())
        .await
        .expect("raised on the second attempt");
    assert_eq!(outcome.skipped, None);
}

#[tokio::test]
async fn raise_memory_after_a_conflict_finds_it_already_raised() {
    let raised = deployment().memory("1Gi", "2Gi").resource_version("649500");
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().memory("512Mi", "1Gi").json()),
        memory_patch("649432").fail(failure("derived/409-conflict-optimistic-lock")),
        get(DEPLOYMENT).reply(200, &raised.json()),
    ];
    let outcome = execute(script, &raise_memory()).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
}

#[tokio::test]
async fn raise_memory_gives_up_after_three_conflicts() {
    let live = deployment().memory("512Mi", "1Gi");
    let conflict = || memory_patch("649432").fail(failure("derived/409-conflict-optimistic-lock"));
    let script = vec![
        get(DEPLOYMENT).reply(200, &live.json()),
        conflict(),
        get(DEPLOYMENT).reply(200, &live.json()),
        conflict(),
        get(DEPLOYMENT).reply(200, &live.json()),
        conflict(),
    ];
    let err = execute(script, &raise_memory()).await.expect_err("a conflict");
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("the object has been modified"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Failures

#[tokio::test]
async fn forbidden_is_a_clear_error_and_is_not_retried() {
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(
            &format!("{DEPLOYMENT}/scale"),
            MERGE,
            json!({"spec": {"replicas": 6}}),
        )
        .fail(failure("derived/403-forbidden-rbac")),
    ];
    let err = execute(script, &scale_to(6, 1)).await.expect_err("forbidden");
    assert_eq!(err.metric_label(), "forbidden");
    assert!(
        err.to_string().starts_with(
            "PATCH deployments.apps/scale \"hello-world\" in namespace \"default\": forbidden: the \
             automaton's Role lacks `patch` on deployments.apps/scale — see deploy/role.yaml"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_target_is_not_found_and_is_not_retried() {
    let script = vec![get(DEPLOYMENT).fail(failure("kube-rs/failure_with_details3/status1"))];
    let err = execute(script, &scale_to(6, 1)).await.expect_err("not found");
    assert_eq!(err.metric_label(), "not_found");
    assert!(err.to_string().contains("the target does not exist"), "{err}");
}

#[tokio::test]
async fn too_many_requests_and_server_errors_are_retried_then_succeed() {
    let script = vec![
        // API Priority and Fairness answers 429 in plain text, not as a Status.
        get(DEPLOYMENT).fail((429, "Too many requests, please try again later.".to_owned())),
        get(DEPLOYMENT).fail(failure("kubeclient/namespace_exception")),
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(
            &format!("{DEPLOYMENT}/scale"),
            MERGE,
            json!({"spec": {"replicas": 6}}),
        )
        .fail((503, String::new())),
        patch(
            &format!("{DEPLOYMENT}/scale"),
            MERGE,
            json!({"spec": {"replicas": 6}}),
        )
        .reply(200, &scale_reply(6)),
        patch(DEPLOYMENT, MERGE, stamp("kafka-consumer-lag")).reply(200, &deployment().json()),
        event(json!({"reason": "ScaledUp"})),
    ];
    let outcome = execute(script, &scale_to(6, 1))
        .await
        .expect("scaled after retries");
    assert_eq!(outcome.change, Some(json!({"replicas": [1, 6]})));
}

#[tokio::test]
async fn a_request_without_answer_times_out_and_is_retried() {
    let script = vec![
        get(DEPLOYMENT).hang(),
        get(DEPLOYMENT).reply(200, &deployment().replicas(6).json()),
    ];
    let (executor, server) = executor(script);
    let executor = executor.with_timeouts(Duration::from_millis(50), Duration::from_secs(1));
    let (rule, decision) = scale_to(6, 1);
    let outcome = executor
        .execute(&rule, &decision)
        .await
        .expect("answered the second time");
    drop(executor);
    server.await.expect("the API server script failed");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
}

#[tokio::test]
async fn transient_failures_give_up_after_the_last_retry() {
    let busy = || get(DEPLOYMENT).fail(failure("kubeclient/namespace_exception"));
    let script = vec![busy(), busy(), busy(), busy()];
    let err = execute(script, &scale_to(6, 1)).await.expect_err("still failing");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn a_failed_event_does_not_fail_the_action() {
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(
            &format!("{DEPLOYMENT}/scale"),
            MERGE,
            json!({"spec": {"replicas": 6}}),
        )
        .reply(200, &scale_reply(6)),
        patch(DEPLOYMENT, MERGE, stamp("kafka-consumer-lag")).reply(200, &deployment().json()),
        event(json!({"reason": "ScaledUp"})).fail(failure("derived/403-forbidden-rbac")),
    ];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("scaled");
    assert_eq!(outcome.skipped, None);
}

// ---------------------------------------------------------------------------------------
// run_job

#[tokio::test]
async fn run_job_creates_the_job_kubectl_create_job_from_cronjob_would() {
    let decision = decide(
        &rule(
            "ledger-prune",
            "disk_usage: {path: /var/lib/ledger}",
            "run_job: {from_cronjob: hello}",
        ),
        "{}",
        &[],
        90.0,
    );
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "hello-1748779200",
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual", "backup.example.com/kind": "snapshot"},
            "labels": {"app": "hello"},
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                "uid": "3c1f2a9e-5b7d-4e8a-9f60-2d4b8c6e1a07", "controller": true,
            }],
        },
        "spec": {"template": {"metadata": {}, "spec": {
            "containers": [{
                "args": ["/bin/sh", "-c", "date; echo Hello from the Kubernetes cluster"],
                "image": "busybox", "imagePullPolicy": "IfNotPresent", "name": "hello", "resources": {},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            }],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "OnFailure", "schedulerName": "default-scheduler",
            "securityContext": {}, "terminationGracePeriodSeconds": 30,
        }}},
    });
    let mut created = job.clone();
    created["metadata"]["uid"] = json!("9d0b6a8e-2f4c-4b51-8e0a-6c7d5e4f3a21");
    let script = vec![
        get("/apis/batch/v1/namespaces/default/cronjobs/hello")
            .reply(200, &fixture("cronjob-batch-v1-hello.yaml")),
        exchange(
            "POST",
            "/apis/batch/v1/namespaces/default/jobs",
            Expect::Exact(job),
        )
        .query("fieldManager", "automaton")
        .reply(201, &created),
        event(event_fields(
            "JobCreated",
            "RunJob",
            "rule ledger-prune: cronjob/hello → job/hello-1748779200 (decision at 60s)",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                "uid": "3c1f2a9e-5b7d-4e8a-9f60-2d4b8c6e1a07"}),
        )),
    ];
    let outcome = execute(script, &decision).await.expect("created");
    assert_eq!(outcome.detail, "job/hello-1748779200 created from cronjob/hello");
}

// ---------------------------------------------------------------------------------------
// clean_logs

#[tokio::test]
async fn clean_logs_execs_the_exact_argv_in_running_pods_and_a_403_is_clear() {
    let decision = decide(
        &rule(
            "app-logs",
            "disk_usage: {path: /var/log}",
            "clean_logs: {selector: app=web, path: /var/log/app, older_than: 7d}",
        ),
        "{}",
        &[],
        90.0,
    );
    let pods = json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "424384600"},
        "items": [
            fixture("pod-running-hello-world-kspan.yaml"),
            fixture("pod-running-terminating.yaml"),
            fixture("pod-running-never-ready.yaml"),
        ],
    });
    let mut exec = get("/api/v1/namespaces/default/pods/slow-start-pod/exec")
        .query("stderr", "true")
        .query("container", "slow-container");
    for arg in [
        "find",
        "/var/log/app",
        "-name",
        "*.log",
        "-type",
        "f",
        "-mtime",
        "+6",
        "-delete",
    ] {
        exec = exec.query("command", arg);
    }
    exec.upgrade = true;
    let script = vec![
        get("/api/v1/namespaces/default/pods")
            .query("labelSelector", "app=web")
            .reply(200, &pods),
        // Only the running pod that is not being deleted; the pending one is left alone.
        exec.fail(failure("derived/403-forbidden-rbac")),
    ];
    let err = execute(script, &decision).await.expect_err("forbidden");
    assert!(
        err.to_string().contains(
            "forbidden: the automaton's Role lacks `get and create` on pods/exec — see deploy/components/clean-logs"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn clean_logs_without_running_pods_does_nothing() {
    let decision = decide(
        &rule(
            "app-logs",
            "disk_usage: {path: /var/log}",
            "clean_logs: {selector: app=web, path: /var/log/app}",
        ),
        "{}",
        &[],
        90.0,
    );
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
        "items": [fixture("pod-running-hello-world-kspan.yaml")]});
    let script = vec![get("/api/v1/namespaces/default/pods")
        .query("labelSelector", "app=web")
        .reply(200, &pods)];
    let outcome = execute(script, &decision).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
}

// ---------------------------------------------------------------------------------------
// What is not executed here

#[tokio::test]
async fn other_kinds_and_dry_runs_send_no_request() {
    let notify = decide(
        &rule(
            "tell",
            "disk_usage: {path: /}",
            "notify: {webhook: \"https://hooks.example.com/x\"}",
        ),
        "{}",
        &[],
        90.0,
    );
    let err = execute(vec![], &notify)
        .await
        .expect_err("not a Kubernetes action");
    assert!(matches!(err, ClusterError::NotKubernetes("notify")), "{err}");

    // On a spawned task, as the daemon runs it: the future is Send.
    let (executor, server) = executor(vec![]);
    let (rule, mut decision) = scale_to(6, 1);
    decision.dry_run = true;
    let outcome = tokio::spawn(async move { executor.execute(&rule, &decision).await })
        .await
        .expect("the task ran")
        .expect("a skip");
    server.await.expect("no request");
    assert_eq!(outcome.skipped, Some(SkipReason::DryRun));
}

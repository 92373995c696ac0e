//! The scripted API server of the Kubernetes tests, kube-rs style: the client runs over
//! `tower_test::mock::pair`, and an `ApiServer` task takes each request in turn (with a
//! timeout, so a request that never comes fails the test), asserts its exact method, path,
//! query, content type and JSON body, and answers with a real payload from
//! `tests/fixtures/kubernetes/`. When the executor is dropped, the server asserts that no
//! request is left: a test that expects "no write" fails on any write.
//!
//! Decisions come from the real engine (rules loaded from YAML, one sample, one evaluation),
//! so the plans executed here are the ones the daemon would execute.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use automaton::actions::{ActionError, ExecCtx, Executors};
use automaton::clients::backoff::FullJitter;
use automaton::clients::http::HttpClient;
use automaton::clients::kube::error::ClusterError;
use automaton::clients::kube::executor::KubeExecutor;
use automaton::clients::kube::Cluster;
use automaton::core::decision::{Decision, Verdict};
use automaton::core::engine::EngineConfig;
use automaton::core::plan::Outcome;
use automaton::core::series::{Reading, Series};
use automaton::core::target::qualify;
use automaton::core::world::SimWorld;
use automaton::rules::Engine;
use automaton::rules::{load_texts, Rule};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

pub const NS: &str = "default";
pub const IDENTITY: &str = "automaton-6d4cf56db6-x2x9q";
/// The executor's clock in every test, so annotations and bodies are exact.
pub const NOW: &str = "2025-06-01T12:00:00Z";
pub const MERGE: &str = "application/merge-patch+json";
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";
pub const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/hello-world";
pub const STATEFULSET: &str = "/apis/apps/v1/namespaces/default/statefulsets/redis-master";
pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
pub const HELLO_UID: &str = "4ecf82fc-0f0a-44e0-9469-cebbb07f7a31";

pub fn now() -> jiff::Timestamp {
    NOW.parse().expect("NOW is RFC 3339")
}

/// `NOW` moved by `secs`.
pub fn at(secs: i64) -> String {
    (now() + jiff::SignedDuration::from_secs(secs)).to_string()
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// A payload from tests/fixtures/kubernetes, its `#` source header stripped.
pub fn fixture(name: &str) -> Value {
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
pub fn failure(id: &str) -> (u16, String) {
    let cases = fixture("status-failures.yaml");
    let case = cases["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no status case {id}"));
    let code = case["http_code"].as_u64().expect("an HTTP code") as u16;
    (code, case["body"].as_str().expect("a body").to_owned())
}

/// A Deployment or StatefulSet payload, edited fluently from its fixture.
pub struct Obj(pub Value);

pub fn deployment() -> Obj {
    Obj(fixture("deployment-apps-v1-hello-world.yaml"))
}

pub fn statefulset() -> Obj {
    Obj(fixture("statefulset-apps-v1-redis-ondelete.yaml"))
}

impl Obj {
    pub fn replicas(mut self, n: u32) -> Self {
        self.0["spec"]["replicas"] = json!(n);
        self
    }

    pub fn memory(mut self, request: &str, limit: &str) -> Self {
        self.0["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"requests": {"memory": request, "cpu": "100m"}, "limits": {"memory": limit}});
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["annotations"][key] = json!(value);
        self
    }

    pub fn resource_version(mut self, rv: &str) -> Self {
        self.0["metadata"]["resourceVersion"] = json!(rv);
        self
    }

    pub fn json(&self) -> Value {
        self.0.clone()
    }
}

// ---------------------------------------------------------------------------------------
// The scripted API server

pub enum Expect {
    Empty,
    Exact(Value),
    /// Every field given is present with this value (Events carry a time-based name).
    Contains(Value),
}

/// One request the server expects and its answer.
pub struct Exchange {
    pub method: &'static str,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: Option<&'static str>,
    pub body: Expect,
    pub upgrade: bool,
    /// Never answered: the client's timeout has to fire.
    pub hang: bool,
    pub status: u16,
    pub reply: Vec<u8>,
}

pub fn exchange(method: &'static str, path: &str, body: Expect) -> Exchange {
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

pub fn get(path: &str) -> Exchange {
    exchange("GET", path, Expect::Empty)
}

/// A PATCH with `?fieldManager=automaton` and this content type and exact body.
pub fn patch(path: &str, content_type: &'static str, body: Value) -> Exchange {
    let mut ex = exchange("PATCH", path, Expect::Exact(body));
    ex.content_type = Some(content_type);
    ex.query("fieldManager", "automaton")
}

/// The Event the Recorder creates, with these fields among others; answered with itself.
pub fn event(fields: Value) -> Exchange {
    let mut ex = exchange("POST", EVENTS, Expect::Contains(fields));
    ex.status = 201;
    ex
}

impl Exchange {
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn reply(mut self, status: u16, body: &Value) -> Self {
        self.status = status;
        self.reply = serde_json::to_vec(body).expect("JSON");
        self
    }

    pub fn hang(mut self) -> Self {
        self.hang = true;
        self
    }

    pub fn fail(mut self, (status, body): (u16, String)) -> Self {
        self.status = status;
        self.reply = body.into_bytes();
        self
    }
}

/// Percent-decoded `key=value` pairs of a query (kube writes `?&a=b`: empty pairs dropped).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    pub fn decode(s: &str) -> String {
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
pub fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|actual| contains(actual, v))),
        _ => actual == expected,
    }
}

pub async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Exchange>) {
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
pub async fn execute(
    script: Vec<Exchange>,
    (rule, decision): &(Rule, Decision),
) -> Result<Outcome, ClusterError> {
    let (executor, server) = executor(script);
    let result = run(&executor, rule, decision).await;
    drop(executor);
    server.await.expect("the API server script failed");
    result
}

/// Executes one decision of `rule` through the registry with `executor` as the only
/// Kubernetes client, as the daemon does; a Kubernetes failure is returned as such.
pub async fn run(executor: &KubeExecutor, rule: &Rule, decision: &Decision) -> Result<Outcome, ClusterError> {
    match run_any(executor, rule, decision).await {
        Ok(outcome) => Ok(outcome),
        Err(ActionError::Kubernetes(e)) => Err(e),
        Err(other) => panic!("not a Kubernetes failure: {other}"),
    }
}

/// [`run`], with any failure.
pub async fn run_any(
    executor: &KubeExecutor,
    rule: &Rule,
    decision: &Decision,
) -> Result<Outcome, ActionError> {
    let fast = FullJitter::exponential(Duration::from_millis(1), Duration::from_millis(5), 3);
    let executors = Executors {
        http: HttpClient::new().expect("an HTTP client").with_backoff(fast),
        kube: Some(executor.clone()),
        postgres: None,
    };
    let cx = ExecCtx {
        rule,
        decision,
        executors: &executors,
    };
    rule.spec.action.execute(&cx).await
}

pub fn executor(script: Vec<Exchange>) -> (KubeExecutor, JoinHandle<()>) {
    let (client, server) = client(script);
    let cluster = Cluster {
        client,
        namespace: NS.to_owned(),
        namespaces: automaton::core::namespaces::Namespaces::only(NS),
        identity: IDENTITY.to_owned(),
    };
    let backoff = FullJitter::exponential(Duration::from_millis(1), Duration::from_millis(5), 3);
    let executor = KubeExecutor::new(&cluster).with_backoff(backoff).with_clock(now);
    (executor, server)
}

/// A client whose requests the script answers; the server ends when the client is dropped.
pub fn client(script: Vec<Exchange>) -> (kube::Client, JoinHandle<()>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "client-default");
    (client, tokio::spawn(serve(handle, script)))
}

// ---------------------------------------------------------------------------------------
// Decisions from the real engine

/// An engine over `rules` that can execute every action, and its first rule.
pub fn engine(rules: &str) -> (Rule, Engine) {
    let config = EngineConfig {
        executable: automaton::core::engine::Executable::All,
        ..EngineConfig::default()
    };
    engine_with(rules, config)
}

/// [`engine`] with this configuration.
pub fn engine_with(rules: &str, config: EngineConfig) -> (Rule, Engine) {
    let set = load_texts(&[(Path::new("rules.yaml"), rules)], &|_| None)
        .unwrap_or_else(|errors| panic!("invalid test rules: {errors:#?}"));
    // As the daemon installs them: targets in the automaton's namespace, `NS`.
    let set = set.in_namespace(NS);
    let rule = set.rules[0].clone();
    (rule, Engine::new(Arc::new(set), config))
}

/// One sample of the first rule's signal at `t` seconds.
pub fn sample(engine: &mut Engine, t: u64, labels: &[(&str, &str)], value: f64) {
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
            at: Duration::from_secs(t),
            result: Ok(vec![series]),
        },
    );
}

/// The `act` decision of the first rule of `rules` for one sample, planned against `world`.
pub fn decide(rules: &str, world: &str, labels: &[(&str, &str)], value: f64) -> (Rule, Decision) {
    let (rule, mut engine) = engine(rules);
    sample(&mut engine, 60, labels, value);
    let world: SimWorld = serde_yaml::from_str(world).expect("a world");
    // Keyed as the daemon keys the live workloads: by their namespace-qualified target.
    let world = SimWorld(world.0.into_iter().map(|(k, w)| (qualify(&k, NS), w)).collect());
    let decision = engine
        .evaluate(Duration::from_secs(60), &world)
        .into_iter()
        .find(|d| d.decision == Verdict::Act)
        .expect("the engine acts");
    (rule, decision)
}

pub fn rule(name: &str, signal: &str, action: &str) -> String {
    format!(
        "rules:\n  - name: {name}\n    priority: critical\n    signal:\n      {signal}\n    when: \"> 0\"\n    action:\n      {action}\n    cooldown: 5m\n"
    )
}

pub fn scale_to(replicas: u32, world_replicas: u32) -> (Rule, Decision) {
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

pub fn restart(target: &str) -> (Rule, Decision) {
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

pub fn raise_memory() -> (Rule, Decision) {
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
            ("owner", "default/deployment/hello-world"),
        ],
        1.0,
    )
}

/// The one merge patch of a `scale`: replicas and the rule's last-action annotation, under
/// the resourceVersion just read.
pub fn scale_patch(rule: &str, rv: &str, replicas: u32) -> Value {
    json!({
        "metadata": {
            "resourceVersion": rv,
            "annotations": {format!("automaton.dev/last-action-{rule}"): NOW},
        },
        "spec": {"replicas": replicas},
    })
}

/// The resourceVersion of the Deployment and StatefulSet fixtures.
pub const DEPLOYMENT_RV: &str = "649432";
pub const STATEFULSET_RV: &str = "514251";

pub fn regarding_hello() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "hello-world", "namespace": NS, "uid": HELLO_UID})
}

pub fn event_fields(reason: &str, action: &str, note: &str, regarding: Value) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"namespace": NS},
        "type": "Normal", "reason": reason, "action": action, "note": note,
        "reportingController": "automaton", "reportingInstance": IDENTITY,
        "regarding": regarding,
    })
}

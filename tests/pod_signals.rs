//! Pod signals against a mocked API server, kube-rs style: the client talks to a
//! `tower_test` mock, and a verifier task asserts every request kube's watcher (and the owner
//! look-up) sends, answering with real payloads from `tests/fixtures/kubernetes/`. Nothing
//! waits on a clock: tests wait for the trigger, for the verifier to see the next request, or
//! poll `collect` with a deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use automaton::clients::kube::owners::{Owners, RETRY_AFTER};
use automaton::core::series::Series;
use automaton::core::values::Dur;
use automaton::signals::pods::PodSignals;
use automaton::signals::{PodCrashLoop, PodOomKilled, PodRestarts, SignalSpec};
use http::{Request, Response};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::client::Body;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Fixtures

fn fixture(path: &str) -> String {
    let full = format!("{}/tests/fixtures/kubernetes/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The fixture without its `#` source header.
fn payload(path: &str) -> String {
    let text = fixture(path);
    let lines: Vec<&str> = text.lines().skip_while(|l| l.starts_with('#')).collect();
    lines.join("\n")
}

/// Replaces the `@now-5m` / `@now-2h` / `@now-5d` placeholders of the is-healthy fixtures.
fn fill_now(text: &str, now: Timestamp) -> String {
    let (mut out, mut rest) = (String::new(), text);
    while let Some(i) = rest.find("@now-") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 5..];
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        let n: i64 = tail[..digits].parse().expect("a number after @now-");
        let unit = match &tail[digits..digits + 1] {
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            other => panic!("unknown unit {other}"),
        };
        out.push_str(&(now - SignedDuration::from_secs(n * unit)).to_string());
        rest = &tail[digits + 1..];
    }
    out.push_str(rest);
    out
}

/// Shifts every `startedAt` / `finishedAt` by `offset` (old captures made recent).
fn rebase(v: &mut Value, offset: SignedDuration) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), v.as_str()) {
                    ("startedAt" | "finishedAt", Some(s)) => {
                        let at: Timestamp = s.parse().expect("a timestamp");
                        *v = json!((at + offset).to_string());
                    }
                    _ => rebase(v, offset),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rebase(v, offset)),
        _ => {}
    }
}

/// The assembled OOM watch stream (ADDED, MODIFIED with the kill, MODIFIED in
/// CrashLoopBackOff, MODIFIED Running, BOOKMARK), moved so that the kill happened 82 s ago,
/// with the resourceVersions (101…) a real server sets and the fixture lacks.
fn oom_stream() -> Vec<Value> {
    let origin: Timestamp = "2018-02-23T13:40:00Z".parse().expect("origin");
    let offset = Timestamp::now().duration_since(origin);
    let mut events: Vec<Value> = payload("watch-stream-assembled-oom.ndjson")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("an event"))
        .collect();
    for (i, e) in events.iter_mut().enumerate() {
        rebase(e, offset);
        if e["type"] != "BOOKMARK" {
            e["object"]["metadata"]["resourceVersion"] = json!((101 + i).to_string());
        }
    }
    assert_eq!(events.len(), 5);
    events
}

/// A real pod, changed fluently where a scenario needs another state.
#[derive(Clone)]
struct TestPod(Value);

impl TestPod {
    fn yaml(path: &str) -> Self {
        let text = fill_now(&payload(path), Timestamp::now());
        TestPod(serde_yaml::from_str(&text).expect("a pod"))
    }
    fn json(path: &str) -> Self {
        TestPod(serde_json::from_str(&payload(path)).expect("a pod"))
    }
    fn killed_pod1() -> Self {
        TestPod(oom_stream()[1]["object"].clone())
    }
    fn container(&mut self, name: &str) -> &mut Value {
        for list in ["containerStatuses", "initContainerStatuses"] {
            if let Some(i) = self.0["status"][list]
                .as_array()
                .and_then(|cs| cs.iter().position(|c| c["name"] == name))
            {
                return &mut self.0["status"][list][i];
            }
        }
        panic!("no container {name}")
    }
    fn named(mut self, name: &str, uid: &str) -> Self {
        self.0["metadata"]["name"] = json!(name);
        self.0["metadata"]["uid"] = json!(uid);
        self
    }
    fn in_namespace(mut self, namespace: &str) -> Self {
        self.0["metadata"]["namespace"] = json!(namespace);
        self
    }
    fn crash_looping(mut self, container: &str) -> Self {
        let c = self.container(container);
        c["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}});
        self
    }
    fn running(mut self, container: &str, restarts: i64) -> Self {
        let c = self.container(container);
        c["state"] = json!({"running": {"startedAt": Timestamp::now().to_string()}});
        c["restartCount"] = json!(restarts);
        self
    }
    fn oom_killed(mut self, container: &str, ago: SignedDuration) -> Self {
        let c = self.container(container);
        let at = (Timestamp::now() - ago).to_string();
        c["lastState"] = json!({"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": at}});
        c["restartCount"] = json!(c["restartCount"].as_i64().unwrap_or(0) + 1);
        self
    }
    fn version(mut self, rv: &str) -> Self {
        self.0["metadata"]["resourceVersion"] = json!(rv);
        self
    }
    fn modified(self) -> Value {
        json!({"type": "MODIFIED", "object": self.0})
    }
}

/// The API server's answer to a request, from `status-failures.yaml`.
fn status_body(id: &str) -> String {
    let cases: Value = serde_yaml::from_str(&payload("status-failures.yaml")).expect("yaml");
    let case = cases["cases"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id));
    case.and_then(|c| c["body"].as_str()).expect("a case").to_owned()
}

/// The in-stream 410 Gone of the Kubernetes docs fixture.
fn gone_event() -> Value {
    let text = fixture("watch-stream-k8s-docs.txt");
    let line = text
        .lines()
        .find(|l| l.starts_with(r#"{"type":"ERROR""#))
        .expect("the 410 line");
    serde_json::from_str(line).expect("json")
}

// ---------------------------------------------------------------------------------------
// The verifier

struct ApiServer(Handle<Request<Body>, Response<Body>>);

type Reply = SendResponse<Response<Body>>;

fn pods_path(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/api/v1/namespaces/{ns}/pods"),
        None => "/api/v1/pods".to_owned(),
    }
}

fn query(req: &Request<Body>) -> BTreeMap<String, String> {
    let pairs = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty());
    pairs
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn respond(reply: Reply, status: u16, body: String) {
    let response = Response::builder()
        .status(status)
        .body(Body::from(body.into_bytes()));
    reply.send_response(response.expect("a response"));
}

impl ApiServer {
    async fn next(&mut self, expected: &str) -> (Request<Body>, Reply) {
        tokio::time::timeout(WAIT, self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {expected}"))
            .unwrap_or_else(|| panic!("the client is gone; expected {expected}"))
    }

    /// A pod list as kube's watcher sends it: pages of 500, the most recent data (no
    /// resourceVersion), every pod (no labelSelector: the selectors apply in memory).
    async fn expect_list(&mut self, namespace: Option<&str>) -> Reply {
        self.expect_list_selecting(namespace, None).await
    }

    /// A pod list filtered by the API server (`labelSelector`, URL-encoded as sent).
    async fn expect_list_selecting(&mut self, namespace: Option<&str>, selector: Option<&str>) -> Reply {
        let (req, reply) = self.next("a pod list").await;
        assert_eq!(
            (req.method().as_str(), req.uri().path()),
            ("GET", &*pods_path(namespace))
        );
        let mut want = vec![("limit", "500")];
        want.extend(selector.map(|s| ("labelSelector", s)));
        assert_eq!(query(&req), pairs(&want), "{}", req.uri());
        reply
    }

    async fn list_pods(&mut self, namespace: Option<&str>, rv: &str, items: Vec<Value>) {
        let reply = self.expect_list(namespace).await;
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv},
                          "items": items});
        respond(reply, 200, list.to_string());
    }

    /// A watch from `rv`, with bookmarks, as kube's watcher sends it.
    async fn expect_watch(&mut self, namespace: Option<&str>, rv: &str) -> Reply {
        let (req, reply) = self.next(&format!("a pod watch from {rv}")).await;
        assert_eq!(
            (req.method().as_str(), req.uri().path()),
            ("GET", &*pods_path(namespace))
        );
        let want = [
            ("watch", "true"),
            ("timeoutSeconds", "290"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", rv),
        ];
        assert_eq!(query(&req), pairs(&want), "{}", req.uri());
        reply
    }

    /// Answers a watch with a body of newline-delimited events (the watch then ends and
    /// kube's watcher resumes from the last resourceVersion).
    async fn watch_pods(&mut self, namespace: Option<&str>, rv: &str, events: &[Value]) {
        let reply = self.expect_watch(namespace, rv).await;
        let body: String = events.iter().map(|e| format!("{e}\n")).collect();
        respond(reply, 200, body);
    }

    /// One metadata GET of a ReplicaSet, answered with its Deployment owner.
    async fn get_replicaset(&mut self, namespace: &str, name: &str, deployment: &str) {
        let (req, reply) = self.next(&format!("GET replicaset {name}")).await;
        let path = format!("/apis/apps/v1/namespaces/{namespace}/replicasets/{name}");
        assert_eq!((req.method().as_str(), req.uri().path()), ("GET", &*path));
        assert_eq!(req.uri().query(), None);
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        assert!(
            accept.unwrap_or_default().contains("as=PartialObjectMetadata"),
            "{accept:?}"
        );
        let owner = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                           "uid": "5b2a7e43-0d1f-4c1e-9a54-3f7d2a9c1e10", "controller": true,
                           "blockOwnerDeletion": true});
        let body = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                          "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]}});
        respond(reply, 200, body.to_string());
    }
}

/// Runs one phase of the verifier in its own task.
fn verify<F, Fut, T>(api: ApiServer, scenario: F) -> JoinHandle<T>
where
    F: FnOnce(ApiServer) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(scenario(api))
}

async fn done<T>(verifier: JoinHandle<T>) -> T {
    match tokio::time::timeout(WAIT, verifier).await {
        Ok(Ok(out)) => out,
        Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Ok(Err(join)) => panic!("verifier: {join}"),
        Err(_) => panic!("the verifier did not finish"),
    }
}

// ---------------------------------------------------------------------------------------
// The signals

fn start(namespace: Option<&str>) -> (PodSignals, ApiServer, mpsc::Receiver<()>) {
    start_selecting(namespace, "")
}

/// The pod signals with the API server filtering the watch by `selector`.
fn start_selecting(namespace: Option<&str>, selector: &str) -> (PodSignals, ApiServer, mpsc::Receiver<()>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "prod");
    let (trigger, woken) = mpsc::channel(16);
    let namespaces = match namespace {
        Some(ns) => automaton::core::namespaces::Namespaces::only(ns),
        None => automaton::core::namespaces::Namespaces::All,
    };
    let pods = PodSignals::spawn(client, &namespaces, selector.to_owned(), trigger);
    (pods, ApiServer(handle), woken)
}

async fn woken(rx: &mut mpsc::Receiver<()>) {
    let got = tokio::time::timeout(WAIT, rx.recv()).await;
    assert_eq!(got.expect("the trigger fired"), Some(()));
}

/// A pod signal's reading as the engine sees it: its series, or why it is unknown.
trait Collect {
    fn collect(&self, spec: &SignalSpec, now: Timestamp) -> Result<Vec<Series>, String>;
}

impl Collect for PodSignals {
    fn collect(&self, spec: &SignalSpec, now: Timestamp) -> Result<Vec<Series>, String> {
        let read = match spec {
            SignalSpec::PodOomKilled(s) => s.read(self, now),
            SignalSpec::PodCrashLoop(s) => s.read(self, now),
            SignalSpec::PodRestarts(s) => s.read(self, now),
            other => panic!("`{}` is not a pod signal", other.kind()),
        };
        read.map_err(|e| e.to_string())
    }
}

/// Polls `collect` until it leaves "waiting for the first pod list".
async fn settled(pods: &PodSignals, spec: &SignalSpec) -> Result<Vec<Series>, String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = pods.collect(spec, Timestamp::now());
        if got.as_ref().err().map(String::as_str) != Some("waiting for the first pod list") {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still waiting for the first pod list"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn oom(selector: &str) -> SignalSpec {
    SignalSpec::PodOomKilled(PodOomKilled {
        window: Dur(Duration::from_secs(300)),
        selector: selector.into(),
    })
}

fn crash(selector: &str) -> SignalSpec {
    SignalSpec::PodCrashLoop(PodCrashLoop {
        selector: selector.into(),
    })
}

fn restarts(selector: &str, window: Duration) -> SignalSpec {
    SignalSpec::PodRestarts(PodRestarts {
        selector: selector.into(),
        window: Dur(window),
    })
}

fn series(value: f64, labels: &[(&str, &str)]) -> Series {
    Series {
        labels: pairs(labels),
        value,
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn the_oom_stream_counts_its_one_kill_once_and_wakes_the_daemon() {
    let ns = Some("mockNamespace");
    let (pods, api, mut rx) = start(ns);
    assert_eq!(
        pods.collect(&oom(""), Timestamp::now()),
        Err("waiting for the first pod list".into())
    );
    let events = oom_stream();
    let verifier = verify(api, move |mut api| async move {
        api.list_pods(ns, "100", vec![]).await;
        api.watch_pods(ns, "100", &events[..2]).await; // ADDED, then MODIFIED: the kill
        api.watch_pods(ns, "102", &events[2..]).await; // CrashLoopBackOff, Running, BOOKMARK
        let parked = api.expect_watch(ns, "12746").await; // resumed from the bookmark
        (api, parked)
    });

    woken(&mut rx).await; // the (empty) first list: the pod signals are known now
    woken(&mut rx).await; // then the kill: the ADDED pod had nothing to say
    let kill = series(
        1.0,
        &[
            ("pod", "Pod1"),
            ("container", "Name11"),
            ("namespace", "mockNamespace"),
        ],
    );
    assert_eq!(pods.collect(&oom(""), Timestamp::now()), Ok(vec![kill.clone()]));

    let _parked = done(verifier).await; // every event has been handled
    let now = Timestamp::now();
    assert_eq!(
        pods.collect(&oom(""), now),
        Ok(vec![kill]),
        "the later steps do not count again: still one kill in the window"
    );
    assert_eq!(
        pods.collect(&oom("app=web"), now),
        Ok(vec![]),
        "the pod has no `app` label"
    );
    // Another rule's spec on the same pods, with another window, is a source of its own: it
    // sees the kill too.
    let longer = SignalSpec::PodOomKilled(PodOomKilled {
        window: Dur(Duration::from_secs(600)),
        selector: String::new(),
    });
    assert_eq!(pods.collect(&longer, now).map(|s| s.len()), Ok(1));
    assert_eq!(pods.collect(&crash(""), now), Ok(vec![]), "Running again");
    let restarted = series(
        4.0,
        &[
            ("pod", "Pod1"),
            ("container", "Name11"),
            ("namespace", "mockNamespace"),
        ],
    );
    assert_eq!(
        pods.collect(&restarts("", Duration::from_secs(600)), now),
        Ok(vec![restarted])
    );
}

#[tokio::test]
async fn a_relist_after_410_gone_does_not_count_the_same_kill_again() {
    let ns = Some("mockNamespace");
    let (pods, api, mut rx) = start(ns);
    let killed = TestPod::killed_pod1().0;
    let list = vec![killed.clone()];
    let first = verify(api, move |mut api| async move {
        api.list_pods(ns, "100", list).await;
        api.watch_pods(ns, "100", &[gone_event()]).await;
        // kube's watcher backs off, then lists again.
        let relist = api.expect_list(ns).await;
        (api, relist)
    });

    woken(&mut rx).await;
    let kill = series(
        1.0,
        &[
            ("pod", "Pod1"),
            ("container", "Name11"),
            ("namespace", "mockNamespace"),
        ],
    );
    assert_eq!(pods.collect(&oom(""), Timestamp::now()), Ok(vec![kill.clone()]));

    let (mut api, relist) = done(first).await;
    // The first list woke the daemon too (the pod signals became known): that one is not
    // what this test is about.
    while rx.try_recv().is_ok() {}
    let during = pods.collect(&oom(""), Timestamp::now());
    assert_eq!(
        during,
        Ok(vec![kill.clone()]),
        "410 Gone is routine: the signals stay known during the re-list"
    );
    let page = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "200"},
                      "items": [killed]}); // the same pod, the same kill
    respond(relist, 200, page.to_string());
    let _parked = api.expect_watch(ns, "200").await;
    assert_eq!(
        pods.collect(&oom(""), Timestamp::now()),
        Ok(vec![kill]),
        "not counted again: one kill, not two"
    );
    assert!(rx.try_recv().is_err(), "the re-list brought nothing new");
}

#[tokio::test]
async fn an_old_kill_is_history_not_news() {
    let ns = Some("mission-control");
    let (pods, api, mut rx) = start(ns);
    let old = TestPod::yaml("pods/Pod__oomkilled-old.yaml"); // finishedAt: 5 days ago
    let recent = TestPod::killed_pod1().in_namespace("mission-control");
    let verifier = verify(api, move |mut api| async move {
        api.list_pods(ns, "100", vec![old.0, recent.0]).await;
        api.expect_watch(ns, "100").await
    });

    woken(&mut rx).await;
    let _parked = done(verifier).await;
    let now = Timestamp::now();
    let only_recent = series(
        1.0,
        &[
            ("pod", "Pod1"),
            ("container", "Name11"),
            ("namespace", "mission-control"),
        ],
    );
    assert_eq!(pods.collect(&oom(""), now), Ok(vec![only_recent]));
    assert_eq!(
        pods.collect(&restarts("", Duration::from_secs(3600)), now),
        Ok(vec![]),
        "baselines"
    );
}

#[tokio::test]
async fn crash_loops_come_and_go_and_restarts_count_within_the_window() {
    let (pods, api, mut rx) = start(None); // all namespaces
    let looping = TestPod::json("pod-crashloopbackoff-waiting.json"); // restartCount 3
    let recovered = looping.clone().running("main", 4).version("151455");
    let deleted = json!({"type": "DELETED", "object": recovered.clone().version("151456").0});
    let first = verify(api, move |mut api| async move {
        api.list_pods(None, "151454", vec![looping.0]).await;
        api
    });

    woken(&mut rx).await;
    let labels = [("pod", "my-pod"), ("container", "main"), ("namespace", "argocd")];
    assert_eq!(
        pods.collect(&crash(""), Timestamp::now()),
        Ok(vec![series(1.0, &labels)])
    );
    let window = restarts("", Duration::from_secs(600));
    assert_eq!(
        pods.collect(&window, Timestamp::now()),
        Ok(vec![]),
        "the first sighting is the baseline"
    );

    let api = done(first).await;
    let second = verify(api, move |mut api| async move {
        api.watch_pods(None, "151454", &[recovered.modified()]).await;
        let parked = api.expect_watch(None, "151455").await;
        (api, parked)
    });
    let (mut api, parked) = done(second).await;
    // The watch started after the first list was taken in, and resumed after the MODIFIED
    // event was: by now the end of the crash loop woke the daemon once more. The list woke
    // it once, at its end (taken above): not for the crash loop it held, before the
    // signals were known, when an evaluation could only read "waiting".
    let mut wakes = 0;
    while rx.try_recv().is_ok() {
        wakes += 1;
    }
    assert_eq!(wakes, 1, "the crash loop's end");
    let now = Timestamp::now();
    assert_eq!(pods.collect(&crash(""), now), Ok(vec![]));
    assert_eq!(pods.collect(&window, now), Ok(vec![series(1.0, &labels)]));
    let later = now + SignedDuration::from_secs(11 * 60);
    assert_eq!(pods.collect(&window, later), Ok(vec![]), "out of the 10m window");

    respond(parked, 200, format!("{deleted}\n"));
    let _parked = api.expect_watch(None, "151456").await;
    assert_eq!(pods.collect(&window, now), Ok(vec![]), "a deleted pod disappears");
}

#[tokio::test]
async fn owners_resolve_through_one_replicaset_get_and_label_the_series_before_the_wake_up() {
    let (pods, api, mut rx) = start(None);
    let template = TestPod::yaml("pods/Pod__pod-crashloop-pending.yaml"); // of ReplicaSet crashloop-deployment-6bf9b7b858
    let a = template
        .clone()
        .oom_killed("main-container", SignedDuration::from_secs(30));
    let b = template
        .named(
            "crashloop-deployment-6bf9b7b858-x2x7q",
            "0f6c3a51-2b7d-4e8a-9c1f-5d3e2b1a0c9d",
        )
        .crash_looping("main-container");
    let c = TestPod::yaml("pods/Pod__restarting.yaml").crash_looping("gitlab-runner"); // of a StatefulSet
    let d = TestPod::yaml("pods/Pod__start-error.yaml").crash_looping("migrations"); // of a Job
    let verifier = verify(api, move |mut api| async move {
        api.list_pods(None, "100", vec![a.0, b.0, c.0, d.0]).await;
        api.get_replicaset(
            "default",
            "crashloop-deployment-6bf9b7b858",
            "crashloop-deployment",
        )
        .await;
        // Exactly one GET: the next request is the watch, not another look-up.
        api.expect_watch(None, "100").await
    });

    woken(&mut rx).await; // the kill of the first pod
    let kill = series(
        1.0,
        &[
            ("pod", "crashloop-deployment-6bf9b7b858-m9882"),
            ("container", "main-container"),
            ("namespace", "default"),
            ("owner", "default/deployment/crashloop-deployment"),
        ],
    );
    assert_eq!(pods.collect(&oom(""), Timestamp::now()), Ok(vec![kill]));

    let _parked = done(verifier).await;
    let sts = "httpbin/statefulset/postgresql-01902bbe-eb40-47d4-a0f7-0afb993645dc";
    let crash_loops = vec![
        series(
            1.0,
            &[
                ("pod", "crashloop-deployment-6bf9b7b858-x2x7q"),
                ("container", "main-container"),
                ("namespace", "default"),
                ("owner", "default/deployment/crashloop-deployment"),
            ],
        ),
        series(
            1.0,
            &[
                ("pod", "run-migrations-jn647"),
                ("container", "migrations"),
                ("namespace", "hf-qa-malawi"),
            ],
        ),
        series(
            1.0,
            &[
                ("pod", "postgresql-01902bbe-eb40-47d4-a0f7-0afb993645dc-0"),
                ("container", "gitlab-runner"),
                ("namespace", "httpbin"),
                ("owner", sts),
            ],
        ),
    ];
    assert_eq!(pods.collect(&crash(""), Timestamp::now()), Ok(crash_loops));
    let only_sts = pods
        .collect(&crash("app=postgresql"), Timestamp::now())
        .expect("known");
    assert_eq!(only_sts.len(), 1);
    assert_eq!(only_sts[0].labels["owner"], sts);
}

#[tokio::test]
async fn a_forbidden_list_makes_the_signals_unknown_with_the_reason() {
    let ns = Some("prod");
    let (pods, api, _rx) = start(ns);
    let verifier = verify(api, move |mut api| async move {
        let reply = api.expect_list(ns).await;
        respond(reply, 403, status_body("derived/403-forbidden-rbac"));
        api.expect_list(ns).await // kube's watcher retries after its backoff
    });

    let why = settled(&pods, &oom("")).await.expect_err("unknown, never 0");
    assert!(
        why.starts_with("forbidden: the Role lacks list/watch on pods"),
        "{why}"
    );
    assert!(
        why.contains(r#"cannot list resource "pods" in API group"#),
        "{why}"
    );
    let _retry = done(verifier).await;
    let still = pods
        .collect(&crash(""), Timestamp::now())
        .expect_err("still unknown");
    assert_eq!(still, why, "until a list succeeds");
}

#[tokio::test]
async fn a_failed_owner_look_up_is_retried_later_not_cached_forever() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let owners = Owners::new(kube::Client::new(service, "prod"));
    let pod = TestPod::yaml("pods/Pod__pod-crashloop-pending.yaml");
    let meta: ObjectMeta = serde_json::from_value(pod.0["metadata"].clone()).expect("metadata");
    let rs = "crashloop-deployment-6bf9b7b858";

    let verifier = verify(ApiServer(handle), move |mut api| async move {
        let (_, reply) = api.next("GET replicaset").await;
        respond(reply, 500, status_body("kubeclient/namespace_exception"));
        api
    });
    let err = owners.resolve_pod(&meta).await.expect_err("the GET failed");
    assert!(err.to_string().contains(rs), "{err}");
    let api = done(verifier).await;

    // Within RETRY_AFTER the failure is answered from the cache, without a request.
    let cached = owners.resolve_pod(&meta).await.expect_err("still failed");
    assert!(cached.reason.contains("cached"), "{cached}");

    tokio::time::pause();
    tokio::time::advance(RETRY_AFTER + Duration::from_secs(1)).await;
    tokio::time::resume();
    let verifier = verify(api, move |mut api| async move {
        api.get_replicaset("default", rs, "crashloop-deployment").await;
        api
    });
    let owner = owners.resolve_pod(&meta).await.expect("retried");
    assert_eq!(owner.as_deref(), Some("default/deployment/crashloop-deployment"));
    drop(done(verifier).await);
    // Now cached: no further request (the mock server is gone, a request would fail).
    assert_eq!(
        owners.resolve_pod(&meta).await,
        Ok(Some("default/deployment/crashloop-deployment".into()))
    );
}

#[test]
fn a_bad_selector_is_a_rule_file_error() {
    let text = r#"rules:
  - name: oom
    signal:
      pod_oom_killed: {selector: "app in (web"}
    when: "> 0"
    action:
      restart: {target: owner}
"#;
    let file = std::path::Path::new("rules/pods.yaml");
    let errors = automaton::rules::load::load_texts(&[(file, text)], &|_| None).expect_err("invalid");
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "rules/pods.yaml:2:11: rule `oom`: pod_oom_killed `selector`: invalid label selector \
          `app in (web`: at column 12: missing `)` to close `in (`"
        ]
    );
}

#[tokio::test]
async fn the_api_server_filters_by_the_shared_selector_and_a_new_one_lists_again() {
    let ns = Some("mockNamespace");
    let (pods, api, mut rx) = start_selecting(ns, "automaton.dev/heal=true");
    assert_eq!(pods.selector(), "automaton.dev/heal=true");
    // The pod in CrashLoopBackOff, as the filtered list returns it.
    let crashing = oom_stream()[2]["object"].clone();
    let verifier = verify(api, move |mut api| async move {
        let heal = Some("automaton.dev%2Fheal%3Dtrue");
        let reply = api.expect_list_selecting(ns, heal).await;
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "100"},
                          "items": [crashing]});
        respond(reply, 200, list.to_string());
        let (req, parked) = api.next("the filtered watch").await;
        let q = query(&req);
        assert_eq!(q.get("labelSelector").map(String::as_str), heal, "{}", req.uri());
        assert_eq!(q.get("watch").map(String::as_str), Some("true"));
        (api, parked)
    });
    woken(&mut rx).await;
    let (api, _parked) = done(verifier).await;
    assert_eq!(pods.collect(&crash(""), Timestamp::now()).map(|s| s.len()), Ok(1));

    // The rules changed: the same selector again is nothing new; another lists again, and
    // the pod it leaves out is forgotten at the list's end.
    pods.narrow("automaton.dev/heal=true");
    pods.narrow("app=web");
    assert_eq!(pods.selector(), "app=web");
    let verifier = verify(api, move |mut api| async move {
        let reply = api.expect_list_selecting(ns, Some("app%3Dweb")).await;
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "200"},
                          "items": []});
        respond(reply, 200, list.to_string());
        let (req, parked) = api.next("the watch with the new selector").await;
        assert_eq!(
            query(&req).get("labelSelector").map(String::as_str),
            Some("app%3Dweb")
        );
        (api, parked)
    });
    let (_api, _parked) = done(verifier).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while pods.collect(&crash(""), Timestamp::now()).map(|s| s.len()) != Ok(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pod is still remembered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_owner_of_a_pod_outside_the_watch_is_read_once() {
    let ns = Some("mockNamespace");
    let (pods, api, mut rx) = start_selecting(ns, "automaton.dev/heal=true");
    let verifier = verify(api, move |mut api| async move {
        let reply = api
            .expect_list_selecting(ns, Some("automaton.dev%2Fheal%3Dtrue"))
            .await;
        let list =
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": []});
        respond(reply, 200, list.to_string());
        let (_, parked) = api.next("the watch").await;
        // A series names web-1, which did not opt in: its metadata, then its ReplicaSet's.
        let (req, reply) = api.next("GET pod web-1").await;
        assert_eq!(req.uri().path(), "/api/v1/namespaces/mockNamespace/pods/web-1");
        let owner = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7",
                           "uid": "1", "controller": true});
        let body = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                          "metadata": {"name": "web-1", "namespace": "mockNamespace", "ownerReferences": [owner]}});
        respond(reply, 200, body.to_string());
        api.get_replicaset("mockNamespace", "web-5d8f7", "web").await;
        // A pod that is gone: 404, no owner, nothing to act on.
        let (req, reply) = api.next("GET pod gone-0").await;
        assert_eq!(req.uri().path(), "/api/v1/namespaces/mockNamespace/pods/gone-0");
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                            "message": "pods \"gone-0\" not found", "code": 404});
        respond(reply, 404, status.to_string());
        (api, parked)
    });
    woken(&mut rx).await;
    let owner = pods.owner_of("mockNamespace", "web-1").await.expect("read");
    assert_eq!(owner, Some(Some("mockNamespace/deployment/web".to_owned())));
    assert_eq!(
        pods.owner_of("mockNamespace", "gone-0").await.expect("read"),
        None
    );
    let (_api, _parked) = done(verifier).await;
    // Both answers are reused: no request (nobody answers one now: it would time out).
    let cached = |name: &'static str| {
        let pods = &pods;
        async move {
            tokio::time::timeout(Duration::from_secs(2), pods.owner_of("mockNamespace", name))
                .await
                .expect("answered from the cache, without a request")
                .expect("cached")
        }
    };
    assert_eq!(
        cached("web-1").await,
        Some(Some("mockNamespace/deployment/web".to_owned()))
    );
    assert_eq!(cached("gone-0").await, None);
}

#[tokio::test]
async fn selectors_that_share_nothing_get_a_filtered_watch_each_and_each_rule_reads_its_own() {
    let ns = Some("mockNamespace");
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "prod");
    let (trigger, mut rx) = mpsc::channel(16);
    let plan = automaton::signals::pods::watch_plan(["tier=cache", "app=web"]);
    let namespaces = automaton::core::namespaces::Namespaces::only("mockNamespace");
    let pods = PodSignals::spawn(client, &namespaces, plan, trigger);
    assert_eq!(pods.selector(), "app=web; tier=cache");
    // One crash-looping pod both selectors match, without an owner to look up.
    let mut crashing = oom_stream()[2]["object"].clone();
    crashing["metadata"]["labels"] = json!({"app": "web", "tier": "cache"});
    crashing["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("ownerReferences");
    let verifier = verify(ApiServer(handle), move |mut api| async move {
        // Both lists, in either order, each filtered by its own selector.
        let mut asked = Vec::new();
        for _ in 0..2 {
            let (req, reply) = api.next("a filtered pod list").await;
            assert_eq!(req.uri().path(), pods_path(ns));
            let q = query(&req);
            assert_eq!(q.get("limit").map(String::as_str), Some("500"));
            asked.push(q["labelSelector"].clone());
            let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"},
                              "items": [crashing.clone()]});
            respond(reply, 200, list.to_string());
        }
        asked.sort();
        assert_eq!(asked, ["app%3Dweb", "tier%3Dcache"]);
        let mut parked = Vec::new();
        for _ in 0..2 {
            let (req, reply) = api.next("a filtered pod watch").await;
            assert_eq!(query(&req).get("watch").map(String::as_str), Some("true"));
            parked.push(reply);
        }
        (api, parked)
    });
    woken(&mut rx).await;
    let (mut api, _parked) = done(verifier).await;
    // Each rule reads the watch made for its selector: the pod counts once for each, and
    // once for a selector no watch was planned for.
    for selector in ["app=web", "tier=cache", ""] {
        let got = settled(&pods, &crash(selector)).await.map(|s| s.len());
        assert_eq!(got, Ok(1), "{selector}");
    }

    // The rules changed: only `app=web` is left. Its watch goes on as it was; the other
    // stops; nothing is listed again.
    pods.narrow(automaton::signals::pods::watch_plan(["app=web"]));
    assert_eq!(pods.selector(), "app=web");
    let more = tokio::time::timeout(Duration::from_millis(300), api.0.next_request()).await;
    assert!(
        more.is_err(),
        "no new request: {:?}",
        more.map(|r| r.map(|(req, _)| req.uri().clone()))
    );
    assert_eq!(
        pods.collect(&crash("app=web"), Timestamp::now()).map(|s| s.len()),
        Ok(1)
    );
}

//! Scripted measurement (not criterion: each sample is a whole binary against a whole fake
//! cluster): N pods in one namespace, 1 % of them opted in (`automaton.dev/heal=true`), one
//! OOM kill of an opted-in pod. Reported per N: peak RSS of the automaton (VmHWM), time from
//! start to `/readyz` 200 and to leading (the Lease taken and the guard state read), from the
//! kill (reported to the fake once leading: the steady state, not the start-up) to the first
//! API request and to the PATCH, and the number of writes (exactly one). Each N runs twice: with the
//! shipped pod rules (every selector shares `automaton.dev/heal=true`, so the API server
//! filters) and with a rule that reads every pod (an empty selector: every pod is listed and
//! watched, as before server-side filtering), and once more with the pods spread over 10
//! namespaces (`prod`, where the opted-in pods are, and `ns-1` … `ns-9`), all of them in
//! WATCH_NAMESPACES: ten pod watches and thirty reflectors.
//!
//! The fake's own share of the kill's latency is measured beside it: a bare watch of the
//! killed pod (a client doing nothing else) records when the fake delivers the event.
//!
//! `cargo bench --bench pod_scale` measures 1 000, 10 000 and 20 000 pods (or the counts
//! given after `--`); under `cargo test` it checks the harness on 300.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write;
use std::time::{Duration, Instant};

use common::scenario::oom_scenario;
use common::{http_get, Automaton, FakeKube};

/// The shipped pod pack's shape: every selector is the opt-in label.
const FILTERED: &str = r#"rules:
  - name: oom
    priority: critical
    signal: {pod_oom_killed: {selector: "automaton.dev/heal=true"}}
    when: "> 0"
    action: {raise_memory: {target: owner}}
    cooldown: 10m
  - name: crash
    priority: critical
    signal: {pod_crash_loop: {selector: "automaton.dev/heal=true"}}
    when: "> 0"
    action: {restart: {target: owner}}
    cooldown: 30m
"#;

/// The same OOM rule beside one that reads every pod (selectors that merely share nothing
/// get a filtered watch each; an empty one reads all): no filter.
const UNFILTERED: &str = r#"rules:
  - name: oom
    priority: critical
    signal: {pod_oom_killed: {selector: "automaton.dev/heal=true"}}
    when: "> 0"
    action: {raise_memory: {target: owner}}
    cooldown: 10m
  - name: crash
    priority: critical
    signal: {pod_crash_loop: {selector: ""}}
    when: "> 0"
    action: {restart: {target: owner}}
    cooldown: 30m
"#;

/// The namespaces of the spread runs: the scenario's own, `prod`, and nine more.
const SPREAD: [&str; 10] = [
    "prod", "ns-1", "ns-2", "ns-3", "ns-4", "ns-5", "ns-6", "ns-7", "ns-8", "ns-9",
];

/// `n` pods: `n / 100` opted-in Deployments of one pod each (no kill on the timeline: the
/// bench reports one), the rest pods of 50 other ReplicaSets, each with a container, its
/// resources, a node and a running status; `spread`: those spread over [`SPREAD`].
fn scenario(n: usize, spread: bool) -> String {
    let heal = (n / 100).max(1);
    let base = oom_scenario(heal, 1e9, 0.0);
    let (objects, events) = base.split_once("events:\n").expect("oom_scenario has events");
    let started = common::rfc3339_ago(3600);
    let mut bulk = String::with_capacity(n * 700);
    for i in 0..n - heal {
        let g = i % 50;
        let _ = writeln!(
            bulk,
            r#"  - {{apiVersion: v1, kind: Pod, metadata: {{name: bulk-{g}-7c9d8-{i:05}, namespace: {ns}, labels: {{app: bulk-{g}, pod-template-hash: 7c9d8}}, ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: bulk-{g}-7c9d8, uid: 20000000-0000-0000-0000-{g:012}, controller: true}}]}}, spec: {{nodeName: node-{node}, containers: [{{name: app, image: "registry.example/bulk-{g}:1.0", resources: {{requests: {{memory: 256Mi, cpu: 100m}}, limits: {{memory: 512Mi}}}}}}]}}, status: {{phase: Running, podIP: 10.1.{a}.{b}, containerStatuses: [{{name: app, ready: true, restartCount: 0, image: "registry.example/bulk-{g}:1.0", imageID: "", state: {{running: {{startedAt: "{started}"}}}}}}]}}}}"#,
            ns = if spread { SPREAD[i % SPREAD.len()] } else { "prod" },
            node = i % 40,
            a = i / 250,
            b = i % 250,
        );
    }
    format!("{objects}{bulk}events:\n{events}")
}

struct Figures {
    rss_mib: f64,
    ready_s: f64,
    leading_s: f64,
    first_ms: f64,
    patch_ms: f64,
    /// From the kill's answer to the event reaching a bare watch: the fake's share.
    fake_ms: f64,
    writes: usize,
}

/// A bare watch of `pod` on the fake: sends `None` once connected (its synthetic ADDED),
/// then the moment an `OOMKilled` event arrives.
fn watch_for_kill(port: u16, pod: &str) -> std::sync::mpsc::Receiver<Option<Instant>> {
    use std::io::{Read, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/api/v1/namespaces/prod/pods?watch=true&fieldSelector=metadata.name%3D{pod}");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("a watch request");
    std::thread::spawn(move || {
        let (mut seen, mut buf, mut connected) = (Vec::new(), [0u8; 65536], false);
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if !connected && text.contains("\"ADDED\"") {
                connected = true;
                let _ = tx.send(None);
            }
            if text.contains("OOMKilled") {
                let _ = tx.send(Some(Instant::now()));
                return;
            }
        }
    });
    rx
}

fn vm_hwm_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(n: usize, rules: &str, spread: bool) -> Figures {
    let fake = FakeKube::start_within(&scenario(n, spread), Duration::from_secs(600));
    let dir = fake.dir.path().join("rules");
    std::fs::create_dir_all(&dir).expect("rules dir");
    std::fs::write(dir.join("pods.yaml"), rules).expect("rules");
    let started = Instant::now();
    // BENCH_RUST_LOG=debug and BENCH_LOGS=DIR keep the daemon's log and the fake's request
    // log of each run, to see where the time goes.
    let log_level = std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    let watched = if spread {
        SPREAD.join(",")
    } else {
        "prod".to_owned()
    };
    let env = [
        ("CHECK_INTERVAL", "30s"),
        ("RUST_LOG", log_level.as_str()),
        ("WATCH_NAMESPACES", watched.as_str()),
    ];
    let automaton = Automaton::start(&fake.kubeconfig, &dir, "bench", &env);
    common::eventually("ready", Duration::from_secs(300), || {
        http_get(automaton.port, "/readyz")
            .filter(|(c, _)| *c == 200)
            .map(drop)
    });
    let ready_s = started.elapsed().as_secs_f64();
    // A standby replica is ready too: the kill waits for the Lease and the guard state, so
    // it measures a running leader, not the start-up (taking the Lease, creating the state
    // object, the reflectors' first lists).
    common::eventually("leading", Duration::from_secs(300), || {
        let leading = automaton.metric("automaton_leader") == Some(1.0);
        let status = http_get(automaton.port, "/status")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let loaded = serde_json::from_str::<serde_json::Value>(&status)
            .is_ok_and(|s| s["guard_state"]["loaded"] == true);
        (leading && loaded).then_some(())
    });
    let leading_s = started.elapsed().as_secs_f64();
    // The reflectors' first lists may still be on their way (30 of them for 10
    // namespaces, served one at a time by the Python fake): let them land.
    std::thread::sleep(Duration::from_secs(2));
    // The kill, reported once the automaton leads (as the kubelet would report it at any
    // time), so it never races the first list of tens of thousands of pods.
    let now = common::rfc3339_ago(0);
    let kill = serde_json::json!({"status": {"containerStatuses": [{
        "name": "app", "ready": false, "restartCount": 1, "image": "registry.example/app:1.0", "imageID": "",
        "state": {"running": {"startedAt": now}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": common::rfc3339_ago(3600),
            "finishedAt": now, "containerID": format!("containerd://{:064}", 1)}}}]}});
    let status = "/api/v1/namespaces/prod/pods/app-0-5d8f7-x0/status";
    let bare = watch_for_kill(fake.port(), "app-0-5d8f7-x0");
    assert_eq!(
        bare.recv_timeout(Duration::from_secs(30)),
        Ok(None),
        "the bare watch is connected"
    );
    let (code, body) = fake.request("PATCH", status, "application/merge-patch+json", &kill.to_string());
    let answered = Instant::now();
    assert_eq!(code, 200, "{body}");
    let delivered = bare
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .flatten()
        .expect("the bare watch saw the kill");
    let fake_ms = delivered.saturating_duration_since(answered).as_secs_f64() * 1000.0;
    let target = "/apis/apps/v1/namespaces/prod/deployments/app-0";
    let patched = |r: &serde_json::Value| r["method"] == "PATCH" && r["path"] == target;
    common::eventually("the kill healed", Duration::from_secs(300), || {
        fake.requests().iter().any(patched).then_some(())
    });
    // A few more seconds: a second write would show now.
    std::thread::sleep(Duration::from_secs(3));
    if let Ok(dir) = std::env::var("BENCH_LOGS") {
        let name = format!("{dir}/{n}-{}", if spread { "spread" } else { "one" });
        let requests = serde_json::to_string(&fake.requests()).unwrap_or_default();
        let _ = std::fs::write(format!("{name}.log"), automaton.logs());
        let _ = std::fs::write(format!("{name}-requests.json"), requests);
    }
    let rss_mib = vm_hwm_kib(automaton.child.id()).unwrap_or(f64::NAN) / 1024.0;
    let log = fake.requests();
    let killed = log
        .iter()
        .find(|r| r["method"] == "PATCH" && r["path"] == status)
        .and_then(|r| r["t"].as_f64())
        .expect("the kill is logged");
    let first_after = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        log.iter()
            .filter(|r| r["path"] == target && r["t"].as_f64().is_some_and(|t| t >= killed) && pred(r))
            .filter_map(|r| r["t"].as_f64())
            .fold(f64::INFINITY, f64::min)
    };
    let writes = log
        .iter()
        .filter(|r| matches!(r["method"].as_str(), Some("PATCH" | "PUT" | "POST" | "DELETE")))
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/deployments/")))
        .count();
    Figures {
        rss_mib,
        ready_s,
        leading_s,
        first_ms: (first_after(&|_| true) - killed) * 1000.0,
        patch_ms: (first_after(&|r| r["method"] == "PATCH") - killed) * 1000.0,
        fake_ms,
        writes,
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let given: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let counts = match (measuring, given.is_empty()) {
        (false, _) => vec![300],
        (true, true) => vec![1_000, 10_000, 20_000],
        (true, false) => given,
    };
    println!("pods    watch          peak RSS  ready    leading  kill->1st request  kill->PATCH  fake's share  writes");
    for n in counts {
        let runs = [
            ("filtered", FILTERED, false),
            ("all pods", UNFILTERED, false),
            ("10 ns", FILTERED, true),
        ];
        for (name, rules, spread) in runs {
            let f = run(n, rules, spread);
            println!(
                "{n:>6}  {name:<12} {:>6.1} MiB  {:>5.1} s  {:>5.1} s  {:>10.1} ms  {:>8.1} ms  {:>9.1} ms  {}",
                f.rss_mib, f.ready_s, f.leading_s, f.first_ms, f.patch_ms, f.fake_ms, f.writes
            );
            assert_eq!(f.writes, 1, "exactly one write for one kill");
        }
    }
}

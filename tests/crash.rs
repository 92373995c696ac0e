//! Crash tests: the whole binary against the fake API server, a local webhook receiver and a
//! real PostgreSQL, with rules of every action kind firing all the time, killed with SIGKILL
//! again and again and started again. Whatever the kill point (before the guard state is
//! read, between an intent and its write, during a write the API server applies after the
//! process is gone, after the outcome), the executions counted at the far end never exceed
//! what the guard allows one long-lived process: each rule's rate limit (5 per hour), the
//! global budget (32 per hour), and the cooldown between two actions of one rule. Then the
//! same with two replicas, the leader killed mid-action each time.
//!
//! Executions are counted where they land: PATCHes of the Deployments and Job creations and
//! execs in the fake API server's log, POSTs at the receiver, `pg_terminate_backend`
//! statements in PostgreSQL's statement log.

mod common;
mod pg;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, Automaton, FakeKube};
use serde_json::Value;

/// Every rule: at most this many actions per hour, this far apart. Room enough that the
/// last of the 32 kills still find actions to interrupt (a replica acts the moment it takes
/// the Lease, so each start uses up more of it early).
const RATE_MAX: usize = 7;
const COOLDOWN: Duration = Duration::from_secs(2);
/// The global budget: fewer than the rules could take together (8 × 7).
const BUDGET: usize = 44;
/// Longer than the fake's injected write delay (0.3 s, `faults:` below) and its logging.
const IN_FLIGHT: Duration = Duration::from_millis(600);

const KINDS: [&str; 8] = [
    "scale",
    "restart",
    "raise_memory",
    "run_job",
    "clean_logs",
    "http",
    "notify",
    "terminate_idle_connections",
];

fn scenario() -> String {
    let deployment = |name: &str, uid: u32| {
        format!(
            r#"  - apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: {name}, uid: 00000000-0000-0000-0000-{uid:012}, labels: {{app: {name}}}}}
    spec:
      replicas: 1
      selector: {{matchLabels: {{app: {name}}}}}
      template:
        metadata: {{labels: {{app: {name}}}}}
        spec:
          containers:
            - {{name: {name}, image: "registry.example/{name}:1", resources: {{requests: {{memory: 64Mi}}, limits: {{memory: 128Mi}}}}}}
    status: {{replicas: 1, readyReplicas: 1, observedGeneration: 1}}
"#
        )
    };
    format!(
        r#"namespace: prod
clock: start
objects:
{}{}{}  - apiVersion: batch/v1
    kind: CronJob
    metadata: {{name: snapshot, uid: 00000000-0000-0000-0000-0000000000cc}}
    spec:
      schedule: "0 3 * * *"
      jobTemplate:
        metadata: {{labels: {{job: snapshot}}}}
        spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: s, image: "registry.example/s:1"}}]}}}}}}
  - apiVersion: v1
    kind: Pod
    metadata: {{name: logs-0, labels: {{app: logs}}}}
    spec: {{containers: [{{name: app, image: "registry.example/app:1"}}]}}
    status: {{phase: Running}}
faults:
  # Slow writes: a kill often lands while one is in flight, and the API server applies it
  # after the process is gone.
  - {{method: PATCH, path_regex: '/deployments/', delay: 0.3}}
  - {{method: POST, path_regex: '/jobs$', delay: 0.3}}
exec: {{"*": {{stdout: "", exit_code: 0, delay: 0.3}}}}
"#,
        deployment("api", 1),
        deployment("web", 2),
        deployment("mem", 3),
    )
}

fn rules(receiver: u16, disk: &Path) -> String {
    let actions = [
        ("scale-api", "scale: {target: deployment/api, step: 1, max: 50}"),
        ("restart-web", "restart: {target: deployment/web}"),
        (
            "raise-mem",
            "raise_memory: {target: deployment/mem, container: mem, max: 64Gi}",
        ),
        ("run-snapshot", "run_job: {from_cronjob: snapshot}"),
        (
            "clean-logs",
            "clean_logs: {selector: app=logs, path: /var/log/app, older_than: 1d}",
        ),
        (
            "call-http",
            &format!("http: {{method: POST, url: \"http://127.0.0.1:{receiver}/http\"}}"),
        ),
        (
            "tell-notify",
            &format!("notify: {{webhook: \"http://127.0.0.1:{receiver}/notify\"}}"),
        ),
        (
            "terminate-idle",
            "terminate_idle_connections: {idle_for: 1h, application_name: crash-test}",
        ),
    ];
    let mut y = String::from("rules:\n");
    for (name, action) in actions {
        y.push_str(&format!(
            "  - name: {name}\n    priority: critical\n    signal: {{disk_usage: {{path: \"{}\"}}}}\n    when: \"> 0\"\n    action: {{{action}}}\n    cooldown: {}s\n    rate_limit: {{max: {RATE_MAX}, per: 1h}}\n",
            disk.display(),
            COOLDOWN.as_secs()
        ));
    }
    y
}

/// The requests a receiver got: path, `Idempotency-Key` and arrival.
type Calls = Arc<Mutex<Vec<(String, Option<String>, Instant)>>>;

/// A webhook receiver that answers 200 after 300 ms (a kill can land mid-call) and records
/// the path and arrival of every request.
fn receiver() -> (u16, Calls) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let (mut length, mut key) = (0, None);
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    let lower = header.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("idempotency-key:") {
                        key = header.split_once(':').map(|(_, v)| v.trim().to_owned());
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                log.lock().expect("lock").push((path, key, Instant::now()));
                std::thread::sleep(Duration::from_millis(300));
                let mut stream = reader.into_inner();
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            });
        }
    });
    (port, seen)
}

/// A small deterministic generator: the kill points of a run are reproducible from its seed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct Rig {
    fake: FakeKube,
    pg: pg::Cluster,
    calls: Calls,
    rules: PathBuf,
    started: Instant,
    incarnation: usize,
}

impl Rig {
    async fn new() -> Rig {
        let fake = FakeKube::start(&scenario());
        let pg = pg::Cluster::start_logging_statements().await;
        let (port, calls) = receiver();
        let disk = fake.dir.path().join("disk");
        std::fs::create_dir_all(&disk).expect("disk dir");
        let rules = fake.dir.path().join("rules");
        std::fs::create_dir_all(&rules).expect("rules dir");
        std::fs::write(rules.join("all.yaml"), self::rules(port, &disk)).expect("rules");
        Rig {
            fake,
            pg,
            calls,
            rules,
            started: Instant::now(),
            incarnation: 0,
        }
    }

    /// Starts one process of replica `pod` (the name survives a restart, like a pod's).
    fn start(&mut self, pod: &str) -> Automaton {
        self.incarnation += 1;
        let port = self.pg.port.to_string();
        Automaton::start(
            &self.fake.kubeconfig,
            &self.rules,
            &format!("{pod}-{:03}", self.incarnation),
            &[
                ("POD_NAME", pod),
                ("LEASE_DURATION", "3"),
                ("ACTION_BUDGET", &format!("{BUDGET}/1h")),
                ("POSTGRES_HOST", "127.0.0.1"),
                ("POSTGRES_PORT", &port),
                ("POSTGRES_DB", "postgres"),
                ("POSTGRES_USER", "automaton"),
            ],
        )
    }

    /// The guard state document as the API server holds it.
    fn state(&self) -> Option<Value> {
        let (status, body) = self.fake.request(
            "GET",
            "/api/v1/namespaces/prod/configmaps/automaton-state",
            "application/json",
            "",
        );
        let cm: Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
        serde_json::from_str(cm["data"]["state.json"].as_str()?).ok()
    }

    /// An intent written but not closed yet, other than those in `seen`: (holder, key).
    fn open_intent(&self, seen: &[String]) -> Option<(String, String)> {
        let doc = self.state()?;
        let key = doc["intents"]
            .as_array()?
            .iter()
            .filter(|i| i["outcome"].is_null())
            .filter_map(|i| i["key"].as_str())
            .find(|k| !seen.iter().any(|s| s == k))?
            .to_owned();
        Some((doc["holder"].as_str()?.to_owned(), key))
    }

    /// Whether any intent is open.
    fn any_open(&self) -> bool {
        self.open_intent(&[]).is_some()
    }

    /// Every execution that reached its far end, by kind, with its time since the start.
    fn executions(&self) -> BTreeMap<&'static str, Vec<f64>> {
        let mut out: BTreeMap<&'static str, Vec<f64>> = KINDS.iter().map(|k| (*k, Vec::new())).collect();
        for r in self.fake.requests() {
            let (method, path, status) = (
                r["method"].as_str().unwrap_or_default(),
                r["path"].as_str().unwrap_or_default(),
                r["status"].as_u64().unwrap_or(0),
            );
            let t = r["t"].as_f64().unwrap_or(0.0);
            let kind = match (method, path) {
                ("PATCH", "/apis/apps/v1/namespaces/prod/deployments/api") if status == 200 => "scale",
                ("PATCH", "/apis/apps/v1/namespaces/prod/deployments/web") if status == 200 => "restart",
                ("PATCH", "/apis/apps/v1/namespaces/prod/deployments/mem") if status == 200 => "raise_memory",
                ("POST", "/apis/batch/v1/namespaces/prod/jobs") if status == 201 => "run_job",
                _ if r.get("exec_command").is_some() => "clean_logs",
                _ => continue,
            };
            out.get_mut(kind).expect("a kind").push(t);
        }
        for (path, _, at) in self.calls.lock().expect("lock").iter() {
            let t = at.saturating_duration_since(self.started).as_secs_f64();
            match path.as_str() {
                "/http" => out.get_mut("http").expect("http").push(t),
                "/notify" => out.get_mut("notify").expect("notify").push(t),
                _ => {}
            }
        }
        // One log record per statement run (`log_statement = all`), over several lines.
        let terminations = self
            .pg
            .log()
            .split("LOG:  ")
            .filter(|r| {
                (r.starts_with("execute") || r.starts_with("statement:"))
                    && r.contains("pg_terminate_backend")
            })
            .count();
        out.insert("terminate_idle_connections", vec![0.0; terminations]);
        out
    }

    fn replicas_of_api(&self) -> u64 {
        let (_, body) = self.fake.request(
            "GET",
            "/apis/apps/v1/namespaces/prod/deployments/api",
            "application/json",
            "",
        );
        let d: Value = serde_json::from_str(&body).expect("a Deployment");
        d["spec"]["replicas"].as_u64().expect("replicas")
    }

    /// Lets `running` work undisturbed until nothing new has executed for a while and no
    /// intent is open (or a minute has passed).
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = (0, Instant::now());
        while Instant::now() < deadline {
            let total: usize = self.executions().values().map(Vec::len).sum();
            if total != last.0 {
                last = (total, Instant::now());
            } else if last.1.elapsed() > COOLDOWN * 3 && !self.any_open() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What every kill point must leave true: no more executions than the guard allows.
    fn check(&self, what: &str) -> BTreeMap<&'static str, Vec<f64>> {
        let runs = self.executions();
        let total: usize = runs.values().map(Vec::len).sum();
        if what == "settled" {
            let counts: Vec<(&str, usize)> = runs.iter().map(|(k, v)| (*k, v.len())).collect();
            eprintln!("{what}: {total} executions, by kind {counts:?}");
        }
        for (kind, times) in &runs {
            assert!(
                times.len() <= RATE_MAX,
                "{what}: {kind} ran {} times, its rate limit is {RATE_MAX}",
                times.len()
            );
            if *kind == "terminate_idle_connections" {
                continue;
            }
            for pair in times.windows(2) {
                // Times are where the write landed; a write's own latency (≤ 0.3 s of
                // injected delay, plus scheduling) can bring two landings closer than the
                // decisions were.
                assert!(
                    pair[1] - pair[0] >= COOLDOWN.as_secs_f64() - 1.0,
                    "{what}: two {kind} {:.2}s apart, inside the {}s cooldown: {times:?}",
                    pair[1] - pair[0],
                    COOLDOWN.as_secs()
                );
            }
        }
        assert!(
            total <= BUDGET,
            "{what}: {total} executions, the budget is {BUDGET}"
        );
        // A scale in flight at the kill lands after its injected delay (the fake applies it
        // with the client gone) and is logged just after: when the count and the replicas
        // were read on either side of it, read both again once it has landed.
        let mut scales = runs["scale"].len() as u64;
        let mut replicas = self.replicas_of_api();
        if replicas != 1 + scales {
            std::thread::sleep(IN_FLIGHT);
            scales = self.executions()["scale"].len() as u64;
            replicas = self.replicas_of_api();
        }
        assert_eq!(
            replicas,
            1 + scales,
            "{what}: every scale added exactly one replica"
        );
        runs
    }
}

/// Reconciliation lines of every process's log: (found, count).
fn reconciled(dir: &Path) -> BTreeMap<String, usize> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("log dir").flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            for line in std::fs::read_to_string(entry.path()).unwrap_or_default().lines() {
                if line.contains("reconciled") {
                    if let Some(f) = serde_json::from_str::<Value>(line)
                        .ok()
                        .and_then(|v| v["found"].as_str().map(str::to_owned))
                    {
                        *found.entry(f).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_32_points_never_allows_an_action_the_guard_would_not() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_u64);
    let mut rng = XorShift(seed);
    let mut rig = Rig::new().await;
    let mut kills = BTreeMap::<&str, usize>::new();
    let mut seen = Vec::new();
    for i in 0..32 {
        let mut a = rig.start("automaton-0");
        // Half the kills at a random time after the start (before the state is read, in the
        // middle of a tick, between two actions); half as soon as an intent is open, plus a
        // little: between the intent and the write, or while the write is in flight.
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(2500)));
            kills.insert("random", kills.get("random").copied().unwrap_or(0) + 1);
        } else {
            let deadline = Instant::now() + Duration::from_secs(6);
            let mut open = None;
            while open.is_none() && Instant::now() < deadline {
                open = rig.open_intent(&seen);
                std::thread::sleep(Duration::from_millis(10));
            }
            let kind = match open {
                Some((_, key)) => {
                    seen.push(key);
                    "mid-action"
                }
                None => "idle",
            };
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            kills.insert(kind, kills.get(kind).copied().unwrap_or(0) + 1);
        }
        a.child.kill().expect("SIGKILL");
        let _ = a.child.wait();
        rig.check(&format!("after kill {i}"));
    }
    // Left alone, the last process does all the guard still allows, and no more.
    let mut last = rig.start("automaton-0");
    rig.settle();
    let runs = rig.check("settled");
    let found = reconciled(rig.fake.dir.path());
    let size = rig.state().map_or(0, |d| d.to_string().len());
    eprintln!("the guard state document: {size} bytes (8 rules, their windows, the last intents)");
    assert!(size < 16 * 1024, "pruned: {size} bytes");
    eprintln!("seed {seed:#x}: kills {kills:?}; open intents found at a start and reconciled: {found:?}");
    for kind in ["scale", "restart", "raise_memory"] {
        assert!(
            !runs[kind].is_empty(),
            "{kind} never ran: a kill must not lose an action for good"
        );
    }
    assert!(kills.get("mid-action").copied().unwrap_or(0) >= 8, "{kills:?}");
    last.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_with_the_leader_killed_mid_action_never_act_twice() {
    let mut rig = Rig::new().await;
    let mut pods: BTreeMap<String, Automaton> = BTreeMap::new();
    for pod in ["automaton-a", "automaton-b"] {
        pods.insert(pod.to_owned(), rig.start(pod));
    }
    let mut killed = 0;
    let mut seen = Vec::new();
    for round in 0..8 {
        // The leader holds an open intent: kill it there, and start it again (it may lead
        // again, or the other replica takes the Lease once it expires).
        let (holder, key) = eventually("a new open intent", Duration::from_secs(30), || {
            rig.open_intent(&seen)
        });
        seen.push(key);
        let Some(mut a) = pods.remove(&holder) else {
            panic!("round {round}: the intent's holder {holder} is not one of ours")
        };
        a.child.kill().expect("SIGKILL");
        let _ = a.child.wait();
        killed += 1;
        rig.check(&format!("round {round}, {holder} killed"));
        pods.insert(holder.clone(), rig.start(&holder));
        if rig.executions().values().map(Vec::len).sum::<usize>() >= BUDGET {
            break;
        }
    }
    rig.settle();
    let runs = rig.check("settled");
    eprintln!(
        "{killed} leaders killed mid-action; reconciled at takeover: {:?}",
        reconciled(rig.fake.dir.path())
    );
    for kind in ["scale", "restart", "raise_memory"] {
        assert!(!runs[kind].is_empty(), "{kind} never ran");
    }
    for (_, mut a) in pods {
        a.terminate();
    }
}

//! The Solana rules' moving parts through a running daemon, on real sockets and files: an
//! OOM kill counted from a cgroup `memory.events` file triggers the cache endpoint, with the
//! rule's `notify_first` webhook called before it; a 503 with Retry-After from the endpoint
//! is retried; a
//! validator RPC answering getHealth "behind" is read as slot lag.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automaton::runtime::daemon::Daemon;
use automaton::settings::Settings;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use tokio::sync::{mpsc, watch};

type Seen = Arc<Mutex<Vec<String>>>;

async fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The validator's admin endpoint (its first call answers 503, Retry-After: 1), its RPC (getHealth: 42
/// slots behind) and a webhook, recording every call in order.
async fn validator() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let (a, b, c) = (seen.clone(), seen.clone(), seen.clone());
    let app = Router::new()
        .route(
            "/admin/cache/reduce",
            post(move || async move {
                let mut seen = a.lock().unwrap();
                seen.push("reduce".to_owned());
                // Busy: not taken, come back in a second (a POST is retried only then).
                if seen.iter().filter(|s| *s == "reduce").count() == 1 {
                    (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")])
                } else {
                    (StatusCode::OK, [("retry-after", "0")])
                }
            }),
        )
        .route(
            "/hook",
            post(move |Json(body): Json<serde_json::Value>| async move {
                let change = &body["decision"]["change"];
                b.lock().unwrap().push(format!("hook before {}", change["before"]));
                "ok"
            }),
        )
        .route(
            "/rpc",
            post(move |Json(req): Json<serde_json::Value>| async move {
                c.lock().unwrap().push(format!("rpc {}", req["method"]));
                Json(serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "error": {
                    "code": -32005, "message": "Node is behind by 42 slots", "data": {"numSlotsBehind": 42}}}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn events(kills: u64) -> String {
    format!("low 0\nhigh 0\nmax 12\noom {kills}\noom_kill {kills}\noom_group_kill 0\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_notifies_then_shrinks_the_cache_once_through_a_503() {
    let (base, seen) = validator().await;
    let dir = tempfile::tempdir().unwrap();
    let cgroup = dir.path().join("memory.events");
    std::fs::write(&cgroup, events(3)).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("solana.yaml"),
        format!(
            r#"rules:
  - name: validator-oom-kill
    priority: critical
    signal: {{memory_oom_kills: {{path: "{cgroup}"}}}}
    when: "> 0"
    action: {{http: {{method: POST, url: "{base}/admin/cache/reduce", expect_status: 200}}}}
    notify_first: {{webhook: "{base}/hook"}}
    cooldown: 10m
  - name: validator-slot-lag
    priority: critical
    signal: {{slot_lag: {{rpc: "{base}/rpc"}}}}
    when: "> 100"
    action: {{notify: {{webhook: "{base}/hook"}}}}
"#,
            cgroup = cgroup.display()
        ),
    )
    .unwrap();
    let mut settings = Settings::defaults();
    settings.check_interval = Duration::from_millis(200);
    let daemon = Daemon::new(settings, rules).unwrap();
    let status = daemon.status.clone();
    let metrics = daemon.metrics.clone();
    let (stop, stop_rx) = watch::channel(false);
    let (_push, trigger) = mpsc::channel(1);
    let task = tokio::spawn(daemon.run(stop_rx, trigger));

    // Kills from before the daemon started are history: a few ticks, no call.
    eventually("three ticks", Duration::from_secs(10), || {
        (status.read().unwrap().ticks >= 3).then_some(())
    })
    .await;
    assert!(!seen.lock().unwrap().iter().any(|s| s != "rpc \"getHealth\""));

    std::fs::write(&cgroup, events(4)).unwrap();
    eventually("the cache call to succeed", Duration::from_secs(10), || {
        (seen.lock().unwrap().iter().filter(|s| *s == "reduce").count() >= 2).then_some(())
    })
    .await;
    // A few more ticks: nothing more (the increase is back to 0, and the cooldown holds).
    let ticks = status.read().unwrap().ticks;
    eventually("three more ticks", Duration::from_secs(10), || {
        (status.read().unwrap().ticks >= ticks + 3).then_some(())
    })
    .await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();

    let calls: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| !s.starts_with("rpc"))
        .cloned()
        .collect();
    // Told first, then the endpoint: a 503 with Retry-After, retried once after it, then 200.
    assert_eq!(calls, ["hook before \"http\"", "reduce", "reduce"]);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&metrics.registry.gather())
        .unwrap();
    for (action, count) in [("http", 1), ("notify", 1)] {
        let line = format!(
            "healing_actions_total{{action=\"{action}\",dry_run=\"false\",rule=\"validator-oom-kill\",success=\"true\"}} {count}"
        );
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
    // getHealth's numSlotsBehind was read (42, under the rule's 100: nothing to do).
    let status = status.read().unwrap();
    let json = serde_json::to_value(&*status).unwrap();
    let lag = json["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "validator-slot-lag")
        .unwrap();
    assert_eq!(lag["targets"][0]["value"], 42.0, "{lag}");
    assert_eq!(lag["targets"][0]["state"], "inactive");
}

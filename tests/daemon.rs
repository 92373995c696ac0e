//! The daemon end to end, on real sockets: the HTTP endpoints of a running daemon, an `http`
//! and a `notify` action executed against a local server, hot reload of a ConfigMap-style
//! directory swapped through its `..data` symlink, and the binary's CLI edges.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automaton::runtime::daemon::Daemon;
use automaton::runtime::server::{router, AppState};
use automaton::settings::Settings;
use axum::routing::post;
use axum::{Json, Router};
use tokio::sync::{mpsc, watch};

/// Polls `check` until it returns Some, failing after `limit`. Waiting on the system under
/// test, not timing it: the limit only bounds a hung test.
async fn eventually<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A local HTTP server that records every JSON body POSTed to it.
async fn recorder() -> (String, Arc<Mutex<Vec<(String, serde_json::Value)>>>) {
    let seen: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let record = |seen: Arc<Mutex<Vec<(String, serde_json::Value)>>>, path: &'static str| {
        post(move |body: Option<Json<serde_json::Value>>| async move {
            let body = body.map(|Json(v)| v).unwrap_or(serde_json::Value::Null);
            seen.lock().unwrap().push((path.to_owned(), body));
            "ok"
        })
    };
    let app = Router::new()
        .route("/admin/cache/reduce", record(seen.clone(), "/admin/cache/reduce"))
        .route("/hook/T000/secret-token", record(seen.clone(), "/hook"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn settings(interval: Duration) -> Settings {
    let mut s = Settings::defaults();
    s.check_interval = interval;
    s
}

struct Running {
    base: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the daemon and its HTTP server on an ephemeral port.
async fn start(daemon: Daemon) -> Running {
    let state = AppState {
        status: daemon.status.clone(),
        metrics: daemon.metrics.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let (stop, stop_rx) = watch::channel(false);
    let (_push, trigger) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let _push = _push;
        daemon.run(stop_rx, trigger).await
    });
    Running { base, stop, task }
}

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_acts_once_and_reports_everything() {
    let (admin, seen) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let rules = format!(
        r#"rules:
  - name: disk-full
    priority: critical
    signal: {{disk_usage: {{path: "{data}"}}}}
    when: "> 0"
    action: {{http: {{method: POST, url: "{admin}/admin/cache/reduce", body: {{reason: disk}}, expect_status: 200}}}}
  - name: disk-page
    priority: critical
    signal: {{disk_usage: {{path: "{data}"}}}}
    when: "> 0"
    action: {{notify: {{webhook: "{admin}/hook/T000/secret-token"}}}}
  - name: validator
    signal: {{slot_lag: {{rpc: "http://127.0.0.1:9", reference: ["http://127.0.0.1:9/reference"]}}}}
    when: "> 10"
    action: {{notify: {{webhook: "{admin}/hook/validator"}}}}
  - name: lag
    signal: {{kafka_lag: {{group: g}}}}
    when: "> 10"
    action: {{scale: {{target: deployment/app, replicas: 3}}}}
"#,
        data = data.display()
    );
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    let daemon = Daemon::new(settings(Duration::from_millis(200)), dir.path().to_path_buf()).unwrap();
    let run = start(daemon).await;

    // Both actions run exactly once: the second tick onwards is inside the 5m cooldown.
    eventually("both actions", Duration::from_secs(10), async || {
        (seen.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    let metrics = eventually("three ticks", Duration::from_secs(10), async || {
        let (_, text) = get(&format!("{}/metrics", run.base)).await;
        (metric(&text, "healing_checks_total{rule=\"disk-full\"}")? >= 3.0).then_some(text)
    })
    .await;
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let reduce = calls.iter().find(|(p, _)| p == "/admin/cache/reduce").unwrap();
    assert_eq!(reduce.1, serde_json::json!({"reason": "disk"}));
    let hook = &calls.iter().find(|(p, _)| p == "/hook").unwrap().1;
    assert_eq!(hook["decision"]["rule"], "disk-page");
    assert_eq!(hook["decision"]["decision"], "act");
    assert!(hook["text"].as_str().unwrap().contains("disk-page"));

    let acted = r#"healing_actions_total{action="http",dry_run="false",rule="disk-full",success="true"}"#;
    assert_eq!(metric(&metrics, acted), Some(1.0), "{metrics}");
    let notified =
        r#"healing_actions_total{action="notify",dry_run="false",rule="disk-page",success="true"}"#;
    assert_eq!(metric(&metrics, notified), Some(1.0));
    assert_eq!(
        metric(&metrics, r#"healing_latency_seconds_count{action="http"}"#),
        Some(1.0)
    );
    assert!(
        metric(
            &metrics,
            r#"automaton_skips_total{reason="cooldown",rule="disk-full"}"#
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        metric(
            &metrics,
            r#"automaton_skips_total{reason="unknown",rule="validator"}"#
        )
        .unwrap()
            >= 1.0
    );
    // Kafka is not configured: its rule is disabled, never evaluated, never "unknown".
    assert_eq!(metric(&metrics, "automaton_rules_disabled"), Some(1.0));
    assert!(!metrics.contains(r#"rule="lag""#), "{metrics}");
    assert_eq!(
        metric(&metrics, r#"automaton_signal_source_up{source="disk"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, r#"automaton_signal_source_up{source="solana_rpc"}"#),
        Some(0.0)
    );
    let firing = r#"automaton_rule_state{rule="disk-full",state="firing",target="http/"#;
    assert_eq!(metric(&metrics, firing), Some(1.0));
    assert!(metrics.contains("automaton_build_info{version="));
    // The webhook's token never reaches metrics.
    assert!(!metrics.contains("secret-token"));

    assert_eq!(get(&format!("{}/healthz", run.base)).await.0, 200);
    // Ready: it can do its job; the source that does not answer is listed, not a reason.
    let (code, body) = get(&format!("{}/readyz", run.base)).await;
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    let degraded = ready["degraded"].as_array().unwrap();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert!(
        degraded[0].as_str().unwrap().contains("solana_rpc"),
        "{degraded:?}"
    );

    let (code, body) = get(&format!("{}/status", run.base)).await;
    assert_eq!(code, 200);
    assert!(
        !body.contains("secret-token"),
        "the webhook URL is a secret: {body}"
    );
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["rules"].as_array().unwrap().len(), 3);
    let disabled = status["disabled_rules"].as_array().unwrap();
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(disabled[0]["name"], "lag");
    assert_eq!(disabled[0]["signal"], "kafka_lag");
    let reason = disabled[0]["reason"].as_str().unwrap();
    assert!(reason.contains("KAFKA_BOOTSTRAP_SERVERS"), "{reason}");
    assert_eq!(status["rules"][0]["targets"][0]["state"], "firing");
    assert_eq!(status["budget"]["limit"], 10);
    assert_eq!(status["budget"]["left"], 8);
    let recent = status["recent_decisions"].as_array().unwrap();
    let acts: Vec<_> = recent.iter().filter(|d| d["decision"] == "act").collect();
    assert_eq!(acts.len(), 2);
    assert_eq!(acts[0]["success"], true);
    // Times, not seconds since the process started: RFC 3339, in the past minute.
    let recently = |value: &serde_json::Value| {
        let text = value.as_str().unwrap_or_else(|| panic!("a time, not {value}"));
        let at: jiff::Timestamp = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        let age = jiff::Timestamp::now().duration_since(at);
        assert!(age >= jiff::SignedDuration::ZERO && age.as_secs() < 60, "{text}");
    };
    recently(&acts[0]["time"]);
    recently(&status["rules"][0]["targets"][0]["active_since"]);
    recently(&status["rules"][0]["targets"][0]["last_action"]);

    run.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run.task)
        .await
        .unwrap()
        .unwrap();
}

/// Lays out a directory the way the kubelet mounts a ConfigMap: `KEY -> ..data/KEY`,
/// `..data -> ..VERSION`, and swaps versions atomically by renaming a new symlink.
struct ConfigMapDir {
    root: PathBuf,
    version: usize,
}

impl ConfigMapDir {
    fn new(root: &Path, text: &str) -> Self {
        let mut dir = ConfigMapDir {
            root: root.to_path_buf(),
            version: 0,
        };
        dir.swap(text);
        std::os::unix::fs::symlink("..data/rules.yaml", root.join("rules.yaml")).unwrap();
        dir
    }

    fn swap(&mut self, text: &str) {
        self.version += 1;
        let name = format!("..2026_11_25_00_00_0{}.{}", self.version, self.version);
        std::fs::create_dir(self.root.join(&name)).unwrap();
        std::fs::write(self.root.join(&name).join("rules.yaml"), text).unwrap();
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
    }
}

fn disk_rule(name: &str, path: &Path) -> String {
    format!(
        "  - name: {name}\n    signal: {{disk_usage: {{path: \"{}\"}}}}\n    when: \"> 101\"\n    action: {{restart: {{target: deployment/app}}}}\n",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_follows_a_configmap_symlink_swap_and_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut cm = ConfigMapDir::new(dir.path(), &format!("rules:\n{}", disk_rule("one", dir.path())));
    // A long interval: only the inotify watch can make the reload fast.
    let daemon = Daemon::new(settings(Duration::from_secs(3600)), dir.path().to_path_buf()).unwrap();
    let status = daemon.status.clone();
    let metrics = daemon.metrics.clone();
    let run = start(daemon).await;
    let rule_names = || -> Vec<String> {
        status
            .read()
            .unwrap()
            .rules
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(rule_names(), vec!["one"]);

    cm.swap(&format!(
        "rules:\n{}{}",
        disk_rule("one", dir.path()),
        disk_rule("two", dir.path())
    ));
    eventually("the new rule set", Duration::from_secs(10), async || {
        (rule_names().len() == 2).then_some(())
    })
    .await;
    assert_eq!(metrics.reloads.with_label_values(&["success"]).get(), 1);

    cm.swap("rules:\n  - name: broken\n    when: \"> \"\n");
    eventually("the rejection", Duration::from_secs(10), async || {
        (metrics.reloads.with_label_values(&["error"]).get() == 1).then_some(())
    })
    .await;
    assert_eq!(
        rule_names(),
        vec!["one", "two"],
        "the last good set keeps running"
    );
    let (_, body) = get(&format!("{}/status", run.base)).await;
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["reload"]["result"], "error");
    let first = s["reload"]["errors"][0].as_str().unwrap();
    assert!(first.contains("rules.yaml:3:11:"), "{first}");
    run.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_change_missed_by_inotify_is_found_by_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, format!("rules:\n{}", disk_rule("one", dir.path()))).unwrap();
    let mut daemon = Daemon::new(settings(Duration::from_secs(15)), dir.path().to_path_buf()).unwrap();
    daemon.maybe_reload();
    assert_eq!(
        daemon.metrics.reloads.with_label_values(&["success"]).get(),
        0,
        "unchanged: no reload"
    );
    std::fs::write(
        &file,
        format!(
            "rules:\n{}{}",
            disk_rule("one", dir.path()),
            disk_rule("two", dir.path())
        ),
    )
    .unwrap();
    daemon.maybe_reload();
    assert_eq!(daemon.metrics.reloads.with_label_values(&["success"]).get(), 1);
    assert_eq!(daemon.status.read().unwrap().rules.len(), 2);
}

fn bin() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_automaton"));
    cmd.env("LOG_FORMAT", "json").env_remove("RUST_LOG");
    cmd
}

#[test]
fn run_once_prints_one_decision_per_rule_and_target() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        format!("rules:\n{}", disk_rule("one", dir.path())),
    )
    .unwrap();
    let out = bin()
        .args(["run", "--once", "--rules"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["rule"], "one");
    // Without a cluster or NAMESPACE, the automaton's own namespace is `default`.
    assert_eq!(lines[0]["target"], "default/deployment/app");
    assert_eq!(lines[0]["state"], "inactive");
    assert_eq!(lines[0]["decision"], "none");
    assert!(lines[0]["value"].as_f64().unwrap() >= 0.0);
    // Logs are JSON lines on stderr.
    let stderr = String::from_utf8(out.stderr).unwrap();
    let first: serde_json::Value = serde_json::from_str(stderr.lines().next().unwrap()).unwrap();
    assert_eq!(first["message"], "rules loaded");
}

#[test]
fn invalid_settings_and_rules_stop_the_start_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        format!("rules:\n{}", disk_rule("one", dir.path())),
    )
    .unwrap();
    let out = bin()
        .args(["run", "--once", "--rules"])
        .arg(dir.path())
        .env("CHECK_INTERVAL", "soon")
        .env("ACTION_BUDGET", "ten")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("CHECK_INTERVAL=\"soon\": expected a duration"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ACTION_BUDGET=\"ten\": expected COUNT/DURATION"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("r.yaml"), "rules:\n  - name: x\n    when: 5\n").unwrap();
    let out = bin()
        .args(["run", "--once", "--rules"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("r.yaml:3:11: rules[0].when: invalid condition `5`"),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        format!("rules:\n{}", disk_rule("one", dir.path())),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = bin()
        .args(["run", "--rules"])
        .arg(dir.path())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("ADMIN_ADDR", "127.0.0.1:0")
        .env("CHECK_INTERVAL", "1s")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if healthz_ok(port) {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("shutting down after the current tick"),
        "{stderr}"
    );
}

/// A plain blocking GET of `/healthz` over std's TcpStream (no second runtime in a sync test).
fn healthz_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.1 200")
}

/// The status code of a raw `POST` on 127.0.0.1:`port`.
fn post_status(port: u16, path: &str, auth: Option<&str>) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_admin_endpoints_have_their_own_listener_and_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        format!("rules:\n{}", disk_rule("one", dir.path())),
    )
    .unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (public, admin) = (free(), free());
    let token = "a-token-of-24-characters";
    let mut child = bin()
        .args(["run", "--rules"])
        .arg(dir.path())
        .env("LISTEN_ADDR", format!("127.0.0.1:{public}"))
        .env("ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("ADMIN_TOKEN", token)
        .env("KUBERNETES", "off")
        .env("CHECK_INTERVAL", "1s")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthz_ok(public) {
        assert!(Instant::now() < deadline, "the daemon did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let clear = "/quarantine/clear?rule=one";
    // The Service's port changes nothing.
    assert_eq!(
        post_status(public, clear, Some(&format!("Bearer {token}"))),
        Some(404)
    );
    assert_eq!(post_status(admin, clear, None), Some(401));
    assert_eq!(
        post_status(admin, clear, Some("Bearer not-the-token-at-all")),
        Some(401)
    );
    assert_eq!(
        post_status(admin, clear, Some(&format!("Bearer {token}"))),
        Some(202)
    );
    let _ = child.kill();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let _ = child.wait();
    assert!(!stderr.contains(token), "the token is never logged:\n{stderr}");
}

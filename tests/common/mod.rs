//! Shared helpers of the whole-binary tests: the fake API server from
//! ../shared/tools/fakekube.py and the automaton binary, each a child process that is killed
//! when dropped, the fake server's request log, a free port, a plain `GET`, and one run of
//! the binary.
#![allow(dead_code)]

pub mod alertmanager;
pub mod prometheus;
pub mod proxy;
pub mod scenario;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port nobody listens on now (another process may take it before it is bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// `GET` on 127.0.0.1:`port` over a plain TCP stream (no runtime needed): the status code
/// and the body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// One run of the binary with only `env` in its environment: exit code, stdout, stderr.
pub fn run_automaton(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_automaton"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("the automaton binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The fake Kubernetes API server (plain HTTP on 127.0.0.1, every request logged).
pub struct FakeKube {
    child: Child,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
}

fn fakekube_py() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/fakekube.py");
    assert!(
        path.exists(),
        "{} is missing: the whole-binary Kubernetes tests need ../shared beside the repo",
        path.display()
    );
    path
}

/// Polls `check` until it gives Some; the deadline only bounds a hung test.
pub fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_fakekube(dir: &Path, port: u16, scenario: &str) -> Child {
    spawn_fakekube_within(dir, port, scenario, Duration::from_secs(20))
}

/// `limit`: how long the fake may take to load its scenario (tens of thousands of pods take
/// it more than 20 s).
fn spawn_fakekube_within(dir: &Path, port: u16, scenario: &str, limit: Duration) -> Child {
    let scenario_path = dir.join("scenario.yaml");
    std::fs::write(&scenario_path, scenario).expect("write scenario");
    let kubeconfig = dir.join("kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let child = Command::new("python3")
        .arg(fakekube_py())
        .args(["--port", &port.to_string(), "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--log")
        .arg(dir.join("requests.jsonl"))
        .arg("--scenario")
        .arg(&scenario_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs fakekube.py");
    eventually("fakekube's kubeconfig", limit, || {
        std::fs::metadata(&kubeconfig)
            .ok()
            .filter(|m| m.len() > 0)
            .map(|_| ())
    });
    child
}

impl FakeKube {
    pub fn start(scenario: &str) -> FakeKube {
        FakeKube::start_within(scenario, Duration::from_secs(20))
    }

    /// A fake that may take up to `limit` to load a large scenario.
    pub fn start_within(scenario: &str, limit: Duration) -> FakeKube {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = spawn_fakekube_within(dir.path(), 0, scenario, limit);
        FakeKube {
            child,
            kubeconfig: dir.path().join("kubeconfig"),
            log: dir.path().join("requests.jsonl"),
            dir,
        }
    }

    /// The port the API server listens on (from its kubeconfig).
    pub fn port(&self) -> u16 {
        let config = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let server = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .expect("a server line");
        server
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_matches('/').parse().ok())
            .expect("a port")
    }

    /// A copy of the kubeconfig pointing at `port` on 127.0.0.1 (a proxy in front).
    pub fn kubeconfig_via(&self, port: u16) -> PathBuf {
        let config = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let via = config.replace(
            &format!("http://127.0.0.1:{}", self.port()),
            &format!("http://127.0.0.1:{port}"),
        );
        let path = self.dir.path().join("kubeconfig-via-proxy");
        std::fs::write(&path, via).expect("write kubeconfig");
        path
    }

    /// One request to the fake API server itself, as another client of the cluster
    /// would make it (a kubelet reporting a pod's status): (status, body).
    pub fn request(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port())).expect("connect");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let code = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (code, body)
    }

    /// Every request so far, as logged (`t`, `method`, `path`, `query`, `body`, `status`…).
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the log holds a request matching `pred`, and returns it.
    pub fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(what, limit, || self.requests().into_iter().find(|r| pred(r)))
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The automaton binary, running against a kubeconfig.
pub struct Automaton {
    pub child: Child,
    pub port: u16,
    pub stderr: PathBuf,
}

impl Automaton {
    pub fn start(kubeconfig: &Path, rules_dir: &Path, name: &str, env: &[(&str, &str)]) -> Automaton {
        let port = free_port();
        let stderr = rules_dir
            .parent()
            .unwrap_or(rules_dir)
            .join(format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_automaton"));
        cmd.args(["run", "--rules"])
            .arg(rules_dir)
            .env("KUBECONFIG", kubeconfig)
            .env("KUBERNETES", "on")
            .env("NAMESPACE", "prod")
            .env("POD_NAME", name)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("ADMIN_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("CHECK_INTERVAL", "1s")
            .env(
                "RUST_LOG",
                std::env::var("AUTOMATON_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Automaton {
            child: cmd.spawn().expect("automaton starts"),
            port,
            stderr,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// GET a path of the daemon's HTTP server: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    /// The value of the first `/metrics` line starting with `prefix` (a name with labels).
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics")?;
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

impl Drop for Automaton {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// RFC 3339 UTC, `seconds_ago` before now.
pub fn rfc3339_ago(seconds_ago: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds_ago);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

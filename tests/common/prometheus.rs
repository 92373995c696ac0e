//! A throw-away Prometheus (Debian's `prometheus`, installed by scripts/deps.sh) on a free
//! port of 127.0.0.1 scraping one [`Exporter`] every second, optionally evaluating a rule
//! file every second and sending its alerts to an Alertmanager; killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{eventually, free_port, http_get};

/// A scrape target serving whatever text exposition it was last given.
#[derive(Clone)]
pub struct Exporter {
    body: Arc<Mutex<String>>,
    pub port: u16,
}

impl Exporter {
    pub fn start(body: &str) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let exporter = Exporter {
            body: Arc::new(Mutex::new(body.to_owned())),
            port,
        };
        let served = exporter.body.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let body = served.lock().expect("lock").clone();
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        exporter
    }

    /// What the next scrape reads.
    pub fn set(&self, body: &str) {
        *self.body.lock().expect("lock") = body.to_owned();
    }
}

pub struct Prometheus {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scraping `exporter` every second.
    pub fn start(exporter: &Exporter) -> Prometheus {
        Prometheus::with_rules(exporter, None, None)
    }

    /// Also evaluating `rules` (a rule file) every second and, with `alertmanager`'s port,
    /// sending its alerts there.
    pub fn with_rules(exporter: &Exporter, rules: Option<&str>, alertmanager: Option<u16>) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            exporter.port
        );
        if let Some(rules) = rules {
            let file = dir.path().join("rules.yml");
            std::fs::write(&file, rules).expect("rule file");
            config.push_str(&format!("rule_files: ['{}']\n", file.display()));
        }
        if let Some(port) = alertmanager {
            config.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
            ));
        }
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
            .spawn()
            .expect("prometheus runs (scripts/deps.sh installs it)");
        let server = Prometheus {
            child,
            port,
            _dir: dir,
        };
        eventually("Prometheus ready", Duration::from_secs(30), || {
            http_get(port, "/-/ready")
                .filter(|(code, _)| *code == 200)
                .map(drop)
        });
        server
    }

    /// Waits until the instant query `metric` (a bare metric name) returns `n` series: the
    /// first scrape lands a few seconds after start (the discovery manager's 5 s throttle).
    pub fn wait_for_series(&self, metric: &str, n: usize) {
        let path = format!("/api/v1/query?query={metric}");
        eventually(
            &format!("{n} series of {metric}"),
            Duration::from_secs(30),
            || {
                let (_, body) = http_get(self.port, &path)?;
                let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
                (answer["data"]["result"].as_array()?.len() == n).then_some(())
            },
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

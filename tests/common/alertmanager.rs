//! A throw-away Alertmanager (Debian's `prometheus-alertmanager`, installed by
//! scripts/deps.sh) on a free port of 127.0.0.1, with the given configuration, killed on
//! drop. No gossip: one instance, no port 9094 to collide on.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port, http_get};

pub struct Alertmanager {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Started with `config` (alertmanager.yml), and ready.
    pub fn start(config: &str) -> Alertmanager {
        let binary = ["prometheus-alertmanager", "alertmanager"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("Alertmanager is not installed: run scripts/deps.sh (Debian `prometheus-alertmanager`)");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, config).expect("config");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
            .spawn()
            .expect("Alertmanager starts");
        let am = Alertmanager {
            child,
            port,
            _dir: dir,
        };
        eventually("Alertmanager ready", Duration::from_secs(30), || {
            http_get(port, "/-/ready").filter(|(c, _)| *c == 200).map(drop)
        });
        am
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

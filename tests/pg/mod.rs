//! A throw-away PostgreSQL server per test, started on a free port of 127.0.0.1 (unix socket
//! in its temp dir), stopped with `pg_ctl stop -m immediate` and removed when the [`Cluster`]
//! is dropped, which also happens when the test panics. One server per test keeps the
//! connection counts exact. `initdb` runs once into a template that the clusters copy; each
//! cluster holds the template through an `Arc` and the static only a `Weak`, so the template
//! is removed with the last cluster. Clusters live in `/dev/shm` when it has room: creating a
//! data directory's thousand files takes 0.07 s there and 0.9 s on this machine's disk.
//!
//! PostgreSQL refuses to run as root, and tests run as root here and on CI: the server then
//! runs as the system user `automaton-test` (created with `useradd --system` if missing).
//! Clusters left behind by a killed test process are stopped and removed by the next run.
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use automaton::clients::pg::{PgSettings, PgSource};
use tokio_postgres::{Client, NoTls};

pub const TEST_USER: &str = "automaton-test";
/// The password of the role `automaton_pw` (scram-sha-256 over TCP).
pub const PASSWORD: &str = "Pw-3xK9-qQz7!redact";
const DIR_PREFIX: &str = "automaton-pg-";

/// The roles every cluster has. `postgres` is the superuser.
const ROLES_SQL: &str = "
CREATE ROLE automaton LOGIN IN ROLE pg_signal_backend, pg_read_all_stats;
CREATE ROLE automaton_pw LOGIN PASSWORD 'Pw-3xK9-qQz7!redact' IN ROLE pg_signal_backend, pg_read_all_stats;
CREATE ROLE observer LOGIN IN ROLE pg_read_all_stats;
CREATE ROLE reader LOGIN IN ROLE pg_read_all_stats;
CREATE ROLE weak LOGIN;
CREATE ROLE app LOGIN;
CREATE ROLE app2 LOGIN;
CREATE ROLE repl LOGIN REPLICATION;
";

struct Tools {
    bin: PathBuf,
    /// Where the cluster dirs are made.
    base: PathBuf,
    /// `Some(user)` when running as root: every server command runs as this user.
    run_as: Option<String>,
    owner: Option<(u32, u32)>,
}

static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();

fn tools() -> &'static Tools {
    match TOOLS.get_or_init(find_tools) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn find_tools() -> Result<Tools, String> {
    let bin = find_bin_dir().ok_or_else(|| {
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were found neither on PATH nor in \
         /usr/lib/postgresql/*/bin: run `apt-get install postgresql`"
            .to_owned()
    })?;
    let is_root = capture(Command::new("id").arg("-u"))?.trim() == "0";
    let (run_as, owner) = if is_root {
        ensure_user()?;
        let uid = capture(Command::new("id").args(["-u", TEST_USER]))?;
        let gid = capture(Command::new("id").args(["-g", TEST_USER]))?;
        let parse = |s: String| s.trim().parse::<u32>().map_err(|e| format!("id: {e}"));
        (Some(TEST_USER.to_owned()), Some((parse(uid)?, parse(gid)?)))
    } else {
        (None, None)
    };
    let tools = Tools {
        bin,
        base: base_dir(),
        run_as,
        owner,
    };
    remove_stale_clusters(&tools);
    Ok(tools)
}

/// A directory holding all three programs: PATH first, then the newest Debian install.
fn find_bin_dir() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|d| has_all(d)) {
        // /usr/local/bin may hold symlinks: pg_ctl finds `postgres` next to its real path.
        let real = fs::canonicalize(dir.join("initdb")).ok()?;
        return real.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir)| has_all(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// `/dev/shm` when it is a tmpfs with room for a few clusters (Docker gives it 64 MiB), else
/// the temp dir.
fn base_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let roomy = nix::sys::statvfs::statvfs(shm)
        .is_ok_and(|s| s.blocks_available() as f64 * s.fragment_size() as f64 >= f64::from(1u32 << 30));
    if roomy {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn ensure_user() -> Result<(), String> {
    let exists = || {
        Command::new("id")
            .arg(TEST_USER)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if exists() {
        return Ok(());
    }
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            TEST_USER,
        ])
        .output()
        .map_err(|e| format!("useradd: {e}"))?;
    // Another test binary may have created it meanwhile.
    if out.status.success() || exists() {
        Ok(())
    } else {
        Err(format!(
            "cannot create the user {TEST_USER} that runs the test PostgreSQL server: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Stops and removes clusters of test processes that no longer exist (killed by a timeout).
fn remove_stale_clusters(tools: &Tools) {
    let bases = [Path::new("/dev/shm").to_path_buf(), std::env::temp_dir()];
    for entry in bases
        .iter()
        .filter_map(|b| fs::read_dir(b).ok())
        .flatten()
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(DIR_PREFIX).and_then(|r| r.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let data = entry.path().join("data");
        if data.join("postmaster.pid").exists() {
            let _ = tools
                .command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate"])
                .output();
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

impl Tools {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        cmd.env("LC_ALL", "C").stdin(Stdio::null());
        cmd
    }
}

fn capture(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// A temp dir owned by the server's user, named after this process so that a later run can
/// tell it is stale.
fn cluster_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(&tools().base)
        .expect("temp dir");
    if let Some((uid, gid)) = tools().owner {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster dir");
    }
    dir
}

/// A stopped, configured data directory with the test roles.
struct Template {
    dir: tempfile::TempDir,
}

static TEMPLATE: Mutex<Weak<Template>> = Mutex::new(Weak::new());

fn template() -> Arc<Template> {
    // Held while creating: parallel tests wait for one initdb instead of running several.
    let mut slot = TEMPLATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(template) = slot.upgrade() {
        return template;
    }
    let template = Arc::new(Template::create());
    *slot = Arc::downgrade(&template);
    template
}

impl Template {
    fn create() -> Template {
        let template = Template { dir: cluster_dir() };
        let out = tools()
            .command("initdb")
            .current_dir(template.dir.path())
            .arg("-D")
            .arg(template.data())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        template.create_roles();
        let mut conf = OpenOptions::new()
            .append(true)
            .open(template.data().join("postgresql.conf"))
            .expect("open postgresql.conf");
        conf.write_all(
            b"listen_addresses = '127.0.0.1'\n\
              max_connections = 50\n\
              superuser_reserved_connections = 3\n\
              shared_buffers = 16MB\n\
              fsync = off\n\
              synchronous_commit = off\n\
              full_page_writes = off\n",
        )
        .expect("write postgresql.conf");
        let hba = "local all all trust\n\
                   host all automaton_pw 127.0.0.1/32 scram-sha-256\n\
                   host all all 127.0.0.1/32 trust\n";
        fs::write(template.data().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        template
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// In single-user mode, before any server runs: a setup session would otherwise linger
    /// in `pg_stat_activity` for a moment and blur exact counts.
    fn create_roles(&self) {
        let mut child = tools()
            .command("postgres")
            .current_dir(self.dir.path())
            .arg("--single")
            .arg("-D")
            .arg(self.data())
            .arg("postgres")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run postgres --single");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ROLES_SQL.as_bytes())
            .expect("write the roles");
        let out = child.wait_with_output().expect("postgres --single");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !text.contains("ERROR"),
            "creating the roles failed:\n{text}"
        );
    }
}

/// One running server, owned by one test.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
    running: bool,
    /// Dropped after `dir`: the last cluster removes the template.
    _template: Arc<Template>,
}

impl Cluster {
    /// A fresh cluster with the roles of [`ROLES_SQL`], running.
    pub async fn start() -> Cluster {
        Self::start_with(None, "").await
    }

    /// A cluster that logs every statement it runs (`log_statement = all`), so a test can
    /// count executions in [`Cluster::log`].
    pub async fn start_logging_statements() -> Cluster {
        Self::start_with(None, "log_statement = 'all'\n").await
    }

    /// A cluster that accepts TLS connections only, with `server.crt` and `server.key` of
    /// `certs` (plain-text connections are rejected by `pg_hba.conf`).
    pub async fn start_tls(certs: &Path) -> Cluster {
        Self::start_with(Some(certs), "").await
    }

    async fn start_with(certs: Option<&Path>, conf: &str) -> Cluster {
        let template = template();
        let dir = cluster_dir();
        let data = dir.path().join("data");
        // `cp -a` keeps the owner (the server's user) and the 0700 mode PostgreSQL insists on.
        let out = Command::new("cp")
            .arg("-a")
            .arg(template.data())
            .arg(&data)
            .output()
            .expect("run cp");
        assert!(
            out.status.success(),
            "copying the template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cluster = Cluster {
            dir,
            port: 0,
            running: false,
            _template: template,
        };
        let socket_dir = cluster.dir.path().display().to_string();
        cluster.append(
            "postgresql.conf",
            &format!("unix_socket_directories = '{socket_dir}'\n"),
        );
        cluster.append("postgresql.conf", conf);
        if let Some(certs) = certs {
            cluster.enable_tls(certs);
        }
        cluster.start_on_a_free_port();
        cluster
    }

    /// The server's key and certificate in the data directory, owned like it (the server
    /// refuses a key others can read), and TCP without TLS rejected first thing in hba.
    fn enable_tls(&self, certs: &Path) {
        for file in ["server.crt", "server.key"] {
            let to = self.data().join(file);
            fs::copy(certs.join(file), &to).expect("copy the certificate");
            let data = self.data();
            let owned = Command::new("chown")
                .arg(format!("--reference={}", data.display()))
                .arg(&to)
                .status()
                .expect("run chown");
            assert!(owned.success(), "chown {file}");
            let mut perms = fs::metadata(&to).expect("metadata").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
            fs::set_permissions(&to, perms).expect("chmod 600");
        }
        self.append(
            "postgresql.conf",
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        );
        let hba = self.data().join("pg_hba.conf");
        let rest = fs::read_to_string(&hba).expect("pg_hba.conf");
        fs::write(&hba, format!("hostnossl all all all reject\n{rest}")).expect("write pg_hba.conf");
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn append(&self, file: &str, text: &str) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.data().join(file))
            .expect("open config");
        f.write_all(text.as_bytes()).expect("write config");
    }

    fn start_on_a_free_port(&mut self) {
        for _ in 0..5 {
            // The last `port` line wins; another process may take the port before we bind it.
            self.port = free_port();
            self.append("postgresql.conf", &format!("port = {}\n", self.port));
            let out = self.pg_ctl_start();
            if out.status.success() {
                self.running = true;
                return;
            }
            if !self.log().contains("Address already in use") {
                panic!(
                    "pg_ctl start failed: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.log()
                );
            }
        }
        panic!("no free port for the test server:\n{}", self.log());
    }

    fn pg_ctl_start(&self) -> Output {
        tools()
            .command("pg_ctl")
            .current_dir(self.dir.path())
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "30", "-s"])
            .output()
            .expect("run pg_ctl start")
    }

    /// The server log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn stop(&mut self) {
        let out = self.pg_ctl_stop();
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = false;
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&mut self) {
        let out = self.pg_ctl_start();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.running = true;
    }

    fn pg_ctl_stop(&self) -> Output {
        tools()
            .command("pg_ctl")
            .current_dir(self.dir.path())
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "30", "-s"])
            .output()
            .expect("run pg_ctl stop")
    }

    /// A new connection over TCP (trust, except `automaton_pw`).
    pub async fn connect(&self, user: &str, db: &str, application_name: &str) -> Conn {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(db)
            .application_name(application_name)
            .connect_timeout(Duration::from_secs(10));
        if user == "automaton_pw" {
            config.password(PASSWORD);
        }
        let (client, connection) = config
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
        tokio::spawn(connection);
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("backend pid")
            .get(0);
        Conn { client, pid }
    }

    /// `n` connections opened one after another, so their `state_change` is in that order.
    pub async fn open(&self, n: usize, user: &str, db: &str, application_name: &str) -> Vec<Conn> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(self.connect(user, db, application_name).await);
        }
        conns
    }

    /// Settings from the `POSTGRES_*` variables, as the daemon reads them.
    pub fn settings(&self, user: &str) -> PgSettings {
        self.settings_from(&[
            ("POSTGRES_HOST", "127.0.0.1".to_owned()),
            ("POSTGRES_PORT", self.port.to_string()),
            ("POSTGRES_DB", "postgres".to_owned()),
            ("POSTGRES_USER", user.to_owned()),
        ])
    }

    /// `DATABASE_URL` for `automaton_pw` with `password` (the real one or a wrong one).
    pub fn url(&self, password: &str) -> String {
        format!(
            "postgres://automaton_pw:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    pub fn settings_from(&self, vars: &[(&str, String)]) -> PgSettings {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.clone()));
        match PgSettings::from_vars(vars) {
            Ok(Some(s)) => s,
            other => panic!("test settings: {other:?}"),
        }
    }

    pub fn source(&self, user: &str) -> PgSource {
        PgSource::new(self.settings(user))
    }

    /// An idle logical-replication connection (a `walsender` whose state is `idle`), held by
    /// a `psql` child until dropped.
    pub fn walsender(&self) -> Walsender {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=repl dbname=postgres replication=database",
            self.port
        );
        let child = Command::new(tools().bin.join("psql"))
            .args(["-X", "-q", &conninfo])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run psql");
        Walsender { child }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl_stop();
        }
    }
}

pub struct Conn {
    pub client: Client,
    pub pid: i32,
}

impl Conn {
    /// Whether the session still answers.
    pub async fn alive(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }
}

pub struct Walsender {
    child: Child,
}

impl Drop for Walsender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it gives `Some`; the deadline only bounds a hung test.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

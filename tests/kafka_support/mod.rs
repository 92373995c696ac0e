//! A throw-away `nisshi` Kafka broker per test: a child process on a free port of 127.0.0.1
//! with in-memory storage, killed when the [`Broker`] is dropped (also when the test panics).
//! It starts in well under a second; `start` polls the port with a bounded deadline. Install
//! the binary with `scripts/nisshi.sh install`.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const START_DEADLINE: Duration = Duration::from_secs(10);
const VERSION: &str = "0.8.1";

pub struct Broker {
    pub port: u16,
    child: Child,
    /// The name clients dial (`localhost` for a TLS broker: its certificate's name).
    host: &'static str,
    /// librdkafka settings the set-up clients need (TLS).
    client: Vec<(&'static str, String)>,
}

/// The broker `scripts/nisshi.sh install` built (with libsql, in a directory of its own), or
/// `$NISSHI_ROOT/bin/nisshi`.
fn nisshi_bin() -> PathBuf {
    let root = std::env::var_os("NISSHI_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(format!(".cache/automaton/nisshi-{VERSION}-libsql"))
        });
    let bin = root.join("bin/nisshi");
    assert!(
        bin.is_file(),
        "nisshi {VERSION} is not installed in {}: run `scripts/nisshi.sh install`",
        root.display()
    );
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("nisshi --version");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains(VERSION),
        "nisshi {VERSION} expected, found {version:?}: run `scripts/nisshi.sh install`"
    );
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_on(free_port())
    }

    /// A broker on `port`, e.g. a fresh one where a killed one was.
    pub fn start_on(port: u16) -> Broker {
        Self::start_advertising(port, port)
    }

    /// A broker on `port` that tells its clients to connect to `advertised` (a proxy in
    /// front that sees every request).
    pub fn start_advertising(port: u16, advertised: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        Self::spawn(
            port,
            &[
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
            ],
        )
        .with_client("127.0.0.1", Vec::new())
    }

    /// A broker that only accepts TLS, with the certificate `server.crt` (for `localhost`)
    /// and key `server.key` of `certs`, whose CA is `certs/ca.pem`.
    pub fn start_tls(certs: &std::path::Path) -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://localhost:{port}");
        let (cert, key) = (certs.join("server.crt"), certs.join("server.key"));
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let args = [
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised_url,
            "--cert",
            &cert,
            "--key",
            &key,
        ];
        let ca = certs.join("ca.pem").display().to_string();
        let client = vec![("security.protocol", "ssl".to_owned()), ("ssl.ca.location", ca)];
        Self::spawn(port, &args).with_client("localhost", client)
    }

    /// A broker that requires SASL (SCRAM users kept in SQLite under `dir`), with the user
    /// `name`/`password` for `mechanism` (`SCRAM-SHA-256` or `SCRAM-SHA-512`); the set-up
    /// clients log in as that user. `nisshi user create` cannot log in itself, so the user
    /// is created on the same storage by a broker without authentication first.
    pub fn start_sasl(dir: &std::path::Path, mechanism: &str, name: &str, password: &str) -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let listener = ["--listener-url", &url, "--advertised-listener-url", &url];
        // SQLite storage takes its path relative to the broker's working directory.
        let storage = "sqlite://nisshi.db";
        let mut open = Self::spawn_with(port, &listener, storage, dir);
        let scram = match mechanism {
            "SCRAM-SHA-256" => "scram256",
            _ => "scram512",
        };
        let out = Command::new(nisshi_bin())
            .args([
                "user",
                "create",
                "--broker",
                &url,
                "--mechanism",
                scram,
                name,
                password,
            ])
            .output()
            .expect("nisshi user create");
        assert!(
            out.status.success(),
            "nisshi user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        open.kill();
        let args = [&listener[..], &["--authentication"]].concat();
        let client = vec![
            ("security.protocol", "sasl_plaintext".to_owned()),
            ("sasl.mechanism", mechanism.to_owned()),
            ("sasl.username", name.to_owned()),
            ("sasl.password", password.to_owned()),
        ];
        Self::spawn_with(port, &args, storage, dir).with_client("127.0.0.1", client)
    }

    fn with_client(mut self, host: &'static str, client: Vec<(&'static str, String)>) -> Broker {
        self.host = host;
        self.client = client;
        self
    }

    fn spawn(port: u16, listener: &[&str]) -> Broker {
        Self::spawn_with(port, listener, "memory://nisshi/", &std::env::temp_dir())
    }

    fn spawn_with(port: u16, listener: &[&str], storage: &str, dir: &std::path::Path) -> Broker {
        let child = Command::new(nisshi_bin())
            .current_dir(dir)
            .arg("broker")
            .args(listener)
            .args([
                "--storage-engine",
                storage,
                "--group-initial-rebalance-delay",
                "0s",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nisshi");
        let mut broker = Broker {
            port,
            child,
            host: "127.0.0.1",
            client: Vec::new(),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return broker;
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("nisshi exited before listening on {port}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "nisshi did not listen on {port} within {START_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Kills the broker and waits until it is gone and the port is closed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        for (key, value) in &self.client {
            c.set(*key, value);
        }
        c
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin client");
        let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin.create_topics(&topics, &opts).await.expect("create_topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    /// Produces `count` messages to `partition` and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, partition: i32, count: usize) {
        let producer: BaseProducer = self
            .config()
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "100000")
            .create()
            .expect("producer");
        for i in 0..count {
            let payload = i.to_string();
            let record = BaseRecord::<(), String>::to(topic)
                .partition(partition)
                .payload(&payload);
            producer.send(record).unwrap_or_else(|(e, _)| panic!("send: {e}"));
            if i % 1000 == 999 {
                producer.poll(Duration::ZERO);
            }
        }
        producer.flush(Duration::from_secs(20)).expect("flush");
    }

    /// Commits `offsets` (partition, offset) of `topic` for `group`, without joining it.
    pub fn commit(&self, group: &str, topic: &str, offsets: &[(i32, i64)]) {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .expect("tpl");
        }
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }
}

impl Broker {
    /// The seed scenario: topic `email.received` with 4 partitions and 20 000 messages, of
    /// which group `email-service-group` consumed 3 000 — lag 5000 + 5000 + 4000 + 3000 =
    /// 17 000, above the default threshold of 15 000.
    pub async fn seed_email_lag(&self) {
        self.create_topic("email.received", 4).await;
        for partition in 0..4 {
            self.produce("email.received", partition, 5_000);
        }
        self.commit(
            "email-service-group",
            "email.received",
            &[(0, 0), (1, 0), (2, 1_000), (3, 2_000)],
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

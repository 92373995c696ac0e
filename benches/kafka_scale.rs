//! Scripted measurement (not criterion: each sample is the whole binary against a live
//! broker): the daemon reading consumer lag at scale from a `nisshi` broker behind a proxy
//! that counts every Kafka request by API. The daemon runs dry, without Kubernetes, so its
//! memory is the Kafka side's. Three runs:
//! - no Kafka rule (the daemon's own baseline);
//! - one group on a topic of 1 000 partitions;
//! - 1 000 groups, each on its own topic of 10 partitions (10 000 partitions).
//!
//! Reported per run, once the sources are up and a few ticks have passed: peak RSS (VmHWM),
//! threads, a tick's mean duration (`automaton_tick_duration_seconds`, collection included)
//! and the Kafka requests per tick by API.
//!
//! `cargo bench --bench kafka_scale` measures 1 000 groups (or the count given after `--`);
//! under `cargo test` it checks the harness on 20 groups of 2 partitions and a topic of 50.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/kafka_support/mod.rs"]
mod kafka_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http_get, Automaton};
use kafka_support::{free_port, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// Requests seen by the proxy, per Kafka API key.
type Counts = Arc<Mutex<BTreeMap<i16, u64>>>;

/// The API names of the keys a lag collection uses.
fn api(key: i16) -> String {
    match key {
        0 => "Produce".into(),
        2 => "ListOffsets".into(),
        3 => "Metadata".into(),
        8 => "OffsetCommit".into(),
        9 => "OffsetFetch".into(),
        10 => "FindCoordinator".into(),
        15 => "DescribeGroups".into(),
        16 => "ListGroups".into(),
        17 => "SaslHandshake".into(),
        18 => "ApiVersions".into(),
        19 => "CreateTopics".into(),
        other => format!("api {other}"),
    }
}

/// A TCP proxy on `listen` in front of `upstream`, counting the requests (size-prefixed
/// frames whose header starts with the API key) that clients send.
fn proxy(listen: u16, upstream: u16, counts: Counts) {
    let listener = TcpListener::bind(("127.0.0.1", listen)).expect("proxy listens");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            // The proxy must add no delay of its own (Nagle holding back a frame's second
            // write until the first is acknowledged).
            let _ = server.set_nodelay(true);
            let _ = client.set_nodelay(true);
            let (mut c_read, mut s_write) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let (mut s_read, mut c_write) = (server, client);
            let counts = counts.clone();
            std::thread::spawn(move || {
                let mut size = [0u8; 4];
                while c_read.read_exact(&mut size).is_ok() {
                    let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
                    if c_read.read_exact(&mut frame).is_err() {
                        break;
                    }
                    if let Some(key) = frame.get(..2) {
                        let key = i16::from_be_bytes([key[0], key[1]]);
                        *counts.lock().expect("counts").entry(key).or_default() += 1;
                    }
                    let mut whole = size.to_vec();
                    whole.extend_from_slice(&frame);
                    if s_write.write_all(&whole).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

/// Topics `t{i}` of `partitions` each, in one CreateTopics request per 500.
fn create_topics(runtime: &tokio::runtime::Runtime, bootstrap: &str, names: &[String], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    for chunk in names.chunks(500) {
        let topics: Vec<NewTopic> = chunk
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = runtime
            .block_on(admin.create_topics(&topics, &opts))
            .expect("create_topics");
        for result in results {
            result.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
        }
    }
}

/// `1 + p % 3` messages to partition `p` of every topic, through one producer.
fn produce(bootstrap: &str, topics: &[String], partitions: i32) {
    let producer: BaseProducer = config(bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for topic in topics {
        for p in 0..partitions {
            for _ in 0..=(p % 3) {
                let record = BaseRecord::<(), str>::to(topic).partition(p).payload("x");
                producer.send(record).unwrap_or_else(|(e, _)| panic!("send: {e}"));
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// Group `g{i}` commits offset 1 on every partition of topic `topics[i]`, 16 at a time.
fn commit_groups(broker: &Broker, topics: &[String], partitions: i32) {
    let offsets: Vec<(i32, i64)> = (0..partitions).map(|p| (p, 1)).collect();
    let chunk = topics.len().div_ceil(16).max(1);
    std::thread::scope(|scope| {
        for (c, names) in topics.chunks(chunk).enumerate() {
            let offsets = &offsets;
            scope.spawn(move || {
                for (i, topic) in names.iter().enumerate() {
                    broker.commit(&format!("g{}", c * chunk + i), topic, offsets);
                }
            });
        }
    });
}

fn proc_status(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(f64::NAN)
}

/// The ticks so far and their total duration in seconds, from one read of `/metrics` (two
/// reads could straddle a tick and pair one tick's count with the next one's sum).
fn ticks_so_far(automaton: &Automaton) -> (f64, f64) {
    let text = automaton.get("/metrics").map(|(_, t)| t).unwrap_or_default();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("automaton_tick_duration_seconds_count"),
        value("automaton_tick_duration_seconds_sum"),
    )
}

struct Figures {
    rss_mib: f64,
    /// Of the current RSS: heap and stacks, and pages of the binary and its libraries.
    anon_mib: f64,
    file_mib: f64,
    threads: f64,
    tick_ms: f64,
    per_tick: BTreeMap<i16, f64>,
}

/// The daemon with one `kafka_lag` rule per `(group, topic)` of `groups` (without any: one
/// disk rule, since a daemon refuses an empty rule set), measured over `ticks` ticks once
/// every source is up.
fn run(bootstrap: &str, counts: &Counts, groups: &[(String, String)], ticks: u32) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules dir");
    let mut rules = String::from("rules:\n");
    if groups.is_empty() {
        rules.push_str(
            "  - name: disk\n    priority: high\n    signal: {disk_usage: {path: /}}\n    \
             when: \"> 101\"\n    action: {scale: {target: deployment/disk, replicas: 2}}\n",
        );
    }
    for (group, topic) in groups {
        rules.push_str(&format!(
            "  - name: lag-{group}\n    priority: high\n    signal: {{kafka_lag: {{group: {group}, topic: {topic}}}}}\n    \
             when: \"> 1000000000\"\n    action: {{scale: {{target: deployment/{group}, replicas: 2}}}}\n"
        ));
    }
    std::fs::write(rules_dir.join("kafka.yaml"), rules).expect("rules");
    let kubeconfig = dir.path().join("no-kubeconfig");
    let mut env = vec![
        ("KUBERNETES", "off"),
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("KAFKA_TIMEOUT", "10s"),
        ("CHECK_INTERVAL", "2s"),
        ("RUST_LOG", "warn"),
    ];
    // BENCH_ENV="K=V,K=V" adds to the daemon's environment, to see what a setting changes.
    let extra = std::env::var("BENCH_ENV").unwrap_or_default();
    env.extend(extra.split(',').filter_map(|kv| kv.split_once('=')));
    let automaton = Automaton::start(&kubeconfig, &rules_dir, "bench", &env);
    let up = |a: &Automaton| {
        let status = http_get(a.port, "/status").map(|(_, b)| b).unwrap_or_default();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
        let sources = status["sources"].as_object().cloned().unwrap_or_default();
        sources.len() == groups.len().max(1) && sources.values().all(|s| s["up"] == true)
    };
    let ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        common::eventually("every source up", Duration::from_secs(300), || {
            (ticks_so_far(&automaton).0 >= 2.0 && up(&automaton)).then_some(())
        })
    }));
    assert!(ready.is_ok(), "the daemon's log:\n{}", automaton.logs());
    let before = counts.lock().expect("counts").clone();
    let (n0, s0) = ticks_so_far(&automaton);
    common::eventually("the ticks measured", Duration::from_secs(600), || {
        (ticks_so_far(&automaton).0 >= n0 + f64::from(ticks)).then_some(())
    });
    let after = counts.lock().expect("counts").clone();
    let (n1, s1) = ticks_so_far(&automaton);
    assert!(up(&automaton), "the sources stayed up: {}", automaton.logs());
    let pid = automaton.child.id();
    let ticked = n1 - n0;
    Figures {
        rss_mib: proc_status(pid, "VmHWM:") / 1024.0,
        anon_mib: proc_status(pid, "RssAnon:") / 1024.0,
        file_mib: proc_status(pid, "RssFile:") / 1024.0,
        threads: proc_status(pid, "Threads:"),
        tick_ms: (s1 - s0) / ticked * 1000.0,
        per_tick: after
            .iter()
            .map(|(k, n)| (*k, (*n - before.get(k).copied().unwrap_or(0)) as f64 / ticked))
            .filter(|(_, n)| *n > 0.0)
            .collect(),
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let given: Option<usize> = std::env::args().find_map(|a| a.parse().ok());
    let (groups, partitions, wide, ticks) = if measuring {
        (given.unwrap_or(1_000), 10, 1_000, 5)
    } else {
        (20, 2, 50, 2)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let counts: Counts = Arc::default();
    let (port, advertised) = (free_port(), free_port());
    let broker = Broker::start_advertising(port, advertised);
    proxy(advertised, port, counts.clone());
    let bootstrap = format!("127.0.0.1:{advertised}");

    let started = std::time::Instant::now();
    let topics: Vec<String> = (0..groups).map(|i| format!("t{i}")).collect();
    create_topics(&runtime, &bootstrap, &topics, partitions);
    produce(&bootstrap, &topics, partitions);
    commit_groups(&broker, &topics, partitions);
    let wide_topic = vec!["wide".to_owned()];
    create_topics(&runtime, &bootstrap, &wide_topic, wide);
    produce(&bootstrap, &wide_topic, wide);
    broker.commit(
        "wide-group",
        "wide",
        &(0..wide).map(|p| (p, 1)).collect::<Vec<_>>(),
    );
    eprintln!(
        "setup: {groups} groups x {partitions} partitions and one of {wide} in {:.1?}",
        started.elapsed()
    );

    let many: Vec<(String, String)> = (0..groups).map(|i| (format!("g{i}"), format!("t{i}"))).collect();
    let runs = [
        ("no Kafka rule".to_owned(), Vec::new()),
        (
            format!("1 group x {wide} partitions"),
            vec![("wide-group".to_owned(), "wide".to_owned())],
        ),
        (format!("{groups} groups x {partitions} partitions"), many),
    ];
    println!(
        "run                             peak RSS  (anon + file)  threads  tick      Kafka requests per tick"
    );
    for (name, groups) in runs {
        let f = run(&bootstrap, &counts, &groups, ticks);
        let requests: Vec<String> = f
            .per_tick
            .iter()
            .map(|(k, n)| format!("{} {n:.1}", api(*k)))
            .collect();
        println!(
            "{name:<30} {:>6.1} MiB  ({:.1} + {:.1})  {:>6}  {:>6.1} ms  {}",
            f.rss_mib,
            f.anon_mib,
            f.file_mib,
            f.threads,
            f.tick_ms,
            requests.join(", ")
        );
    }
}

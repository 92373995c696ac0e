//! The `kafka_lag` collector against a real broker (`nisshi`, one per test).

mod kafka_support;

use std::time::{Duration, Instant};

use automaton::clients::kafka::{KafkaSettings, KafkaSource, TopicLag};
use automaton::clients::kafka::{LagQuery, OffsetReset, VersionCaps};
use automaton::core::series::Series;
use kafka_support::Broker;

fn source(broker: &Broker, timeout: Duration) -> KafkaSource {
    KafkaSource::new(KafkaSettings::new(broker.bootstrap(), timeout))
}

/// The signal's view of a collection: its series, or the reason it is unknown.
trait Collect {
    async fn collect(&self, query: &LagQuery) -> Result<Vec<Series>, String>;
}

impl Collect for KafkaSource {
    async fn collect(&self, query: &LagQuery) -> Result<Vec<Series>, String> {
        self.collect_lags(query)
            .await
            .map(|lags| lags.iter().map(TopicLag::series).collect())
            .map_err(|e| e.to_string())
    }
}

fn spec(group: &str, topic: Option<&str>, offset_reset: OffsetReset) -> LagQuery {
    LagQuery {
        group: group.to_owned(),
        topic: topic.map(str::to_owned),
        offset_reset,
    }
}

fn partition_lags(lag: &TopicLag) -> Vec<(i32, i64)> {
    lag.partitions.iter().map(|p| (p.partition, p.lag)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_lag_per_partition_and_in_total() {
    let broker = Broker::start();
    broker.create_topic("orders", 4).await;
    broker.create_topic("untouched", 2).await;
    for partition in 0..4 {
        broker.produce("orders", partition, 5_000);
    }
    broker.produce("untouched", 0, 10);
    broker.commit("billing", "orders", &[(0, 1_000), (1, 5_000), (2, 0), (3, 2_500)]);
    let kafka = source(&broker, Duration::from_secs(5));

    for topic in [Some("orders"), None] {
        let lags = kafka
            .collect_lags(&spec("billing", topic, OffsetReset::Latest))
            .await
            .unwrap();
        assert_eq!(lags.len(), 1, "only the topic with commits: {lags:?}");
        assert_eq!(lags[0].topic, "orders");
        assert_eq!(
            partition_lags(&lags[0]),
            [(0, 4_000), (1, 0), (2, 5_000), (3, 2_500)]
        );
        assert_eq!(
            lags[0].partitions.iter().map(|p| p.latest).collect::<Vec<_>>(),
            [5_000; 4]
        );
        assert_eq!(lags[0].lag, 11_500);
    }

    let series = kafka
        .collect(&spec("billing", Some("orders"), OffsetReset::Latest))
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].value, 11_500.0);
    let labels: Vec<(&str, &str)> = series[0]
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [("group", "billing"), ("partitions", "4"), ("topic", "orders")]
    );

    let reports = kafka.partition_lags();
    assert_eq!(reports.len(), 2, "one per spec: {reports:?}");
    assert!(reports
        .iter()
        .all(|r| r.error.is_none() && r.lags[0].lag == 11_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_partition_follows_offset_reset() {
    let broker = Broker::start();
    broker.create_topic("events", 2).await;
    broker.produce("events", 0, 100);
    broker.produce("events", 1, 50);
    broker.commit("reader", "events", &[(0, 10)]);
    let kafka = source(&broker, Duration::from_secs(5));

    let latest = kafka
        .collect_lags(&spec("reader", Some("events"), OffsetReset::Latest))
        .await
        .unwrap();
    assert_eq!(partition_lags(&latest[0]), [(0, 90), (1, 0)]);
    assert_eq!(latest[0].partitions[1].committed, None);

    let earliest = kafka
        .collect_lags(&spec("reader", Some("events"), OffsetReset::Earliest))
        .await
        .unwrap();
    assert_eq!(partition_lags(&earliest[0]), [(0, 90), (1, 50)]);
    assert_eq!(earliest[0].partitions[1].log_start, Some(0));
    assert_eq!(earliest[0].lag, 140);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_group_or_topic_is_an_error_never_zero() {
    let broker = Broker::start();
    broker.create_topic("events", 2).await;
    broker.produce("events", 0, 10);
    let kafka = source(&broker, Duration::from_secs(5));

    for topic in [Some("events"), None] {
        let err = kafka
            .collect(&spec("no-such-group", topic, OffsetReset::Latest))
            .await
            .unwrap_err();
        assert!(
            err.contains("consumer group `no-such-group` does not exist"),
            "{err}"
        );
    }
    broker.commit("reader", "events", &[(0, 1)]);
    let err = kafka
        .collect(&spec("reader", Some("no-such-topic"), OffsetReset::Latest))
        .await
        .unwrap_err();
    assert!(err.contains("topic `no-such-topic` does not exist"), "{err}");
}

/// Many groups measured together, as the daemon does at each tick: every group gets exactly
/// its own lag, and a missing group, a missing topic or a group with nothing committed is an
/// error for that spec only, never for the others of the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_groups_in_one_collection_each_its_own_lag_and_errors_stay_theirs() {
    many_groups(VersionCaps::default()).await;
}

/// The same against a broker before Kafka 2.8 / 3.0, as this client speaks to one: one
/// FindCoordinator and one OffsetFetch per group, the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_broker_gets_a_request_per_group_and_the_same_lags() {
    many_groups(VersionCaps {
        find_coordinator: 3,
        offset_fetch: 7,
    })
    .await;
}

async fn many_groups(caps: VersionCaps) {
    let broker = Broker::start();
    broker.create_topic("orders", 3).await;
    broker.create_topic("audit", 2).await;
    for partition in 0..3 {
        broker.produce("orders", partition, 100);
    }
    broker.produce("audit", 1, 40);
    const GROUPS: i64 = 30;
    for g in 0..GROUPS {
        broker.commit(&format!("g{g}"), "orders", &[(0, g), (1, 2 * g), (2, 100)]);
    }
    broker.commit("auditor", "audit", &[(1, 15)]);
    let settings = KafkaSettings::new(broker.bootstrap(), Duration::from_secs(5)).with_version_caps(caps);
    let kafka = KafkaSource::new(settings);

    let mut specs: Vec<LagQuery> = (0..GROUPS)
        .map(|g| spec(&format!("g{g}"), Some("orders"), OffsetReset::Latest))
        .collect();
    specs.push(spec("auditor", None, OffsetReset::Latest));
    specs.push(spec("auditor", Some("audit"), OffsetReset::Earliest));
    specs.push(spec("no-such-group", Some("orders"), OffsetReset::Latest));
    specs.push(spec("g1", Some("no-such-topic"), OffsetReset::Latest));
    let results = kafka.collect_many(&specs).await;
    assert_eq!(results.len(), specs.len());

    for (g, result) in (0..GROUPS).zip(&results) {
        let lags = result.as_ref().unwrap_or_else(|e| panic!("g{g}: {e}"));
        assert_eq!(lags.len(), 1);
        assert_eq!(lags[0].group, format!("g{g}"));
        assert_eq!(partition_lags(&lags[0]), [(0, 100 - g), (1, 100 - 2 * g), (2, 0)]);
    }
    let auditor = |i: usize| results[GROUPS as usize + i].as_ref().expect("auditor");
    // Without a topic: only the topic it committed on; uncommitted partition 0 of `audit`
    // is empty, so `earliest` counts nothing there either.
    assert_eq!(auditor(0)[0].topic, "audit");
    assert_eq!(partition_lags(&auditor(0)[0]), [(0, 0), (1, 25)]);
    assert_eq!(auditor(1)[0].partitions[0].log_start, Some(0));
    assert_eq!(auditor(1)[0].lag, 25);
    let err = |i: usize| match &results[GROUPS as usize + i] {
        Err(e) => e.to_string(),
        Ok(lags) => panic!("an error expected, got {lags:?}"),
    };
    assert!(
        err(2).contains("consumer group `no-such-group` does not exist"),
        "{}",
        err(2)
    );
    assert!(
        err(3).contains("topic `no-such-topic` does not exist"),
        "{}",
        err(3)
    );
    assert_eq!(kafka.partition_lags().len(), specs.len(), "one report per spec");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_is_an_error_and_the_same_source_recovers() {
    let mut broker = Broker::start();
    let port = broker.port;
    broker.create_topic("events", 1).await;
    broker.produce("events", 0, 30);
    broker.commit("reader", "events", &[(0, 10)]);
    let kafka = source(&broker, Duration::from_secs(1));
    let events = spec("reader", Some("events"), OffsetReset::Latest);
    assert_eq!(kafka.collect(&events).await.unwrap()[0].value, 20.0);

    broker.kill();
    let started = Instant::now();
    let err = kafka.collect(&events).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains(&format!("Kafka at 127.0.0.1:{port}")) && err.contains("failed"),
        "{err}"
    );
    let report = kafka.partition_lags();
    assert_eq!(report[0].error.as_deref(), Some(err.as_str()));

    // In-memory storage: the new broker starts empty, so the data is set up again.
    let broker = Broker::start_on(port);
    broker.create_topic("events", 1).await;
    broker.produce("events", 0, 50);
    broker.commit("reader", "events", &[(0, 5)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let last = loop {
        let result = kafka.collect(&events).await;
        if matches!(&result, Ok(series) if series[0].value == 45.0) || Instant::now() > deadline {
            break result;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(last.unwrap()[0].value, 45.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_when_committed_offsets_do_not_move_with_lag() {
    let broker = Broker::start();
    broker.create_topic("jobs", 2).await;
    broker.produce("jobs", 0, 100);
    broker.commit("worker", "jobs", &[(0, 40), (1, 0)]);
    let kafka = source(&broker, Duration::from_secs(5));
    let jobs = spec("worker", Some("jobs"), OffsetReset::Latest);

    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(kafka.collect_lags(&jobs).await.unwrap()[0].stalled);
    }
    assert_eq!(stalled, [false, false, true]);
    assert!(kafka.partition_lags()[0].lags[0].stalled);

    broker.commit("worker", "jobs", &[(0, 41)]);
    let moved = kafka.collect_lags(&jobs).await.unwrap();
    assert!(!moved[0].stalled);
    assert_eq!(moved[0].lag, 59);

    // Caught up: unmoved offsets without lag are idle, not stalled.
    broker.commit("worker", "jobs", &[(0, 100)]);
    let idle: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(kafka.collect_lags(&jobs).await.unwrap()[0].stalled);
        }
        v
    };
    assert_eq!(idle, [false, false, false]);
}

/// Seed scenario 1 through the daemon: the lag rule waits its `for`, then the scale is
/// decided (dry-run here: no Kubernetes) with the lag in its change, and counted; the broker
/// stopped → unknown, the source down, no action; the broker back → evaluation resumes
/// without a restart, with the full `for` to observe again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_rule_fires_after_for_and_an_outage_is_unknown_never_an_action() {
    use automaton::core::decision::{SkipReason, State};
    use automaton::runtime::daemon::Daemon;
    use automaton::settings::Settings;

    let mut broker = Broker::start();
    let port = broker.port;
    broker.seed_email_lag().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = "rules:\n  - name: kafka-consumer-lag\n    priority: high\n    \
                 signal: {kafka_lag: {group: email-service-group, topic: email.received}}\n    \
                 when: \"> 15000\"\n    for: 1s\n    \
                 action: {scale: {target: deployment/email-service, per_lag: 5000, max: 10}}\n";
    std::fs::write(dir.path().join("kafka.yaml"), rules).expect("rules");
    let mut daemon = Daemon::new(Settings::defaults(), dir.path().to_path_buf()).expect("daemon");
    daemon.attach_kafka(source(&broker, Duration::from_secs(1)));

    let first = daemon.tick().await;
    assert_eq!((first[0].value, first[0].state), (Some(17_000.0), State::Pending));
    // The rule's `for` is real time here: wait it out.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let fired = daemon.tick().await;
    let d = &fired[0];
    assert_eq!(
        (d.state, d.reason),
        (State::Firing, Some(SkipReason::DryRun)),
        "{d:?}"
    );
    let change = d.change.as_ref().expect("a planned change");
    // ceil(17000 / 5000) = 4 replicas, which the 4 partitions allow.
    assert_eq!(change["replicas"], serde_json::json!([null, 4]));
    assert_eq!(
        (change["lag"].as_f64(), change["partitions"].as_i64()),
        (Some(17_000.0), Some(4))
    );
    let metrics = daemon.metrics.encode();
    let counted =
        r#"healing_actions_total{action="scale",dry_run="true",rule="kafka-consumer-lag",success="true"} 1"#;
    assert!(metrics.contains(counted), "{metrics}");
    let lag = r#"automaton_kafka_consumer_lag{group="email-service-group",topic="email.received"} 17000"#;
    assert!(metrics.contains(lag), "{metrics}");

    broker.kill();
    let down = daemon.tick().await;
    assert_eq!(
        (down[0].state, down[0].reason, down[0].value),
        (State::Unknown, Some(SkipReason::Unknown), None)
    );
    assert!(daemon
        .metrics
        .encode()
        .contains(r#"automaton_signal_source_up{source="kafka"} 0"#));

    let restarted = Broker::start_on(port);
    restarted.seed_email_lag().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let back = loop {
        let d = daemon.tick().await.remove(0);
        if d.state != State::Unknown || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (back.state, back.value),
        (State::Pending, Some(17_000.0)),
        "{back:?}"
    );
    assert!(daemon
        .metrics
        .encode()
        .contains(r#"automaton_signal_source_up{source="kafka"} 1"#));
}

/// A kept connection the broker closed (here: a restart between two ticks) is dialled again
/// within the same collection: the tick after it reads the lag, it does not fail once first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_broker_closed_is_dialled_again_without_a_failed_tick() {
    let mut broker = Broker::start();
    let port = broker.port;
    broker.create_topic("events", 1).await;
    broker.produce("events", 0, 30);
    broker.commit("reader", "events", &[(0, 10)]);
    let kafka = source(&broker, Duration::from_secs(5));
    let events = spec("reader", Some("events"), OffsetReset::Latest);
    assert_eq!(kafka.collect(&events).await.unwrap()[0].value, 20.0);

    broker.kill();
    let broker = Broker::start_on(port);
    broker.create_topic("events", 1).await;
    broker.produce("events", 0, 50);
    broker.commit("reader", "events", &[(0, 5)]);
    assert_eq!(kafka.collect(&events).await.unwrap()[0].value, 45.0);
}

//! Fault injection through the daemon against the real servers: the Kafka broker killed
//! mid-run and restarted on the same port, PostgreSQL stopped and started, an HTTP endpoint
//! refusing connections. For each: unknown data never acts, no action is duplicated, the
//! circuit breaker goes closed → open → half-open → closed and shows it in
//! `automaton_circuit_breaker_state` and `/status`, and everything recovers without a restart.

mod kafka_support;
mod pg;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automaton::clients::kafka::{KafkaSettings, KafkaSource};
use automaton::core::decision::{Decision, SkipReason, State, Verdict};
use automaton::core::guard::breaker::BreakerSettings;
use automaton::runtime::daemon::Daemon;
use automaton::settings::Settings;
use axum::routing::post;
use axum::Router;
use kafka_support::Broker;

const COOL_OFF: Duration = Duration::from_secs(2);

/// Two failures in a row open a breaker for two seconds.
fn settings() -> Settings {
    let mut s = Settings::defaults();
    s.breaker = BreakerSettings {
        failures: 2,
        cool_off: COOL_OFF,
    };
    s
}

fn gauge(daemon: &Daemon, dependency: &str) -> Option<i64> {
    let text = daemon.metrics.encode();
    let prefix = format!("automaton_circuit_breaker_state{{dependency=\"{dependency}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

fn circuit(daemon: &Daemon, dependency: &str) -> String {
    let status = serde_json::to_value(&*daemon.status.read().unwrap()).unwrap();
    status["circuits"][dependency]["state"]
        .as_str()
        .unwrap_or("absent")
        .to_owned()
}

/// A local endpoint counting the POSTs it receives.
async fn counter() -> (String, Arc<Mutex<usize>>) {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let app = Router::new().route(
        "/scale-out",
        post(move || async move {
            *c.lock().unwrap() += 1;
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/scale-out"), calls)
}

fn the(decisions: Vec<Decision>, rule: &str) -> Decision {
    decisions
        .into_iter()
        .find(|d| &*d.rule == rule && !d.follows_up())
        .unwrap_or_else(|| panic!("no decision of {rule}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_opens_the_kafka_breaker_and_a_restarted_one_closes_it() {
    let mut broker = Broker::start();
    let port = broker.port;
    broker.seed_email_lag().await;
    let (url, calls) = counter().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kafka.yaml"),
        format!(
            "rules:\n  - name: lag\n    priority: critical\n    \
             signal: {{kafka_lag: {{group: email-service-group, topic: email.received}}}}\n    \
             when: \"> 15000\"\n    cooldown: 1h\n    \
             action: {{http: {{url: \"{url}\", expect_status: 200}}}}\n"
        ),
    )
    .unwrap();
    let mut daemon = Daemon::new(settings(), dir.path().to_path_buf()).unwrap();
    daemon.attach_kafka(KafkaSource::new(KafkaSettings::new(
        broker.bootstrap(),
        Duration::from_secs(1),
    )));

    let d = the(daemon.tick().await, "lag");
    assert_eq!((d.decision, d.success), (Verdict::Act, Some(true)), "{d:?}");
    assert_eq!(gauge(&daemon, "kafka"), Some(0));
    assert_eq!(circuit(&daemon, "kafka"), "closed");

    broker.kill();
    for failures in 1..=2 {
        let d = the(daemon.tick().await, "lag");
        assert_eq!(
            (d.state, d.reason),
            (State::Unknown, Some(SkipReason::Unknown)),
            "{d:?}"
        );
        let detail = d.detail.unwrap().to_string();
        assert!(
            !detail.starts_with("circuit_open"),
            "failure {failures}: {detail}"
        );
    }
    assert_eq!(
        gauge(&daemon, "kafka"),
        Some(2),
        "open after two failures in a row"
    );
    assert_eq!(circuit(&daemon, "kafka"), "open");
    // Open: the broker is not even asked; the signal is unknown with the breaker's reason.
    let d = the(daemon.tick().await, "lag");
    assert_eq!(d.state, State::Unknown);
    let detail = d.detail.unwrap().to_string();
    assert!(
        detail.starts_with("circuit_open: kafka failed 2 times in a row"),
        "{detail}"
    );

    let restarted = Broker::start_on(port);
    restarted.seed_email_lag().await;
    tokio::time::sleep(COOL_OFF).await;
    assert_eq!(circuit(&daemon, "kafka"), "open", "/status is refreshed by ticks");
    // The cool-off is over: this tick's collection is the probe, and it succeeds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let back = loop {
        let d = the(daemon.tick().await, "lag");
        if d.state != State::Unknown || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        (back.state, back.value),
        (State::Firing, Some(17_000.0)),
        "{back:?}"
    );
    assert_eq!(
        back.reason,
        Some(SkipReason::Cooldown),
        "still inside the first action's cooldown"
    );
    assert_eq!(gauge(&daemon, "kafka"), Some(0));
    assert_eq!(circuit(&daemon, "kafka"), "closed");
    assert_eq!(
        *calls.lock().unwrap(),
        1,
        "exactly one action over the whole outage"
    );
}

#[tokio::test]
async fn a_stopped_postgres_opens_its_breaker_and_a_started_one_closes_it() {
    let mut cluster = pg::Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pg.yaml"),
        "rules:\n  - name: idle\n    priority: critical\n    \
         signal: {postgres: {metric: idle_connections, idle_for: 1h}}\n    \
         when: \">= 1000\"\n    \
         action: {terminate_idle_connections: {idle_for: 1h}}\n",
    )
    .unwrap();
    let mut daemon = Daemon::new(settings(), dir.path().to_path_buf()).unwrap();
    daemon.attach_postgres(cluster.source("automaton"));
    let d = the(daemon.tick().await, "idle");
    assert_eq!((d.value, d.state), (Some(0.0), State::Inactive), "{d:?}");
    assert_eq!(gauge(&daemon, "postgres"), Some(0));

    cluster.stop();
    for _ in 0..2 {
        let d = the(daemon.tick().await, "idle");
        assert_eq!(d.state, State::Unknown, "{d:?}");
    }
    assert_eq!(gauge(&daemon, "postgres"), Some(2));
    let d = the(daemon.tick().await, "idle");
    let detail = d.detail.unwrap().to_string();
    assert!(detail.starts_with("circuit_open: postgres"), "{detail}");

    cluster.start_again();
    tokio::time::sleep(COOL_OFF).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let back = loop {
        let d = the(daemon.tick().await, "idle");
        if d.state != State::Unknown || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!((back.value, back.state), (Some(0.0), State::Inactive), "{back:?}");
    assert_eq!(gauge(&daemon, "postgres"), Some(0));
    assert_eq!(circuit(&daemon, "postgres"), "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_to_an_endpoint_that_refuses_stop_at_its_open_breaker_then_resume() {
    // A port nobody listens on, for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("disk.yaml"),
        format!(
            "rules:\n  - name: reduce\n    priority: critical\n    \
             signal: {{disk_usage: {{path: /}}}}\n    when: \">= 0\"\n    cooldown: 1s\n    \
             action: {{http: {{url: \"http://127.0.0.1:{port}/admin/cache/reduce\"}}}}\n"
        ),
    )
    .unwrap();
    let mut daemon = Daemon::new(settings(), dir.path().to_path_buf()).unwrap();
    let dependency = format!("http/127.0.0.1:{port}");
    for attempt in 1..=2 {
        let d = the(daemon.tick().await, "reduce");
        assert_eq!(
            (d.decision, d.success),
            (Verdict::Act, Some(false)),
            "attempt {attempt}: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    assert_eq!(gauge(&daemon, &dependency), Some(2));
    // Due again (cooldown over), but the breaker is open: skipped, nothing sent.
    let d = the(daemon.tick().await, "reduce");
    assert_eq!(
        (d.decision, d.reason),
        (Verdict::Skip, Some(SkipReason::CircuitOpen)),
        "{d:?}"
    );

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let app = Router::new().route(
        "/admin/cache/reduce",
        post(move || async move {
            *c.lock().unwrap() += 1;
            "ok"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::time::sleep(COOL_OFF).await;
    // Half-open: the action is the probe, and it succeeds.
    let d = the(daemon.tick().await, "reduce");
    assert_eq!((d.decision, d.success), (Verdict::Act, Some(true)), "{d:?}");
    assert_eq!(gauge(&daemon, &dependency), Some(0));
    assert_eq!(*calls.lock().unwrap(), 1);
}

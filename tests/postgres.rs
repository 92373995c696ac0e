//! The PostgreSQL signal and `terminate_idle_connections` against a real PostgreSQL server,
//! one throw-away cluster per test (see `pg/mod.rs`). Roles: `automaton` (pg_signal_backend,
//! pg_read_all_stats) is the daemon; `app`, `app2` are clients; `reader` may read every
//! session but not signal; `weak` may do neither; `postgres` is the superuser.

mod pg;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use automaton::clients::pg::{ActivityQuery, PgError, PgSource, PostgresMetric, TerminateFilter};
use automaton::core::series::Series;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Client, NoTls};

use pg::{eventually, Cluster, Conn, PASSWORD};

const WAIT: Duration = Duration::from_secs(15);

/// The signal's view of a read: its series, or the reason it is unknown.
trait Read {
    async fn read(&self, query: &ActivityQuery) -> Result<Vec<Series>, String>;
}

impl Read for PgSource {
    async fn read(&self, query: &ActivityQuery) -> Result<Vec<Series>, String> {
        self.collect(query).await.map_err(|e| e.to_string())
    }
}

fn metric(metric: PostgresMetric, idle_for: Option<Duration>) -> ActivityQuery {
    ActivityQuery { metric, idle_for }
}

fn idle_for(d: Duration) -> TerminateFilter {
    TerminateFilter {
        idle_for: d,
        database: None,
        user: None,
        application_name: None,
        limit: 50,
    }
}

fn pids(conns: &[Conn]) -> Vec<i32> {
    conns.iter().map(|c| c.pid).collect()
}

/// The pids among `pids` that are still in `pg_stat_activity`.
async fn present(observer: &Conn, pids: &[i32]) -> Vec<i32> {
    let rows = observer
        .client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE pid = ANY($1) ORDER BY pid",
            &[&pids],
        )
        .await
        .expect("read pg_stat_activity");
    rows.iter().map(|r| r.get(0)).collect()
}

async fn wait_gone(observer: &Conn, pids: &[i32]) {
    eventually("terminated backends to exit", WAIT, || async {
        present(observer, pids).await.is_empty().then_some(())
    })
    .await;
}

/// Waits until every backend in `pids` has been idle at least `age` (the one wait that has
/// to be a wait: `state_change` must age).
async fn wait_idle_at_least(observer: &Conn, pids: &[i32], age: Duration) {
    let sql = "SELECT count(*) FROM pg_stat_activity
               WHERE pid = ANY($1) AND state = 'idle' AND state_change <= now() - make_interval(secs => $2)";
    eventually("connections to age", age + WAIT, || async {
        let row = observer
            .client
            .query_one(sql, &[&pids, &age.as_secs_f64()])
            .await
            .expect("age query");
        (row.get::<_, i64>(0) == pids.len() as i64).then_some(())
    })
    .await;
}

/// Runs a query, so the observer's own `state_change` is fresh and it is never "old idle".
async fn touch(conn: &Conn) {
    conn.client.simple_query("SELECT 1").await.expect("touch");
}

/// A connection busy in `SELECT pg_sleep(30)` until cancelled.
struct Sleeper {
    pid: i32,
    cancel: CancelToken,
    task: JoinHandle<(Client, Result<(), tokio_postgres::Error>)>,
}

async fn sleepers(cluster: &Cluster, observer: &Conn, n: usize) -> Vec<Sleeper> {
    let mut out = Vec::new();
    for _ in 0..n {
        let Conn { client, pid } = cluster.connect("app", "postgres", "sleeper").await;
        let cancel = client.cancel_token();
        let task = tokio::spawn(async move {
            let result = client.simple_query("SELECT pg_sleep(30)").await.map(|_| ());
            (client, result)
        });
        out.push(Sleeper { pid, cancel, task });
    }
    let pids: Vec<i32> = out.iter().map(|s| s.pid).collect();
    eventually("sleepers to be active", WAIT, || async {
        let row = observer
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND state = 'active'",
                &[&pids],
            )
            .await
            .expect("count active");
        (row.get::<_, i64>(0) == n as i64).then_some(())
    })
    .await;
    out
}

impl Sleeper {
    /// Cancels the sleep: the query reports the cancel and the session then answers again,
    /// proving it was never terminated.
    async fn cancel_and_reuse(self) {
        self.cancel.cancel_query(NoTls).await.expect("send cancel");
        let (client, result) = self.task.await.expect("sleeper task");
        let err = result.expect_err("the sleep was cancelled");
        assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
        client
            .simple_query("SELECT 1")
            .await
            .expect("the sleeper's session still works");
    }
}

fn series(value: f64) -> Vec<Series> {
    let labels = BTreeMap::from([
        ("database".to_owned(), "postgres".to_owned()),
        ("host".to_owned(), "127.0.0.1".to_owned()),
    ]);
    vec![Series { labels, value }]
}

/// Plan scenario: 30 idle connections of which 5 idle longer than `idle_for`, 5 running
/// `pg_sleep(30)`, plus an old idle walsender and an old idle-in-transaction session that
/// must survive too. Exactly the 5 old idle ones are terminated.
#[tokio::test]
async fn terminates_exactly_the_client_backends_idle_longer_than_idle_for() {
    let cluster = Cluster::start().await;
    let source = cluster.source("automaton");
    let observer = cluster.connect("observer", "postgres", "observer").await;
    let age = Duration::from_secs(2);

    // The source's own connection is made now, so it is old too by the time it terminates.
    let used = metric(PostgresMetric::ConnectionsUsedPercent, None);
    source.read(&used).await.expect("first collect");
    let old = cluster.open(5, "app", "postgres", "web").await;
    let in_transaction = cluster.connect("app", "postgres", "web").await;
    in_transaction
        .client
        .batch_execute("BEGIN; SELECT 1")
        .await
        .expect("begin");
    let _walsender = cluster.walsender();
    let walsender: i32 = eventually("the idle walsender", WAIT, || async {
        let rows = observer
            .client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender' AND state = 'idle'",
                &[],
            )
            .await
            .expect("find walsender");
        rows.first().map(|r| r.get(0))
    })
    .await;
    let active = sleepers(&cluster, &observer, 5).await;
    let mut old_and_walsender = pids(&old);
    old_and_walsender.push(walsender);
    wait_idle_at_least(&observer, &old_and_walsender, age).await;

    let opened = Instant::now();
    let recent = cluster.open(25, "app", "postgres", "web").await;
    let own: i32 = observer
        .client
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE usename = 'automaton'",
            &[],
        )
        .await
        .expect("the source's backend")
        .get(0);
    touch(&observer).await;
    let done = source.terminate_idle(&idle_for(age)).await.expect("terminate");
    assert!(
        opened.elapsed() < age,
        "the recent connections must still be younger than idle_for"
    );

    assert_eq!(done.pids, pids(&old), "exactly the old idle ones, oldest first");
    assert_eq!(done.count, 5);
    wait_gone(&observer, &done.pids).await;
    let mut survivors: Vec<i32> = pids(&recent);
    survivors.extend(active.iter().map(|s| s.pid));
    survivors.extend([walsender, in_transaction.pid, own, observer.pid]);
    survivors.sort();
    assert_eq!(
        present(&observer, &survivors).await,
        survivors,
        "no other backend was terminated"
    );

    for conn in &old {
        assert!(!conn.alive().await, "pid {} was terminated", conn.pid);
    }
    for conn in &recent {
        assert!(conn.alive().await, "recent pid {} survives", conn.pid);
    }
    in_transaction
        .client
        .batch_execute("COMMIT")
        .await
        .expect("the transaction survives");
    for sleeper in active {
        sleeper.cancel_and_reuse().await;
    }
    // Our own session was never a candidate and is still the one in use.
    source.read(&used).await.expect("collect after terminating");
    let still: i32 = observer
        .client
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE usename = 'automaton'",
            &[],
        )
        .await
        .expect("the source's backend")
        .get(0);
    assert_eq!(still, own);
}

/// A known set: 3 old idle, 4 recent idle, 2 idle in transaction and 1 aborted one, 2 active,
/// the observer (idle, recent) and the source's own backend: 14 client backends of the 47
/// that `max_connections = 50` leaves after `superuser_reserved_connections = 3`.
#[tokio::test]
async fn metrics_have_the_exact_values_of_a_known_set_of_connections() {
    let cluster = Cluster::start().await;
    let source = cluster.source("automaton");
    let observer = cluster.connect("observer", "postgres", "observer").await;
    let age = Duration::from_secs(2);

    let old = cluster.open(3, "app", "postgres", "web").await;
    let in_transaction = cluster.open(3, "app", "postgres", "web").await;
    for conn in &in_transaction[..2] {
        conn.client.batch_execute("BEGIN; SELECT 1").await.expect("begin");
    }
    in_transaction[2]
        .client
        .batch_execute("BEGIN")
        .await
        .expect("begin");
    let aborted = in_transaction[2].client.batch_execute("SELECT 1/0").await;
    assert_eq!(
        aborted.expect_err("division by zero").code(),
        Some(&SqlState::DIVISION_BY_ZERO)
    );
    let _active = sleepers(&cluster, &observer, 2).await;
    wait_idle_at_least(&observer, &pids(&old), age).await;
    let opened = Instant::now();
    let _recent = cluster.open(4, "app", "postgres", "web").await;
    touch(&observer).await;

    let used = source
        .read(&metric(PostgresMetric::ConnectionsUsedPercent, None))
        .await;
    let idle = source.read(&metric(PostgresMetric::IdleConnections, None)).await;
    let idle_old = source
        .read(&metric(PostgresMetric::IdleConnections, Some(age)))
        .await;
    let in_tx = source
        .read(&metric(PostgresMetric::IdleInTransaction, None))
        .await;
    assert!(
        opened.elapsed() < age,
        "the recent connections must still be younger than idle_for"
    );

    assert_eq!(used, Ok(series(14.0 / 47.0 * 100.0)));
    assert_eq!(
        idle,
        Ok(series(8.0)),
        "3 old + 4 recent + the observer; never our own backend"
    );
    assert_eq!(idle_old, Ok(series(3.0)));
    assert_eq!(in_tx, Ok(series(3.0)), "idle in transaction, aborted included");
}

/// The server goes away mid-run: the signal is unknown, with a reason and no password; when
/// it is back, the same source recovers.
#[tokio::test]
async fn server_outage_is_unknown_and_the_same_source_recovers() {
    let mut cluster = Cluster::start().await;
    let settings = cluster.settings_from(&[
        ("DATABASE_URL", cluster.url(PASSWORD)),
        ("POSTGRES_CONNECT_TIMEOUT", "3s".to_owned()),
    ]);
    let source = PgSource::new(settings);
    assert!(!format!("{source:?}").contains(PASSWORD), "{source:?}");
    let used = metric(PostgresMetric::ConnectionsUsedPercent, None);
    assert_eq!(source.read(&used).await, Ok(series(1.0 / 47.0 * 100.0)));

    cluster.stop();
    for _ in 0..2 {
        let reason = source
            .read(&used)
            .await
            .expect_err("unknown while the server is down");
        assert!(reason.contains("cannot connect to PostgreSQL"), "{reason}");
        assert!(
            reason.contains(&format!("127.0.0.1:{}/postgres", cluster.port)),
            "{reason}"
        );
        assert!(!reason.contains(PASSWORD), "{reason}");
    }
    let err = source
        .terminate_idle(&idle_for(Duration::from_secs(60)))
        .await
        .expect_err("down");
    assert_eq!(err.metric_label(), "connect");
    assert!(!format!("{err} {err:?}").contains(PASSWORD), "{err:?}");

    cluster.start_again();
    assert_eq!(
        source.read(&used).await,
        Ok(series(1.0 / 47.0 * 100.0)),
        "recovers on the next collect"
    );

    // A restart between two collects: the first query on the dead connection fails and is
    // retried once on a new one, so the signal never goes unknown.
    cluster.stop();
    cluster.start_again();
    assert_eq!(
        source.read(&used).await,
        Ok(series(1.0 / 47.0 * 100.0)),
        "restart between ticks"
    );

    let wrong = PgSource::new(cluster.settings_from(&[("DATABASE_URL", cluster.url("Wrong-Secret-123"))]));
    let reason = wrong.read(&used).await.expect_err("wrong password");
    assert!(reason.contains("password authentication failed"), "{reason}");
    assert!(!reason.contains("Wrong-Secret-123"), "{reason}");
}

/// A server that accepts the TCP connection and never answers: bounded by
/// POSTGRES_CONNECT_TIMEOUT, never a stalled loop.
#[tokio::test]
async fn an_unresponsive_server_is_unknown_within_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let vars = [
        ("POSTGRES_HOST", "127.0.0.1".to_owned()),
        ("POSTGRES_PORT", port.to_string()),
        ("POSTGRES_PASSWORD", PASSWORD.to_owned()),
        ("POSTGRES_CONNECT_TIMEOUT", "300ms".to_owned()),
    ];
    let settings =
        automaton::clients::pg::PgSettings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .expect("settings")
            .expect("configured");
    let source = PgSource::new(settings);
    let started = Instant::now();
    let reason = source
        .read(&metric(PostgresMetric::IdleConnections, None))
        .await
        .expect_err("no answer");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(reason.contains("no answer within 0.3s"), "{reason}");
    assert!(!reason.contains(PASSWORD), "{reason}");
}

/// Without pg_signal_backend a role may not terminate other roles' backends: a clear error
/// naming the grant, and nothing is terminated. With it, a superuser's backend is still out of
/// reach: the others are terminated and the superuser's is reported.
#[tokio::test]
async fn missing_pg_signal_backend_is_a_clear_error() {
    let cluster = Cluster::start().await;
    let observer = cluster.connect("observer", "postgres", "observer").await;
    let age = Duration::from_millis(500);
    let apps = cluster.open(2, "app", "postgres", "web").await;
    let dba = cluster.connect("postgres", "postgres", "psql").await;
    let mut all = pids(&apps);
    all.push(dba.pid);
    wait_idle_at_least(&observer, &all, age).await;
    touch(&observer).await;

    let err = cluster
        .source("reader")
        .terminate_idle(&idle_for(age))
        .await
        .expect_err("not permitted");
    let text = err.to_string();
    assert!(
        text.contains("pg_signal_backend") && text.contains("`reader`"),
        "{text}"
    );
    assert!(text.contains("GRANT pg_signal_backend TO \"reader\""), "{text}");
    assert_eq!(err.metric_label(), "permission");
    match err {
        PgError::NotPermitted {
            pids: denied,
            terminated,
            ..
        } => {
            assert_eq!(denied, all);
            assert_eq!(terminated.count, 0);
        }
        other => panic!("expected NotPermitted, got {other:?}"),
    }
    for conn in apps.iter().chain([&dba]) {
        assert!(conn.alive().await, "pid {} survives", conn.pid);
    }

    // `alive()` ran a query on each: they must age again.
    wait_idle_at_least(&observer, &all, age).await;
    touch(&observer).await;
    let err = cluster
        .source("automaton")
        .terminate_idle(&idle_for(age))
        .await
        .expect_err("superuser");
    let text = err.to_string();
    assert!(text.contains("only a superuser may terminate"), "{text}");
    match err {
        PgError::NotPermitted {
            pids: denied,
            superuser_owned,
            terminated,
            ..
        } => {
            assert_eq!(denied, vec![dba.pid]);
            assert!(superuser_owned);
            assert_eq!(terminated.pids, pids(&apps));
        }
        other => panic!("expected NotPermitted, got {other:?}"),
    }
    wait_gone(&observer, &pids(&apps)).await;
    assert!(dba.alive().await);
}

/// A role that cannot see other roles' sessions would count 0 and terminate nothing: both
/// are reported as errors naming pg_read_all_stats instead.
#[tokio::test]
async fn a_role_blind_to_other_sessions_gets_unknown_not_zero() {
    let cluster = Cluster::start().await;
    let apps = cluster.open(2, "app", "postgres", "web").await;
    let weak = cluster.source("weak");
    for m in [
        PostgresMetric::ConnectionsUsedPercent,
        PostgresMetric::IdleConnections,
        PostgresMetric::IdleInTransaction,
    ] {
        let reason = weak.read(&metric(m, None)).await.expect_err("hidden sessions");
        assert!(
            reason.contains("`weak`") && reason.contains("pg_read_all_stats"),
            "{reason}"
        );
    }
    let err = weak
        .terminate_idle(&idle_for(Duration::ZERO))
        .await
        .expect_err("hidden sessions");
    assert!(matches!(err, PgError::StatsHidden { .. }), "{err:?}");
    for conn in &apps {
        assert!(conn.alive().await);
    }
}

/// `limit` caps each action, oldest first; the next action takes the next oldest.
#[tokio::test]
async fn limit_caps_the_count_oldest_first() {
    let cluster = Cluster::start().await;
    let observer = cluster.connect("observer", "postgres", "observer").await;
    let source = cluster.source("automaton");
    let age = Duration::from_millis(500);
    let old = cluster.open(5, "app", "postgres", "web").await;
    wait_idle_at_least(&observer, &pids(&old), age).await;
    touch(&observer).await;

    let two = TerminateFilter {
        limit: 2,
        ..idle_for(age)
    };
    let first = source.terminate_idle(&two).await.expect("terminate");
    assert_eq!(first.pids, pids(&old[..2]));
    // A signalled backend stays in pg_stat_activity, idle, until it has exited.
    wait_gone(&observer, &first.pids).await;
    let second = source.terminate_idle(&two).await.expect("terminate");
    assert_eq!(second.pids, pids(&old[2..4]));
    let none = TerminateFilter { limit: 0, ..two };
    assert_eq!(source.terminate_idle(&none).await.expect("terminate").count, 0);
    wait_gone(&observer, &pids(&old[..4])).await;
    assert!(old[4].alive().await);
}

/// Each filter alone, then all three together, selects exactly its connection.
#[tokio::test]
async fn filters_by_database_user_and_application_name() {
    let cluster = Cluster::start().await;
    let observer = cluster.connect("observer", "postgres", "observer").await;
    let dba = cluster.connect("postgres", "postgres", "setup").await;
    dba.client
        .batch_execute("CREATE DATABASE other")
        .await
        .expect("create database");
    let source = cluster.source("automaton");
    let age = Duration::from_millis(500);
    let web = cluster.connect("app", "postgres", "web").await;
    let other_db = cluster.connect("app", "other", "web").await;
    let app2 = cluster.connect("app2", "postgres", "web").await;
    let worker = cluster.connect("app", "postgres", "worker").await;
    wait_idle_at_least(&observer, &[web.pid, other_db.pid, app2.pid, worker.pid], age).await;

    let some = |s: &str| Some(s.to_owned());
    let cases = [
        (
            TerminateFilter {
                database: some("other"),
                ..idle_for(age)
            },
            &other_db,
        ),
        (
            TerminateFilter {
                user: some("app2"),
                ..idle_for(age)
            },
            &app2,
        ),
        (
            TerminateFilter {
                application_name: some("worker"),
                ..idle_for(age)
            },
            &worker,
        ),
        (
            TerminateFilter {
                database: some("postgres"),
                user: some("app"),
                application_name: some("web"),
                ..idle_for(age)
            },
            &web,
        ),
    ];
    for (spec, expected) in cases {
        touch(&observer).await;
        touch(&dba).await;
        let done = source.terminate_idle(&spec).await.expect("terminate");
        assert_eq!(done.pids, vec![expected.pid], "{spec:?}");
    }
    assert!(dba.alive().await && observer.alive().await);
}

/// The daemon end to end: a rule on the `postgres` signal terminates the old idle
/// connections through the same engine, guard, decision line and metrics as every action.
#[tokio::test]
async fn a_rule_terminates_idle_connections_through_the_daemon() {
    use automaton::core::decision::Verdict;
    use automaton::runtime::daemon::Daemon;
    use automaton::settings::Settings;

    let mut cluster = Cluster::start().await;
    let observer = cluster.connect("observer", "postgres", "observer").await;
    let age = Duration::from_millis(500);
    let old = cluster.open(3, "app", "postgres", "web").await;
    wait_idle_at_least(&observer, &pids(&old), age).await;
    touch(&observer).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = "rules:\n  - name: idle\n    priority: critical\n    \
                 signal: {postgres: {metric: idle_connections, idle_for: 500ms}}\n    \
                 when: \">= 3\"\n    \
                 action: {terminate_idle_connections: {idle_for: 500ms, limit: 10}}\n";
    std::fs::write(dir.path().join("pg.yaml"), rules).expect("rules");
    let mut daemon = Daemon::new(Settings::defaults(), dir.path().to_path_buf()).expect("daemon");
    daemon.attach_postgres(cluster.source("automaton"));

    let decisions = daemon.tick().await;
    let d = &decisions[0];
    assert_eq!(
        (d.value, d.decision, d.success),
        (Some(3.0), Verdict::Act, Some(true)),
        "{d:?}"
    );
    let change = d.change.as_ref().expect("a change");
    assert_eq!(change["count"], 3);
    assert_eq!(change["pids"], serde_json::json!(pids(&old)));
    wait_gone(&observer, &pids(&old)).await;
    assert!(observer.alive().await, "a recently active connection survives");
    let metrics = daemon.metrics.encode();
    let acted = r#"healing_actions_total{action="terminate_idle_connections",dry_run="false",rule="idle",success="true"} 1"#;
    assert!(metrics.contains(acted), "{metrics}");
    assert!(
        metrics.contains(r#"automaton_signal_source_up{source="postgres"} 1"#),
        "{metrics}"
    );

    // The server stopped mid-run: unknown, the source down, no action; started again: the
    // same daemon reads it again.
    drop(observer);
    cluster.stop();
    let down = daemon.tick().await.remove(0);
    assert_eq!(
        (down.value, down.reason),
        (None, Some(automaton::core::decision::SkipReason::Unknown)),
        "{down:?}"
    );
    assert!(daemon
        .metrics
        .encode()
        .contains(r#"automaton_signal_source_up{source="postgres"} 0"#));
    cluster.start_again();
    let deadline = Instant::now() + WAIT;
    let back = loop {
        let d = daemon.tick().await.remove(0);
        if d.value.is_some() || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        back.value.is_some(),
        "the daemon reads PostgreSQL again: {back:?}"
    );
    assert_eq!(back.decision, Verdict::None, "no idle connections left: {back:?}");
    assert!(daemon
        .metrics
        .encode()
        .contains(r#"automaton_signal_source_up{source="postgres"} 1"#));
}

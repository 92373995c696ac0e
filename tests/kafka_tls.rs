//! `kafka_lag` over TLS (`KAFKA_SECURITY_PROTOCOL=ssl`) against a `nisshi` broker that only
//! accepts TLS, with throw-away certificates made by `openssl`: the lag is read when the CA
//! vouches for the broker's certificate, and never from a broker another CA signed.

mod kafka_support;
mod tls_support;

use std::path::Path;
use std::time::Duration;

use automaton::clients::kafka::{KafkaSettings, KafkaSource, LagQuery, OffsetReset};
use kafka_support::Broker;

fn over_tls(broker: &Broker, ca: &Path) -> KafkaSource {
    let vars = [
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_SECURITY_PROTOCOL", "ssl".to_owned()),
        ("KAFKA_SSL_CA_LOCATION", ca.display().to_string()),
        ("KAFKA_TIMEOUT", "3s".to_owned()),
    ];
    let settings = KafkaSettings::from_vars(vars.map(|(k, v)| (k.to_owned(), v)))
        .expect("valid settings")
        .expect("configured");
    KafkaSource::new(settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_read_over_tls_only_from_a_broker_the_ca_vouches_for() {
    let certs = tempfile::tempdir().expect("a temp dir");
    tls_support::certificates(certs.path());
    let broker = Broker::start_tls(certs.path());
    broker.create_topic("orders", 2).await;
    broker.produce("orders", 0, 10);
    broker.produce("orders", 1, 5);
    broker.commit("billing", "orders", &[(0, 4), (1, 5)]);
    let orders = LagQuery {
        group: "billing".into(),
        topic: Some("orders".into()),
        offset_reset: OffsetReset::Latest,
    };

    let lags = over_tls(&broker, &certs.path().join("ca.pem"))
        .collect_lags(&orders)
        .await
        .expect("lag over TLS");
    assert_eq!(lags.len(), 1);
    assert_eq!(lags[0].lag, 6);
    let per_partition: Vec<(i32, i64)> = lags[0].partitions.iter().map(|p| (p.partition, p.lag)).collect();
    assert_eq!(per_partition, [(0, 6), (1, 0)]);

    // A certificate another CA signed: refused at the handshake, the lag unknown.
    let err = over_tls(&broker, &certs.path().join("other-ca.pem"))
        .collect_lags(&orders)
        .await
        .expect_err("another CA")
        .to_string();
    let bootstrap = broker.bootstrap();
    assert!(
        err.starts_with(&format!(
            "Kafka at {bootstrap}: reading metadata failed: TLS to {bootstrap}: "
        )),
        "{err}"
    );
    assert!(err.contains("UnknownIssuer"), "{err}");

    // Plain text to a listener that only speaks TLS: an error within the timeout.
    let plain = KafkaSource::new(KafkaSettings::new(bootstrap.clone(), Duration::from_secs(2)));
    let started = std::time::Instant::now();
    let err = plain
        .collect_lags(&orders)
        .await
        .expect_err("plain text")
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.starts_with(&format!("Kafka at {bootstrap}: reading metadata failed")),
        "{err}"
    );
}

//! `kafka_lag` over SASL (`KAFKA_SECURITY_PROTOCOL=sasl_plaintext`) against a `nisshi`
//! broker that requires a SCRAM login: the lag is read with the user's password, for both
//! SCRAM mechanisms, and a wrong password is an error that never shows a password.

mod kafka_support;

use std::time::Duration;

use automaton::clients::kafka::{KafkaSettings, KafkaSource, LagQuery, OffsetReset};
use kafka_support::Broker;

fn logged_in(broker: &Broker, mechanism: &str, password: &str) -> KafkaSource {
    let vars = [
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext".to_owned()),
        ("KAFKA_SASL_MECHANISM", mechanism.to_owned()),
        ("KAFKA_SASL_USERNAME", "lag-reader".to_owned()),
        ("KAFKA_SASL_PASSWORD", password.to_owned()),
        ("KAFKA_TIMEOUT", "5s".to_owned()),
    ];
    let settings = KafkaSettings::from_vars(vars.map(|(k, v)| (k.to_owned(), v)))
        .expect("valid settings")
        .expect("configured");
    KafkaSource::new(settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_read_after_a_scram_login_and_a_wrong_password_is_refused() {
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let broker = Broker::start_sasl(dir.path(), mechanism, "lag-reader", "correct horse");
        broker.create_topic("orders", 2).await;
        broker.produce("orders", 0, 12);
        broker.commit("billing", "orders", &[(0, 2)]);
        let orders = LagQuery {
            group: "billing".into(),
            topic: Some("orders".into()),
            offset_reset: OffsetReset::Latest,
        };
        let lags = logged_in(&broker, mechanism, "correct horse")
            .collect_lags(&orders)
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        assert_eq!(lags[0].lag, 10, "{mechanism}");

        let err = logged_in(&broker, mechanism, "battery staple")
            .collect_lags(&orders)
            .await
            .expect_err("a wrong password")
            .to_string();
        let bootstrap = broker.bootstrap();
        assert!(
            err.starts_with(&format!(
                "Kafka at {bootstrap}: reading metadata failed: SASL authentication at {bootstrap} failed"
            )),
            "{mechanism}: {err}"
        );
        assert!(!err.contains("battery") && !err.contains("horse"), "{err}");
        // Plain text to a broker that requires a login: refused, never a lag.
        let anonymous = KafkaSource::new(KafkaSettings::new(bootstrap, Duration::from_secs(3)));
        assert!(anonymous.collect_lags(&orders).await.is_err(), "{mechanism}");
    }
}

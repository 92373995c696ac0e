//! PostgreSQL over TLS, against a local server that refuses plain text, with throw-away
//! certificates made here by `openssl`: `verify-full` connects when the CA and the name
//! match and refuses a certificate from another CA or for another name; `verify-ca` (and
//! `require`) accept another name but never another CA; `disable` is refused by the server.

mod pg;
mod tls_support;

use std::path::Path;

use automaton::clients::pg::{ActivityQuery, PgSource, PostgresMetric};
use pg::Cluster;
use tls_support::certificates;

async fn read(cluster: &Cluster, host: &str, mode: &str, ca: Option<&Path>) -> Result<(), String> {
    let mut vars = vec![
        ("POSTGRES_HOST", host.to_owned()),
        ("POSTGRES_PORT", cluster.port.to_string()),
        ("POSTGRES_DB", "postgres".to_owned()),
        ("POSTGRES_USER", "automaton".to_owned()),
        ("POSTGRES_SSLMODE", mode.to_owned()),
    ];
    if let Some(ca) = ca {
        vars.push(("POSTGRES_SSLROOTCERT", ca.display().to_string()));
    }
    let source = PgSource::new(cluster.settings_from(&vars));
    let query = ActivityQuery {
        metric: PostgresMetric::ConnectionsUsedPercent,
        idle_for: None,
    };
    source
        .collect(&query)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn tls_connects_only_to_the_server_it_can_verify() {
    let certs = tempfile::tempdir().expect("a temp dir");
    certificates(certs.path());
    let cluster = Cluster::start_tls(certs.path()).await;
    let ca = certs.path().join("ca.pem");
    let other = certs.path().join("other-ca.pem");

    read(&cluster, "localhost", "verify-full", Some(&ca))
        .await
        .unwrap_or_else(|e| panic!("verify-full with the right CA and name: {e}\n{}", cluster.log()));
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca and
    // require (which verify the chain only) accept.
    let err = read(&cluster, "127.0.0.1", "verify-full", Some(&ca))
        .await
        .expect_err("another name");
    assert!(err.contains("cannot connect"), "{err}");
    for mode in ["verify-ca", "require"] {
        read(&cluster, "127.0.0.1", mode, Some(&ca))
            .await
            .unwrap_or_else(|e| panic!("{mode} with the right CA: {e}"));
    }
    // Another CA is never accepted, whatever the mode.
    for mode in ["verify-full", "verify-ca", "require"] {
        let err = read(&cluster, "localhost", mode, Some(&other))
            .await
            .expect_err("another CA");
        assert!(err.contains("cannot connect"), "{mode}: {err}");
    }
    // Plain text is rejected by this server.
    let err = read(&cluster, "localhost", "disable", None)
        .await
        .expect_err("plain text");
    assert!(err.contains("cannot connect"), "{err}");
}

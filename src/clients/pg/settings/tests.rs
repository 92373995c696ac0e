//! Tests of the settings parsers: every value form, every error named.

use super::*;

const SECRET: &str = "s3cr3t-P@ss";

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn settings(pairs: &[(&str, &str)]) -> PgSettings {
    match PgSettings::from_vars(vars(pairs)) {
        Ok(Some(s)) => s,
        other => panic!("expected settings, got {other:?}"),
    }
}

fn errors(pairs: &[(&str, &str)]) -> String {
    match PgSettings::from_vars(vars(pairs)) {
        Err(e) => e.to_string(),
        Ok(s) => panic!("expected an error, got {s:?}"),
    }
}

#[test]
fn nothing_configured_is_none() {
    let none = PgSettings::from_vars(vars(&[("POSTGRES_CONN_THRESHOLD", "85"), ("HOME", "/root")]));
    assert!(matches!(none, Ok(None)), "{none:?}");
    let none = PgSettings::from_vars(vars(&[("POSTGRES_HOST", ""), ("DATABASE_URL", " ")]));
    assert!(matches!(none, Ok(None)), "{none:?}");
}

#[test]
fn variables_with_defaults() {
    let s = settings(&[("POSTGRES_HOST", "db.internal")]);
    assert_eq!(s.target(), "db.internal:5432/postgres");
    assert_eq!(s.user(), "postgres");
    assert_eq!(s.database(), None);
    assert_eq!(s.connect_timeout(), Duration::from_secs(5));
    assert_eq!(s.config().get_application_name(), Some("automaton"));
    assert_eq!(s.config().get_connect_timeout(), Some(&Duration::from_secs(5)));

    let s = settings(&[
        ("POSTGRES_HOST", "10.0.0.5"),
        ("POSTGRES_PORT", "6432"),
        ("POSTGRES_DB", "orders"),
        ("POSTGRES_USER", "healer"),
        ("POSTGRES_PASSWORD", SECRET),
        ("POSTGRES_CONNECT_TIMEOUT", "1500ms"),
    ]);
    assert_eq!(s.target(), "10.0.0.5:6432/orders");
    assert_eq!(s.user(), "healer");
    assert_eq!(s.host(), "10.0.0.5");
    assert_eq!(s.config().get_password(), Some(SECRET.as_bytes()));
    assert_eq!(s.connect_timeout(), Duration::from_millis(1500));
    assert_eq!(
        settings(&[("POSTGRES_HOST", "h"), ("POSTGRES_CONNECT_TIMEOUT", "2")]).connect_timeout(),
        Duration::from_secs(2)
    );
}

#[test]
fn url_with_password_from_a_secret() {
    let s = settings(&[(
        "DATABASE_URL",
        "postgres://healer@db:5433/orders?application_name=heal",
    )]);
    assert_eq!(s.target(), "db:5433/orders");
    assert!(!s.has_password());
    assert_eq!(s.config().get_application_name(), Some("heal"));
    let s = settings(&[
        ("DATABASE_URL", "postgresql://healer@db/orders"),
        ("POSTGRES_PASSWORD", SECRET),
    ]);
    assert_eq!(s.config().get_password(), Some(SECRET.as_bytes()));
    assert_eq!(s.to_string(), "postgres://healer:***@db:5432/orders");
}

#[test]
fn every_problem_is_reported_with_its_variable() {
    let text = errors(&[
        ("POSTGRES_HOST", "db"),
        ("POSTGRES_PORT", "none"),
        ("POSTGRES_CONNECT_TIMEOUT", "0s"),
    ]);
    assert!(text.contains("POSTGRES_PORT=\"none\""), "{text}");
    assert!(text.contains("POSTGRES_CONNECT_TIMEOUT=\"0s\""), "{text}");
    let text = errors(&[("POSTGRES_PASSWORD", SECRET), ("POSTGRES_DB", "x")]);
    assert!(
        text.contains("POSTGRES_DB, POSTGRES_PASSWORD set without POSTGRES_HOST or DATABASE_URL"),
        "{text}"
    );
    let text = errors(&[("DATABASE_URL", "postgres://a@b/c"), ("POSTGRES_HOST", "b")]);
    assert!(text.contains("both set"), "{text}");
    let text = errors(&[("DATABASE_URL", "postgres://a@b/c"), ("POSTGRES_USER", "b")]);
    assert!(
        text.contains("POSTGRES_USER is set together with DATABASE_URL"),
        "{text}"
    );
    // `prefer` would fall back to plain text on a failed handshake, silently.
    let text = errors(&[("DATABASE_URL", "postgres://a@b/c?sslmode=prefer")]);
    assert!(text.contains("POSTGRES_SSLMODE: sslmode `prefer`"), "{text}");
    let text = errors(&[
        ("POSTGRES_HOST", "b"),
        ("POSTGRES_SSLROOTCERT", "/no/such/ca.pem"),
        ("POSTGRES_SSLMODE", "verify-full"),
    ]);
    assert!(
        text.contains("POSTGRES_SSLROOTCERT=/no/such/ca.pem: no such file"),
        "{text}"
    );
    let text = errors(&[("POSTGRES_HOST", "b"), ("POSTGRES_SSLROOTCERT", "/etc/hostname")]);
    assert!(text.contains("sslmode is `disable`"), "{text}");
    let text = errors(&[("DATABASE_URL", "postgres:///c")]);
    assert!(text.contains("no host"), "{text}");
}

#[test]
fn the_password_never_shows() {
    let url = format!("postgres://healer:{SECRET}@db:5432/orders");
    let s = settings(&[("DATABASE_URL", &url)]);
    for shown in [format!("{s:?}"), format!("{s:#?}"), s.to_string(), s.target()] {
        assert!(!shown.contains(SECRET) && !shown.contains("s3cr3t"), "{shown}");
    }
    assert!(format!("{s:?}").contains("password: Some(\"***\")"), "{s:?}");
    let s = settings(&[("POSTGRES_HOST", "db"), ("POSTGRES_PASSWORD", SECRET)]);
    assert!(!format!("{s:?}{s}").contains("s3cr3t"));

    // Invalid values are echoed redacted.
    for bad in [
        format!("mysql://healer:{SECRET}@db/orders"),
        format!("postgres://healer:{SECRET}@db:notaport/orders"),
        format!("postgres://healer:{SECRET}@db/orders?connect_timeout=never"),
        format!("postgres://healer@db/orders?password={SECRET}&sslmode=require&keepalives=maybe"),
    ] {
        let text = errors(&[("DATABASE_URL", &bad)]);
        assert!(text.contains("DATABASE_URL="), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    let text = errors(&[
        ("DATABASE_URL", "postgres://healer:pw@db/c"),
        ("POSTGRES_PASSWORD", SECRET),
    ]);
    assert!(!text.contains("s3cr3t") && !text.contains(":pw@"), "{text}");
}

#[test]
fn tls_comes_from_the_url_or_the_variables() {
    use crate::clients::pg::SslMode;
    let s = settings(&[(
        "DATABASE_URL",
        "postgres://a@db/c?sslmode=verify-full&application_name=x",
    )]);
    assert_eq!(s.tls().mode, SslMode::VerifyFull);
    assert_eq!(
        s.config().get_application_name(),
        Some("x"),
        "the other parameters are kept"
    );
    let s = settings(&[("DATABASE_URL", "postgres://a@db/c?sslmode=require")]);
    assert_eq!(s.tls().mode, SslMode::VerifyCa, "require verifies the chain");
    let s = settings(&[("POSTGRES_HOST", "db"), ("POSTGRES_SSLMODE", "verify-ca")]);
    assert_eq!(s.tls().mode, SslMode::VerifyCa);
    let s = settings(&[("POSTGRES_HOST", "db")]);
    assert_eq!(s.tls().mode, SslMode::Disable, "plain text unless asked");
}

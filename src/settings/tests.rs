//! Tests of the settings parsers: every value form, every error named.

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_and_seed_values() {
    let s = Settings::from_vars(vars(&[
        ("CHECK_INTERVAL", "60"),
        ("ACTION_BUDGET", "5/1h"),
        ("MAX_MEMORY", "4Gi"),
    ]))
    .unwrap();
    assert_eq!(s.check_interval, Duration::from_secs(60));
    assert_eq!((s.budget_limit, s.budget_window), (5, Duration::from_secs(3600)));
    assert_eq!(s.limits.max_memory, Bytes(4 << 30));
    assert_eq!(s.limits.max_replicas, 10);
    let s = Settings::from_vars(vars(&[("CHECK_INTERVAL", "15s")])).unwrap();
    assert_eq!(s.stale_after(), Duration::from_secs(45));
}

#[test]
fn every_invalid_value_is_named_with_its_form() {
    let err = Settings::from_vars(vars(&[
        ("CHECK_INTERVAL", "soon"),
        ("DRY_RUN", "maybe"),
        ("ACTION_BUDGET", "10"),
        ("LISTEN_ADDR", "8000"),
        ("LOG_FORMAT", "xml"),
    ]))
    .unwrap_err();
    let text = err.to_string();
    for name in [
        "CHECK_INTERVAL=\"soon\"",
        "DRY_RUN",
        "ACTION_BUDGET",
        "LISTEN_ADDR",
        "LOG_FORMAT",
    ] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
    assert_eq!(err.0.len(), 5);
}

#[test]
fn action_timeout_is_a_bounded_duration() {
    assert_eq!(
        Settings::from_vars(vars(&[])).unwrap().action_timeout,
        Duration::from_secs(30)
    );
    let s = Settings::from_vars(vars(&[("ACTION_TIMEOUT", "45s")])).unwrap();
    assert_eq!(s.action_timeout, Duration::from_secs(45));
    for bad in ["0s", "500ms", "11m", "soon", "30"] {
        let err = Settings::from_vars(vars(&[("ACTION_TIMEOUT", bad)])).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "ACTION_TIMEOUT={bad:?}: expected a duration from `1s` to `10m`"
            )),
            "{bad}: {err}"
        );
    }
}

#[test]
fn out_of_range_numbers_and_durations_are_errors_never_panics() {
    let names = [
        "CHECK_INTERVAL",
        "ACTION_BUDGET",
        "MIN_REPLICAS",
        "MAX_REPLICAS",
        "MAX_MEMORY",
        "LEASE_DURATION",
        "BREAKER_FAILURES",
        "BREAKER_COOL_OFF",
        "ACTION_TIMEOUT",
    ];
    let extremes = [
        "18446744073709551615",
        "18446744073709551616",
        "18446744073709551615s",
        "99999999999999999999d",
        "4294967295/10m",
        "1/18446744073709551615ms",
        "9223372036854775807Gi",
        "-1",
        "1e308",
        "NaN",
    ];
    for name in names {
        for value in extremes {
            let result = std::panic::catch_unwind(|| Settings::from_vars(vars(&[(name, value)])));
            match result {
                Err(_) => panic!("{name}={value} panics"),
                Ok(Ok(_)) => panic!("{name}={value} is accepted"),
                Ok(Err(e)) => assert!(e.to_string().contains(name), "{name}={value}: {e}"),
            }
        }
    }
    // The bounds themselves are valid.
    let s = Settings::from_vars(vars(&[
        ("CHECK_INTERVAL", "3600"),
        ("ACTION_BUDGET", "10000/7d"),
        ("MAX_REPLICAS", "10000"),
        ("MAX_MEMORY", "16Ti"),
        ("LEASE_DURATION", "3600"),
        ("BREAKER_FAILURES", "1000"),
        ("BREAKER_COOL_OFF", "1h"),
    ]))
    .expect("the bounds are valid");
    assert_eq!(s.check_interval * 3, Duration::from_secs(10_800));
}

#[test]
fn watch_namespaces_is_a_list_or_a_star() {
    assert_eq!(Settings::from_vars(vars(&[])).unwrap().watch_namespaces, None);
    let s = Settings::from_vars(vars(&[("WATCH_NAMESPACES", "team-b, team-a")])).unwrap();
    assert_eq!(
        s.watch_namespaces.map(|n| n.to_string()).as_deref(),
        Some("team-a,team-b")
    );
    let s = Settings::from_vars(vars(&[("WATCH_NAMESPACES", "*")])).unwrap();
    assert_eq!(s.watch_namespaces, Some(Namespaces::All));
    let err = Settings::from_vars(vars(&[("WATCH_NAMESPACES", "Team_A")])).unwrap_err();
    assert!(
        err.to_string().contains(
            "WATCH_NAMESPACES=\"Team_A\": expected `*` (every namespace) or a comma-separated list"
        ),
        "{err}"
    );
}

#[test]
fn a_shard_splits_watch_namespaces_and_needs_it() {
    let s = Settings::from_vars(vars(&[("WATCH_NAMESPACES", "*"), ("SHARD", "1/3")])).unwrap();
    assert_eq!(s.shard, Some(Shard { index: 1, count: 3 }));
    let err = Settings::from_vars(vars(&[("SHARD", "1/3")])).unwrap_err();
    assert!(err.to_string().contains("set WATCH_NAMESPACES"), "{err}");
    let err = Settings::from_vars(vars(&[("WATCH_NAMESPACES", "*"), ("SHARD", "3/3")])).unwrap_err();
    assert!(
        err.to_string().contains("SHARD=\"3/3\": expected `INDEX/COUNT`"),
        "{err}"
    );
}

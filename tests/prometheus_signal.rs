//! The `prometheus` signal against a real Prometheus (Debian's `prometheus`, started here on
//! 127.0.0.1) scraping a small exporter this test serves every second: the answer's series
//! become readings with their workload as `owner`; errors, NaN and range vectors are unknown
//! with the reason; and end to end through the binary and the fake API server, a series
//! crossing its threshold in Prometheus gives exactly one scale request, for its workload.

mod common;

use std::time::{Duration, Instant};

use automaton::signals::{Prometheus, Signal, Sources};
use common::prometheus::{Exporter, Prometheus as Server};
use common::scenario::deployments;
use common::{eventually, free_port, Automaton, FakeKube};

/// The exposition of `app_memory_used_percent{deployment=…}` gauges.
fn gauges(values: &[(&str, f64)]) -> String {
    let mut body = String::from("# TYPE app_memory_used_percent gauge\n");
    for (deployment, v) in values {
        body.push_str(&format!(
            "app_memory_used_percent{{deployment=\"{deployment}\"}} {v}\n"
        ));
    }
    body
}

fn spec(url: &str, query: &str) -> Prometheus {
    serde_yaml::from_str(&format!(
        "{{url: \"{url}\", query: \"{query}\", target: \"deployment/{{{{deployment}}}}\"}}"
    ))
    .expect("a prometheus signal")
}

#[tokio::test]
async fn series_become_readings_and_errors_become_reasons() {
    let exporter = Exporter::start(&gauges(&[("api", 91.0), ("web", 10.0)]));
    let prometheus = Server::start(&exporter);
    let sources = Sources::new(Duration::from_secs(5), reqwest::Client::new());
    let signal = spec(&prometheus.url(), "app_memory_used_percent");
    let series = eventually_async(&sources, &signal).await;
    let owners: Vec<(&str, f64)> = series
        .iter()
        .map(|s| (s.labels["owner"].as_str(), s.value))
        .collect();
    assert_eq!(owners, [("deployment/api", 91.0), ("deployment/web", 10.0)]);

    let unknown = |query: &str| {
        let mut s = spec(&prometheus.url(), query);
        s.target = None;
        s
    };
    for (query, why) in [
        ("0/0", "NaN"),
        ("app_memory_used_percent[1m]", "range vector"),
        ("sum(", "bad_data"),
    ] {
        let err = unknown(query)
            .collect(&sources)
            .await
            .expect_err(query)
            .to_string();
        assert!(err.contains(why), "{query}: {err}");
    }
    // A label the target needs and the result lacks: unknown, never a guess.
    let err = spec(&prometheus.url(), "sum(app_memory_used_percent)")
        .collect(&sources)
        .await
        .expect_err("no deployment label")
        .to_string();
    assert!(err.contains("no label `deployment`"), "{err}");
    // Nobody listening: unknown, with the reason.
    let down = spec(&format!("http://127.0.0.1:{}", free_port()), "up");
    let err = down.collect(&sources).await.expect_err("down").to_string();
    assert!(err.contains("cannot connect"), "{err}");
}

/// Collects until the first scrape has landed.
async fn eventually_async(sources: &Sources, signal: &Prometheus) -> Vec<automaton::core::series::Series> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(series) = signal.collect(sources).await {
            if series.len() == 2 {
                return series;
            }
        }
        assert!(Instant::now() < deadline, "no series from Prometheus");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_series_over_its_threshold_in_prometheus_scales_its_workload_once() {
    let exporter = Exporter::start(&gauges(&[("api", 91.0), ("web", 10.0)]));
    let prometheus = Server::start(&exporter);
    let fake = FakeKube::start(&deployments(&["api", "web"]));
    let rules = fake.dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(
        rules.join("memory.yaml"),
        format!(
            "rules:\n  - name: memory-high\n    priority: critical\n    signal:\n      prometheus:\n        url: {}\n        query: app_memory_used_percent\n        target: \"deployment/{{{{deployment}}}}\"\n    when: \"> 85\"\n    action: {{scale: {{target: owner, step: 1, max: 5}}}}\n    cooldown: 1h\n",
            prometheus.url()
        ),
    )
    .expect("rules");
    let a = Automaton::start(&fake.kubeconfig, &rules, "automaton-a", &[]);
    let patch_of = |name: &str| {
        let path = format!("/apis/apps/v1/namespaces/prod/deployments/{name}");
        move |r: &serde_json::Value| r["method"] == "PATCH" && r["path"] == path
    };
    let patch = fake.wait_for("the scale of api", Duration::from_secs(60), patch_of("api"));
    assert_eq!(
        patch["body"]["spec"],
        serde_json::json!({"replicas": 2}),
        "{patch}"
    );

    // web crosses its threshold in Prometheus: from the exporter's change to the request.
    let crossed = Instant::now();
    exporter.set(&gauges(&[("api", 91.0), ("web", 97.0)]));
    fake.wait_for("the scale of web", Duration::from_secs(30), patch_of("web"));
    let latency = crossed.elapsed();
    eprintln!(
        "series over its threshold in the exporter → the PATCH: {latency:?} (scrape 1 s, CHECK_INTERVAL 1 s)"
    );

    // More ticks, still over: the cooldown holds, one request each.
    let checks = || {
        a.metric(r#"healing_checks_total{rule="memory-high"}"#)
            .unwrap_or(0.0)
    };
    let seen = checks();
    eventually("three more ticks", Duration::from_secs(30), || {
        (checks() >= seen + 3.0).then_some(())
    });
    let requests = fake.requests();
    for name in ["api", "web"] {
        let n = requests.iter().filter(|r| patch_of(name)(r)).count();
        assert_eq!(n, 1, "{name}: exactly one scale");
    }
    assert_eq!(
        a.metric(r#"automaton_signal_source_up{source="prometheus"}"#),
        Some(1.0)
    );
}

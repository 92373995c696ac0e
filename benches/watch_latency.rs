//! Scripted measurement (not criterion: each sample needs a live watch): the time from a pod
//! watch event arriving to the action's first API requests, through the whole binary and the
//! fake API server of ../shared/tools/fakekube.py, which logs both on one monotonic clock.
//! `cargo bench --bench watch_latency` measures 100 OOM kills of 100 Deployments, 200 ms
//! apart; under `cargo test` it only checks that the harness works, on 3.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::scenario::{oom_scenario, OOM_RULES};
use common::{Automaton, FakeKube};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = if measuring { 100 } else { 3 };
    let fake = FakeKube::start(&oom_scenario(n, 2.0, 0.2));
    let rules = fake.dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(rules.join("oom.yaml"), OOM_RULES).expect("rules");
    // A long interval: only the watch's push can explain a fast action.
    let env = [("CHECK_INTERVAL", "60s"), ("ACTION_BUDGET", "1000/1m")];
    let automaton = Automaton::start(&fake.kubeconfig, &rules, "bench", &env);

    let patched = |r: &serde_json::Value| {
        r["method"] == "PATCH"
            && r["path"]
                .as_str()
                .is_some_and(|p| p.contains("/deployments/app-"))
    };
    common::eventually("every kill healed", Duration::from_secs(120), || {
        (fake.requests().iter().filter(|r| patched(r)).count() >= n).then_some(())
    });
    let log = fake.requests();
    if let Some(keep) = std::env::var_os("WATCH_LATENCY_LOG") {
        // For a closer look at where the time goes: every request and timeline step.
        std::fs::copy(&fake.log, keep).expect("copy the request log");
        std::fs::copy(&automaton.stderr, "/tmp/watch_latency_automaton.log").ok();
    }
    let mut killed: HashMap<String, f64> = HashMap::new();
    for r in &log {
        if let (Some(obj), Some(t)) = (r["object"].as_str(), r["t"].as_f64()) {
            // pods/prod/app-7-5d8f7-x7 → app-7
            if let Some(name) = obj.strip_prefix("pods/prod/") {
                let deployment = name.split("-5d8f7").next().unwrap_or(name).to_owned();
                killed.insert(deployment, t);
            }
        }
    }
    let (mut first, mut write) = (Vec::new(), Vec::new());
    for (deployment, t0) in &killed {
        let path = format!("/apis/apps/v1/namespaces/prod/deployments/{deployment}");
        let after = |pred: &dyn Fn(&serde_json::Value) -> bool| {
            log.iter()
                .filter(|r| {
                    r["path"] == path.as_str() && r["t"].as_f64().is_some_and(|t| t >= *t0) && pred(r)
                })
                .filter_map(|r| r["t"].as_f64())
                .fold(f64::INFINITY, f64::min)
        };
        first.push((after(&|_| true) - t0) * 1000.0);
        write.push((after(&|r| r["method"] == "PATCH") - t0) * 1000.0);
    }
    assert_eq!(first.len(), n, "every kill produced requests");
    drop(automaton);
    for (what, samples) in [("first API request", &mut first), ("the PATCH", &mut write)] {
        samples.sort_by(f64::total_cmp);
        println!(
            "watch event -> {what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
            samples.len(),
            percentile(samples, 50.0),
            percentile(samples, 99.0),
            samples[samples.len() - 1]
        );
    }
}

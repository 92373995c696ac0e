//! One engine tick over 10 000 (rule, target) pairs: 1 000 rules, each with 10 owner
//! targets from a pod signal, a mix of inactive, pending and firing (in cooldown), which is
//! the steady state of a busy cluster. Target: ≤ 2 ms on one core.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use automaton::core::engine::EngineConfig;
use automaton::core::series::{Reading, Series};
use automaton::core::world::NoWorld;
use automaton::rules::load_texts;
use automaton::rules::Engine;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const RULES: usize = 1_000;
const TARGETS: usize = 10;

fn engine() -> Engine {
    let mut yaml = String::from("rules:\n");
    for i in 0..RULES {
        let _ = write!(
            yaml,
            "  - name: rule-{i}\n    priority: high\n    signal: {{pod_restarts: {{selector: app=a{i}, window: 15m}}}}\n    when: \"> 3\"\n    for: 1m\n    action: {{restart: {{target: owner}}}}\n"
        );
    }
    let set = load_texts(&[(Path::new("bench.yaml"), yaml.as_str())], &|_| None).expect("valid rules");
    let config = EngineConfig {
        budget_limit: 1_000_000,
        executable: automaton::core::engine::Executable::All,
        ..EngineConfig::default()
    };
    Engine::new(Arc::new(set), config)
}

fn readings(at: Duration) -> Vec<Reading> {
    (0..RULES)
        .map(|r| Reading {
            at,
            result: Ok((0..TARGETS)
                .map(|t| {
                    let mut s = Series::single(((r + t) % 7) as f64);
                    s.labels.insert("owner".into(), format!("deployment/app-{r}-{t}"));
                    s.labels.insert("pod".into(), format!("app-{r}-{t}-abcde"));
                    s
                })
                .collect()),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut engine = engine();
    // Warm up into the steady state: targets known, some firing and in cooldown.
    let mut now = Duration::ZERO;
    for _ in 0..6 {
        for (i, r) in readings(now).into_iter().enumerate() {
            engine.observe(i, r);
        }
        assert_eq!(engine.evaluate(now, &NoWorld).len(), RULES * TARGETS);
        now += Duration::from_secs(15);
    }
    let fresh = readings(now);
    let mut buffer = Vec::new();
    c.bench_function("engine tick, 10k rule x target pairs", |b| {
        b.iter_batched(
            || fresh.clone(),
            |batch| {
                for (i, r) in batch.into_iter().enumerate() {
                    engine.observe(i, r);
                }
                engine.evaluate_into(now, &NoWorld, &mut buffer);
                black_box(&buffer);
            },
            criterion::BatchSize::LargeInput,
        )
    });
    // The same, split: evaluation alone (readings already observed, decisions dropped
    // outside the measurement), to see where a tick's time goes.
    let mut out = Vec::new();
    c.bench_function("engine evaluate only, 10k pairs", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for (i, r) in fresh.clone().into_iter().enumerate() {
                    engine.observe(i, r);
                }
                let start = std::time::Instant::now();
                engine.evaluate_into(now, &NoWorld, &mut out);
                total += start.elapsed();
                black_box(&out);
            }
            total
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

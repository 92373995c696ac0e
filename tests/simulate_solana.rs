//! The Solana rule pack (`rules/solana.yaml`, exactly as shipped) through `simulate`
//! timelines: a memory-pressure storm calls the cache endpoint at most `CACHE_CALLS_MAX`
//! times per `CACHE_CALLS_PER`, and a validator far behind is restarted only after a
//! notification, once per cooldown.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use automaton::core::decision::{Decision, Verdict};
use automaton::core::engine::EngineConfig;
use automaton::rules::load_texts;
use automaton::runtime::simulate::{run, Timeline};
use serde_json::Value;

const PACK: &str = include_str!("../rules/solana.yaml");
const TICK: Duration = Duration::from_secs(15);

/// The shipped pack with these variables set (the rest take their defaults).
fn simulate(vars: &[(&str, &str)], timeline: &str) -> Vec<Decision> {
    let env = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let set = load_texts(&[(Path::new("rules/solana.yaml"), PACK)], &env)
        .unwrap_or_else(|errors| panic!("the pack does not load: {errors:#?}"));
    let timeline = Timeline::parse(timeline).unwrap_or_else(|e| panic!("invalid timeline: {e}"));
    let config = EngineConfig {
        stale_after: TICK * 3,
        // Storm protection is not what these timelines are about.
        budget_limit: 1000,
        ..EngineConfig::default()
    };
    run(set, &timeline, TICK, config).0
}

/// A timeline sampling `signal` (with `labels`, a YAML flow map) every tick from 0 to
/// `minutes`, at the value `value(t)` for the step at `t` seconds.
fn steady(signal: &str, labels: &str, minutes: u64, value: impl Fn(u64) -> f64) -> String {
    let mut yaml = String::from("world: {statefulset/agave-validator: {replicas: 1}}\nsteps:\n");
    for t in (0..=minutes * 60).step_by(TICK.as_secs() as usize) {
        yaml.push_str(&format!(
            "  - {{at: {t}s, samples: [{{signal: {signal}, labels: {labels}, value: {}}}]}}\n",
            value(t)
        ));
    }
    yaml
}

/// `(seconds, action)` of every act of `rule`.
fn acts(decisions: &[Decision], rule: &str) -> Vec<(u64, &'static str)> {
    decisions
        .iter()
        .filter(|d| &*d.rule == rule && d.decision == Verdict::Act)
        .map(|d| (d.at.as_secs(), d.kind.as_str()))
        .collect()
}

const PSI: &str = "{path: /proc/pressure/memory}";

#[test]
fn a_pressure_storm_calls_the_cache_endpoint_at_most_the_configured_times_per_window() {
    // Two hours at 40 % weighted pressure: a stuck gauge, or a real storm.
    let decisions = simulate(&[], &steady("memory_pressure", PSI, 120, |_| 40.0));
    let reduce = acts(&decisions, "validator-memory-pressure-high");
    let m = |min: u64| (min * 60, "http");
    // Cooldown 5m spaces the calls, the rate limit (3 per 1h by default) stops them, and the
    // window sliding past the first call lets the next one through.
    assert_eq!(reduce, vec![m(0), m(5), m(10), m(60), m(65), m(70), m(120)]);
    let limited: Vec<&Decision> = decisions
        .iter()
        .filter(|d| &*d.rule == "validator-memory-pressure-high")
        .filter(|d| d.reason.map(|r| r.as_str()) == Some("rate_limit"))
        .collect();
    assert!(!limited.is_empty());
    assert!(limited.iter().all(
        |d| d.at > Duration::from_secs(600) && d.at < Duration::from_secs(3600)
            || d.at > Duration::from_secs(4200) && d.at < Duration::from_secs(7200)
    ));
    let detail = limited[0].detail.as_ref().unwrap().to_string();
    assert_eq!(detail, "rate_limit: 3 actions of this rule in the last 3600s");
    // The opposite rule never acts during the storm.
    assert!(acts(&decisions, "validator-memory-pressure-low").is_empty());

    // The operator's numbers, from the settings ConfigMap.
    let decisions = simulate(
        &[("CACHE_CALLS_MAX", "2"), ("CACHE_CALLS_PER", "30m")],
        &steady("memory_pressure", PSI, 60, |_| 40.0),
    );
    let reduce = acts(&decisions, "validator-memory-pressure-high");
    assert_eq!(reduce, vec![m(0), m(5), m(30), m(35), m(60)]);
}

#[test]
fn pressure_between_the_bands_keeps_shrinking_until_clear_then_grows_back_after_15m() {
    // 20 % for 12 minutes, 12 % (inside the 10–15 band) for 10 minutes, then 2 %.
    let decisions = simulate(
        &[],
        &steady("memory_pressure", PSI, 60, |t| match t {
            0..720 => 20.0,
            720..1320 => 12.0,
            _ => 2.0,
        }),
    );
    let m = |min: u64| (min * 60, "http");
    // Still firing at 12 % (clear is `< 10`): the 15m call goes out; then the rate limit.
    assert_eq!(
        acts(&decisions, "validator-memory-pressure-high"),
        vec![m(0), m(5), m(10)]
    );
    // Under 5 % from 22m on: the `for: 15m` of the low rule elapses at 37m.
    assert_eq!(acts(&decisions, "validator-memory-pressure-low"), vec![m(37)]);
}

const RPC: &str = "{rpc: \"http://127.0.0.1:8899\"}";

#[test]
fn a_validator_far_behind_is_restarted_only_after_a_notification() {
    // 1500 slots behind for 80 minutes.
    let decisions = simulate(&[], &steady("slot_lag", RPC, 80, |_| 1500.0));
    let restart = "validator-slot-lag-restart";
    let m = |min: u64| min * 60;
    // The page (lag > 10 for 1m) goes out first, every 15m.
    let page: Vec<u64> = acts(&decisions, "validator-slot-lag")
        .iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(page, vec![m(1), m(16), m(31), m(46), m(61), m(76)]);
    // The restart after 15m, then once per hour (cooldown), each one preceded by its notice.
    let acted = acts(&decisions, restart);
    assert_eq!(
        acted,
        vec![
            (m(15), "notify"),
            (m(15), "restart"),
            (m(75), "notify"),
            (m(75), "restart")
        ]
    );
    for (i, d) in decisions.iter().enumerate() {
        if &*d.rule == restart && d.decision == Verdict::Act && d.kind.as_str() == "restart" {
            let before = &decisions[i - 1];
            assert_eq!(
                (&*before.rule, before.kind.as_str(), before.decision),
                (restart, "notify", Verdict::Act)
            );
            assert_eq!(before.at, d.at);
            let change = before.change.as_ref().unwrap();
            assert_eq!(change["before"], "restart");
            assert_eq!(change["notify"], "alertmanager-operated.monitoring.svc");
            assert_eq!(change["change"]["rollout_restart"], "statefulset/agave-validator");
            assert_eq!(
                d.change.as_ref().unwrap()["rollout_restart"],
                "statefulset/agave-validator"
            );
        }
    }
}

#[test]
fn lag_under_the_restart_bound_or_not_for_long_enough_never_restarts() {
    // 900 slots behind for an hour: paged, never restarted.
    let decisions = simulate(&[], &steady("slot_lag", RPC, 60, |_| 900.0));
    assert!(acts(&decisions, "validator-slot-lag-restart").is_empty());
    assert!(!acts(&decisions, "validator-slot-lag").is_empty());
    // 1500 for 14 minutes, a dip to 500, 1500 again: the 15 minutes start over at the dip.
    let decisions = simulate(
        &[],
        &steady("slot_lag", RPC, 40, |t| {
            if (840..870).contains(&t) {
                500.0
            } else {
                1500.0
            }
        }),
    );
    let acted: Vec<u64> = acts(&decisions, "validator-slot-lag-restart")
        .iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(acted, vec![870 + 900, 870 + 900]);
}

#[test]
fn the_binary_prints_the_notice_line_just_before_the_restart_line() {
    let dir = tempfile::tempdir().unwrap();
    let timeline = dir.path().join("slot-lag.yaml");
    std::fs::write(&timeline, steady("slot_lag", RPC, 16, |_| 1500.0)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_automaton"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["simulate", "--rules", "rules/solana.yaml", "--timeline"])
        .arg(&timeline)
        .args(["--interval", "15s"])
        .env_remove("ALERT_WEBHOOK_URL")
        .env_remove("SLOT_LAG_RESTART")
        .env_remove("SLOT_LAG_RESTART_FOR")
        .env_remove("VALIDATOR_STATEFULSET")
        .output()
        .expect("the automaton binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let acts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|d| d["rule"] == "validator-slot-lag-restart" && d["decision"] == "act")
        .collect();
    let shape: Vec<(&str, f64)> = acts
        .iter()
        .map(|d| (d["action"].as_str().unwrap(), d["at"].as_f64().unwrap()))
        .collect();
    assert_eq!(shape, vec![("notify", 900.0), ("restart", 900.0)]);
    assert_eq!(acts[0]["change"]["before"], "restart");
}

#[test]
fn a_filling_ledger_volume_runs_the_backup_and_the_prune_jobs_once_each() {
    let ledger = "{path: /mnt/ledger}";
    let decisions = simulate(
        &[],
        &steady("disk_usage", ledger, 70, |t| if t < 60 { 70.0 } else { 85.0 }),
    );
    let m = |min: u64| min * 60;
    let backup: Vec<u64> = acts(&decisions, "validator-ledger-backup")
        .iter()
        .map(|a| a.0)
        .collect();
    let prune: Vec<u64> = acts(&decisions, "validator-ledger-prune")
        .iter()
        .map(|a| a.0)
        .collect();
    // Over 80 % from 1m, for 5m: both at 6m; the prune again after its 1h cooldown, the
    // backup not (6h).
    assert_eq!(backup, vec![m(6)]);
    assert_eq!(prune, vec![m(6), m(66)]);
    let job = decisions
        .iter()
        .find(|d| &*d.rule == "validator-ledger-prune" && d.decision == Verdict::Act)
        .unwrap();
    assert_eq!(&*job.target, "cronjob/solana-ledger-prune");
    assert_eq!(
        job.change.as_ref().unwrap()["job_from_cronjob"],
        "solana-ledger-prune"
    );
    // Other volumes are other rules: untouched by this timeline.
    assert!(acts(&decisions, "validator-snapshots-prune").is_empty());
    assert!(acts(&decisions, "validator-accounts-disk").is_empty());
}

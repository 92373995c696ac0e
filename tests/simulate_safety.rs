//! "Never make an incident worse", pinned by `simulate` timelines: verification after an
//! action, the rollback of one that did not help (the exact previous values), quarantine
//! until the condition has been quiet for a cooldown or an operator clears it, and the
//! guard's refusals: a paused target, an HPA-owned replica count, a GitOps-managed object,
//! an open circuit breaker.

use std::path::Path;
use std::time::Duration;

use automaton::core::decision::{Decision, Verdict};
use automaton::core::engine::EngineConfig;
use automaton::core::world::SimWorld;
use automaton::rules::load_texts;
use automaton::runtime::simulate::{run, Timeline};
use serde_json::json;

const TICK: Duration = Duration::from_secs(60);

fn sim(rules: &str, timeline: &str, config: EngineConfig) -> (Vec<Decision>, SimWorld) {
    let set = load_texts(&[(Path::new("rules.yaml"), rules)], &|_| None)
        .unwrap_or_else(|e| panic!("invalid rules: {e:#?}"));
    let timeline = Timeline::parse(timeline).unwrap_or_else(|e| panic!("invalid timeline: {e}"));
    let config = EngineConfig {
        stale_after: TICK * 3,
        ..config
    };
    run(set, &timeline, TICK, config)
}

/// A lag timeline: one sample per minute, `values[i]` at minute i (None = unknown).
fn minutes(world: &str, values: &[Option<f64>], extra: &[(usize, &str)]) -> String {
    let mut yaml = format!("world: {world}\nsteps:\n");
    for (i, v) in values.iter().enumerate() {
        let value = v.map_or("null".to_owned(), |v| v.to_string());
        yaml.push_str(&format!(
            "  - at: {i}m\n    samples: [{{signal: kafka_lag, labels: {{group: g}}, value: {value}}}]\n"
        ));
        for (_, line) in extra.iter().filter(|(at, _)| *at == i) {
            yaml.push_str(&format!("    {line}\n"));
        }
    }
    yaml
}

/// `MINUTE ACTION DECISION [REASON] [CHANGE]` of every decision that is not `none` (nor a
/// plain cooldown skip, which every test would otherwise list minute by minute).
fn trace(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .filter(|d| d.decision != Verdict::None || d.verification.is_some())
        .filter(|d| d.reason.is_none_or(|r| r.as_str() != "cooldown") || d.verification.is_some())
        .map(|d| {
            let mut line = format!("{}m {} {:?}", d.at.as_secs() / 60, d.kind, d.decision).to_lowercase();
            if let Some(r) = d.reason {
                line.push_str(&format!(" {}", r.as_str()));
            }
            if let Some(v) = &d.verification {
                line.push_str(&format!(" verify={}", v.result.as_str()));
            }
            if d.decision == Verdict::Act {
                if let Some(c) = &d.change {
                    line.push_str(&format!(" {c}"));
                }
            }
            line
        })
        .collect()
}

const SCALE: &str = r#"rules:
  - name: lag
    priority: critical
    signal: {kafka_lag: {group: g}}
    when: "> 15000"
    action: {scale: {target: deployment/app, replicas: 6}}
    cooldown: 5m
    verify: {within: 10m, expect: "< 5000"}
"#;
const APP_AT_2: &str = "{deployment/app: {replicas: 2}}";

#[test]
fn an_action_that_helped_is_verified_and_kept() {
    let mut values = vec![Some(20000.0), Some(12000.0), Some(8000.0), Some(4000.0)];
    values.extend([Some(1000.0); 3]);
    let (decisions, world) = sim(SCALE, &minutes(APP_AT_2, &values, &[]), EngineConfig::default());
    assert_eq!(
        trace(&decisions),
        [
            r#"0m scale act {"replicas":[2,6]}"#,
            "3m scale none verify=success"
        ]
    );
    assert_eq!(world.0["deployment/app"].replicas, Some(6));
}

#[test]
fn an_action_that_did_not_help_is_rolled_back_exactly_and_quarantined_until_quiet() {
    // Lag stays at 18000 for the whole window: no improvement, not worse either.
    let mut values = vec![Some(20000.0)];
    values.extend([Some(18000.0); 10]);
    // Still high for a while: quarantined, not acted on again (the cooldown alone would
    // allow it at 5m and 15m).
    values.extend([Some(18000.0); 6]);
    // Quiet for one cooldown (5m) clears the quarantine; the next episode acts again.
    values.extend([Some(1000.0); 6]);
    values.extend([Some(20000.0); 2]);
    let (decisions, world) = sim(SCALE, &minutes(APP_AT_2, &values, &[]), EngineConfig::default());
    let t = trace(&decisions);
    assert_eq!(t[0], r#"0m scale act {"replicas":[2,6]}"#);
    // The window ends at 10m: failed, the rollback (its own `act` line, just before the
    // rule's decision of that minute) puts back the 2 replicas it found.
    assert_eq!(t[1], r#"10m rollback act {"replicas":[6,2]}"#);
    assert_eq!(t[2], "10m scale skip quarantined verify=failed");
    assert!(
        t[3..]
            .iter()
            .take_while(|l| !l.contains("act"))
            .all(|l| l.ends_with("quarantined")),
        "{t:#?}"
    );
    let again: Vec<&String> = t.iter().filter(|l| l.contains(" act ")).collect();
    assert_eq!(again.len(), 3, "{t:#?}");
    assert_eq!(again[2], r#"23m scale act {"replicas":[2,6]}"#, "{t:#?}");
    assert_eq!(world.0["deployment/app"].replicas, Some(6));
    // While it is judged, the rule does not act on the target again.
    let at_1m = decisions.iter().find(|d| d.at == TICK).unwrap();
    assert_eq!(
        at_1m.detail.as_ref().unwrap().to_string(),
        "the last action is being verified until 600s"
    );
    let rollback = decisions
        .iter()
        .find(|d| d.kind == automaton::core::decision::DecisionKind::Rollback)
        .unwrap();
    assert!(rollback.id.is_some(), "a rollback has its own action id");
    assert_ne!(rollback.id, decisions[0].id);
}

#[test]
fn worse_after_half_the_window_fails_early_and_rollback_false_keeps_the_change() {
    let rules = SCALE.replace("    verify:", "    rollback: false\n    verify:");
    let values = [
        Some(20000.0),
        Some(22000.0),
        Some(25000.0),
        Some(30000.0),
        Some(30000.0),
        Some(31000.0),
        Some(31000.0),
    ];
    let (decisions, world) = sim(&rules, &minutes(APP_AT_2, &values, &[]), EngineConfig::default());
    assert_eq!(
        trace(&decisions),
        [
            r#"0m scale act {"replicas":[2,6]}"#,
            // 5m is half of the 10m window: 31000 is worse than the 20000 we acted at.
            "5m scale skip quarantined verify=failed",
            "6m scale skip quarantined",
        ]
    );
    assert_eq!(
        world.0["deployment/app"].replicas,
        Some(6),
        "rollback: false keeps the change"
    );
}

#[test]
fn unknown_at_the_end_of_the_window_rolls_nothing_back() {
    let mut values = vec![Some(20000.0)];
    values.extend([Some(18000.0); 3]);
    values.extend([None; 8]);
    let (decisions, world) = sim(SCALE, &minutes(APP_AT_2, &values, &[]), EngineConfig::default());
    let t = trace(&decisions);
    assert!(
        t.contains(&"10m scale skip unknown verify=unknown".to_owned()),
        "{t:#?}"
    );
    assert!(!t.iter().any(|l| l.contains("rollback")), "{t:#?}");
    assert_eq!(world.0["deployment/app"].replicas, Some(6));
}

#[test]
fn a_memory_rollback_restores_the_exact_request_and_limit() {
    let rules = r#"rules:
  - name: oom
    priority: critical
    signal: {pod_oom_killed: {selector: app=api}}
    when: "> 0"
    action: {raise_memory: {target: owner, container: app}}
    verify: {within: 10m, expect: "== 0"}
"#;
    let world =
        "{deployment/api: {replicas: 1, containers: {app: {memory_request: 300Mi, memory_limit: 700Mi}}}}";
    let mut yaml = format!("world: {world}\nsteps:\n");
    for m in 0..12 {
        yaml.push_str(&format!(
            "  - at: {m}m\n    samples: [{{signal: pod_oom_killed, labels: {{pod: api-1, container: app, owner: deployment/api}}, value: 1}}]\n"
        ));
    }
    let (decisions, world) = sim(rules, &yaml, EngineConfig::default());
    let t = trace(&decisions);
    assert_eq!(
        t[0],
        r#"0m raise_memory act {"container":"app","max":"8Gi","memory_limit":["700Mi","1400Mi"],"memory_request":["300Mi","600Mi"]}"#
    );
    assert_eq!(
        t[1],
        r#"10m rollback act {"container":"app","memory_limit":["1400Mi","700Mi"],"memory_request":["600Mi","300Mi"]}"#
    );
    let app = &world.0["deployment/api"].containers["app"];
    assert_eq!(
        (
            app.memory_request.unwrap().to_string(),
            app.memory_limit.unwrap().to_string()
        ),
        ("300Mi".to_owned(), "700Mi".to_owned())
    );
}

#[test]
fn an_operator_clears_a_quarantine() {
    let mut values = vec![Some(20000.0)];
    values.extend([Some(18000.0); 12]);
    let yaml = minutes(APP_AT_2, &values, &[(12, "clear_quarantine: true")]);
    let (decisions, _) = sim(SCALE, &yaml, EngineConfig::default());
    let t = trace(&decisions);
    assert_eq!(t[t.len() - 1], r#"12m scale act {"replicas":[2,6]}"#, "{t:#?}");
}

const HIGH: [Option<f64>; 2] = [Some(20000.0), Some(20000.0)];

#[test]
fn paused_hpa_and_gitops_targets_are_refused_before_anything_else() {
    let plain = SCALE.replace("    verify: {within: 10m, expect: \"< 5000\"}\n", "");
    let cases = [
        ("{deployment/app: {replicas: 2, paused: true}}", "paused"),
        ("{deployment/app: {replicas: 2, hpa: app}}", "hpa_managed"),
    ];
    for (world, reason) in cases {
        let (decisions, w) = sim(&plain, &minutes(world, &HIGH, &[]), EngineConfig::default());
        assert_eq!(
            trace(&decisions),
            [
                format!("0m scale skip {reason}"),
                format!("1m scale skip {reason}")
            ]
        );
        assert_eq!(w.0["deployment/app"].replicas, Some(2));
    }
    let gitops = "{deployment/app: {replicas: 2, gitops: 'argocd: shop'}}";
    // GITOPS_POLICY=warn (default): acted on, and the decision says who will revert it.
    let (decisions, _) = sim(&plain, &minutes(gitops, &HIGH, &[]), EngineConfig::default());
    assert_eq!(decisions[0].decision, Verdict::Act);
    assert_eq!(decisions[0].gitops.as_deref(), Some("argocd: shop"));
    let line: serde_json::Value = serde_json::from_str(&decisions[0].to_json_line()).unwrap();
    assert_eq!(line["gitops"], json!("argocd: shop"));
    // GITOPS_POLICY=skip.
    let skip = EngineConfig {
        gitops_skip: true,
        ..EngineConfig::default()
    };
    let (decisions, _) = sim(&plain, &minutes(gitops, &HIGH, &[]), skip);
    assert_eq!(
        trace(&decisions),
        ["0m scale skip gitops", "1m scale skip gitops"]
    );
    // An HPA owns replicas, not memory: raise_memory is not refused for it.
}

/// `automaton simulate` over files, with `env` as its whole environment (besides PATH):
/// the `(decision, reason)` of every line, or the exit code and stderr when it fails.
fn simulate_bin(
    rules: &str,
    timeline: &str,
    env: &[(&str, &str)],
) -> Result<Vec<(String, String)>, (i32, String)> {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("rules.yaml"), rules).expect("rules written");
    std::fs::write(dir.path().join("timeline.yaml"), timeline).expect("timeline written");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_automaton"))
        .env_clear()
        .envs(env.iter().copied())
        .args([
            "simulate",
            "--rules",
            "rules.yaml",
            "--timeline",
            "timeline.yaml",
            "--interval",
            "1m",
        ])
        .current_dir(dir.path())
        .output()
        .expect("the automaton binary runs");
    if !out.status.success() {
        return Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap_or("").to_owned();
            (text("decision"), text("reason"))
        })
        .collect())
}

#[test]
fn the_simulate_binary_honours_every_engine_setting_the_daemon_does() {
    let plain = SCALE.replace("    verify: {within: 10m, expect: \"< 5000\"}\n", "");
    let gitops = minutes(
        "{deployment/app: {replicas: 2, gitops: 'argocd: shop'}}",
        &HIGH,
        &[],
    );
    let first = |env: &[(&str, &str)]| simulate_bin(&plain, &gitops, env).map(|lines| lines[0].clone());
    assert_eq!(first(&[]), Ok(("act".to_owned(), String::new())));
    assert_eq!(
        first(&[("GITOPS_POLICY", "warn")]),
        Ok(("act".to_owned(), String::new()))
    );
    assert_eq!(
        first(&[("GITOPS_POLICY", "skip")]),
        Ok(("skip".to_owned(), "gitops".to_owned()))
    );
    // The same settings as the daemon, read by the same code: DRY_RUN and ACTION_BUDGET too.
    assert_eq!(
        first(&[("DRY_RUN", "true")]),
        Ok(("skip".to_owned(), "dry_run".to_owned()))
    );
    let stepping = plain
        .replace("cooldown: 5m", "cooldown: 1m")
        .replace("replicas: 6", "step: 1");
    let budget = simulate_bin(
        &stepping,
        &minutes(APP_AT_2, &HIGH, &[]),
        &[("ACTION_BUDGET", "1/1h")],
    );
    assert_eq!(
        budget,
        Ok(vec![
            ("act".to_owned(), String::new()),
            ("skip".to_owned(), "budget".to_owned())
        ])
    );
    // An invalid setting is an error, as it is for `run`.
    let (code, stderr) = first(&[("GITOPS_POLICY", "sometimes")]).expect_err("refused");
    assert_eq!(code, 2);
    assert!(stderr.contains("GITOPS_POLICY"), "{stderr}");
}

#[test]
fn an_open_circuit_skips_the_action_and_a_closed_one_lets_it_through() {
    let plain = SCALE.replace("    verify: {within: 10m, expect: \"< 5000\"}\n", "");
    let yaml = minutes(
        APP_AT_2,
        &[Some(20000.0); 3],
        &[(0, "open_circuits: [kubernetes]"), (2, "open_circuits: []")],
    );
    let (decisions, world) = sim(&plain, &yaml, EngineConfig::default());
    assert_eq!(
        trace(&decisions),
        [
            "0m scale skip circuit_open",
            "1m scale skip circuit_open",
            r#"2m scale act {"replicas":[2,6]}"#,
        ]
    );
    assert_eq!(world.0["deployment/app"].replicas, Some(6));
}

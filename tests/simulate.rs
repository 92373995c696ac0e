//! The engine's semantics, each pinned by a `simulate` timeline: the state machine
//! (pending, firing, unknown, stale, hysteresis), the guard (cooldown, budget, bound,
//! dry-run, leadership) and how samples reach rules and targets. Each test reads as a
//! timeline: one line per evaluation, `AT VALUE STATE DECISION [REASON] [CHANGE]`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use automaton::core::decision::{Decision, State, Verdict};
use automaton::core::engine::EngineConfig;
use automaton::core::values::Bytes;
use automaton::core::world::SimWorld;
use automaton::rules::load_texts;
use automaton::runtime::simulate::{run, Timeline};
use serde_json::{json, Value};

/// A simulation about to run: rules, engine settings and the tick.
struct Sim {
    rules: String,
    world: String,
    config: EngineConfig,
    interval: Duration,
}

fn rules(yaml: &str) -> Sim {
    Sim {
        rules: yaml.to_owned(),
        world: String::new(),
        config: EngineConfig::default(),
        interval: Duration::from_secs(15),
    }
    .every(15)
}

impl Sim {
    /// The timeline's `world:` (a YAML line), so timelines below only say what happens.
    fn world(mut self, yaml: &str) -> Self {
        self.world = yaml.to_owned();
        self
    }

    /// Ticks every `secs`; samples become unknown after 3 × that, as in the daemon.
    fn every(mut self, secs: u64) -> Self {
        self.interval = Duration::from_secs(secs);
        self.config.stale_after = self.interval * 3;
        self
    }

    /// ACTION_BUDGET=`limit`/`window_secs`s.
    fn budget(mut self, limit: u32, window_secs: u64) -> Self {
        self.config.budget_limit = limit;
        self.config.budget_window = Duration::from_secs(window_secs);
        self
    }

    fn dry_run(mut self) -> Self {
        self.config.dry_run = true;
        self
    }

    fn max_replicas(mut self, n: u32) -> Self {
        self.config.limits.max_replicas = n;
        self
    }

    fn max_memory(mut self, quantity: &str) -> Self {
        self.config.limits.max_memory = quantity.parse::<Bytes>().expect("a byte quantity");
        self
    }

    fn run(&self, timeline: &str) -> Run {
        let set = load_texts(&[(Path::new("rules.yaml"), self.rules.as_str())], &|_| None)
            .unwrap_or_else(|errors| panic!("invalid test rules: {errors:#?}"));
        let timeline = format!("{}{timeline}", self.world);
        let timeline = Timeline::parse(&timeline).unwrap_or_else(|e| panic!("invalid test timeline: {e}"));
        let (decisions, world) = run(set, &timeline, self.interval, self.config.clone());
        Run { decisions, world }
    }
}

/// What a simulation produced.
struct Run {
    decisions: Vec<Decision>,
    world: SimWorld,
}

fn line(d: &Decision) -> String {
    let mut text = format!(
        "{}s {} {} {}",
        d.at.as_secs(),
        d.value.map_or("null".to_owned(), |v| v.to_string()),
        d.state.as_str(),
        match d.decision {
            Verdict::Act => "act",
            Verdict::Skip => "skip",
            Verdict::None => "none",
        }
    );
    if let Some(reason) = d.reason {
        text.push(' ');
        text.push_str(reason.as_str());
    }
    if let Some(change) = &d.change {
        text.push(' ');
        text.push_str(&canonical(change));
    }
    text
}

/// JSON with object keys sorted, whatever order serde_json keeps them in.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

impl Run {
    /// Every evaluation of `rule` (on whatever target), as timeline lines.
    fn trace(&self, rule: &str) -> Vec<String> {
        self.of(rule).map(line).collect()
    }

    /// Every evaluation of `rule` on `target`.
    fn trace_on(&self, rule: &str, target: &str) -> Vec<String> {
        self.of(rule).filter(|d| &*d.target == target).map(line).collect()
    }

    fn of<'a>(&'a self, rule: &'a str) -> impl Iterator<Item = &'a Decision> + 'a {
        self.decisions.iter().filter(move |d| &*d.rule == rule)
    }

    /// `AT RULE TARGET CHANGE` of every action taken, in order.
    fn acts(&self) -> Vec<String> {
        self.decisions
            .iter()
            .filter(|d| d.decision == Verdict::Act)
            .map(|d| {
                let change = d.change.as_ref().map_or(String::new(), canonical);
                format!("{}s {} {} {change}", d.at.as_secs(), d.rule, d.target)
            })
            .collect()
    }

    /// The one decision of `rule` at `secs`.
    fn at(&self, secs: u64, rule: &str) -> &Decision {
        let at = Duration::from_secs(secs);
        let mut found = self.decisions.iter().filter(|d| &*d.rule == rule && d.at == at);
        let d = found
            .next()
            .unwrap_or_else(|| panic!("no decision of {rule} at {secs}s"));
        assert!(found.next().is_none(), "several decisions of {rule} at {secs}s");
        d
    }

    fn replicas(&self, target: &str) -> Option<u32> {
        self.world.0.get(target).and_then(|w| w.replicas)
    }

    fn memory(&self, target: &str, container: &str) -> (String, String) {
        let res = &self.world.0[target].containers[container];
        let show = |b: Option<Bytes>| b.map_or("none".to_owned(), |b| b.to_string());
        (show(res.memory_request), show(res.memory_limit))
    }
}

fn detail(d: &Decision) -> String {
    d.detail.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// A lag rule of `priority` scaling deployment/app to 6, with `extra` lines added to it.
fn lag_rule(priority: &str, extra: &str) -> String {
    format!(
        r#"rules:
  - name: lag
    priority: {priority}
    signal:
      kafka_lag: {{group: g}}
    when: "> 15000"
    action:
      scale: {{target: deployment/app, replicas: 6}}
{extra}"#
    )
}

const APP_AT_1: &str = "world: {deployment/app: {replicas: 1}}\n";

#[test]
fn pending_until_for_has_elapsed_then_firing_acts_once() {
    let sim = rules(&lag_rule("high", "    for: 60s\n    cooldown: 5m\n"));
    let run = sim.world(APP_AT_1).run(
        "until: 90s
steps:
  - {at: 0s, samples: [{signal: kafka_lag, labels: {group: g}, value: 20000}]}
  - {at: 30s, samples: [{signal: kafka_lag, labels: {group: g}, value: 20000}]}
  - {at: 60s, samples: [{signal: kafka_lag, labels: {group: g}, value: 20000}]}
",
    );
    assert_eq!(
        run.trace("lag"),
        [
            "0s 20000 pending none",
            "15s 20000 pending none",
            "30s 20000 pending none",
            "45s 20000 pending none",
            r#"60s 20000 firing act {"replicas":[1,6]}"#,
            "75s 20000 firing skip cooldown",
            "90s 20000 firing skip cooldown",
        ]
    );
    assert_eq!(run.replicas("deployment/app"), Some(6));
    let act = run.at(60, "lag");
    assert_eq!((&*act.target, act.dry_run), ("deployment/app", false));
}

#[test]
fn the_default_for_comes_from_the_priority() {
    let yaml = r#"rules:
  - name: page-now
    priority: critical
    signal:
      kafka_lag: {group: critical}
    when: "> 0"
    action:
      notify: {webhook: "http://alerts.example/hook"}
    cooldown: 1h
  - name: page-later
    priority: high
    signal:
      kafka_lag: {group: high}
    when: "> 0"
    action:
      notify: {webhook: "http://alerts.example/hook"}
"#;
    let run = rules(yaml).every(60).run(
        "until: 6m
steps:
  - at: 0s
    samples:
      - {signal: kafka_lag, labels: {group: critical}, value: 1}
      - {signal: kafka_lag, labels: {group: high}, value: 1}
  - {at: 2m, samples: [{signal: kafka_lag, value: 1}]}
  - {at: 4m, samples: [{signal: kafka_lag, value: 1}]}
  - {at: 6m, samples: [{signal: kafka_lag, value: 1}]}
",
    );
    assert_eq!(
        run.acts(),
        [
            r#"0s page-now webhook/alerts.example {"notify":"alerts.example"}"#,
            r#"300s page-later webhook/alerts.example {"notify":"alerts.example"}"#,
        ]
    );
    assert_eq!(run.at(240, "page-later").state, State::Pending);
}

#[test]
fn unknown_never_acts_and_the_full_for_is_observed_again() {
    let sim = rules(&lag_rule("high", "    for: 60s\n"));
    let run = sim.world(APP_AT_1).run(
        "until: 105s
steps:
  - {at: 0s, samples: [{signal: kafka_lag, labels: {group: g}, value: 20000}]}
  - {at: 30s, samples: [{signal: kafka_lag, labels: {group: g}, value: null, reason: broker down}]}
  - {at: 45s, samples: [{signal: kafka_lag, labels: {group: g}, value: 20000}]}
  - {at: 75s, samples: [{signal: kafka_lag, labels: {group: g}, value: 20000}]}
  - {at: 105s, samples: [{signal: kafka_lag, labels: {group: g}, value: 20000}]}
",
    );
    assert_eq!(
        run.trace("lag"),
        [
            "0s 20000 pending none",
            "15s 20000 pending none",
            "30s null unknown skip unknown",
            "45s 20000 pending none",
            "60s 20000 pending none",
            "75s 20000 pending none",
            "90s 20000 pending none",
            r#"105s 20000 firing act {"replicas":[1,6]}"#,
        ]
    );
    assert_eq!(detail(run.at(30, "lag")), "broker down");
}

#[test]
fn unknown_does_not_act_even_for_a_rule_without_for() {
    let sim = rules(&lag_rule("critical", ""));
    let run = sim.world(APP_AT_1).run(
        "steps:
  - {at: 0s, samples: [{signal: kafka_lag, labels: {group: g}}]}
",
    );
    assert_eq!(run.trace("lag"), ["0s null unknown skip unknown"]);
    assert_eq!(detail(run.at(0, "lag")), "the sample has no value");
    assert_eq!(run.replicas("deployment/app"), Some(1));
}

#[test]
fn a_sample_older_than_three_intervals_is_unknown() {
    let yaml = r#"rules:
  - name: lag
    signal:
      kafka_lag: {group: g}
    when: "> 15000"
    for: 10m
    action:
      scale: {target: deployment/app, replicas: 6}
  - name: connections
    signal:
      postgres: {metric: connections_used_percent}
    when: "> 85"
    for: 10m
    action:
      terminate_idle_connections: {}
"#;
    let run = rules(yaml).run(
        "until: 75s
steps:
  - at: 0s
    samples:
      - {signal: kafka_lag, labels: {group: g}, value: 20000}
      - {signal: postgres, labels: {metric: connections_used_percent}, value: 90}
  - {at: 30s, samples: [{signal: kafka_lag, labels: {group: g}, value: 20000}]}
  - {at: 60s, samples: [{signal: kafka_lag, labels: {group: g}, value: 20000}]}
",
    );
    // The postgres sample of 0s ages with every tick: still good at 45s (= 3 × 15s).
    assert_eq!(
        run.trace("connections"),
        [
            "0s 90 pending none",
            "15s 90 pending none",
            "30s 90 pending none",
            "45s 90 pending none",
            "60s null unknown skip unknown",
            "75s null unknown skip unknown",
        ]
    );
    assert_eq!(
        detail(run.at(60, "connections")),
        "the last sample is 60s old, older than 3 × CHECK_INTERVAL"
    );
    assert!(
        run.of("lag").all(|d| d.state == State::Pending),
        "{:?}",
        run.trace("lag")
    );
}

#[test]
fn after_an_action_the_cooldown_skips_while_firing_and_acts_again_only_when_over() {
    let yaml = r#"rules:
  - name: lag
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 15000"
    action:
      scale: {target: deployment/app, step: 1}
    cooldown: 1m
"#;
    let run = rules(yaml).every(30).world(APP_AT_1).run(
        "until: 4m
steps:
  - {at: 0s, samples: [{signal: kafka_lag, value: 20000}]}
  - {at: 1m, samples: [{signal: kafka_lag, value: 20000}]}
  - {at: 2m, samples: [{signal: kafka_lag, value: 20000}]}
  - {at: 2m30s, samples: [{signal: kafka_lag, value: 100}]}
  - {at: 3m30s, samples: [{signal: kafka_lag, value: 100}]}
",
    );
    assert_eq!(
        run.trace("lag"),
        [
            r#"0s 20000 firing act {"replicas":[1,2]}"#,
            "30s 20000 firing skip cooldown",
            r#"60s 20000 firing act {"replicas":[2,3]}"#,
            "90s 20000 firing skip cooldown",
            r#"120s 20000 firing act {"replicas":[3,4]}"#,
            "150s 100 inactive none",
            "180s 100 inactive none",
            "210s 100 inactive none",
            "240s 100 inactive none",
        ]
    );
    assert_eq!(detail(run.at(90, "lag")), "30s of cooldown left");
    assert_eq!(run.replicas("deployment/app"), Some(4));
}

#[test]
fn with_clear_firing_lasts_until_clear_holds() {
    let yaml = r#"rules:
  - name: lag
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 15000"
    clear: "< 5000"
    action:
      scale: {target: deployment/app, step: 1}
    cooldown: 2m
"#;
    let run = rules(yaml).every(30).world(APP_AT_1).run(
        "steps:
  - {at: 0s, samples: [{signal: kafka_lag, value: 20000}]}
  - {at: 30s, samples: [{signal: kafka_lag, value: 9000}]}
  - {at: 1m, samples: [{signal: kafka_lag, value: 9000}]}
  - {at: 1m30s, samples: [{signal: kafka_lag, value: 9000}]}
  - {at: 2m, samples: [{signal: kafka_lag, value: 9000}]}
  - {at: 2m30s, samples: [{signal: kafka_lag, value: 4000}]}
  - {at: 3m, samples: [{signal: kafka_lag, value: 9000}]}
  - {at: 3m30s, samples: [{signal: kafka_lag, value: 20000}]}
",
    );
    assert_eq!(
        run.trace("lag"),
        [
            r#"0s 20000 firing act {"replicas":[1,2]}"#,
            // Below `when` but not below `clear`: still firing, within the cooldown.
            "30s 9000 firing skip cooldown",
            "60s 9000 firing skip cooldown",
            "90s 9000 firing skip cooldown",
            // Still firing once the cooldown is over: it acts again.
            r#"120s 9000 firing act {"replicas":[2,3]}"#,
            "150s 4000 inactive none",
            // Back between the two thresholds: inactive stays inactive.
            "180s 9000 inactive none",
            "210s 20000 firing skip cooldown",
        ]
    );
}

#[test]
fn the_budget_caps_actions_of_all_rules_together_and_frees_up_after_the_window() {
    let rule = |name: &str| {
        format!(
            r#"  - name: {name}
    priority: critical
    signal:
      kafka_lag: {{group: {name}}}
    when: "> 0"
    action:
      scale: {{target: deployment/{name}, replicas: 2}}
    cooldown: 1h
"#
        )
    };
    let yaml = format!("rules:\n{}{}{}", rule("one"), rule("two"), rule("three"));
    let run = rules(&yaml).every(300).budget(2, 600).run(
        "world: {deployment/one: {replicas: 1}, deployment/two: {replicas: 1}, deployment/three: {replicas: 1}}
until: 10m
steps:
  - {at: 0s, samples: [{signal: kafka_lag, value: 1}]}
",
    );
    assert_eq!(
        run.acts(),
        [
            r#"0s one deployment/one {"replicas":[1,2]}"#,
            r#"0s two deployment/two {"replicas":[1,2]}"#,
            r#"600s three deployment/three {"replicas":[1,2]}"#,
        ]
    );
    assert_eq!(
        run.trace("three"),
        [
            r#"0s 1 firing skip budget {"replicas":[1,2]}"#,
            r#"300s 1 firing skip budget {"replicas":[1,2]}"#,
            r#"600s 1 firing act {"replicas":[1,2]}"#,
        ]
    );
    assert_eq!(detail(run.at(0, "three")), "2 actions in the last 600s");
    assert_eq!(
        run.trace("one")[1..],
        ["300s 1 firing skip cooldown", "600s 1 firing skip cooldown"]
    );
}

#[test]
fn a_no_op_is_bound_every_tick_and_never_takes_budget() {
    let yaml = r#"rules:
  - name: already-there
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 0"
    action:
      scale: {target: deployment/app, replicas: 6}
  - name: other
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 0"
    action:
      scale: {target: deployment/other, replicas: 2}
"#;
    let run = rules(yaml).budget(1, 600).run(
        "world: {deployment/app: {replicas: 6}, deployment/other: {replicas: 1}}
until: 30s
steps:
  - {at: 0s, samples: [{signal: kafka_lag, value: 1}]}
",
    );
    assert_eq!(
        run.trace("already-there"),
        [
            r#"0s 1 firing skip bound {"replicas":[6,6]}"#,
            r#"15s 1 firing skip bound {"replicas":[6,6]}"#,
            r#"30s 1 firing skip bound {"replicas":[6,6]}"#,
        ]
    );
    assert_eq!(
        detail(run.at(0, "already-there")),
        "already at 6 replicas (bounds 1..=10)"
    );
    assert_eq!(run.acts(), [r#"0s other deployment/other {"replicas":[1,2]}"#]);
}

#[test]
fn max_replicas_caps_a_rule_max_then_the_rule_is_bound() {
    let yaml = r#"rules:
  - name: lag
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 15000"
    action:
      scale: {target: deployment/app, step: 30, max: 50}
    cooldown: 30s
"#;
    let run = rules(yaml).every(30).max_replicas(10).world(APP_AT_1).run(
        "until: 90s
steps:
  - {at: 0s, samples: [{signal: kafka_lag, value: 20000}]}
  - {at: 1m, samples: [{signal: kafka_lag, value: 20000}]}
",
    );
    assert_eq!(
        run.trace("lag"),
        [
            r#"0s 20000 firing act {"cap":"max","replicas":[1,10]}"#,
            r#"30s 20000 firing skip bound {"cap":"max","replicas":[10,10]}"#,
            r#"60s 20000 firing skip bound {"cap":"max","replicas":[10,10]}"#,
            r#"90s 20000 firing skip bound {"cap":"max","replicas":[10,10]}"#,
        ]
    );
    assert_eq!(run.replicas("deployment/app"), Some(10));
}

const OOM_RULE: &str = r#"rules:
  - name: oom
    priority: critical
    signal:
      pod_oom_killed: {selector: app=email-service, window: 1m}
    when: "> 0"
    action:
      raise_memory: {target: owner}
    cooldown: 1m
"#;

const EMAIL_SERVICE: &str =
    "world: {deployment/email-service: {containers: {app: {memory_request: 512Mi, memory_limit: 1Gi}}}}\n";

#[test]
fn raise_memory_doubles_through_the_world_until_max_memory_then_is_bound() {
    let run = rules(OOM_RULE).every(60).max_memory("2Gi").world(EMAIL_SERVICE).run(
        "until: 3m
steps:
  - at: 0s
    samples:
      - {signal: pod_oom_killed, labels: {pod: email-service-1, container: app, owner: deployment/email-service}, value: 1}
  - at: 2m
    samples:
      - {signal: pod_oom_killed, labels: {pod: email-service-2, container: app, owner: deployment/email-service}, value: 1}
",
    );
    let change = |request: [&str; 2], limit: [&str; 2]| {
        canonical(
            &json!({"container": "app", "max": "2Gi", "memory_request": request, "memory_limit": limit}),
        )
    };
    assert_eq!(
        run.trace("oom"),
        [
            format!("0s 1 firing act {}", change(["512Mi", "1Gi"], ["1Gi", "2Gi"])),
            // The limit is at MAX_MEMORY: raising only the request cannot stop the next
            // kill, so it is not an action.
            format!(
                "60s 1 firing skip bound {}",
                change(["1Gi", "2Gi"], ["2Gi", "2Gi"])
            ),
            format!(
                "120s 1 firing skip bound {}",
                change(["1Gi", "2Gi"], ["2Gi", "2Gi"])
            ),
            format!(
                "180s 1 firing skip bound {}",
                change(["1Gi", "2Gi"], ["2Gi", "2Gi"])
            ),
        ]
    );
    assert_eq!(
        run.memory("deployment/email-service", "app"),
        ("1Gi".to_owned(), "2Gi".to_owned())
    );
}

#[test]
fn raise_memory_of_an_unknown_workload_is_skipped_not_guessed() {
    let run = rules(OOM_RULE).run(
        "steps:
  - at: 0s
    samples:
      - {signal: pod_oom_killed, labels: {pod: x-1, container: app, owner: deployment/x}, value: 1}
",
    );
    assert_eq!(run.trace("oom"), ["0s 1 firing skip plan"]);
    assert_eq!(
        detail(run.at(0, "oom")),
        "memory of container `app` in deployment/x is unknown"
    );
}

#[test]
fn dry_run_for_everything_changes_nothing_and_still_shows_the_cadence() {
    let yaml = r#"rules:
  - name: lag
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 15000"
    action:
      scale: {target: deployment/app, replicas: 6}
    cooldown: 30s
"#;
    let run = rules(yaml).every(15).dry_run().world(APP_AT_1).run(
        "until: 45s
steps:
  - {at: 0s, samples: [{signal: kafka_lag, value: 20000}]}
  - {at: 30s, samples: [{signal: kafka_lag, value: 20000}]}
",
    );
    assert_eq!(
        run.trace("lag"),
        [
            r#"0s 20000 firing skip dry_run {"replicas":[1,6]}"#,
            "15s 20000 firing skip cooldown",
            r#"30s 20000 firing skip dry_run {"replicas":[1,6]}"#,
            "45s 20000 firing skip cooldown",
        ]
    );
    assert!(run.of("lag").all(|d| d.dry_run));
    assert_eq!(run.replicas("deployment/app"), Some(1));
}

#[test]
fn dry_run_of_one_rule_leaves_the_others_live() {
    let yaml = r#"rules:
  - name: rehearsal
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 15000"
    action:
      scale: {target: deployment/app, replicas: 6}
    dry_run: true
  - name: live
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 15000"
    action:
      scale: {target: deployment/other, replicas: 3}
"#;
    let run = rules(yaml).run(
        "world: {deployment/app: {replicas: 1}, deployment/other: {replicas: 1}}
until: 15s
steps:
  - {at: 0s, samples: [{signal: kafka_lag, value: 20000}]}
",
    );
    assert_eq!(
        run.trace("rehearsal"),
        [
            r#"0s 20000 firing skip dry_run {"replicas":[1,6]}"#,
            "15s 20000 firing skip cooldown",
        ]
    );
    assert!(run.of("rehearsal").all(|d| d.dry_run));
    assert_eq!(run.acts(), [r#"0s live deployment/other {"replicas":[1,3]}"#]);
    assert!(!run.at(0, "live").dry_run);
    assert_eq!(run.replicas("deployment/app"), Some(1));
    assert_eq!(run.replicas("deployment/other"), Some(3));
}

#[test]
fn a_replica_without_the_lease_never_acts() {
    let sim = rules(&lag_rule("critical", ""));
    let run = sim.world(APP_AT_1).run(
        "until: 45s
steps:
  - {at: 0s, leader: false, samples: [{signal: kafka_lag, value: 20000}]}
  - {at: 30s, leader: true, samples: [{signal: kafka_lag, value: 20000}]}
",
    );
    assert_eq!(
        run.trace("lag"),
        [
            "0s 20000 firing skip not_leader",
            "15s 20000 firing skip not_leader",
            r#"30s 20000 firing act {"replicas":[1,6]}"#,
            "45s 20000 firing skip cooldown",
        ]
    );
}

#[test]
fn target_owner_keeps_one_state_per_owner() {
    let world = "world:
  deployment/api: {containers: {app: {memory_request: 256Mi, memory_limit: 512Mi}}}
  deployment/email-service: {containers: {app: {memory_request: 512Mi, memory_limit: 1Gi}}}
";
    let run = rules(OOM_RULE).world(world).run(
        "until: 15s
steps:
  - at: 0s
    samples:
      - {signal: pod_oom_killed, labels: {pod: email-service-1, container: app, owner: deployment/email-service}, value: 1}
      - {signal: pod_oom_killed, labels: {pod: email-service-2, container: app, owner: deployment/email-service}, value: 2}
      - {signal: pod_oom_killed, labels: {pod: api-1, container: app, owner: deployment/api}, value: 1}
      - {signal: pod_oom_killed, labels: {pod: orphan, container: app}, value: 1}
",
    );
    // Two pods of one owner are one target (the deepest value); a pod without an owner is
    // no target at all.
    assert_eq!(
        run.acts(),
        [
            r#"0s oom deployment/api {"container":"app","max":"8Gi","memory_limit":["512Mi","1Gi"],"memory_request":["256Mi","512Mi"]}"#,
            r#"0s oom deployment/email-service {"container":"app","max":"8Gi","memory_limit":["1Gi","2Gi"],"memory_request":["512Mi","1Gi"]}"#,
        ]
    );
    let email = run.of("oom").find(|d| &*d.target == "deployment/email-service");
    assert_eq!(email.and_then(|d| d.value), Some(2.0));
    assert_eq!(
        run.trace_on("oom", "deployment/api"),
        [
            r#"0s 1 firing act {"container":"app","max":"8Gi","memory_limit":["512Mi","1Gi"],"memory_request":["256Mi","512Mi"]}"#,
            "15s 1 firing skip cooldown",
        ]
    );
}

#[test]
fn target_owner_without_any_sample_says_why_under_owner() {
    let run = rules(OOM_RULE).run("steps:\n  - {at: 0s}\n");
    assert_eq!(run.trace_on("oom", "owner"), ["0s null unknown skip unknown"]);
    assert_eq!(detail(run.at(0, "oom")), "no sample yet");
}

#[test]
fn a_sample_applies_only_to_rules_whose_parameters_it_matches() {
    let yaml = r#"rules:
  - name: email
    priority: critical
    signal:
      kafka_lag: {group: email-service-group, topic: email.received}
    when: "> 15000"
    action:
      scale: {target: deployment/email-service, replicas: 6}
  - name: billing
    priority: critical
    signal:
      kafka_lag: {group: billing-group}
    when: "> 15000"
    action:
      scale: {target: deployment/billing, replicas: 4}
"#;
    let run = rules(yaml).run(
        "world: {deployment/email-service: {replicas: 1}, deployment/billing: {replicas: 1}}
steps:
  - at: 0s
    samples:
      # Another group: applies to billing only. `partitions` only describes the series.
      - {signal: kafka_lag, labels: {group: billing-group, partitions: 12}, value: 20000}
      # The right group but another topic: applies to nothing.
      - {signal: kafka_lag, labels: {group: email-service-group, topic: email.sent}, value: 20000}
",
    );
    assert_eq!(run.trace("email"), ["0s null unknown skip unknown"]);
    assert_eq!(detail(run.at(0, "email")), "no sample yet");
    assert_eq!(
        run.acts(),
        [r#"0s billing deployment/billing {"replicas":[1,4]}"#]
    );
}

#[test]
fn two_rules_on_one_target_have_their_own_cooldowns() {
    let yaml = r#"rules:
  - name: scale-up
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 15000"
    action:
      scale: {target: deployment/app, step: 1}
    cooldown: 1m
  - name: restart
    priority: critical
    signal:
      kafka_lag: {group: g}
    when: "> 15000"
    action:
      restart: {target: deployment/app}
    cooldown: 2m
"#;
    let run = rules(yaml).every(30).world(APP_AT_1).run(
        "until: 2m
steps:
  - {at: 0s, samples: [{signal: kafka_lag, value: 20000}]}
  - {at: 1m, samples: [{signal: kafka_lag, value: 20000}]}
  - {at: 2m, samples: [{signal: kafka_lag, value: 20000}]}
",
    );
    assert_eq!(
        run.acts(),
        [
            r#"0s scale-up deployment/app {"replicas":[1,2]}"#,
            r#"0s restart deployment/app {"rollout_restart":"deployment/app"}"#,
            r#"60s scale-up deployment/app {"replicas":[2,3]}"#,
            r#"120s scale-up deployment/app {"replicas":[3,4]}"#,
            r#"120s restart deployment/app {"rollout_restart":"deployment/app"}"#,
        ]
    );
    assert_eq!(detail(run.at(60, "restart")), "60s of cooldown left");
}

// The binary, end to end, on the seed scenarios.

/// Settings the `simulate` command reads; removed so a developer's shell cannot change them.
const SETTINGS: [&str; 9] = [
    "CHECK_INTERVAL",
    "DRY_RUN",
    "ACTION_BUDGET",
    "MIN_REPLICAS",
    "MAX_REPLICAS",
    "MAX_MEMORY",
    "KAFKA_LAG_THRESHOLD",
    "KAFKA_LAG_CLEAR",
    "HEAL_SELECTOR",
];

/// The `act` decisions `automaton simulate` prints for the seed timeline against `rules`.
fn seed_acts(rules: &str) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_automaton"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "simulate",
        "--rules",
        rules,
        "--timeline",
        "tests/timelines/seed.yaml",
        "--interval",
        "15s",
    ]);
    for var in SETTINGS {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("the automaton binary runs");
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "simulate printed nothing");
    lines.into_iter().filter(|d| d["decision"] == "act").collect()
}

fn seed_expected() -> Vec<Value> {
    vec![
        json!({
            "id": "sim-1",
            "at": 30.0,
            "rule": "pod-oom-killed",
            "target": "deployment/email-service",
            "value": 1.0,
            "state": "firing",
            "decision": "act",
            "action": "raise_memory",
            "dry_run": false,
            "change": {
                "container": "app",
                "memory_request": ["512Mi", "1Gi"],
                "memory_limit": ["1Gi", "2Gi"],
                "max": "8Gi",
            },
            "success": true,
        }),
        json!({
            "id": "sim-2",
            "at": 60.0,
            "rule": "kafka-consumer-lag",
            "target": "deployment/email-service",
            "value": 20000.0,
            "state": "firing",
            "decision": "act",
            "action": "scale",
            "dry_run": false,
            "change": {"replicas": [1, 6]},
            "success": true,
        }),
    ]
}

#[test]
fn the_binary_replays_the_seed_timeline() {
    assert_eq!(seed_acts("tests/rules/seed"), seed_expected());
}

#[test]
fn the_seed_timeline_gives_the_same_actions_with_the_repository_rules() {
    assert_eq!(seed_acts("rules/"), seed_expected());
}

//! The engine's promises as properties over random rule sets, engine settings, worlds and
//! timelines (values, unknown samples, gaps longer than 3 × CHECK_INTERVAL, leader flips,
//! open circuit breakers, operator clears): cooldowns, bounds, the global budget, nothing
//! done on unknown data, exact rollbacks, rate limits, the static refusals and dry-run.
//!
//! Every case runs through `simulate::run`, exactly as `automaton simulate` does; a failure
//! prints the rule file, the settings, the timeline and the decisions that were not `none`,
//! so the (shrunk) counterexample can be replayed by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use automaton::actions::ActionSpec;
use automaton::core::decision::{Decision, State, Verdict};
use automaton::core::engine::EngineConfig;
use automaton::core::values::{Bytes, Dur};
use automaton::core::verify::VerifyResult;
use automaton::core::world::{Resources, SimWorld, Workload};
use automaton::rules::load_texts;
use automaton::rules::{Rule, RuleSet};
use automaton::runtime::simulate::{run, LabelValue, Sample, Timeline, TimelineStep};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

const INTERVAL: Duration = Duration::from_secs(15);
const MI: u64 = 1 << 20;
/// Workloads of the world; samples also name an owner the world does not know.
const DEPLOYMENTS: [&str; 3] = ["deployment/a", "deployment/b", "deployment/c"];
const OWNERS: [Option<&str>; 5] = [
    Some("deployment/a"),
    Some("deployment/b"),
    Some("deployment/c"),
    Some("deployment/ghost"),
    None,
];
const CIRCUITS: [&str; 4] = [
    "kubernetes",
    "http/hook0.example:80",
    "http/hook1.example:80",
    "kafka",
];

// ---------------------------------------------------------------------------------------
// What is generated

#[derive(Debug, Clone)]
enum SignalGen {
    Kafka(u8),
    Oom { selector: u8, window: u64 },
    Disk(u8),
}

#[derive(Debug, Clone)]
enum ActionGen {
    ScaleTo { replicas: u32, max: Option<u32> },
    ScaleStep { step: i64, max: Option<u32> },
    RaiseFactor { factor: f64, max_mi: Option<u64> },
    RaiseStep { step_mi: u64, max_mi: Option<u64> },
    Http { host: u8 },
}

#[derive(Debug, Clone)]
struct Cond {
    op: &'static str,
    threshold: u8,
}

impl Cond {
    fn yaml(&self) -> String {
        format!("\"{} {}\"", self.op, self.threshold)
    }
}

#[derive(Debug, Clone)]
struct RuleGen {
    signal: SignalGen,
    action: ActionGen,
    /// The deployment of a fixed target.
    target: u8,
    /// `target: owner` (pod signals only).
    owner: bool,
    when: Cond,
    hold_for: u64,
    cooldown: u64,
    clear: Option<Cond>,
    rate_limit: Option<(u32, u64)>,
    verify: Option<(u64, Cond)>,
    rollback: bool,
    dry_run: bool,
}

#[derive(Debug, Clone)]
struct DeployGen {
    replicas: Option<u32>,
    /// Memory request and limit of container `app`, in Mi.
    memory: Option<(u64, u64)>,
    paused: bool,
    hpa: bool,
    gitops: bool,
}

#[derive(Debug, Clone)]
struct ConfigGen {
    budget_limit: u32,
    budget_window: u64,
    max_replicas: u32,
    max_memory_mi: u64,
    dry_run: bool,
    gitops_skip: bool,
}

/// What one step says of one source.
#[derive(Debug, Clone)]
enum Slot {
    Absent,
    Null,
    /// (owner index, value) per series.
    Values(Vec<(u8, u8)>),
}

#[derive(Debug, Clone)]
struct StepGen {
    /// Seconds since the previous step (the first step is at 0s).
    delta: u64,
    slots: Vec<Slot>,
    leader: Option<bool>,
    open: Option<Vec<u8>>,
    clear_quarantine: bool,
}

#[derive(Debug, Clone)]
struct Case {
    rules: Vec<RuleGen>,
    world: Vec<DeployGen>,
    config: ConfigGen,
    steps: Vec<StepGen>,
    /// Seconds to keep ticking after the last step.
    tail: u64,
}

fn secs(choices: &'static [u64]) -> prop::sample::Select<u64> {
    prop::sample::select(choices)
}

fn cond() -> impl Strategy<Value = Cond> {
    (prop::sample::select(vec![">", ">=", "<", "<="]), 0u8..=10)
        .prop_map(|(op, threshold)| Cond { op, threshold })
}

fn signal() -> impl Strategy<Value = SignalGen> {
    prop_oneof![
        (0u8..2).prop_map(SignalGen::Kafka),
        (0u8..2, secs(&[15, 30, 60])).prop_map(|(selector, window)| SignalGen::Oom { selector, window }),
        (0u8..2).prop_map(SignalGen::Disk),
    ]
}

fn action() -> impl Strategy<Value = ActionGen> {
    let max = prop::option::weighted(0.7, 1u32..=12);
    let max_mi = prop::option::weighted(0.7, secs(&[256, 768, 1024, 2048, 4096, 16384]));
    prop_oneof![
        3 => (0u32..=14, max.clone()).prop_map(|(replicas, max)| ActionGen::ScaleTo { replicas, max }),
        3 => (-3i64..=4, max).prop_map(|(step, max)| ActionGen::ScaleStep { step, max }),
        2 => (prop::sample::select(vec![1.5, 2.0, 3.0]), max_mi.clone())
            .prop_map(|(factor, max_mi)| ActionGen::RaiseFactor { factor, max_mi }),
        2 => (secs(&[64, 256, 1024]), max_mi).prop_map(|(step_mi, max_mi)| ActionGen::RaiseStep { step_mi, max_mi }),
        1 => (0u8..2).prop_map(|host| ActionGen::Http { host }),
    ]
}

/// A rule; `verify` is how likely it is to verify its actions.
fn rule(verify: f64) -> impl Strategy<Value = RuleGen> {
    (
        (signal(), action(), 0u8..3, any::<bool>()),
        (
            cond(),
            secs(&[0, 0, 15, 30, 60]),
            secs(&[0, 15, 20, 30, 45, 60, 90, 300]),
        ),
        prop::option::weighted(0.4, cond()),
        prop::option::weighted(0.3, (1u32..=3, secs(&[30, 60, 120, 300]))),
        prop::option::weighted(verify, (secs(&[15, 30, 45, 60, 120]), cond())),
        (prop::bool::weighted(0.8), prop::bool::weighted(0.15)),
    )
        .prop_map(
            |(
                (signal, action, target, owner),
                (when, hold_for, cooldown),
                clear,
                rate_limit,
                verify,
                (rollback, dry_run),
            )| {
                RuleGen {
                    signal,
                    action,
                    target,
                    owner,
                    when,
                    hold_for,
                    cooldown,
                    clear,
                    rate_limit,
                    verify,
                    rollback,
                    dry_run,
                }
            },
        )
}

fn deployment() -> impl Strategy<Value = DeployGen> {
    let memory = (
        secs(&[128, 256, 512, 1024, 1536, 3072, 8192, 12288]),
        secs(&[1, 1, 2, 4]),
    )
        .prop_map(|(limit, div)| (limit / div, limit));
    (
        prop::option::weighted(0.9, 0u32..=14),
        prop::option::weighted(0.85, memory),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(replicas, memory, paused, hpa, gitops)| DeployGen {
            replicas,
            memory,
            paused,
            hpa,
            gitops,
        })
}

fn settings() -> impl Strategy<Value = ConfigGen> {
    (
        0u32..=6,
        secs(&[30, 60, 120, 300, 600]),
        1u32..=12,
        secs(&[512, 1024, 2048, 8192]),
        prop::bool::weighted(0.1),
        any::<bool>(),
    )
        .prop_map(
            |(budget_limit, budget_window, max_replicas, max_memory_mi, dry_run, gitops_skip)| ConfigGen {
                budget_limit,
                budget_window,
                max_replicas,
                max_memory_mi,
                dry_run,
                gitops_skip,
            },
        )
}

/// One source's sample at a step, decoded from two integers: proptest builds and shrinks
/// flat integers much faster than nested collections, and both shrink towards no sample.
fn slot((kind, packed): (u8, u32)) -> Slot {
    match kind {
        0..=1 => Slot::Absent,
        2 => Slot::Null,
        _ => {
            let series = 1 + packed % 3;
            Slot::Values(
                (0..series)
                    .map(|i| {
                        let bits = packed >> (2 + 8 * i);
                        ((bits % 5) as u8, ((bits >> 3) % 11) as u8)
                    })
                    .collect(),
            )
        }
    }
}

fn step() -> impl Strategy<Value = StepGen> {
    (
        secs(&[5, 15, 15, 15, 15, 15, 15, 30, 60, 90]),
        prop::array::uniform6((0u8..10, any::<u32>())),
        (0u8..100, 0u8..16),
    )
        .prop_map(|(delta, slots, (event, arg))| StepGen {
            delta,
            slots: slots.into_iter().map(slot).collect(),
            // Now and then: the lease is lost or regained, breakers open or close, an
            // operator clears the quarantines.
            leader: match event {
                80..=81 => Some(false),
                82..=85 => Some(true),
                _ => None,
            },
            open: (86..=92)
                .contains(&event)
                .then(|| (0..4u8).filter(|i| arg & (1 << i) != 0).collect()),
            clear_quarantine: (93..=95).contains(&event),
        })
}

fn case() -> impl Strategy<Value = Case> {
    case_with(0.5)
}

/// Cases whose rules verify their actions with probability `verify`.
fn case_with(verify: f64) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(rule(verify), 1..=4),
        prop::collection::vec(deployment(), DEPLOYMENTS.len()),
        settings(),
        prop::collection::vec(step(), 1..32),
        secs(&[0, 15, 60]),
    )
        .prop_map(|(rules, world, config, steps, tail)| Case {
            rules,
            world,
            config,
            steps,
            tail,
        })
}

// ---------------------------------------------------------------------------------------
// Rendering: the rule file and the timeline, as an operator would write them

impl Case {
    fn rules_yaml(&self) -> String {
        let mut y = String::from("rules:\n");
        for (i, r) in self.rules.iter().enumerate() {
            let _ = writeln!(y, "  - name: r{i}");
            let mut cooldown = r.cooldown;
            let signal = match &r.signal {
                SignalGen::Kafka(g) => format!("kafka_lag: {{group: g{g}}}"),
                SignalGen::Oom { selector, window } => {
                    // One kill must not be acted on twice: the loader wants cooldown ≥ window.
                    cooldown = cooldown.max(*window);
                    format!("pod_oom_killed: {{selector: \"app=s{selector}\", window: {window}s}}")
                }
                SignalGen::Disk(d) => format!("disk_usage: {{path: /d{d}}}"),
            };
            let _ = writeln!(y, "    signal:\n      {signal}");
            let _ = writeln!(y, "    when: {}", r.when.yaml());
            let _ = writeln!(y, "    for: {}s", r.hold_for);
            let owner = r.owner && matches!(r.signal, SignalGen::Oom { .. });
            let target = if owner {
                "owner".to_owned()
            } else {
                DEPLOYMENTS[usize::from(r.target)].to_owned()
            };
            // A fixed target's series carry no `container` label: the rule names it.
            let container = if owner { "" } else { ", container: app" };
            let max = |m: Option<u32>| m.map_or(String::new(), |m| format!(", max: {m}"));
            let max_mi = |m: Option<u64>| m.map_or(String::new(), |m| format!(", max: {m}Mi"));
            let action = match &r.action {
                ActionGen::ScaleTo { replicas, max: m } => {
                    format!("scale: {{target: {target}, replicas: {replicas}{}}}", max(*m))
                }
                ActionGen::ScaleStep { step, max: m } => {
                    format!("scale: {{target: {target}, step: {step}{}}}", max(*m))
                }
                ActionGen::RaiseFactor { factor, max_mi: m } => {
                    format!(
                        "raise_memory: {{target: {target}, factor: {factor}{container}{}}}",
                        max_mi(*m)
                    )
                }
                ActionGen::RaiseStep { step_mi, max_mi: m } => {
                    format!(
                        "raise_memory: {{target: {target}, step: {step_mi}Mi{container}{}}}",
                        max_mi(*m)
                    )
                }
                ActionGen::Http { host } => format!("http: {{url: \"http://hook{host}.example/reduce\"}}"),
            };
            let _ = writeln!(y, "    action:\n      {action}");
            let _ = writeln!(y, "    cooldown: {cooldown}s");
            if let Some(clear) = &r.clear {
                let _ = writeln!(y, "    clear: {}", clear.yaml());
            }
            if let Some((max, per)) = r.rate_limit {
                let _ = writeln!(y, "    rate_limit: {{max: {max}, per: {per}s}}");
            }
            if let Some((within, expect)) = &r.verify {
                let _ = writeln!(y, "    verify: {{within: {within}s, expect: {}}}", expect.yaml());
                if !r.rollback {
                    let _ = writeln!(y, "    rollback: false");
                }
            }
            if r.dry_run {
                let _ = writeln!(y, "    dry_run: true");
            }
        }
        y
    }

    /// The timeline, built directly (parsing YAML would dominate the run time) and as the
    /// YAML text it reads as; `the_generator_reaches_the_interesting_paths` checks both agree.
    fn timeline(&self) -> (Timeline, String) {
        let mut world = SimWorld::default();
        let mut y = String::from("world:\n");
        for (name, d) in DEPLOYMENTS.iter().zip(&self.world) {
            let mut w = Workload {
                replicas: d.replicas,
                paused: d.paused,
                hpa: d.hpa.then(|| "hpa-x".to_owned()),
                gitops: d.gitops.then(|| "argocd: x".to_owned()),
                ..Workload::default()
            };
            let mut fields = Vec::new();
            if let Some(r) = d.replicas {
                fields.push(format!("replicas: {r}"));
            }
            if let Some((req, lim)) = d.memory {
                let res = Resources {
                    memory_request: Some(Bytes(req * MI)),
                    memory_limit: Some(Bytes(lim * MI)),
                };
                w.containers.insert("app".to_owned(), res);
                fields.push(format!(
                    "containers: {{app: {{memory_request: {req}Mi, memory_limit: {lim}Mi}}}}"
                ));
            }
            if d.paused {
                fields.push("paused: true".to_owned());
            }
            if d.hpa {
                fields.push("hpa: hpa-x".to_owned());
            }
            if d.gitops {
                fields.push("gitops: \"argocd: x\"".to_owned());
            }
            world.0.insert((*name).to_owned(), w);
            let _ = writeln!(y, "  {name}: {{{}}}", fields.join(", "));
        }
        let mut at = 0;
        let mut steps = Vec::with_capacity(self.steps.len());
        let mut text = String::new();
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                at += s.delta;
            }
            let _ = writeln!(text, "  - at: {at}s");
            if let Some(leader) = s.leader {
                let _ = writeln!(text, "    leader: {leader}");
            }
            let open_circuits = s.open.as_ref().map(|open| {
                let names: BTreeSet<&str> = open.iter().map(|c| CIRCUITS[usize::from(*c)]).collect();
                names.into_iter().map(str::to_owned).collect::<Vec<String>>()
            });
            if let Some(names) = &open_circuits {
                let _ = writeln!(text, "    open_circuits: [{}]", names.join(", "));
            }
            if s.clear_quarantine {
                let _ = writeln!(text, "    clear_quarantine: true");
            }
            let mut samples = Vec::new();
            for (source, slot) in s.slots.iter().enumerate() {
                let (signal, key, id) = match source {
                    0 | 1 => ("kafka_lag", "group", format!("g{source}")),
                    2 | 3 => ("pod_oom_killed", "selector", format!("app=s{}", source - 2)),
                    _ => ("disk_usage", "path", format!("/d{}", source - 4)),
                };
                let sample = |labels: &[(&str, &str)], value: Option<f64>| Sample {
                    signal: signal.to_owned(),
                    labels: labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), LabelValue((*v).to_owned())))
                        .collect(),
                    value,
                    reason: None,
                };
                match slot {
                    Slot::Absent => {}
                    Slot::Null => samples.push(sample(&[(key, &id)], None)),
                    Slot::Values(series) => {
                        for (n, (owner, value)) in series.iter().enumerate() {
                            let pod = format!("p{n}");
                            let mut labels = vec![(key, id.as_str()), ("pod", &pod), ("container", "app")];
                            if let Some(o) = OWNERS[usize::from(*owner)] {
                                labels.push(("owner", o));
                            }
                            samples.push(sample(&labels, Some(f64::from(*value))));
                        }
                    }
                }
            }
            if !samples.is_empty() {
                let _ = writeln!(text, "    samples:");
            }
            for sample in &samples {
                let labels: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}: \"{}\"", v.0))
                    .collect();
                let value = sample.value.map_or("null".to_owned(), |v| v.to_string());
                let _ = writeln!(
                    text,
                    "      - {{signal: {}, labels: {{{}}}, value: {value}}}",
                    sample.signal,
                    labels.join(", ")
                );
            }
            steps.push(TimelineStep {
                at: Dur(Duration::from_secs(at)),
                samples,
                leader: s.leader,
                open_circuits,
                clear_quarantine: s.clear_quarantine,
            });
        }
        let until = at + self.tail;
        let _ = write!(y, "until: {until}s\nsteps:\n{text}");
        let timeline = Timeline {
            world,
            steps,
            until: Some(Dur(Duration::from_secs(until))),
            expect: Vec::new(),
        };
        (timeline, y)
    }

    fn engine_config(&self) -> EngineConfig {
        let c = &self.config;
        let mut config = EngineConfig {
            stale_after: INTERVAL * 3,
            dry_run: c.dry_run,
            budget_limit: c.budget_limit,
            budget_window: Duration::from_secs(c.budget_window),
            gitops_skip: c.gitops_skip,
            ..EngineConfig::default()
        };
        config.limits.max_replicas = c.max_replicas;
        config.limits.max_memory = Bytes(c.max_memory_mi * MI);
        config
    }

    fn simulate(&self) -> Sim {
        let rules_yaml = self.rules_yaml();
        let (timeline, timeline_yaml) = self.timeline();
        let rules = load_texts(&[(Path::new("rules.yaml"), rules_yaml.as_str())], &|_| None)
            .unwrap_or_else(|e| panic!("generator wrote invalid rules: {e:#?}\n{rules_yaml}"));
        let config = self.engine_config();
        let (decisions, world) = run(rules.clone(), &timeline, INTERVAL, config.clone());
        Sim {
            rules_yaml,
            timeline_yaml,
            rules,
            timeline,
            config,
            decisions,
            world,
        }
    }
}

// ---------------------------------------------------------------------------------------
// One simulation and the helpers the properties read it with

struct Sim {
    rules_yaml: String,
    timeline_yaml: String,
    rules: RuleSet,
    timeline: Timeline,
    config: EngineConfig,
    decisions: Vec<Decision>,
    world: SimWorld,
}

fn verdict(d: &Decision) -> &'static str {
    match d.decision {
        Verdict::Act => "act",
        Verdict::Skip => "skip",
        Verdict::None => "none",
    }
}

fn line(d: &Decision) -> String {
    let mut text = format!(
        "{}s {} {} {} {} {} {}",
        d.at.as_secs_f64(),
        d.rule,
        d.target,
        d.kind,
        d.value.map_or("null".to_owned(), |v| v.to_string()),
        d.state.as_str(),
        verdict(d),
    );
    if let Some(reason) = d.reason {
        let _ = write!(text, " {}", reason.as_str());
    }
    if let Some(change) = &d.change {
        let _ = write!(text, " {change}");
    }
    if let Some(v) = &d.verification {
        let _ = write!(text, " verification={}", v.result.as_str());
    }
    if d.quarantined {
        text.push_str(" quarantined");
    }
    text
}

/// Whether the decision is an action of its own (not a rollback, not a `notify_first`).
fn own_act(d: &Decision) -> bool {
    d.decision == Verdict::Act && !d.follows_up()
}

fn replicas_of(world: &SimWorld, target: &str) -> Option<u32> {
    world.0.get(target).and_then(|w| w.replicas)
}

fn memory_of(world: &SimWorld, target: &str, container: &str) -> (Option<Bytes>, Option<Bytes>) {
    world
        .0
        .get(target)
        .and_then(|w| w.containers.get(container))
        .map_or((None, None), |r| (r.memory_request, r.memory_limit))
}

fn bytes(v: &Value) -> Option<Bytes> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// `[before, after]` of a change field, reversed.
fn reversed(v: &Value) -> Value {
    match v.as_array() {
        Some(items) => Value::Array(items.iter().rev().cloned().collect()),
        None => Value::Null,
    }
}

impl Sim {
    fn rule(&self, d: &Decision) -> &Rule {
        &self.rules.rules[d.rule_index]
    }

    /// The counterexample: everything needed to replay it with `automaton simulate`.
    fn context(&self) -> String {
        let c = &self.config;
        let mut text = format!(
            "--- rules.yaml\n{}--- settings\nACTION_BUDGET={}/{}s MAX_REPLICAS={} MAX_MEMORY={} DRY_RUN={} \
             GITOPS_POLICY={} CHECK_INTERVAL={}s\n--- timeline.yaml\n{}\n--- decisions (none omitted)\n",
            self.rules_yaml,
            c.budget_limit,
            c.budget_window.as_secs(),
            c.limits.max_replicas,
            c.limits.max_memory,
            c.dry_run,
            if c.gitops_skip { "skip" } else { "warn" },
            INTERVAL.as_secs(),
            self.timeline_yaml,
        );
        let shown: Vec<String> = self
            .decisions
            .iter()
            .filter(|d| d.decision != Verdict::None || d.verification.is_some())
            .map(line)
            .collect();
        for l in shown.iter().take(300) {
            let _ = writeln!(text, "{l}");
        }
        if shown.len() > 300 {
            let _ = writeln!(text, "… {} more", shown.len() - 300);
        }
        text
    }

    fn check(&self, ok: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
        if ok {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!("{}\n\n{}", what(), self.context())))
        }
    }

    /// Replays the decisions on the initial world as `simulate` does, calling `f` with each
    /// decision and the world just before and just after it.
    fn replay(
        &self,
        mut f: impl FnMut(usize, &Decision, &SimWorld, &SimWorld) -> Result<(), TestCaseError>,
    ) -> Result<(), TestCaseError> {
        let mut world = self.timeline.world.clone();
        for (i, d) in self.decisions.iter().enumerate() {
            let before = world.clone();
            if d.decision == Verdict::Act {
                if let Some(plan) = &d.plan {
                    world.apply(&plan.effect);
                }
            }
            f(i, d, &before, &world)?;
        }
        self.check(world == self.world, || {
            format!(
                "replaying the decisions gives {world:?}, simulate returned {:?}",
                self.world
            )
        })
    }

    /// The dependencies whose circuit is open at `at`, as the timeline set them.
    fn open_circuits_at(&self, at: Duration) -> BTreeSet<String> {
        let mut open = BTreeSet::new();
        for step in self.timeline.steps.iter().take_while(|s| s.at.0 <= at) {
            if let Some(o) = &step.open_circuits {
                open = o.iter().cloned().collect();
            }
        }
        open
    }

    fn cleared_at(&self, at: Duration) -> bool {
        self.timeline
            .steps
            .iter()
            .any(|s| s.at.0 == at && s.clear_quarantine)
    }

    /// The own acts, grouped by (rule, target), each in time order.
    fn acts_by_target(&self) -> BTreeMap<(usize, &str), Vec<&Decision>> {
        let mut by: BTreeMap<(usize, &str), Vec<&Decision>> = BTreeMap::new();
        for d in self.decisions.iter().filter(|d| own_act(d)) {
            by.entry((d.rule_index, &*d.target)).or_default().push(d);
        }
        by
    }

    /// The bound on replicas the scale rules that can reach `target` have.
    fn replica_bound(&self, target: &str) -> Option<u32> {
        let limit = self.config.limits.max_replicas;
        self.rules
            .rules
            .iter()
            .filter_map(|r| match &r.spec.action {
                ActionSpec::Scale(s) if r.fixed_target.as_deref().is_none_or(|t| t == target) => {
                    Some(s.max.unwrap_or(limit).min(limit))
                }
                _ => None,
            })
            .max()
    }

    fn memory_cap_of(&self, rule: &Rule) -> Option<Bytes> {
        let limit = self.config.limits.max_memory;
        match &rule.spec.action {
            ActionSpec::RaiseMemory(m) => Some(Bytes(m.max.map_or(limit.0, |m| m.0.min(limit.0)))),
            _ => None,
        }
    }

    fn memory_bound(&self, target: &str) -> Option<Bytes> {
        self.rules
            .rules
            .iter()
            .filter(|r| r.fixed_target.as_deref().is_none_or(|t| t == target))
            .filter_map(|r| self.memory_cap_of(r))
            .max()
    }
}

/// No more than `limit` of `times` (sorted) in any window `[t, t + window)`.
fn most_in_window(times: &[Duration], window: Duration) -> (usize, Duration) {
    let mut most = (0, Duration::ZERO);
    for (i, t) in times.iter().enumerate() {
        let n = times[i..].iter().take_while(|u| **u < *t + window).count();
        if n > most.0 {
            most = (n, *t);
        }
    }
    most
}

// ---------------------------------------------------------------------------------------
// The properties

/// 512 cases each (about 1 ms apiece in debug); PROPTEST_CASES=N for a longer hunt.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok());
    ProptestConfig {
        cases: cases.unwrap_or(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// 1. Two own actions of one rule on one target are at least its cooldown apart.
    #[test]
    fn cooldown_separates_actions_on_a_target(case in case()) {
        let sim = case.simulate();
        for ((rule, target), acts) in sim.acts_by_target() {
            let cooldown = sim.rules.rules[rule].cooldown;
            for pair in acts.windows(2) {
                sim.check(pair[1].at >= pair[0].at + cooldown, || format!(
                    "rule {} acted on {target} at {}s and again at {}s: cooldown is {}s",
                    sim.rules.rules[rule].name,
                    pair[0].at.as_secs_f64(),
                    pair[1].at.as_secs_f64(),
                    cooldown.as_secs_f64(),
                ))?;
            }
        }
    }

    /// 2. Replicas and memory never go above the rules' `max` and MAX_REPLICAS / MAX_MEMORY
    /// (unless they started above), and every act's own change respects its rule's bound.
    #[test]
    fn never_above_max(case in case()) {
        let sim = case.simulate();
        let initial = sim.timeline.world.clone();
        sim.replay(|_, d, before, after| {
            if d.decision != Verdict::Act {
                return Ok(());
            }
            let rule = sim.rule(d);
            let change = d.change.clone().unwrap_or_default();
            if !d.follows_up() {
                if let ActionSpec::Scale(s) = &rule.spec.action {
                    let bound = s.max.unwrap_or(sim.config.limits.max_replicas).min(sim.config.limits.max_replicas);
                    let to = change["replicas"][1].as_u64();
                    sim.check(to.is_some_and(|n| n <= u64::from(bound)), || format!(
                        "{} sets replicas to {to:?}, above min(rule max, MAX_REPLICAS) = {bound}", line(d)
                    ))?;
                    sim.check(replicas_of(after, &d.target) == to.map(|n| n as u32), || format!(
                        "after {} the world has {:?} replicas", line(d), replicas_of(after, &d.target)
                    ))?;
                }
                if let Some(cap) = sim.memory_cap_of(rule) {
                    let container = change["container"].as_str().unwrap_or_default().to_owned();
                    let (req0, lim0) = memory_of(before, &d.target, &container);
                    let (req1, lim1) = memory_of(after, &d.target, &container);
                    let ok = |from: Option<Bytes>, to: Option<Bytes>| {
                        to.is_some_and(|to| to <= cap.max(from.unwrap_or(Bytes(0))))
                    };
                    sim.check(ok(req0, req1) && ok(lim0, lim1), || format!(
                        "{} raises memory of {container} from {req0:?}/{lim0:?} to {req1:?}/{lim1:?}, above the cap {cap}",
                        line(d)
                    ))?;
                }
            }
            for (target, w) in &after.0 {
                let start = initial.0.get(target);
                if let (Some(n), Some(bound)) = (w.replicas, sim.replica_bound(target)) {
                    let was = start.and_then(|s| s.replicas).unwrap_or(0);
                    sim.check(n <= bound.max(was), || format!(
                        "after {}: {target} has {n} replicas, above {bound} (it started at {was})", line(d)
                    ))?;
                }
                let cap = sim.memory_bound(target);
                for (container, res) in &w.containers {
                    let was = start.and_then(|s| s.containers.get(container));
                    let (req, lim) = (res.memory_request, res.memory_limit);
                    sim.check(req <= lim, || format!(
                        "after {}: {target}/{container} requests {req:?}, more than its limit {lim:?}", line(d)
                    ))?;
                    let Some(cap) = cap else { continue };
                    let was_lim = was.and_then(|r| r.memory_limit).unwrap_or(Bytes(0));
                    let was_req = was.and_then(|r| r.memory_request).unwrap_or(Bytes(0));
                    sim.check(
                        lim.is_none_or(|l| l <= cap.max(was_lim)) && req.is_none_or(|r| r <= cap.max(was_req)),
                        || format!(
                            "after {}: {target}/{container} has {req:?}/{lim:?}, above the cap {cap} \
                             (it started at {was_req}/{was_lim})",
                            line(d)
                        ),
                    )?;
                }
            }
            Ok(())
        })?;
    }

    /// 3. The global budget: at most ACTION_BUDGET own actions in any window. Rollbacks and
    /// notices use no budget (see the engine's step); dry runs never reach it.
    #[test]
    fn the_global_budget_is_never_exceeded(case in case()) {
        let sim = case.simulate();
        let times: Vec<Duration> = sim.decisions.iter().filter(|d| own_act(d)).map(|d| d.at).collect();
        let window = sim.config.budget_window;
        let (most, from) = most_in_window(&times, window);
        sim.check(most <= sim.config.budget_limit as usize, || format!(
            "{most} actions in the {}s from {}s: the budget is {}",
            window.as_secs(), from.as_secs_f64(), sim.config.budget_limit
        ))?;
    }

    /// 4. Nothing is ever done on unknown data: no act (rollbacks included) whose state is
    /// unknown or whose value is null.
    #[test]
    fn unknown_never_acts(case in case()) {
        let sim = case.simulate();
        for d in sim.decisions.iter().filter(|d| d.decision == Verdict::Act) {
            sim.check(d.state != State::Unknown && d.value.is_some(), || format!(
                "acted without a known value: {}", line(d)
            ))?;
            sim.check(d.follows_up() || d.state == State::Firing, || format!(
                "acted while not firing: {}", line(d)
            ))?;
        }
    }

    /// 5. A rollback restores exactly what the action it undoes found: its change is that
    /// action's change reversed, and afterwards the world holds the values from before.
    #[test]
    fn a_rollback_restores_the_exact_previous_values(case in case_with(0.9)) {
        let sim = case.simulate();
        // The last own act of each (rule, target), and whether it was undone already.
        let mut last: BTreeMap<(usize, String), (usize, bool)> = BTreeMap::new();
        sim.replay(|i, d, _, after| {
            let key = (d.rule_index, d.target.to_string());
            if own_act(d) {
                last.insert(key, (i, false));
                return Ok(());
            }
            if d.decision != Verdict::Act || d.kind.as_str() != "rollback" {
                return Ok(());
            }
            let rule = sim.rule(d);
            sim.check(rule.spec.verify.is_some() && rule.spec.rollback, || format!(
                "{} rolls back for a rule without `verify` or with `rollback: false`", line(d)
            ))?;
            let Some((at, undone)) = last.get_mut(&key) else {
                return sim.check(false, || format!("{} undoes no earlier action", line(d)));
            };
            let act = &sim.decisions[*at];
            sim.check(!*undone, || format!("{} undoes {} a second time", line(d), line(act)))?;
            *undone = true;
            sim.check(act.at < d.at, || format!("{} undoes {} of the same tick", line(d), line(act)))?;
            let (done, undo) = (act.change.clone().unwrap_or_default(), d.change.clone().unwrap_or_default());
            match &rule.spec.action {
                ActionSpec::Scale(_) => {
                    sim.check(undo["replicas"] == reversed(&done["replicas"]), || format!(
                        "{} does not reverse {}", line(d), line(act)
                    ))?;
                    let before = done["replicas"][0].as_u64().map(|n| n as u32);
                    sim.check(before.is_some() && replicas_of(after, &d.target) == before, || format!(
                        "after {} {} has {:?} replicas, not the {before:?} {} found",
                        line(d), d.target, replicas_of(after, &d.target), line(act)
                    ))?;
                }
                ActionSpec::RaiseMemory(_) => {
                    let container = done["container"].as_str().unwrap_or_default();
                    sim.check(
                        undo["container"] == done["container"]
                            && undo["memory_request"] == reversed(&done["memory_request"])
                            && undo["memory_limit"] == reversed(&done["memory_limit"]),
                        || format!("{} does not reverse {}", line(d), line(act)),
                    )?;
                    let before = (bytes(&done["memory_request"][0]), bytes(&done["memory_limit"][0]));
                    let now = memory_of(after, &d.target, container);
                    sim.check(before.0.is_some() && now == before, || format!(
                        "after {} {}/{container} has {now:?}, not the {before:?} {} found",
                        line(d), d.target, line(act)
                    ))?;
                }
                _ => sim.check(false, || format!("{} rolls back an action that cannot be undone", line(d)))?,
            }
            Ok(())
        })?;
    }

    /// 6. A rule's `rate_limit`: at most `max` own actions of the rule, all targets
    /// together, in any `per`.
    #[test]
    fn a_rule_never_exceeds_its_rate_limit(case in case()) {
        let sim = case.simulate();
        for (index, rule) in sim.rules.rules.iter().enumerate() {
            let Some(limit) = &rule.spec.rate_limit else { continue };
            let times: Vec<Duration> = sim
                .decisions
                .iter()
                .filter(|d| d.rule_index == index && own_act(d))
                .map(|d| d.at)
                .collect();
            let (most, from) = most_in_window(&times, limit.per.0);
            sim.check(most <= limit.max as usize, || format!(
                "rule {} acted {most} times in the {}s from {}s: rate_limit is {} per {}",
                rule.name, limit.per.0.as_secs(), from.as_secs_f64(), limit.max, limit.per
            ))?;
        }
    }

    /// 7. The static refusals hold: nothing acts on a paused target, through an open circuit,
    /// on HPA-owned replicas, on a GitOps-managed object under GITOPS_POLICY=skip; and a
    /// quarantined (rule, target) does not act again until it is cleared.
    #[test]
    fn refused_targets_and_quarantines_never_act(case in case()) {
        let sim = case.simulate();
        let world = &sim.timeline.world;
        // Whether each (rule, target) was left quarantined by its last evaluation.
        let mut quarantined: BTreeMap<(usize, &str), bool> = BTreeMap::new();
        for d in &sim.decisions {
            let rule = sim.rule(d);
            let workload = world.0.get(&*d.target);
            if d.decision == Verdict::Act {
                sim.check(!workload.is_some_and(|w| w.paused), || format!("acted on a paused target: {}", line(d)))?;
                let dependency = rule.spec.action.dependency();
                sim.check(!sim.open_circuits_at(d.at).contains(&dependency), || format!(
                    "acted while the circuit of {dependency} is open: {}", line(d)
                ))?;
                let scale = matches!(rule.spec.action, ActionSpec::Scale(_));
                sim.check(!(scale && workload.is_some_and(|w| w.hpa.is_some())), || format!(
                    "scaled replicas an HPA owns: {}", line(d)
                ))?;
                sim.check(!(sim.config.gitops_skip && workload.is_some_and(|w| w.gitops.is_some())), || format!(
                    "changed a GitOps-managed object under GITOPS_POLICY=skip: {}", line(d)
                ))?;
            }
            if d.follows_up() {
                continue;
            }
            let key = (d.rule_index, &*d.target);
            let was = quarantined.get(&key).copied().unwrap_or(false);
            if was && !sim.cleared_at(d.at) {
                sim.check(d.decision != Verdict::Act, || format!(
                    "acted while quarantined (no operator clear at this tick): {}", line(d)
                ))?;
            }
            let failed = d.verification.as_ref().is_some_and(|v| v.result == VerifyResult::Failed);
            sim.check(!failed || d.decision != Verdict::Act, || format!(
                "acted in the evaluation whose verification failed: {}", line(d)
            ))?;
            sim.check(was || !d.quarantined || failed, || format!(
                "quarantined without a failed verification: {}", line(d)
            ))?;
            quarantined.insert(key, d.quarantined);
        }
    }

    /// 8. Dry-run (global or per rule) never changes the world and never acts.
    #[test]
    fn dry_run_never_changes_the_world(case in case()) {
        let sim = case.simulate();
        for d in &sim.decisions {
            let dry = sim.config.dry_run || sim.rule(d).spec.dry_run;
            if dry {
                sim.check(d.decision != Verdict::Act, || format!("a dry-run rule acted: {}", line(d)))?;
                sim.check(d.dry_run || d.follows_up(), || format!("a dry-run rule's decision says dry_run false: {}", line(d)))?;
            }
        }
        let all_dry = sim.config.dry_run || sim.rules.rules.iter().all(|r| r.spec.dry_run);
        sim.check(!all_dry || sim.world == sim.timeline.world, || format!(
            "everything is dry-run, yet the world changed to {:?}", sim.world
        ))?;
        sim.replay(|_, d, before, after| {
            let dry = sim.config.dry_run || sim.rule(d).spec.dry_run;
            sim.check(!dry || before == after, || format!("a dry-run decision changed the world: {}", line(d)))
        })?;
    }
}

/// The generator itself: its rule files load, its timelines parse, and over many cases the
/// interesting paths are all reached (otherwise the properties above would hold vacuously).
#[test]
fn the_generator_reaches_the_interesting_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..300 {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        let sim = case.simulate();
        let parsed = Timeline::parse(&sim.timeline_yaml)
            .unwrap_or_else(|e| panic!("the printed timeline does not parse: {e}\n{}", sim.timeline_yaml));
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", sim.timeline),
            "the printed timeline is not the one that ran:\n{}",
            sim.timeline_yaml
        );
        for d in &sim.decisions {
            let mut saw = |what: &'static str| *seen.entry(what).or_default() += 1;
            match (d.decision, d.kind.as_str()) {
                (Verdict::Act, "rollback") => saw("rollback"),
                (Verdict::Act, "scale") => saw("scale"),
                (Verdict::Act, "raise_memory") => saw("raise_memory"),
                (Verdict::Act, "http") => saw("http"),
                _ => {}
            }
            if let Some(reason) = d.reason {
                saw(reason.as_str());
            }
            if d.quarantined {
                saw("quarantined");
            }
        }
    }
    for path in [
        "rollback",
        "scale",
        "raise_memory",
        "http",
        "cooldown",
        "budget",
        "rate_limit",
        "bound",
        "dry_run",
        "unknown",
        "paused",
        "hpa_managed",
        "circuit_open",
        "not_leader",
        "quarantined",
        "gitops",
        "plan",
    ] {
        assert!(
            seen.get(path).is_some_and(|n| *n > 0),
            "no case reached `{path}`: {seen:?}"
        );
    }
}

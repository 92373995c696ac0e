//! `automaton simulate`: replays a YAML timeline offline against a rule set, with a
//! simulated clock and world, through the same engine the daemon runs. Nothing touches the
//! network: executed plans update the simulated world instead.
//!
//! The clock ticks at every step's `at` and every CHECK_INTERVAL in between, up to `until`
//! (default: the last step). A sample applies to every rule whose signal kind matches and
//! whose signal parameters equal the sample's labels wherever both name the same key;
//! labels the rule does not have as parameters describe the series (`pod`, `container`,
//! `owner`, `partitions`…). Between steps a rule's last sample ages normally and becomes
//! unknown once older than 3 × CHECK_INTERVAL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

use crate::core::decision::{Decision, Verdict};
use crate::core::engine::{Engine, EngineConfig};
use crate::core::series::{Reading, Series, Unknown};
use crate::core::values::Dur;
use crate::core::world::SimWorld;
use crate::rules::RuleSet;
use crate::signals::SignalSpec;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeline {
    /// Initial workloads (`deployment/NAME: {replicas, containers}`) that plans read and
    /// executed actions update.
    #[serde(default)]
    pub world: SimWorld,
    /// What is observed when.
    pub steps: Vec<TimelineStep>,
    /// Keep ticking until this time (default: the last step).
    #[serde(default)]
    pub until: Option<Dur>,
    /// The decisions `automaton test` expects (`simulate` ignores them).
    #[serde(default)]
    pub expect: Vec<crate::runtime::rule_test::Expect>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineStep {
    /// Time of the step since the start.
    pub at: Dur,
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// Whether this replica holds the lease from this step on (default: it does).
    #[serde(default)]
    pub leader: Option<bool>,
    /// Dependencies whose circuit breaker is open from this step on (`kubernetes`,
    /// `postgres`, `http/HOST:PORT`, `webhook/HOST`); `[]` closes them all again.
    #[serde(default)]
    pub open_circuits: Option<Vec<String>>,
    /// An operator clears every quarantine at this step.
    #[serde(default)]
    pub clear_quarantine: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The signal kind, e.g. `kafka_lag`.
    #[serde(deserialize_with = "signal_kind")]
    pub signal: String,
    #[serde(default)]
    pub labels: BTreeMap<String, LabelValue>,
    /// The value; null (or absent) means the source could not be read.
    #[serde(default)]
    pub value: Option<f64>,
    /// Why the value is unknown, when it is.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A label value written as any YAML scalar.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelValue(pub String);

impl<'de> Deserialize<'de> for LabelValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(LabelValue(s)),
            serde_yaml::Value::Number(n) => Ok(LabelValue(n.to_string())),
            serde_yaml::Value::Bool(b) => Ok(LabelValue(b.to_string())),
            _ => Err(de::Error::custom(
                "a label value must be a string, number or boolean",
            )),
        }
    }
}

fn signal_kind<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if SignalSpec::KINDS.contains(&s.as_str()) {
        Ok(s)
    } else {
        Err(de::Error::custom(format!(
            "unknown signal `{s}`, expected one of {}",
            SignalSpec::KINDS.join(", ")
        )))
    }
}

/// Why a timeline file is invalid; `LINE:COL:` first when the YAML says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelineError {
    #[error("{line}:{col}: {message}")]
    At {
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Timeline {
    pub fn parse(text: &str) -> Result<Self, TimelineError> {
        let t: Timeline = serde_yaml::from_str(text).map_err(|e| match e.location() {
            Some(l) => TimelineError::At {
                line: l.line(),
                col: l.column(),
                message: e.to_string().split(" at line ").next().unwrap_or("").to_owned(),
            },
            None => TimelineError::Invalid(e.to_string()),
        })?;
        if t.steps.windows(2).any(|w| w[1].at < w[0].at) {
            return Err(TimelineError::Invalid("steps must be in time order".to_owned()));
        }
        Ok(t)
    }

    fn end(&self) -> Duration {
        let last = self.steps.last().map_or(Duration::ZERO, |s| s.at.0);
        self.until.map_or(last, |u| u.0.max(last))
    }
}

/// Runs the timeline; returns every decision in order. The final world is returned too.
pub fn run(
    rules: RuleSet,
    timeline: &Timeline,
    interval: Duration,
    mut config: EngineConfig,
) -> (Vec<Decision>, SimWorld) {
    config.executable = crate::core::engine::Executable::All;
    let mut engine = Engine::new(Arc::new(rules), config);
    let mut world = timeline.world.clone();
    let mut ticks: BTreeSet<Duration> = timeline.steps.iter().map(|s| s.at.0).collect();
    let end = timeline.end();
    let mut t = Duration::ZERO;
    while t <= end && !interval.is_zero() {
        ticks.insert(t);
        t += interval;
    }
    let mut out = Vec::new();
    for now in ticks {
        for step in timeline.steps.iter().filter(|s| s.at.0 == now) {
            if let Some(leader) = step.leader {
                engine.set_leader(leader);
            }
            if let Some(open) = &step.open_circuits {
                engine.set_open_circuits(open.iter().cloned().collect());
            }
            if step.clear_quarantine {
                engine.clear_quarantine(None, None);
            }
            for (rule, reading) in readings_for(engine.rules(), step, now) {
                engine.observe(rule, reading);
            }
        }
        for mut d in engine.evaluate(now, &world) {
            if d.decision == Verdict::Act {
                if let Some(plan) = &d.plan {
                    world.apply(&plan.effect);
                }
                d.success = Some(true);
            }
            out.push(d);
        }
    }
    (out, world)
}

/// Groups a step's samples into one reading per matching rule.
fn readings_for(rules: &RuleSet, step: &TimelineStep, now: Duration) -> BTreeMap<usize, Reading> {
    let mut readings: BTreeMap<usize, Reading> = BTreeMap::new();
    for sample in &step.samples {
        for (index, rule) in rules.rules.iter().enumerate() {
            let matches = rule.spec.signal.kind() == sample.signal
                && sample
                    .labels
                    .iter()
                    .all(|(k, v)| rule.params.get(k).is_none_or(|p| *p == v.0));
            if !matches {
                continue;
            }
            let reading = readings.entry(index).or_insert(Reading {
                at: now,
                result: Ok(Vec::new()),
            });
            match (sample.value, &mut reading.result) {
                (Some(value), Ok(series)) => {
                    let labels = sample
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.0.clone()))
                        .collect();
                    series.push(Series { labels, value });
                }
                (None, _) => {
                    let why = sample
                        .reason
                        .clone()
                        .unwrap_or_else(|| "the sample has no value".into());
                    reading.result = Err(Unknown(why));
                }
                (Some(_), Err(_)) => {}
            }
        }
    }
    readings
}

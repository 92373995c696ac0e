//! Rules: the declarative part. Files are loaded and validated here ([`load`]), and each
//! (rule, target) moves through the Prometheus-like state machine in [`state`]. Nothing in
//! this module does network I/O or reads the clock.

pub mod load;
pub mod spec;
pub mod state;
pub mod subst;
pub mod values;
pub mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use load::{load, load_texts, LoadError};
pub use spec::{Priority, RuleSpec};

use crate::signals::SignalSpec;

/// A validated rule, with its defaults resolved.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub spec: RuleSpec,
    /// Where it is written, for `/status` and messages.
    pub file: PathBuf,
    pub line: usize,
    pub hold_for: Duration,
    pub cooldown: Duration,
    /// The signal's parameters as strings (timeline samples are matched against them).
    pub params: BTreeMap<String, String>,
    /// The fixed target, or `None` when each series names its own (`target: owner`).
    pub fixed_target: Option<Arc<str>>,
}

impl Rule {
    pub fn new(spec: RuleSpec, file: PathBuf, line: usize) -> Self {
        let fixed_target = if spec.action.target_from_series() {
            None
        } else {
            spec.action.target(&BTreeMap::new()).ok().map(Arc::from)
        };
        Rule {
            name: Arc::from(spec.name.0.as_str()),
            hold_for: spec.hold_for(),
            cooldown: spec.cooldown(),
            params: spec.signal.params(),
            fixed_target,
            spec,
            file,
            line,
        }
    }
}

/// A distinct signal source and the rules that read it: collected once per tick.
#[derive(Debug, Clone)]
pub struct Source {
    pub key: String,
    pub spec: SignalSpec,
    pub rules: Vec<usize>,
}

/// A complete, valid set of rules (all files together).
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub sources: Vec<Source>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut sources: Vec<Source> = Vec::new();
        let mut by_key: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (index, rule) in rules.iter().enumerate() {
            let key = rule.spec.signal.source_key();
            match by_key.get(&key) {
                Some(&at) => sources[at].rules.push(index),
                None => {
                    by_key.insert(key.clone(), sources.len());
                    sources.push(Source {
                        key,
                        spec: rule.spec.signal.clone(),
                        rules: vec![index],
                    });
                }
            }
        }
        RuleSet { rules, sources }
    }
}

//! Which rules of a valid set this process can run. A rule whose signal needs a dependency
//! that is not configured here (see [`crate::signals::Need`]) is set aside as disabled:
//! the engine never sees it, `/status`, `automaton_rules_disabled` and `automaton check`
//! list it with the reason.

use serde::Serialize;

use super::{Rule, RuleSet};
use crate::core::namespaces::Namespaces;
use crate::core::target::{qualify, ObjectRef, OwnerKind};
use crate::signals::Available;

/// A rule set aside, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disabled {
    pub name: String,
    pub signal: &'static str,
    pub file: String,
    pub line: usize,
    /// The missing dependency, naming the setting that would enable the rule.
    pub reason: String,
}

/// Splits `set` into the rules this process can run and the disabled ones.
pub fn partition(set: &RuleSet, available: &Available) -> (RuleSet, Vec<Disabled>) {
    let mut enabled: Vec<Rule> = Vec::with_capacity(set.rules.len());
    let mut disabled = Vec::new();
    for rule in &set.rules {
        match available.missing(&rule.spec.signal.needs()) {
            None => enabled.push(rule.clone()),
            Some(reason) => disabled.push(Disabled {
                name: rule.name.to_string(),
                signal: rule.spec.signal.kind(),
                file: rule.file.display().to_string(),
                line: rule.line,
                reason,
            }),
        }
    }
    (RuleSet::new(enabled), disabled)
}

/// Splits off the rules whose own workload target (`deployment/api` in `home`, or
/// `NAMESPACE/deployment/api`) is in a namespace `watched` does not hold: no reflector
/// knows it, so nothing the guards read of it (paused, GitOps, HPA) would be known.
pub fn outside(set: RuleSet, home: &str, watched: &Namespaces) -> (RuleSet, Vec<Disabled>) {
    let mut enabled: Vec<Rule> = Vec::with_capacity(set.rules.len());
    let mut disabled = Vec::new();
    for rule in set.rules {
        let target = rule.fixed_target.as_deref().map(|t| qualify(t, home));
        let object = target.as_deref().and_then(ObjectRef::parse);
        match object.filter(|o| OwnerKind::of_kind(o.kind) == Some(OwnerKind::Workload)) {
            Some(o) if !watched.contains(o.namespace) => disabled.push(Disabled {
                name: rule.name.to_string(),
                signal: rule.spec.signal.kind(),
                file: rule.file.display().to_string(),
                line: rule.line,
                reason: format!(
                    "its target {o} is in a namespace WATCH_NAMESPACES ({watched}) does not list"
                ),
            }),
            _ => enabled.push(rule),
        }
    }
    (RuleSet::new(enabled), disabled)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const RULES: &str = r#"
rules:
  - name: lag
    signal: {kafka_lag: {group: g, topic: t}}
    when: "> 10"
    action: {scale: {target: deployment/app, replicas: 2}}
  - name: oom
    signal: {pod_oom_killed: {selector: "app=web"}}
    when: "> 0"
    action: {raise_memory: {target: owner}}
  - name: here
    signal: {disk_usage: {path: "/"}}
    when: "> 90"
    action: {notify: {webhook: "http://127.0.0.1:9/x"}}
  - name: elsewhere
    signal: {disk_usage: {path: "/mnt/not-mounted-here"}}
    when: "> 90"
    action: {notify: {webhook: "http://127.0.0.1:9/x"}}
"#;

    fn set() -> RuleSet {
        super::super::load_texts(&[(Path::new("r.yaml"), RULES)], &|_| None).expect("valid rules")
    }

    #[test]
    fn rules_without_their_dependency_are_set_aside_with_the_reason() {
        let available = Available {
            kubernetes: true,
            ..Available::default()
        };
        let (enabled, disabled) = partition(&set(), &available);
        let names: Vec<&str> = enabled.rules.iter().map(|r| &*r.name).collect();
        assert_eq!(names, ["oom", "here"]);
        assert_eq!(
            enabled.sources.len(),
            2,
            "sources are rebuilt from the enabled rules"
        );
        let why: Vec<(&str, &str, usize)> = disabled
            .iter()
            .map(|d| (d.name.as_str(), d.signal, d.line))
            .collect();
        assert_eq!(why, [("lag", "kafka_lag", 3), ("elsewhere", "disk_usage", 15)]);
        assert!(disabled[0].reason.contains("KAFKA_BOOTSTRAP_SERVERS"));
        assert!(disabled[1]
            .reason
            .contains("/mnt/not-mounted-here does not exist"));
    }

    #[test]
    fn a_rule_acting_outside_the_watched_namespaces_is_set_aside() {
        let watched = Namespaces::parse("team-a").expect("namespaces");
        let (enabled, disabled) = outside(set(), "automaton", &watched);
        let names: Vec<&str> = enabled.rules.iter().map(|r| &*r.name).collect();
        assert_eq!(
            names,
            ["oom", "here", "elsewhere"],
            "owners and non-Kubernetes targets stay"
        );
        assert_eq!(disabled.len(), 1);
        assert_eq!(
            disabled[0].reason,
            "its target automaton/deployment/app is in a namespace WATCH_NAMESPACES (team-a) does not list"
        );
        let (enabled, disabled) = outside(set(), "team-a", &watched);
        assert_eq!((enabled.rules.len(), disabled.len()), (4, 0));
    }

    #[test]
    fn everything_runs_when_everything_is_there() {
        let available = Available {
            kafka: true,
            postgres: true,
            kubernetes: true,
        };
        let (enabled, disabled) = partition(&set(), &available);
        assert_eq!(enabled.rules.len(), 3);
        assert_eq!(disabled.len(), 1, "only the absent path");
    }
}

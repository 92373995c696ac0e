//! What the pod watch asks the API server for: a label selector every pod some pod rule
//! reads matches, so the server sends those pods instead of every pod of the namespace.
//! Each rule still filters by its whole selector in memory. Two parts:
//!
//! - the requirements every rule's selector contains (`automaton.dev/heal=true` for the
//!   shipped pack);
//! - for a key every selector pins to values (`app=api`, `app in (web,worker)`), the union
//!   of those values (`app in (api,web,worker)`): one watch covers rules that share no
//!   requirement but select by the same label.
//!
//! Selectors that give neither (an empty one, or different keys) watch every pod.

use std::collections::{BTreeMap, BTreeSet};

use super::super::selector::{Operator, Requirement, Selector};

/// The label selector of the pod watch for these pod rules' selectors; `""` (every pod)
/// when they constrain nothing in common or there is no pod rule. A selector that does not
/// parse counts as constraining nothing (rules with one are refused at load anyway).
pub fn watch_selector<'a>(selectors: impl IntoIterator<Item = &'a str>) -> String {
    let mut parsed = Vec::new();
    for text in selectors {
        match Selector::parse(text) {
            Ok(s) => parsed.push(s),
            Err(_) => return String::new(),
        }
    }
    let Some((first, rest)) = parsed.split_first() else {
        return String::new();
    };
    let mut out: Vec<Requirement> = first
        .requirements()
        .iter()
        .filter(|r| rest.iter().all(|s| s.requirements().contains(r)))
        .cloned()
        .collect();
    // Keys every selector pins to values, with the union of those values.
    let mut union: BTreeMap<&str, BTreeSet<String>> = pinned(first);
    for s in rest {
        let theirs = pinned(s);
        union.retain(|key, values| match theirs.get(key) {
            Some(more) => {
                values.extend(more.iter().cloned());
                true
            }
            None => false,
        });
    }
    for (key, values) in union.into_iter().filter(|(_, v)| !v.is_empty()) {
        let requirement = match values.len() {
            1 => Operator::Equals(values.into_iter().next().unwrap_or_default()),
            _ => Operator::In(values),
        };
        let requirement = Requirement {
            key: key.to_owned(),
            op: requirement,
        };
        if !out.contains(&requirement) && !out.iter().any(|r| r.key == key && pins(&r.op)) {
            out.push(requirement);
        }
    }
    Selector::from_requirements(out).to_string()
}

fn pins(op: &Operator) -> bool {
    matches!(op, Operator::Equals(_) | Operator::In(_))
}

/// The keys a selector pins to values, with the values allowed (an intersection when a key
/// is pinned twice).
fn pinned(selector: &Selector) -> BTreeMap<&str, BTreeSet<String>> {
    let mut out: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for r in selector.requirements() {
        let values: BTreeSet<String> = match &r.op {
            Operator::Equals(v) => [v.clone()].into(),
            Operator::In(vs) => vs.clone(),
            _ => continue,
        };
        out.entry(r.key.as_str())
            .and_modify(|have| have.retain(|v| values.contains(v)))
            .or_insert(values);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_asks_for_what_every_pod_rule_shares() {
        let heal = "automaton.dev/heal=true";
        assert_eq!(watch_selector([heal, heal, heal]), heal);
        assert_eq!(
            watch_selector([
                "automaton.dev/heal=true,app=api",
                "app=web, automaton.dev/heal=true"
            ]),
            "automaton.dev/heal=true,app in (api,web)"
        );
        assert_eq!(
            watch_selector([
                "tier in (web,api),automaton.dev/heal",
                "automaton.dev/heal,tier in (api,web)"
            ]),
            "tier in (api,web),automaton.dev/heal"
        );
        // Nothing shared, but the same key pinned: one watch for both.
        assert_eq!(
            watch_selector(["app=api", "app in (web,worker)"]),
            "app in (api,web,worker)"
        );
        // Different keys, no pod rule, or an empty selector: every pod.
        assert_eq!(watch_selector(["app=api", "tier=web"]), "");
        assert_eq!(watch_selector(["app=api", "app!=web"]), "");
        // A selector that pins a key to nothing selects no pod: it adds no value, and no
        // `app in ()` is ever sent.
        assert_eq!(watch_selector(["app=a,app=b", "app=c"]), "app=c");
        assert_eq!(watch_selector(["app=a,app=b", "app=c,app=d"]), "");
        assert_eq!(watch_selector(std::iter::empty()), "");
        assert_eq!(watch_selector([heal, ""]), "");
        assert_eq!(watch_selector([heal, "app in ("]), "");
    }

    #[test]
    fn every_pod_a_rule_selects_is_watched() {
        // For each pair of selectors, a pod matching either matches the watch's selector.
        let selectors = [
            "automaton.dev/heal=true,app=api",
            "automaton.dev/heal=true,app in (web,worker)",
            "automaton.dev/heal=true,app=api,tier!=batch",
        ];
        let watch = Selector::parse(&watch_selector(selectors)).unwrap();
        assert_eq!(
            watch.to_string(),
            "automaton.dev/heal=true,app in (api,web,worker)"
        );
        for (app, tier) in [("api", "web"), ("web", "batch"), ("worker", "web")] {
            let labels = BTreeMap::from([
                ("automaton.dev/heal".to_owned(), "true".to_owned()),
                ("app".to_owned(), app.to_owned()),
                ("tier".to_owned(), tier.to_owned()),
            ]);
            let selected = selectors
                .iter()
                .any(|s| Selector::parse(s).unwrap().matches(&labels));
            assert!(!selected || watch.matches(&labels), "{app}/{tier}");
        }
    }
}

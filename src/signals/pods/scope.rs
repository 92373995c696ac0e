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
//! Selectors that give neither (different keys) get a watch each ([`watch_plan`]): the
//! server still filters, and each rule reads the one watch made for its selector. An empty
//! selector, or more than [`MAX_WATCHES`] watches, watch every pod once.

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

/// Past this many distinct watches (per namespace), one watch of every pod costs the API
/// server and the daemon less than that many connections and lists.
pub const MAX_WATCHES: usize = 8;

/// The pod watches the rules need, and which one each selector reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPlan {
    /// The label selector of each watch (`""`: every pod), in a stable order.
    pub watches: Vec<String>,
    /// Each rule selector's watch (an index of `watches`). A selector without one reads
    /// every watch.
    pub routes: BTreeMap<String, usize>,
}

impl WatchPlan {
    /// The watch a spec with this selector reads; `None`: every watch.
    pub fn route(&self, selector: &str) -> Option<usize> {
        self.routes.get(selector).copied()
    }
}

/// One watch of exactly this selector, read by every spec.
impl From<String> for WatchPlan {
    fn from(selector: String) -> Self {
        WatchPlan {
            watches: vec![selector],
            routes: BTreeMap::new(),
        }
    }
}

impl From<&str> for WatchPlan {
    fn from(selector: &str) -> Self {
        WatchPlan::from(selector.to_owned())
    }
}

/// The watches for these pod rules' selectors: one per group of selectors that share a
/// [`watch_selector`] (a single group when they all do, as with the shipped pack's
/// `automaton.dev/heal=true`), grouped greedily in sorted order. Every pod a selector
/// matches is sent by its group's watch. An empty (or invalid) selector, or more than
/// [`MAX_WATCHES`] groups, make it one watch of every pod.
pub fn watch_plan<'a>(selectors: impl IntoIterator<Item = &'a str>) -> WatchPlan {
    let distinct: BTreeSet<&str> = selectors.into_iter().collect();
    let mut groups: Vec<Vec<&str>> = Vec::new();
    for selector in &distinct {
        if watch_selector([*selector]).is_empty() {
            return every_pod(&distinct);
        }
        let joins = groups.iter_mut().find(|members| {
            let with: Vec<&str> = members.iter().copied().chain([*selector]).collect();
            !watch_selector(with).is_empty()
        });
        match joins {
            Some(members) => members.push(selector),
            None => groups.push(vec![selector]),
        }
    }
    if groups.is_empty() || groups.len() > MAX_WATCHES {
        return every_pod(&distinct);
    }
    let mut routes = BTreeMap::new();
    for (index, members) in groups.iter().enumerate() {
        routes.extend(members.iter().map(|s| ((*s).to_owned(), index)));
    }
    WatchPlan {
        watches: groups.into_iter().map(watch_selector).collect(),
        routes,
    }
}

fn every_pod(selectors: &BTreeSet<&str>) -> WatchPlan {
    WatchPlan {
        watches: vec![String::new()],
        routes: selectors.iter().map(|s| ((*s).to_owned(), 0)).collect(),
    }
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
    fn selectors_that_share_nothing_get_a_watch_each() {
        let heal = "automaton.dev/heal=true";
        let plan = watch_plan([heal, "automaton.dev/heal=true,app=api", heal]);
        assert_eq!(plan.watches, [heal]);
        assert_eq!(plan.route(heal), Some(0));
        assert_eq!(plan.route("automaton.dev/heal=true,app=api"), Some(0));

        // Nothing in common: a filtered watch each, and a third selector joins the watch
        // it shares a key with.
        let plan = watch_plan(["tier=web", "app=api", "app in (web,worker)"]);
        assert_eq!(plan.watches, ["app in (api,web,worker)", "tier=web"]);
        assert_eq!(plan.route("app=api"), Some(0));
        assert_eq!(plan.route("app in (web,worker)"), Some(0));
        assert_eq!(plan.route("tier=web"), Some(1));
        assert_eq!(plan.route("team=db"), None);

        // An empty selector reads every pod: one unfiltered watch serves all.
        let plan = watch_plan(["app=api", "", "tier=web"]);
        assert_eq!(plan.watches, [""]);
        assert_eq!(plan.route("tier=web"), Some(0));
        assert_eq!(watch_plan(std::iter::empty()).watches, [""]);

        // Past MAX_WATCHES groups, one watch of every pod.
        let many: Vec<String> = (0..=MAX_WATCHES).map(|i| format!("key{i}=v")).collect();
        let plan = watch_plan(many.iter().map(String::as_str));
        assert_eq!(plan.watches, [""]);
        assert_eq!(plan.routes.len(), MAX_WATCHES + 1);
        let most = watch_plan(many[..MAX_WATCHES].iter().map(String::as_str));
        assert_eq!(most.watches.len(), MAX_WATCHES);
    }

    #[test]
    fn every_pod_a_selector_matches_is_sent_by_its_watch() {
        let selectors = [
            "app=api,tier=web",
            "team=db",
            "app=web",
            "team in (db,cache),env=prod",
        ];
        let plan = watch_plan(selectors);
        assert_eq!(plan.watches.len(), 2, "{plan:?}");
        for app in ["api", "web", "x"] {
            for team in ["db", "cache", "y"] {
                let labels = BTreeMap::from([
                    ("app".to_owned(), app.to_owned()),
                    ("tier".to_owned(), "web".to_owned()),
                    ("team".to_owned(), team.to_owned()),
                    ("env".to_owned(), "prod".to_owned()),
                ]);
                for s in selectors {
                    let watch = &plan.watches[plan.route(s).unwrap()];
                    let selected = Selector::parse(s).unwrap().matches(&labels);
                    let sent = Selector::parse(watch).unwrap().matches(&labels);
                    assert!(!selected || sent, "{s} {labels:?} {watch}");
                }
            }
        }
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

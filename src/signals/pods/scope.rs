//! What the pod watch asks the API server for: the label requirements every pod rule's
//! selector shares (`automaton.dev/heal=true` for the shipped pack), so the server sends only
//! the pods some rule could read instead of every pod of the namespace. Each rule still
//! filters by its whole selector in memory. Selectors that share nothing leave the watch
//! unfiltered (all pods), as before.

use super::super::selector::{Requirement, Selector};

/// The label selector of the pod watch for these pod rules' selectors: the requirements
/// all of them contain, in the first one's order; `""` (every pod) when they share none or
/// there is no pod rule. A selector that does not parse counts as sharing nothing (rules
/// with one are refused at load anyway).
pub fn watch_selector<'a>(selectors: impl IntoIterator<Item = &'a str>) -> String {
    let mut common: Option<Vec<Requirement>> = None;
    for text in selectors {
        let Ok(selector) = Selector::parse(text) else {
            return String::new();
        };
        let theirs = selector.requirements();
        common = Some(match common {
            None => theirs.to_vec(),
            Some(ours) => ours.into_iter().filter(|r| theirs.contains(r)).collect(),
        });
    }
    Selector::from_requirements(common.unwrap_or_default()).to_string()
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
            heal
        );
        assert_eq!(
            watch_selector([
                "tier in (web,api),automaton.dev/heal",
                "automaton.dev/heal,tier in (api,web)"
            ]),
            "tier in (api,web),automaton.dev/heal"
        );
        // Nothing shared, no pod rule, or an empty selector: every pod.
        assert_eq!(watch_selector(["app=api", "app=web"]), "");
        assert_eq!(watch_selector(std::iter::empty()), "");
        assert_eq!(watch_selector([heal, ""]), "");
        assert_eq!(watch_selector([heal, "app in ("]), "");
    }
}

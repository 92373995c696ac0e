//! The state of rules that left the rule set (a reload removed them, or they were disabled),
//! kept for a cooldown: putting a rule back within that time finds its cooldowns, rate-limit
//! window and quarantines where they were, so a bad ConfigMap apply followed by a fix never
//! allows a second action.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Targets;
use crate::core::guard::RuleRate;

/// One rule's state after it left the set.
#[derive(Debug, Clone)]
pub(super) struct Retired {
    pub targets: Targets,
    pub rate: Option<RuleRate>,
    /// How long the state is kept: the rule's cooldown (a longer rate-limit window is kept
    /// as long as that window).
    pub keep: Duration,
    /// When the rule left, as the first evaluation after it saw the time.
    pub since: Option<Duration>,
}

/// Rules' states by name, until their time is up.
#[derive(Debug, Clone, Default)]
pub(super) struct RetiredStates(BTreeMap<Arc<str>, Retired>);

impl RetiredStates {
    pub fn insert(&mut self, name: Arc<str>, retired: Retired) {
        self.0.insert(name, retired);
    }

    /// The kept state of `name`, taken out.
    pub fn take(&mut self, name: &str) -> Option<Retired> {
        self.0.remove(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Retired)> {
        self.0.iter()
    }

    /// The kept state of `name`, made by `new` when there is none.
    pub fn entry(&mut self, name: Arc<str>, new: impl FnOnce() -> Retired) -> &mut Retired {
        self.0.entry(name).or_insert_with(new)
    }

    /// Starts the clocks of the newly retired and forgets those whose time is up.
    pub fn expire(&mut self, now: Duration) {
        self.0.retain(|_, r| {
            let since = *r.since.get_or_insert(now);
            now.saturating_sub(since) < r.keep
        });
    }
}

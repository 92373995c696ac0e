//! A rule's own `rate_limit`: at most `max` actions of the rule, all targets together, in
//! any `per`. Cooldowns space actions on one target; this caps how far a rule can go when
//! its reading is stuck (a pressure gauge that never drops would otherwise shrink a cache
//! once per cooldown, forever).

use std::time::Duration;

use super::Budget;
use crate::core::rule::RateLimit;

/// The live and the dry-run windows of one rule. A dry run counts its would-be actions
/// separately so it shows the cadence a live run would have without using up the live
/// allowance.
#[derive(Debug, Clone)]
pub struct RuleRate {
    live: Budget,
    dry: Budget,
}

impl RuleRate {
    pub fn new(limit: &RateLimit) -> Self {
        RuleRate {
            live: Budget::new(limit.max, limit.per.0),
            dry: Budget::new(limit.max, limit.per.0),
        }
    }

    /// The same history under a reloaded limit.
    pub fn relimited(self, limit: &RateLimit) -> Self {
        RuleRate {
            live: self.live.relimited(limit.max, limit.per.0),
            dry: self.dry.relimited(limit.max, limit.per.0),
        }
    }

    fn window(&mut self, dry: bool) -> &mut Budget {
        if dry {
            &mut self.dry
        } else {
            &mut self.live
        }
    }

    /// Whether one more action fits, without taking it (the global budget may still refuse).
    pub fn has_room(&mut self, now: Duration, dry: bool) -> bool {
        self.window(dry).left(now) > 0
    }

    /// Records an action that is going ahead.
    pub fn take(&mut self, now: Duration, dry: bool) {
        self.window(dry).try_take(now);
    }

    /// Gives back a live action taken at `at` that was never carried out.
    pub fn refund(&mut self, at: Duration) {
        self.live.refund(at);
    }

    /// The live window.
    pub fn live(&self) -> &Budget {
        &self.live
    }

    pub fn live_mut(&mut self) -> &mut Budget {
        &mut self.live
    }

    /// `max` and `per`, for the skip's detail.
    pub fn describe(&self) -> String {
        format!(
            "rate_limit: {} actions of this rule in the last {}s",
            self.live.limit(),
            self.live.window().as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::values::Dur;

    #[test]
    fn live_and_dry_windows_are_separate_and_survive_a_new_limit() {
        let s = Duration::from_secs;
        let mut r = RuleRate::new(&RateLimit {
            max: 2,
            per: Dur(s(3600)),
        });
        r.take(s(0), false);
        r.take(s(10), false);
        assert!(!r.has_room(s(20), false));
        assert!(r.has_room(s(20), true), "dry runs have their own window");
        let mut r = r.relimited(&RateLimit {
            max: 3,
            per: Dur(s(3600)),
        });
        assert!(r.has_room(s(20), false));
        r.take(s(20), false);
        assert!(!r.has_room(s(30), false), "the two earlier actions still count");
        assert!(r.has_room(s(3600), false), "the first one left the window");
    }
}

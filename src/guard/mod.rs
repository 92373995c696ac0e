//! The guard between deciding and acting. A firing rule's action passes, in order:
//!
//! 1. **leader**: only the replica holding the lease acts (`not_leader`);
//! 2. **cooldown**: per rule and target since its last action (`cooldown`);
//! 3. **bound**: the plan changes nothing, e.g. already at `max` (`bound`);
//! 4. **rate limit**: the rule's own `rate_limit`, all its targets together (`rate_limit`);
//! 5. **dry-run**: global, per rule, or no executor in this build (`dry_run`);
//! 6. **budget**: the global storm budget (`budget`).
//!
//! Bound comes before dry-run and budget so a no-op never consumes budget and never shows
//! as a would-be action; a dry-run's would-be action starts the cooldown (a separate dry
//! cooldown, which a later live run does not inherit) so a dry run shows the cadence a live
//! run would have.

pub mod budget;
pub mod rate;

pub use budget::Budget;
pub use rate::RuleRate;

/// The guard's own state: leadership, global dry-run and the budget.
#[derive(Debug, Clone)]
pub struct Guard {
    pub leader: bool,
    pub dry_run: bool,
    pub budget: Budget,
}

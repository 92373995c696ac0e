//! The guard between deciding and acting. A firing rule's action passes, in order:
//!
//! 1. **leader**: only the replica holding the lease acts (`not_leader`);
//! 2. **paused**: the target is annotated `automaton.dev/paused: "true"` (`paused`);
//! 3. **quarantine**: an earlier action of the rule on the target failed its verification
//!    (`quarantined`);
//! 4. **circuit**: the breaker of the action's dependency is open (`circuit_open`);
//! 5. **HPA**: a `scale` of a workload whose replicas an HPA owns (`hpa_managed`);
//! 6. **GitOps**: with GITOPS_POLICY=skip, an object Argo CD or Flux manages (`gitops`);
//! 7. **cooldown**: per rule and target since its last action (`cooldown`);
//! 8. **bound**: the plan changes nothing, e.g. already at `max` (`bound`);
//! 9. **rate limit**: the rule's own `rate_limit`, all its targets together (`rate_limit`);
//! 10. **dry-run**: global, per rule, or no executor in this build (`dry_run`);
//! 11. **budget**: the global storm budget (`budget`).
//!
//! The static refusals (1-6) come first so they never start a cooldown or use a budget.
//!
//! Bound comes before dry-run and budget so a no-op never consumes budget and never shows
//! as a would-be action; a dry-run's would-be action starts the cooldown (a separate dry
//! cooldown, which a later live run does not inherit) so a dry run shows the cadence a live
//! run would have.

pub mod breaker;
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

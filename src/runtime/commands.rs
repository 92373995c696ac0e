//! What operators ask the daemon to do, carried from the HTTP server to the loop that owns
//! the engine. The queue is bounded: a flood of requests is refused (503) instead of growing
//! memory until the next tick.

use tokio::sync::mpsc;

/// Requests waiting for the next evaluation, at most.
pub const QUEUE: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// "This (rule, target) may act again": clears quarantines, of one rule and target, of
    /// every target of a rule, or all of them (`None` matches everything). The target is
    /// namespace-qualified already (the admin endpoint qualifies what an operator typed).
    ClearQuarantine {
        rule: Option<String>,
        target: Option<String>,
    },
}

pub fn channel() -> (mpsc::Sender<Command>, mpsc::Receiver<Command>) {
    mpsc::channel(QUEUE)
}

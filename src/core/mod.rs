//! The pure core: values, the rule model, the per-target state machine, verification, the
//! guard, plans and the engine that joins them. Nothing here does I/O or reads the clock
//! (time is passed in; only `guard::breaker::Breakers`, shared across tasks, keeps an
//! epoch), and nothing here names a signal or action kind: the core asks the kinds what it
//! needs through [`rule::SignalKind`] and [`rule::ActionKind`]. May import nothing else of
//! this crate.

pub mod decision;
pub mod engine;
pub mod guard;
pub mod namespaces;
pub mod notice;
pub mod plan;
pub mod rule;
pub mod series;
pub mod state;
pub mod target;
pub mod url;
pub mod values;
pub mod verify;
pub mod world;

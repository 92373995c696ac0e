//! automaton: signals → rules → guard → actions, with a daemon, an HTTP server and
//! metrics around the pipeline. `main.rs` only wires these together.
#![forbid(unsafe_code)]

pub mod actions;
pub mod cli;
pub mod clients;
pub mod core;
pub mod daemon;
pub mod metrics;
pub mod reload;
pub mod rules;
pub mod server;
pub mod settings;
pub mod signals;
pub mod simulate;
pub mod status;

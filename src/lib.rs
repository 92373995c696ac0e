//! automaton: signals → rules → guard → actions. The tree is the data flow, and
//! dependencies point one way (see `docs/ARCHITECTURE.md`):
//!
//! - [`core`]: pure values, the rule model, the state machine, the guard and the engine;
//! - [`clients`]: the outside world (Kubernetes, Kafka, PostgreSQL, HTTP, JSON-RPC);
//! - [`signals`] and [`actions`]: one file per kind and one registry each;
//! - [`rules`]: rule files into a rule set of this build's kinds;
//! - [`runtime`]: the daemon's loop, the writer, status, server, metrics, `simulate`.
//!
//! `main.rs` only wires these together.
#![forbid(unsafe_code)]

pub mod actions;
pub mod cli;
pub mod clients;
pub mod core;
pub mod rules;
pub mod runtime;
pub mod settings;
pub mod signals;

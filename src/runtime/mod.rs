//! The runtime: what wires the pipeline to the world. The daemon's loop (collect → observe →
//! evaluate → write), the one writer of actions, `/status` and the HTTP server, metrics,
//! rule reloads, and `simulate`, which runs the same engine on a timeline. May import every
//! other module; nothing imports it but `main.rs`.

pub mod admin;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod metrics;
pub mod receiver;
pub mod reload;
pub mod rule_test;
pub mod server;
pub mod simulate;
pub mod status;
pub mod writer;

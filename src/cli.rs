//! Command line (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A self-healing daemon for Kubernetes production.
#[derive(Debug, Parser)]
#[command(name = "automaton", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (settings come from the environment).
    Run {
        /// Rule directory (overrides RULES_DIR).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Plan and report, never execute (overrides DRY_RUN).
        #[arg(long)]
        dry_run: bool,
        /// One collection and evaluation; print the decisions as JSON lines and exit.
        #[arg(long)]
        once: bool,
    },
    /// Validate rule files or directories; exit 1 with every error as FILE:LINE:COL.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Replay a timeline offline (simulated clock, no network) and print the decisions.
    Simulate {
        /// Rule directory or file.
        #[arg(long)]
        rules: PathBuf,
        /// Timeline YAML file.
        #[arg(long)]
        timeline: PathBuf,
        /// Tick interval between steps (default: CHECK_INTERVAL).
        #[arg(long, value_parser = parse_interval)]
        interval: Option<std::time::Duration>,
    },
}

/// Same syntax as rule durations (`15s`, `1m`).
fn parse_interval(text: &str) -> Result<std::time::Duration, crate::core::values::ValueError> {
    text.parse::<crate::core::values::Dur>().map(|d| d.0)
}

//! The binary's edge: parse the command line and settings, set up logging, wire the daemon
//! and the HTTP server together. Errors become exit codes here (anyhow).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::sync::{mpsc, watch};
use tracing::info;

use automaton::cli::{environment, Cli, Command};
use automaton::clients::kafka::KafkaSettings;
use automaton::clients::pg::PgSettings;
use automaton::core::engine::EngineConfig;
use automaton::rules::{self, load::process_env};
use automaton::runtime::admin::{admin_router, AdminState};
use automaton::runtime::daemon::{Daemon, DaemonError};
use automaton::runtime::server::{router, AppState};
use automaton::runtime::simulate::{self, Timeline};
use automaton::settings::{LogFormat, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // No module `target` in JSON: the decisions' own `target` field (the workload) is the one that
        // matters to an operator, and two keys of one name would confuse log processors.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { paths, env } => check(&paths, env),
        Command::Simulate {
            timeline,
            interval,
            settings,
        } => {
            let settings = Settings::from_vars(environment(settings.vars()))?;
            let rules = settings.rules_dir.clone();
            simulate_cmd(&settings, rules, timeline, interval)
        }
        Command::Test {
            files,
            interval,
            settings,
        } => {
            let settings = Settings::from_vars(environment(settings.vars()))?;
            let rules = settings.rules_dir.clone();
            test_cmd(&settings, rules, &files, interval)
        }
        Command::Run {
            once,
            settings,
            kafka,
            postgres,
        } => {
            let mut given = settings.vars();
            given.extend(kafka.vars());
            given.extend(postgres.vars());
            let vars = environment(given);
            let settings = Settings::from_vars(vars.clone())?;
            let kafka = KafkaSettings::from_vars(vars.clone())?;
            let postgres = PgSettings::from_vars(vars)?;
            init_logging(settings.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(run(settings, kafka, postgres, once))
        }
    }
}

fn check(paths: &[std::path::PathBuf], judge_env: bool) -> anyhow::Result<ExitCode> {
    let set = match rules::load(paths, &process_env) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!("{} error(s)", errors.len());
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "ok: {} rules, {} distinct signal sources",
        set.rules.len(),
        set.sources.len()
    );
    if judge_env {
        let available = available_here()?;
        let (enabled, disabled) = rules::partition(&set, &available);
        for d in &disabled {
            println!(
                "disabled: {}:{}: rule `{}` ({}): {}",
                d.file, d.line, d.name, d.signal, d.reason
            );
        }
        println!(
            "here: {} rules run, {} disabled",
            enabled.rules.len(),
            disabled.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `run` would have configured, from this environment (invalid settings are errors,
/// as they are for `run`).
fn available_here() -> anyhow::Result<automaton::signals::Available> {
    let vars = environment(Vec::new());
    let settings = Settings::from_vars(vars.clone())?;
    let kubernetes = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(automaton::clients::kube::configured(&settings));
    Ok(automaton::signals::Available {
        kafka: KafkaSettings::from_vars(vars.clone())?.is_some(),
        postgres: PgSettings::from_vars(vars)?.is_some(),
        kubernetes,
    })
}

/// The rule set of `dir`, or every error printed.
fn load_or_print(dir: std::path::PathBuf) -> Option<automaton::rules::RuleSet> {
    match rules::load(&[dir], &process_env) {
        Ok(set) => Some(set),
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            None
        }
    }
}

/// A timeline file, or its error printed as FILE:LINE:COL.
fn timeline_or_print(path: &std::path::Path) -> anyhow::Result<Option<Timeline>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(match Timeline::parse(&text) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("{}:{e}", path.display());
            None
        }
    })
}

/// The engine's settings of a replay: samples age against the simulated tick.
fn replay_config(settings: &Settings, interval: std::time::Duration) -> EngineConfig {
    EngineConfig {
        stale_after: interval * 3,
        ..EngineConfig::from(settings)
    }
}

fn simulate_cmd(
    settings: &Settings,
    rules: std::path::PathBuf,
    timeline: std::path::PathBuf,
    interval: Option<std::time::Duration>,
) -> anyhow::Result<ExitCode> {
    let Some(set) = load_or_print(rules) else {
        return Ok(ExitCode::from(1));
    };
    let Some(parsed) = timeline_or_print(&timeline)? else {
        return Ok(ExitCode::from(1));
    };
    let interval = interval.unwrap_or(settings.check_interval);
    let (decisions, _) = simulate::run(set, &parsed, interval, replay_config(settings, interval));
    let mut out = std::io::stdout().lock();
    for d in decisions {
        use std::io::Write;
        writeln!(out, "{}", d.to_json_line())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `automaton test`: every file's expectations against its replay; a diff per failing file.
fn test_cmd(
    settings: &Settings,
    rules: std::path::PathBuf,
    files: &[std::path::PathBuf],
    interval: Option<std::time::Duration>,
) -> anyhow::Result<ExitCode> {
    use automaton::runtime::rule_test;
    let Some(set) = load_or_print(rules) else {
        return Ok(ExitCode::from(1));
    };
    let interval = interval.unwrap_or(settings.check_interval);
    let mut failed = 0;
    for file in files {
        let Some(timeline) = timeline_or_print(file)? else {
            failed += 1;
            continue;
        };
        let errors = rule_test::validate(&timeline.expect, &set);
        if !errors.is_empty() {
            for e in errors {
                eprintln!("{}: {e}", file.display());
            }
            failed += 1;
            continue;
        }
        let (decisions, _) = simulate::run(
            set.clone(),
            &timeline,
            interval,
            replay_config(settings, interval),
        );
        let mismatches = rule_test::check(&decisions, &timeline.expect);
        if mismatches.is_empty() {
            println!("{}: ok ({} expectations)", file.display(), timeline.expect.len());
        } else {
            failed += 1;
            println!("{}: FAILED", file.display());
            for m in mismatches {
                println!("{m}");
            }
        }
    }
    println!("{} of {} files passed", files.len() - failed, files.len());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run(
    settings: Settings,
    kafka: Option<KafkaSettings>,
    postgres: Option<PgSettings>,
    once: bool,
) -> anyhow::Result<ExitCode> {
    let listen = settings.listen_addr;
    let rules_dir = settings.rules_dir.clone();
    let mut daemon = match Daemon::new(settings.clone(), rules_dir) {
        Ok(d) => d,
        Err(DaemonError::Rules(errors)) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(kafka) = kafka {
        daemon.attach_kafka(automaton::clients::kafka::KafkaSource::new(kafka));
    }
    if let Some(pg) = postgres {
        daemon.attach_postgres(automaton::clients::pg::PgSource::new(pg));
    }
    if once {
        // One look, without a watch or a Lease: pod signals are unknown here.
        for d in daemon.tick().await {
            println!("{}", d.to_json_line());
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Push sources (the pod watch) send on this to evaluate at once.
    let (push, trigger) = mpsc::channel(16);
    let receiver = automaton::runtime::receiver::AlertReceiver {
        alerts: daemon.alerts(),
        token: settings.alertmanager_token.clone(),
        push: Some(push.clone()),
    };
    if let Some(cluster) = automaton::clients::kube::connect(&settings).await? {
        daemon.attach(cluster, push);
    }
    let state = AppState {
        status: daemon.status.clone(),
        metrics: daemon.metrics.clone(),
    };
    let admin = AdminState {
        status: daemon.status.clone(),
        commands: daemon.commands(),
        token: settings.admin_token.clone(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    info!(addr = %listener.local_addr()?, "serving /metrics /healthz /readyz /status");
    let admin_listener = tokio::net::TcpListener::bind(settings.admin_addr)
        .await
        .with_context(|| format!("binding ADMIN_ADDR {}", settings.admin_addr))?;
    info!(addr = %admin_listener.local_addr()?, token = settings.admin_token.is_some(), "serving the admin endpoints (POST /quarantine/clear)");
    let (stop_tx, stop_rx) = watch::channel(false);
    let serve = |listener: tokio::net::TcpListener, app: axum::Router| {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        })
    };
    let server = serve(
        listener,
        router(state).merge(automaton::runtime::receiver::router(receiver)),
    );
    let admin_server = serve(admin_listener, admin_router(admin));
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    daemon.run(stop_rx, trigger).await;
    server.await??;
    admin_server.await??;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

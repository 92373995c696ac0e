//! The daemon: every CHECK_INTERVAL (or at once, when something pushes) it collects each
//! distinct source once, runs the engine, executes what the guard let through, and records
//! everything in logs, metrics and `/status`. Shutdown is only looked at between ticks, so
//! an action is never cut in half.

mod collect;
mod durable;
mod enable;
mod follow_up;
mod kafka;
mod kube;
mod postgres;
mod tick;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::actions::Executors;
use crate::clients::http::HttpError;
use crate::core::decision::{Decision, SkipReason, State, Verdict};
use crate::core::engine::EngineConfig;
use crate::core::guard::breaker::Breakers;
use crate::rules::{self, Engine, LoadError, RuleSet};
use crate::runtime::clock::Clock;
use crate::runtime::commands::Command;
use crate::runtime::metrics::Metrics;
use crate::runtime::reload;
use crate::runtime::status::{wall_clock, ReloadInfo, Status};
use crate::runtime::writer::Writer;
use crate::settings::Settings;
use crate::signals::Sources;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("the rule set is invalid:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<LoadError>),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("building the HTTP client: {0}")]
    Http(#[from] HttpError),
}

type LogKey = (Arc<str>, Arc<str>);
type LogSig = (State, Verdict, Option<SkipReason>);

pub struct Daemon {
    settings: Settings,
    rules_dir: PathBuf,
    /// The whole valid set as loaded; the engine runs the part this process can (enable.rs).
    loaded: Arc<RuleSet>,
    /// The disabled rules last logged, with their reasons.
    logged_disabled: BTreeMap<String, String>,
    /// (rule, target) pairs whose `raise_memory` was told it is at its cap (follow_up.rs).
    at_cap: std::collections::HashSet<LogKey>,
    engine: Engine,
    /// What signal collection reaches (HTTP, Kafka, PostgreSQL, the pod watch).
    sources: Sources,
    /// One circuit breaker per external dependency, shared by collection and execution.
    breakers: Arc<Breakers>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<RwLock<Status>>,
    /// Engine time (runtime/clock.rs).
    clock: Clock,
    fingerprint: u64,
    last_logged: HashMap<LogKey, LogSig>,
    /// Present when a Kubernetes API is configured.
    kube: Option<kube::Kube>,
    /// The guard state kept in the cluster (durable.rs); with Kubernetes only.
    guard_store: Option<durable::GuardStore>,
    /// The one writer of actions, with the clients they execute through (a kind whose
    /// client is absent is dry-run).
    writer: Writer,
    /// What operators asked for, applied at the next evaluation; and its sending end, for
    /// the HTTP server.
    commands: mpsc::Receiver<Command>,
    command_tx: mpsc::Sender<Command>,
}

impl Daemon {
    /// Loads the rules (an invalid set at start is an error: there is no last good set).
    pub fn new(settings: Settings, rules_dir: PathBuf) -> Result<Self, DaemonError> {
        let executors = Executors::new()?;
        let fingerprint = reload::fingerprint(&rules_dir);
        let set = rules::load(std::slice::from_ref(&rules_dir), &rules::load::process_env)
            .and_then(|set| armed(set, &rules_dir, &settings))
            .map_err(DaemonError::Rules)?;
        let config = EngineConfig {
            id_prefix: Arc::from(action_id_prefix()),
            executable: executors.executable(),
            ..EngineConfig::from(&settings)
        };
        let metrics = Arc::new(Metrics::new()?);
        let clock = Clock::start();
        let mut status = Status::new(settings.check_interval, settings.dry_run);
        // Engine time is Unix time (clock.rs).
        status.epoch_wall = std::time::UNIX_EPOCH;
        status.action_timeout = settings.action_timeout;
        status.rules_loaded = true;
        status.reload = ReloadInfo {
            result: Some("success"),
            at: Some(wall_clock()),
            errors: Vec::new(),
        };
        info!(rules = set.rules.len(), sources = set.sources.len(), dir = %rules_dir.display(), "rules loaded");
        let engine = Engine::new(Arc::new(RuleSet::default()), config);
        let breakers = Arc::new(Breakers::new(settings.breaker));
        let mut sources = Sources::new(
            settings.check_interval.min(Duration::from_secs(10)),
            executors.http.client().clone(),
        );
        sources.prometheus_token = settings.prometheus_token.as_ref().map(|t| t.expose().to_owned());
        sources.namespace = Some(settings.namespace.clone().unwrap_or_else(|| "default".to_owned()));
        let writer = Writer::new(
            executors,
            breakers.clone(),
            metrics.clone(),
            settings.action_timeout,
            clock,
        );
        let (command_tx, commands) = crate::runtime::commands::channel();
        let mut daemon = Daemon {
            settings,
            rules_dir,
            loaded: Arc::new(set),
            logged_disabled: BTreeMap::new(),
            at_cap: Default::default(),
            engine,
            sources,
            breakers,
            metrics,
            status: Arc::new(RwLock::new(status)),
            clock,
            fingerprint,
            last_logged: HashMap::new(),
            kube: None,
            guard_store: None,
            writer,
            commands,
            command_tx,
        };
        daemon.install_rules();
        Ok(daemon)
    }

    /// The automaton's own namespace (NAMESPACE, the cluster's answer once attached, else
    /// `default`): the one of the rules' targets that name none. Kept where other systems'
    /// series without a `namespace` label read it too.
    fn home(&self) -> &str {
        self.sources.namespace.as_deref().unwrap_or("default")
    }

    /// What Alertmanager pushes, for the HTTP server's receiver.
    pub fn alerts(&self) -> Arc<crate::signals::alerts::AlertStore> {
        self.sources.alerts.clone()
    }

    /// Where the HTTP server sends operators' requests.
    pub fn commands(&self) -> mpsc::Sender<Command> {
        self.command_tx.clone()
    }

    fn status(&self) -> std::sync::RwLockWriteGuard<'_, Status> {
        self.status.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reloads the rule set if the files changed. An invalid set is rejected, logged,
    /// counted and shown; the last good set keeps running.
    pub fn maybe_reload(&mut self) {
        let fp = reload::fingerprint(&self.rules_dir);
        if fp == self.fingerprint {
            return;
        }
        self.fingerprint = fp;
        let loaded = rules::load(std::slice::from_ref(&self.rules_dir), &rules::load::process_env)
            .and_then(|set| armed(set, &self.rules_dir, &self.settings));
        match loaded {
            Ok(set) => {
                info!(rules = set.rules.len(), "rules reloaded");
                self.loaded = Arc::new(set);
                self.install_rules();
                self.metrics.reloads.with_label_values(&["success"]).inc();
                self.status().reload = ReloadInfo {
                    result: Some("success"),
                    at: Some(wall_clock()),
                    errors: Vec::new(),
                };
                self.log_disabled();
            }
            Err(errors) => {
                let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                for e in &errors {
                    error!(error = %e, "rule reload rejected; the last good rule set keeps running");
                }
                self.metrics.reloads.with_label_values(&["error"]).inc();
                self.status().reload = ReloadInfo {
                    result: Some("error"),
                    at: Some(wall_clock()),
                    errors,
                };
            }
        }
    }

    /// Logs acts always, skips and state changes when they change; repeats go to debug.
    fn log(&mut self, d: &Decision) {
        let sig = (d.state, d.decision, d.reason);
        let changed = self.last_logged.insert((d.rule.clone(), d.target.clone()), sig) != Some(sig);
        let change = d.change.as_ref().map(|c| c.to_string());
        let reason = d.reason.map(SkipReason::as_str);
        macro_rules! event {
            ($level:ident, $msg:literal) => {
                $level!(id = d.id.as_deref(), rule = %d.rule, target = %d.target, action = d.kind.as_str(), state = d.state.as_str(),
                    value = d.value, reason, detail = d.detail.as_ref().map(ToString::to_string), change, dry_run = d.dry_run,
                    success = d.success, verification = d.verification.as_ref().map(|v| v.result.as_str()),
                    gitops = d.gitops.as_deref(), $msg)
            };
        }
        if let Some(v) = &d.verification {
            match v.result {
                crate::core::verify::VerifyResult::Failed => event!(warn, "verification failed"),
                _ => event!(info, "verification ended"),
            }
        }
        match (d.decision, changed) {
            (Verdict::Act, _) if d.success == Some(true) => event!(info, "action executed"),
            (Verdict::Act, _) => event!(error, "action failed"),
            (Verdict::Skip, true) => event!(info, "action skipped"),
            (Verdict::Skip, false) => event!(debug, "action skipped"),
            (Verdict::None, true) => event!(info, "rule state changed"),
            (Verdict::None, false) => {}
        }
    }

    /// Runs until `shutdown` turns true. `trigger` lets push sources evaluate at once.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, mut trigger: mpsc::Receiver<()>) {
        let (_keep, idle) = mpsc::channel::<()>(1);
        let (_watcher, mut changes) = match reload::watch(&self.rules_dir) {
            Ok((w, rx)) => (Some(w), rx),
            Err(e) => {
                warn!(error = %e, dir = %self.rules_dir.display(), "cannot watch the rule directory; changes are picked up at the next tick");
                (None, idle)
            }
        };
        let mut ticker = tokio::time::interval(self.settings.check_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Taking the Lease evaluates at once: a rule that fired while this replica stood by
        // (at start, the first pod list often lands before the Lease) acts now, not at the
        // next tick.
        let mut leading = self.kube.as_ref().map(|k| k.leader.leading.clone());
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(()) = changes.recv() => {
                    // Let the writer finish (a ConfigMap swap is several renames).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.maybe_reload();
                    continue;
                }
                Some(()) = trigger.recv() => {
                    debug!("a pushed signal changed: evaluating now");
                    // A watch event: evaluate now with the pushed sources only; the others
                    // keep their last reading until the next tick.
                    self.collect_and_act(tick::Scope::Pushed).await;
                    continue;
                }
                gained = leadership_gained(&mut leading) => {
                    if !gained {
                        continue;
                    }
                    debug!("leadership gained: evaluating now");
                }
                _ = ticker.tick() => {}
            }
            self.maybe_reload();
            self.tick().await;
            if *shutdown.borrow() {
                break;
            }
        }
        info!("shutting down after the current tick");
        if let Some(k) = self.kube.take() {
            k.release().await;
        }
    }
}

/// A rule set of zero rules is refused like an invalid one: an emptied ConfigMap (a bad
/// apply) would otherwise disarm the automaton silently, dropping every rule's state. So is
/// a rule whose signal needs a secret setting that is not set (`alert` without
/// ALERTMANAGER_TOKEN: anyone could push it alerts).
fn armed(set: RuleSet, dir: &std::path::Path, settings: &Settings) -> Result<RuleSet, Vec<LoadError>> {
    if set.rules.is_empty() {
        return Err(vec![LoadError {
            file: dir.to_path_buf(),
            line: 0,
            col: 0,
            message: "no rules: a rule set of zero rules would heal nothing (an emptied ConfigMap?)"
                .to_owned(),
        }]);
    }
    let unset: Vec<LoadError> = set
        .rules
        .iter()
        .filter_map(|r| {
            let var = r.spec.signal.get().needs_secret()?;
            (!secret_set(settings, var)).then(|| LoadError {
                file: r.file.clone(),
                line: r.line,
                col: 1,
                message: format!(
                    "rule `{}`: the `{}` signal needs {var} (a Secret) to be set",
                    r.name,
                    r.spec.signal.kind()
                ),
            })
        })
        .collect();
    if unset.is_empty() {
        Ok(set)
    } else {
        Err(unset)
    }
}

/// Whether a secret setting a signal may need is set.
fn secret_set(settings: &Settings, var: &str) -> bool {
    match var {
        "ALERTMANAGER_TOKEN" => settings.alertmanager_token.is_some(),
        "PROMETHEUS_TOKEN" => settings.prometheus_token.is_some(),
        "ADMIN_TOKEN" => settings.admin_token.is_some(),
        _ => false,
    }
}

/// The prefix of this process's action ids: its start time, in milliseconds since the epoch
/// in base 36, so ids stay unique across restarts (a crash-looping automaton restarts within
/// a second; ids are the idempotency keys of the guard state's intents and of webhook calls)
/// and sort by time (`act-mkd3v1a0-17`).
fn action_id_prefix() -> String {
    let mut millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(millis % 36) as usize]);
        millis /= 36;
        if millis == 0 {
            break;
        }
    }
    digits.reverse();
    format!("act-{}", String::from_utf8_lossy(&digits))
}

/// Waits for the Lease campaign's next verdict: `true` when this replica now leads. Never
/// ends without a campaign; once the campaign is gone, never again.
async fn leadership_gained(leading: &mut Option<watch::Receiver<bool>>) -> bool {
    let Some(rx) = leading.as_mut() else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        *leading = None;
        return false;
    }
    let now_leading = *rx.borrow_and_update();
    now_leading
}

//! Settings from the environment (a ConfigMap through `envFrom` in the cluster), read with
//! envy into raw strings and then parsed here, so that every invalid value is reported at
//! once, naming the variable and the expected form.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::core::guard::breaker::BreakerSettings;
use crate::core::namespaces::{Namespaces, Shard};
use crate::core::plan::Limits;
use crate::core::values::{Bytes, Dur};

mod parse;
mod secret;
use parse::*;
pub use secret::Secret;

#[derive(Debug, Error)]
#[error("invalid settings:\n  {}", .0.join("\n  "))]
pub struct SettingsError(pub Vec<String>);

/// The variables as envy reads them.
#[derive(Debug, Default, Deserialize)]
struct Raw {
    check_interval: Option<String>,
    rules_dir: Option<String>,
    listen_addr: Option<String>,
    admin_addr: Option<String>,
    admin_token: Option<String>,
    prometheus_token: Option<String>,
    alertmanager_token: Option<String>,
    dry_run: Option<String>,
    action_budget: Option<String>,
    min_replicas: Option<String>,
    max_replicas: Option<String>,
    max_memory: Option<String>,
    log_format: Option<String>,
    kubernetes: Option<String>,
    namespace: Option<String>,
    watch_namespaces: Option<String>,
    shard: Option<String>,
    pod_name: Option<String>,
    hostname: Option<String>,
    lease_name: Option<String>,
    lease_duration: Option<String>,
    breaker_failures: Option<String>,
    breaker_cool_off: Option<String>,
    gitops_policy: Option<String>,
    notify_webhook: Option<String>,
    notify_format: Option<String>,
    action_timeout: Option<String>,
}

/// Whether to use the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeMode {
    /// Use it when a configuration is found (in-cluster or KUBECONFIG), else run without.
    Auto,
    /// Require it: no configuration is an error at start.
    On,
    /// Never: pod signals are unknown, workload actions are dry-run only.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// How often every source is collected and every rule evaluated (default 15s).
    pub check_interval: Duration,
    /// Where the rule files are (default `/etc/automaton/rules`).
    pub rules_dir: PathBuf,
    /// Address of `/metrics`, `/healthz`, `/readyz`, `/status` (default `0.0.0.0:8000`):
    /// read-only endpoints.
    pub listen_addr: SocketAddr,
    /// `ADMIN_ADDR`: address of the endpoints that change state (`POST /quarantine/clear`),
    /// default `127.0.0.1:8001`: reached with `kubectl port-forward` or `kubectl exec`.
    pub admin_addr: SocketAddr,
    /// `ADMIN_TOKEN` (a secret, from the environment only): when set, admin requests must
    /// carry `Authorization: Bearer TOKEN`.
    pub admin_token: Option<Secret>,
    /// `PROMETHEUS_TOKEN` (a secret, from the environment only): the bearer token of
    /// `prometheus` signal queries.
    pub prometheus_token: Option<Secret>,
    /// `ALERTMANAGER_TOKEN` (a secret): the bearer token Alertmanager's webhook must send to
    /// `POST /alertmanager`; without it, rules on the `alert` signal are refused.
    pub alertmanager_token: Option<Secret>,
    /// Plan and report, never execute.
    pub dry_run: bool,
    /// At most `budget_limit` actions in any `budget_window`, all rules together.
    pub budget_limit: u32,
    pub budget_window: Duration,
    pub limits: Limits,
    pub log_format: LogFormat,
    /// `KUBERNETES`: `auto` (default), `on` or `off`.
    pub kubernetes: KubeMode,
    /// `NAMESPACE` (the downward API); default: the service account's namespace, else the
    /// kubeconfig context's.
    pub namespace: Option<String>,
    /// `WATCH_NAMESPACES`: the namespaces watched and acted in, a comma-separated list or
    /// `*` (the whole cluster); `None` (unset): only the automaton's own namespace.
    pub watch_namespaces: Option<Namespaces>,
    /// `SHARD=i/N`: of WATCH_NAMESPACES, only the namespaces whose hash falls in shard `i`
    /// of `N` (each shard a replica set with its own Lease).
    pub shard: Option<Shard>,
    /// `POD_NAME` (the downward API), else `HOSTNAME`: this replica's identity.
    pub pod_name: String,
    /// `LEASE_NAME` (default `automaton`): the Lease replicas elect a leader on.
    pub lease_name: String,
    /// `LEASE_DURATION` seconds (default 15): a dead leader is replaced within this.
    pub lease_duration: u64,
    /// `BREAKER_FAILURES` (default 5) consecutive failures open a dependency's breaker for
    /// `BREAKER_COOL_OFF` (default 30s).
    pub breaker: BreakerSettings,
    /// `GITOPS_POLICY`: `warn` (default: act on objects Argo CD or Flux manage, and say the
    /// change must also go to Git) or `skip`.
    pub gitops_skip: bool,
    /// `NOTIFY_WEBHOOK`: where the automaton's own notices go (a failed verification and its
    /// rollback, a change to a GitOps-managed object). Optional; a secret (only its host is
    /// ever shown).
    pub notify_webhook: Option<String>,
    /// `NOTIFY_FORMAT`: the body NOTIFY_WEBHOOK accepts: `generic` (default), `slack` or
    /// `alertmanager` (then NOTIFY_WEBHOOK is Alertmanager's base URL).
    pub notify_format: crate::core::notice::NotifyFormat,
    /// `ACTION_TIMEOUT` (default 30s, 1s to 10m): the deadline of one action, write and
    /// Event included; exec and HTTP timeouts are capped by it.
    pub action_timeout: Duration,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_vars(env_vars())
    }

    /// Reads settings from `(NAME, value)` pairs (tests pass their own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, SettingsError> {
        let raw: Raw = envy::from_iter(vars).map_err(|e| SettingsError(vec![e.to_string()]))?;
        let mut errors = Vec::new();
        let mut s = Settings::defaults();

        macro_rules! parse {
            ($name:literal, $raw:expr, $expected:literal, $parse:expr, $slot:expr) => {
                if let Some(v) = &$raw {
                    match $parse(v.trim()) {
                        Some(parsed) => $slot = parsed,
                        None => errors.push(format!("{}={:?}: expected {}", $name, v, $expected)),
                    }
                }
            };
        }
        parse!(
            "CHECK_INTERVAL",
            raw.check_interval,
            "a duration from 100ms to 1h such as `15s` or `1m`, or a number of seconds",
            parse_interval,
            s.check_interval
        );
        parse!(
            "RULES_DIR",
            raw.rules_dir,
            "a directory path",
            |v: &str| (!v.is_empty()).then(|| PathBuf::from(v)),
            s.rules_dir
        );
        parse!(
            "LISTEN_ADDR",
            raw.listen_addr,
            "an address and port such as `0.0.0.0:8000`",
            |v: &str| v.parse().ok(),
            s.listen_addr
        );
        parse!(
            "ADMIN_ADDR",
            raw.admin_addr,
            "an address and port such as `127.0.0.1:8001`",
            |v: &str| v.parse().ok(),
            s.admin_addr
        );
        // Not through `parse!`: a token is never echoed.
        s.admin_token = secret::token("ADMIN_TOKEN", raw.admin_token.as_deref(), &mut errors);
        s.alertmanager_token = secret::token(
            "ALERTMANAGER_TOKEN",
            raw.alertmanager_token.as_deref(),
            &mut errors,
        );
        s.prometheus_token = secret::given(raw.prometheus_token.as_deref());
        if s.admin_addr == s.listen_addr {
            errors.push(format!(
                "ADMIN_ADDR and LISTEN_ADDR are both {}: the admin endpoints need a listener of their own",
                s.admin_addr
            ));
        }
        parse!("DRY_RUN", raw.dry_run, "`true` or `false`", parse_bool, s.dry_run);
        parse!(
            "ACTION_BUDGET",
            raw.action_budget,
            "COUNT/DURATION such as `10/10m` (COUNT 1 to 10000, DURATION up to 7d)",
            parse_budget,
            (s.budget_limit, s.budget_window)
        );
        parse!(
            "MIN_REPLICAS",
            raw.min_replicas,
            "a whole number from 0 to 10000",
            |v: &str| v.parse().ok().filter(|n| *n <= MAX_REPLICAS),
            s.limits.min_replicas
        );
        parse!(
            "MAX_REPLICAS",
            raw.max_replicas,
            "a whole number from 1 to 10000",
            |v: &str| v.parse().ok().filter(|n| (1..=MAX_REPLICAS).contains(n)),
            s.limits.max_replicas
        );
        parse!(
            "MAX_MEMORY",
            raw.max_memory,
            "a byte quantity from 1Mi to 16Ti such as `8Gi`",
            |v: &str| v
                .parse::<Bytes>()
                .ok()
                .filter(|b| (MIN_MEMORY..=MAX_MEMORY).contains(&b.0)),
            s.limits.max_memory
        );
        parse!(
            "LOG_FORMAT",
            raw.log_format,
            "`json` or `text`",
            parse_log_format,
            s.log_format
        );
        parse!(
            "KUBERNETES",
            raw.kubernetes,
            "`auto`, `on` or `off`",
            parse_kube_mode,
            s.kubernetes
        );
        parse!(
            "NAMESPACE",
            raw.namespace,
            "a Kubernetes namespace name",
            |v: &str| crate::core::values::is_dns1123(v).then(|| Some(v.to_owned())),
            s.namespace
        );
        parse!(
            "WATCH_NAMESPACES",
            raw.watch_namespaces,
            "`*` (every namespace) or a comma-separated list of namespace names",
            |v: &str| Namespaces::parse(v).ok().map(Some),
            s.watch_namespaces
        );
        parse!(
            "SHARD",
            raw.shard,
            "`INDEX/COUNT` such as `0/3` (0 <= INDEX < COUNT <= 1024)",
            |v: &str| Shard::parse(v).ok().map(Some),
            s.shard
        );
        if s.shard.is_some() && s.watch_namespaces.is_none() {
            errors.push(
                "SHARD splits WATCH_NAMESPACES between replica sets: set WATCH_NAMESPACES (`*` or a list) too".to_owned(),
            );
        }
        if let Some(name) = raw.pod_name.or(raw.hostname).filter(|n| !n.is_empty()) {
            s.pod_name = name;
        }
        parse!(
            "LEASE_NAME",
            raw.lease_name,
            "a Kubernetes object name",
            |v: &str| crate::core::values::is_dns1123(v).then(|| v.to_owned()),
            s.lease_name
        );
        parse!(
            "LEASE_DURATION",
            raw.lease_duration,
            "a whole number of seconds from 3 to 3600",
            |v: &str| v.parse::<u64>().ok().filter(|n| (3..=3600).contains(n)),
            s.lease_duration
        );
        parse!(
            "BREAKER_FAILURES",
            raw.breaker_failures,
            "a whole number from 1 to 1000",
            |v: &str| v.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)),
            s.breaker.failures
        );
        parse!(
            "BREAKER_COOL_OFF",
            raw.breaker_cool_off,
            "a duration from 1s to 1h such as `30s`",
            |v: &str| {
                v.parse::<Dur>()
                    .ok()
                    .map(|d| d.0)
                    .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(d))
            },
            s.breaker.cool_off
        );
        parse!(
            "NOTIFY_FORMAT",
            raw.notify_format,
            "`generic`, `slack` or `alertmanager`",
            |v: &str| serde_json::from_value(serde_json::Value::String(v.to_owned())).ok(),
            s.notify_format
        );
        parse!(
            "GITOPS_POLICY",
            raw.gitops_policy,
            "`warn` or `skip`",
            |v: &str| match v {
                "warn" => Some(false),
                "skip" => Some(true),
                _ => None,
            },
            s.gitops_skip
        );
        parse!(
            "ACTION_TIMEOUT",
            raw.action_timeout,
            "a duration from `1s` to `10m`, such as `30s`",
            |v: &str| v
                .parse::<Dur>()
                .ok()
                .map(|d| d.0)
                .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(600)).contains(d)),
            s.action_timeout
        );
        // Not through `parse!`: a webhook URL holds its token, so it is never echoed.
        match raw.notify_webhook.as_deref().map(str::trim) {
            None | Some("") => {}
            Some(url) => match crate::core::url::check_url("NOTIFY_WEBHOOK", url) {
                None => s.notify_webhook = Some(url.to_owned()),
                Some(why) => errors.push(why),
            },
        }
        if s.limits.min_replicas > s.limits.max_replicas {
            errors.push(format!(
                "MIN_REPLICAS={} is above MAX_REPLICAS={}",
                s.limits.min_replicas, s.limits.max_replicas
            ));
        }
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(SettingsError(errors))
        }
    }

    pub fn defaults() -> Self {
        Settings {
            check_interval: Duration::from_secs(15),
            rules_dir: PathBuf::from("/etc/automaton/rules"),
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8000)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 8001)),
            admin_token: None,
            prometheus_token: None,
            alertmanager_token: None,
            dry_run: false,
            budget_limit: 10,
            budget_window: Duration::from_secs(600),
            limits: Limits::default(),
            log_format: if std::io::stdout().is_terminal() {
                LogFormat::Text
            } else {
                LogFormat::Json
            },
            kubernetes: KubeMode::Auto,
            namespace: None,
            watch_namespaces: None,
            shard: None,
            pod_name: "automaton".to_owned(),
            lease_name: "automaton".to_owned(),
            lease_duration: 15,
            breaker: BreakerSettings::default(),
            gitops_skip: false,
            notify_webhook: None,
            notify_format: crate::core::notice::NotifyFormat::Generic,
            action_timeout: Duration::from_secs(30),
        }
    }

    /// Samples older than this are unknown.
    pub fn stale_after(&self) -> Duration {
        self.check_interval * 3
    }
}

/// The engine's settings, in one place for `run` and `simulate`: a setting the daemon
/// honours is honoured by a simulation of the same environment. The daemon then names its
/// executors and its action-id prefix; `simulate` keeps every kind executable and `sim`.
impl From<&Settings> for crate::core::engine::EngineConfig {
    fn from(s: &Settings) -> Self {
        crate::core::engine::EngineConfig {
            limits: s.limits,
            stale_after: s.stale_after(),
            dry_run: s.dry_run,
            budget_limit: s.budget_limit,
            budget_window: s.budget_window,
            gitops_skip: s.gitops_skip,
            ..crate::core::engine::EngineConfig::default()
        }
    }
}

/// The process environment as UTF-8 pairs. `std::env::vars()` would panic on a non-UTF-8
/// value anywhere in the environment; such variables are none of ours, so they are skipped.
pub fn env_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

#[cfg(test)]
mod tests;

//! Command line (clap). Every setting is a flag and an environment variable (`--help` lists
//! each with its variable and default); clap only collects the text, and
//! [`crate::settings::Settings::from_vars`] parses it, so every invalid value is still
//! reported at once. Secrets are read from the environment only: a flag would show them in
//! `ps` and in the shell's history.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A self-healing daemon for Kubernetes production.
#[derive(Debug, Parser)]
#[command(name = "automaton", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Read from the environment only, never from a flag, never shown.
const SECRETS: &str = "Secrets, read from the environment only (a Kubernetes Secret through `secretKeyRef`):
  NOTIFY_WEBHOOK        where the automaton's own notices go (only its host is ever shown)
  ADMIN_TOKEN           when set, admin requests (ADMIN_ADDR) need `Authorization: Bearer TOKEN`
  PROMETHEUS_TOKEN      the bearer token of `prometheus` signal queries, when the server wants one
  ALERTMANAGER_TOKEN    the bearer token Alertmanager must send to `POST /alertmanager` (16+ characters)
  KAFKA_SASL_PASSWORD   the Kafka SASL password
  POSTGRES_PASSWORD     the PostgreSQL password
  DATABASE_URL          a PostgreSQL URL (instead of POSTGRES_*), which may hold a password";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    #[command(after_help = SECRETS)]
    Run {
        /// One collection and evaluation; print the decisions as JSON lines and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        settings: Box<SettingsArgs>,
        #[command(flatten)]
        kafka: Box<KafkaArgs>,
        #[command(flatten)]
        postgres: Box<PostgresArgs>,
    },
    /// Validate rule files or directories; exit 1 with every error as FILE:LINE:COL.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also judge the rules against this environment's settings (KAFKA_*, POSTGRES_*,
        /// DATABASE_URL, KUBERNETES and KUBECONFIG, the paths signals read) as `run` would:
        /// list which rules would be disabled and why.
        #[arg(long)]
        env: bool,
    },
    /// Replay a timeline offline (simulated clock, no network) and print the decisions,
    /// with the rules of `--rules` (RULES_DIR) and the engine's settings as `run` reads them.
    Simulate {
        /// Timeline YAML file.
        #[arg(long)]
        timeline: PathBuf,
        /// Tick interval between steps (default: CHECK_INTERVAL).
        #[arg(long, value_parser = parse_interval)]
        interval: Option<std::time::Duration>,
        /// The engine's settings, as the daemon reads them.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
    /// Test rule files against timelines, like `promtool test rules`: run each FILE as
    /// `simulate` does and check its `expect:` entries (and that every action taken is
    /// expected); exit 1 with a diff on any mismatch.
    Test {
        /// Timeline files with `expect:` entries.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Tick interval between steps (default: CHECK_INTERVAL).
        #[arg(long, value_parser = parse_interval)]
        interval: Option<std::time::Duration>,
        /// The engine's settings, as the daemon reads them.
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
}

/// The daemon's settings. Their forms and ranges are checked by `Settings::from_vars`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Settings (a flag overrides its environment variable)")]
pub struct SettingsArgs {
    /// How often every source is collected and every rule evaluated; a bare number is seconds.
    #[arg(long, env = "CHECK_INTERVAL", value_name = "DURATION", default_value = "15s")]
    pub check_interval: Option<String>,
    /// The rule files (`*.yaml`, `*.yml`), a directory or one file.
    #[arg(
        long = "rules",
        env = "RULES_DIR",
        value_name = "DIR",
        default_value = "/etc/automaton/rules"
    )]
    pub rules_dir: Option<String>,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/status` are served.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        value_name = "ADDR",
        default_value = "0.0.0.0:8000"
    )]
    pub listen_addr: Option<String>,
    /// Address of the endpoints that change state (`POST /quarantine/clear`); localhost by
    /// default, reached with `kubectl port-forward`.
    #[arg(
        long,
        env = "ADMIN_ADDR",
        value_name = "ADDR",
        default_value = "127.0.0.1:8001"
    )]
    pub admin_addr: Option<String>,
    /// Plan and report, never execute (`--dry-run` alone means true).
    #[arg(long, env = "DRY_RUN", value_name = "BOOL", default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub dry_run: Option<String>,
    /// At most COUNT actions in any DURATION, all rules together.
    #[arg(
        long,
        env = "ACTION_BUDGET",
        value_name = "COUNT/DURATION",
        default_value = "10/10m"
    )]
    pub action_budget: Option<String>,
    /// The lower hard bound of `scale`.
    #[arg(long, env = "MIN_REPLICAS", value_name = "N", default_value = "1")]
    pub min_replicas: Option<String>,
    /// The upper hard bound of `scale`.
    #[arg(long, env = "MAX_REPLICAS", value_name = "N", default_value = "10")]
    pub max_replicas: Option<String>,
    /// The hard bound of `raise_memory`.
    #[arg(long, env = "MAX_MEMORY", value_name = "QUANTITY", default_value = "8Gi")]
    pub max_memory: Option<String>,
    /// The deadline of one action, its write and Event included (1s to 10m).
    #[arg(long, env = "ACTION_TIMEOUT", value_name = "DURATION", default_value = "30s")]
    pub action_timeout: Option<String>,
    /// `json` or `text` [default: json, or text when stdout is a terminal].
    #[arg(long, env = "LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// `auto` (use the API when a configuration is found), `on` (require it) or `off`.
    #[arg(long, env = "KUBERNETES", value_name = "MODE", default_value = "auto")]
    pub kubernetes: Option<String>,
    /// The automaton's own namespace: its Lease, its guard state, and that of a rule's
    /// target that names none [default: the service account's namespace, else the
    /// kubeconfig context's].
    #[arg(long, env = "NAMESPACE", value_name = "NAME")]
    pub namespace: Option<String>,
    /// Where pods are watched and workloads acted on: a comma-separated list of namespaces,
    /// or `*` for the whole cluster [default: NAMESPACE].
    #[arg(long, env = "WATCH_NAMESPACES", value_name = "LIST")]
    pub watch_namespaces: Option<String>,
    /// `INDEX/COUNT`: of WATCH_NAMESPACES, only the namespaces whose name hashes to this
    /// shard; each shard a replica set with its own Lease.
    #[arg(long, env = "SHARD", value_name = "I/N")]
    pub shard: Option<String>,
    /// This replica's identity in the Lease and in Events [default: HOSTNAME].
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
    /// The Lease replicas elect a leader on.
    #[arg(long, env = "LEASE_NAME", value_name = "NAME", default_value = "automaton")]
    pub lease_name: Option<String>,
    /// Seconds; a replica that stops renewing is replaced within this.
    #[arg(long, env = "LEASE_DURATION", value_name = "SECONDS", default_value = "15")]
    pub lease_duration: Option<String>,
    /// Consecutive failures that open a dependency's circuit breaker.
    #[arg(long, env = "BREAKER_FAILURES", value_name = "N", default_value = "5")]
    pub breaker_failures: Option<String>,
    /// How long an open breaker waits before one probe.
    #[arg(
        long,
        env = "BREAKER_COOL_OFF",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub breaker_cool_off: Option<String>,
    /// Objects Argo CD or Flux manage: `warn` (act, say it must go to Git) or `skip`.
    #[arg(long, env = "GITOPS_POLICY", value_name = "POLICY", default_value = "warn")]
    pub gitops_policy: Option<String>,
    /// The body NOTIFY_WEBHOOK accepts: `generic`, `slack` or `alertmanager` (its base URL).
    #[arg(long, env = "NOTIFY_FORMAT", value_name = "FORMAT", default_value = "generic")]
    pub notify_format: Option<String>,
}

/// Kafka, for the `kafka_lag` signal (off unless KAFKA_BOOTSTRAP_SERVERS is set).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// `host:port[,host:port…]` of the brokers.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", value_name = "SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` [default: plaintext].
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_name = "PROTOCOL")]
    pub kafka_security_protocol: Option<String>,
    /// The SASL mechanism (e.g. `PLAIN`, `SCRAM-SHA-512`), with a SASL protocol.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_name = "MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    /// The SASL user (its password: KAFKA_SASL_PASSWORD, below).
    #[arg(long, env = "KAFKA_SASL_USERNAME", value_name = "USER")]
    pub kafka_sasl_username: Option<String>,
    /// A CA bundle to verify the brokers with [default: the system's].
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION", value_name = "FILE")]
    pub kafka_ssl_ca_location: Option<String>,
    /// Bound of each request to the brokers [default: 5s].
    #[arg(long, env = "KAFKA_TIMEOUT", value_name = "DURATION")]
    pub kafka_timeout: Option<String>,
}

/// PostgreSQL, for the `postgres` signal and `terminate_idle_connections` (off unless
/// POSTGRES_HOST or DATABASE_URL is set).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "PostgreSQL")]
pub struct PostgresArgs {
    /// The server's host.
    #[arg(long, env = "POSTGRES_HOST", value_name = "HOST")]
    pub postgres_host: Option<String>,
    /// Its port [default: 5432].
    #[arg(long, env = "POSTGRES_PORT", value_name = "PORT")]
    pub postgres_port: Option<String>,
    /// The database to connect to [default: the server's, the role's name].
    #[arg(long, env = "POSTGRES_DB", value_name = "NAME")]
    pub postgres_db: Option<String>,
    /// The role (its password: POSTGRES_PASSWORD, below) [default: postgres].
    #[arg(long, env = "POSTGRES_USER", value_name = "USER")]
    pub postgres_user: Option<String>,
    /// Bound of connecting and of each query [default: 5s].
    #[arg(long, env = "POSTGRES_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub postgres_connect_timeout: Option<String>,
    /// TLS: `disable`, `require` / `verify-ca` (the chain is verified), `verify-full` (the
    /// host name too) [default: disable, or the URL's `sslmode`].
    #[arg(long, env = "POSTGRES_SSLMODE", value_name = "MODE")]
    pub postgres_sslmode: Option<String>,
    /// The CA certificates (PEM) to verify the server with [default: the webpki roots].
    #[arg(long, env = "POSTGRES_SSLROOTCERT", value_name = "FILE")]
    pub postgres_sslrootcert: Option<String>,
}

/// `(VARIABLE, value)` of every argument given, by flag, variable or default.
fn pairs(given: &[(&str, &Option<String>)]) -> Vec<(String, String)> {
    given
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| ((*name).to_owned(), v.clone())))
        .collect()
}

impl SettingsArgs {
    pub fn vars(&self) -> Vec<(String, String)> {
        pairs(&[
            ("CHECK_INTERVAL", &self.check_interval),
            ("RULES_DIR", &self.rules_dir),
            ("LISTEN_ADDR", &self.listen_addr),
            ("ADMIN_ADDR", &self.admin_addr),
            ("DRY_RUN", &self.dry_run),
            ("ACTION_BUDGET", &self.action_budget),
            ("MIN_REPLICAS", &self.min_replicas),
            ("MAX_REPLICAS", &self.max_replicas),
            ("MAX_MEMORY", &self.max_memory),
            ("ACTION_TIMEOUT", &self.action_timeout),
            ("LOG_FORMAT", &self.log_format),
            ("KUBERNETES", &self.kubernetes),
            ("NAMESPACE", &self.namespace),
            ("WATCH_NAMESPACES", &self.watch_namespaces),
            ("SHARD", &self.shard),
            ("POD_NAME", &self.pod_name),
            ("LEASE_NAME", &self.lease_name),
            ("LEASE_DURATION", &self.lease_duration),
            ("BREAKER_FAILURES", &self.breaker_failures),
            ("BREAKER_COOL_OFF", &self.breaker_cool_off),
            ("GITOPS_POLICY", &self.gitops_policy),
            ("NOTIFY_FORMAT", &self.notify_format),
        ])
    }
}

impl KafkaArgs {
    pub fn vars(&self) -> Vec<(String, String)> {
        pairs(&[
            ("KAFKA_BOOTSTRAP_SERVERS", &self.kafka_bootstrap_servers),
            ("KAFKA_SECURITY_PROTOCOL", &self.kafka_security_protocol),
            ("KAFKA_SASL_MECHANISM", &self.kafka_sasl_mechanism),
            ("KAFKA_SASL_USERNAME", &self.kafka_sasl_username),
            ("KAFKA_SSL_CA_LOCATION", &self.kafka_ssl_ca_location),
            ("KAFKA_TIMEOUT", &self.kafka_timeout),
        ])
    }
}

impl PostgresArgs {
    pub fn vars(&self) -> Vec<(String, String)> {
        pairs(&[
            ("POSTGRES_HOST", &self.postgres_host),
            ("POSTGRES_PORT", &self.postgres_port),
            ("POSTGRES_DB", &self.postgres_db),
            ("POSTGRES_USER", &self.postgres_user),
            ("POSTGRES_CONNECT_TIMEOUT", &self.postgres_connect_timeout),
            ("POSTGRES_SSLMODE", &self.postgres_sslmode),
            ("POSTGRES_SSLROOTCERT", &self.postgres_sslrootcert),
        ])
    }
}

/// The process environment with the command line's values over it: what the settings
/// parsers read (the secrets, which have no flag, come from the environment).
pub fn environment(given: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut vars: std::collections::BTreeMap<String, String> = crate::settings::env_vars().collect();
    vars.extend(given);
    vars.into_iter().collect()
}

/// Same syntax as rule durations (`15s`, `1m`).
fn parse_interval(text: &str) -> Result<std::time::Duration, crate::core::values::ValueError> {
    text.parse::<crate::core::values::Dur>().map(|d| d.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}

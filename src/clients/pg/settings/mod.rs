//! Where the PostgreSQL server is: `DATABASE_URL` (a `postgres://` URL) or the `POSTGRES_*`
//! variables, read with envy into raw strings and checked here so that every problem is
//! reported at once, naming its variable. The password is kept only inside the connection
//! config: `Debug`, `Display` and every error show it as `***`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Config;

use super::redact::{redact_url, scrub, REDACTED};
use super::tls::{SslMode as TlsMode, Tls};
use super::PgError;
use crate::core::values::Dur;

const DEFAULT_PORT: u16 = 5432;
const DEFAULT_USER: &str = "postgres";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Shown in `pg_stat_activity.application_name` unless the URL sets another.
const APPLICATION_NAME: &str = "automaton";

/// The variables as envy reads them. Deliberately not `Debug`: it holds the password.
#[derive(Default, Deserialize)]
struct Raw {
    database_url: Option<String>,
    postgres_host: Option<String>,
    postgres_port: Option<String>,
    postgres_db: Option<String>,
    postgres_user: Option<String>,
    postgres_password: Option<String>,
    postgres_connect_timeout: Option<String>,
    postgres_sslmode: Option<String>,
    postgres_sslrootcert: Option<String>,
}

/// How to reach the PostgreSQL server the `postgres` signal and the
/// `terminate_idle_connections` action work on.
#[derive(Clone)]
pub struct PgSettings {
    config: Config,
    connect_timeout: Duration,
    tls: Tls,
}

impl PgSettings {
    /// Reads the process environment. `Ok(None)` when neither `DATABASE_URL` nor
    /// `POSTGRES_HOST` is set (and no other connection variable either).
    pub fn from_env() -> Result<Option<PgSettings>, PgError> {
        Self::from_vars(crate::settings::env_vars())
    }

    /// Reads settings from `(NAME, value)` pairs (tests pass their own).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Option<PgSettings>, PgError> {
        let raw: Raw = envy::from_iter(vars).map_err(|e| PgError::Settings(vec![e.to_string()]))?;
        let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let url = set(raw.database_url);
        let host = set(raw.postgres_host);
        let port = set(raw.postgres_port);
        let db = set(raw.postgres_db);
        let user = set(raw.postgres_user);
        let password = raw.postgres_password.filter(|p| !p.is_empty());
        let mut errors = Vec::new();
        // `sslmode` and `sslrootcert` may also come in DATABASE_URL; taken out of it here, as
        // tokio-postgres knows neither `verify-full` nor `sslrootcert`.
        let (url, url_tls) = match url {
            Some(url) => {
                let (rest, tls) = split_tls(url.trim());
                (Some(rest), tls)
            }
            None => (None, (None, None)),
        };
        let mode_text = set(raw.postgres_sslmode).or(url_tls.0);
        let root_cert = set(raw.postgres_sslrootcert)
            .or(url_tls.1)
            .map(std::path::PathBuf::from);
        let mode = match mode_text.as_deref().map(TlsMode::parse) {
            None => TlsMode::Disable,
            Some(Ok(mode)) => mode,
            Some(Err(e)) => {
                errors.push(format!("POSTGRES_SSLMODE: {e}"));
                TlsMode::Disable
            }
        };
        if let Some(path) = &root_cert {
            if mode == TlsMode::Disable {
                errors.push(
                    "POSTGRES_SSLROOTCERT is set but sslmode is `disable`: set POSTGRES_SSLMODE too"
                        .to_owned(),
                );
            } else if !path.is_file() {
                errors.push(format!("POSTGRES_SSLROOTCERT={}: no such file", path.display()));
            }
        }
        let tls = Tls { mode, root_cert };

        let connect_timeout = match set(raw.postgres_connect_timeout) {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(v) => parse_timeout(&v).unwrap_or_else(|| {
                errors.push(format!(
                    "POSTGRES_CONNECT_TIMEOUT={v:?}: expected a positive duration such as `5s`, or a number of seconds"
                ));
                DEFAULT_CONNECT_TIMEOUT
            }),
        };

        let config = match (url, host) {
            (None, None) => {
                let stray: Vec<&str> = [
                    ("POSTGRES_PORT", port.is_some()),
                    ("POSTGRES_DB", db.is_some()),
                    ("POSTGRES_USER", user.is_some()),
                    ("POSTGRES_PASSWORD", password.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, is_set)| is_set.then_some(name))
                .collect();
                if stray.is_empty() && errors.is_empty() {
                    return Ok(None);
                }
                if !stray.is_empty() {
                    errors.push(format!(
                        "{} set without POSTGRES_HOST or DATABASE_URL: set one of them",
                        stray.join(", ")
                    ));
                }
                None
            }
            (Some(_), Some(_)) => {
                errors.push("DATABASE_URL and POSTGRES_HOST are both set: use one of them".to_owned());
                None
            }
            (Some(url), None) => {
                for (name, is_set) in [
                    ("POSTGRES_PORT", port.is_some()),
                    ("POSTGRES_DB", db.is_some()),
                    ("POSTGRES_USER", user.is_some()),
                ] {
                    if is_set {
                        errors.push(format!(
                            "{name} is set together with DATABASE_URL: put it in the URL"
                        ));
                    }
                }
                from_url(url.trim(), password, &mut errors)
            }
            (None, Some(host)) => from_parts(host.trim(), port, db, user, password, &mut errors),
        };

        match config {
            Some(mut config) if errors.is_empty() => {
                config.connect_timeout(connect_timeout);
                config.ssl_mode(match tls.mode {
                    TlsMode::Disable => SslMode::Disable,
                    TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
                });
                if config.get_application_name().is_none() {
                    config.application_name(APPLICATION_NAME);
                }
                Ok(Some(PgSettings {
                    config,
                    connect_timeout,
                    tls,
                }))
            }
            _ => Err(PgError::Settings(errors)),
        }
    }

    /// The connection config, password included: hand it to a connector, never to a log.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// How the connection is protected.
    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// The role the automaton connects as.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or(DEFAULT_USER)
    }

    /// The configured database; `None` means the server's default (the user's name).
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// The host(s), comma-separated: the `host` label of the series.
    pub fn host(&self) -> String {
        self.config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port/database`, for error messages (no user, no password).
    pub fn target(&self) -> String {
        let hosts = self.config.get_hosts();
        let ports = self.config.get_ports();
        let addrs: Vec<String> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(DEFAULT_PORT);
                match h {
                    Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(path) => format!("{}:{port}", path.display()),
                }
            })
            .collect();
        format!("{}/{}", addrs.join(","), self.database().unwrap_or(self.user()))
    }

    /// `POSTGRES_CONNECT_TIMEOUT` (default 5s): bounds each connection attempt and each query.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Whether a password is configured (it is never readable through this type).
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }
}

/// `postgres://USER:***@HOST:PORT/DB`: safe for logs, `/status` and errors.
impl fmt::Display for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.has_password() { ":***" } else { "" };
        write!(f, "postgres://{}{password}@{}", self.user(), self.target())
    }
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("target", &self.target())
            .field("user", &self.user())
            .field("password", &self.has_password().then_some(REDACTED))
            .field("application_name", &self.config.get_application_name())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

fn from_url(url: &str, password: Option<String>, errors: &mut Vec<String>) -> Option<Config> {
    let shown = redact_url(url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        errors.push(format!("DATABASE_URL={shown:?}: expected a `postgres://` URL"));
        return None;
    }
    let mut config = match Config::from_str(url) {
        Ok(config) => config,
        Err(e) => {
            // The parser's messages name options, not values; scrub anyway in case one ever does.
            let reason = scrub(&e.to_string(), url);
            errors.push(format!("DATABASE_URL={shown:?}: {reason}"));
            return None;
        }
    };
    if config.get_hosts().is_empty() {
        errors.push(format!("DATABASE_URL={shown:?}: no host"));
    }
    if let Some(password) = password {
        if config.get_password().is_some() {
            errors.push(
                "POSTGRES_PASSWORD is set but DATABASE_URL already carries a password: keep one".to_owned(),
            );
        } else {
            config.password(password);
        }
    }
    default_user(&mut config);
    Some(config)
}

fn from_parts(
    host: &str,
    port: Option<String>,
    db: Option<String>,
    user: Option<String>,
    password: Option<String>,
    errors: &mut Vec<String>,
) -> Option<Config> {
    let mut config = Config::new();
    config.host(host);
    match port.as_deref().map(str::trim) {
        None => {
            config.port(DEFAULT_PORT);
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => {
                config.port(n);
            }
            _ => errors.push(format!("POSTGRES_PORT={p:?}: expected a port number (1-65535)")),
        },
    }
    if let Some(db) = db {
        config.dbname(db.trim());
    }
    if let Some(user) = user {
        config.user(user.trim());
    }
    if let Some(password) = password {
        config.password(password);
    }
    default_user(&mut config);
    Some(config)
}

fn default_user(config: &mut Config) {
    if config.get_user().is_none() {
        config.user(DEFAULT_USER);
    }
}

/// DATABASE_URL without its `sslmode` and `sslrootcert` parameters, and their values.
fn split_tls(url: &str) -> (String, (Option<String>, Option<String>)) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), (None, None));
    };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_owned()),
            Some(("sslrootcert", v)) => root = Some(v.replace("%2F", "/").replace("%2f", "/")),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, (mode, root))
}

fn parse_timeout(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = match v.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::try_from_secs_f64(secs).ok()?,
        Ok(_) => return None,
        Err(_) => v.parse::<Dur>().ok()?.0,
    };
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests;

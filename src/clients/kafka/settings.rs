//! Where the Kafka brokers are: the `KAFKA_*` variables, read with envy into raw strings and
//! checked here so that every problem is reported at once, naming its variable. The SASL
//! password is kept only inside the settings: `Debug` and every error show it as `***`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::wire::{Mechanism, Security, TlsConfig, VersionCaps};
use super::KafkaError;
use crate::core::values::Dur;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];

/// The variables as envy reads them. Deliberately not `Debug`: it holds the password.
#[derive(Default, Deserialize)]
struct Raw {
    kafka_bootstrap_servers: Option<String>,
    kafka_security_protocol: Option<String>,
    kafka_sasl_mechanism: Option<String>,
    kafka_sasl_username: Option<String>,
    kafka_sasl_password: Option<String>,
    kafka_ssl_ca_location: Option<String>,
    kafka_timeout: Option<String>,
}

/// How to reach the Kafka cluster the `kafka_lag` signal reads.
#[derive(Clone)]
pub struct KafkaSettings {
    bootstrap_servers: String,
    security_protocol: Option<String>,
    sasl_mechanism: Option<String>,
    sasl_username: Option<String>,
    sasl_password: Option<String>,
    ssl_ca_location: Option<String>,
    timeout: Duration,
    caps: VersionCaps,
}

impl KafkaSettings {
    /// Reads the process environment. `Ok(None)` when `KAFKA_BOOTSTRAP_SERVERS` is not set
    /// (and no other `KAFKA_*` connection variable either).
    pub fn from_env() -> Result<Option<KafkaSettings>, KafkaError> {
        Self::from_vars(crate::settings::env_vars())
    }

    /// Reads settings from `(NAME, value)` pairs (tests pass their own).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Option<KafkaSettings>, KafkaError> {
        let raw: Raw = envy::from_iter(vars).map_err(|e| KafkaError::Settings(vec![e.to_string()]))?;
        let set = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let bootstrap = set(raw.kafka_bootstrap_servers);
        let protocol = set(raw.kafka_security_protocol).map(|p| p.to_ascii_lowercase());
        let mechanism = set(raw.kafka_sasl_mechanism);
        let username = set(raw.kafka_sasl_username);
        let password = raw.kafka_sasl_password.filter(|p| !p.is_empty());
        let ca = set(raw.kafka_ssl_ca_location);
        let mut errors = Vec::new();

        let timeout = match set(raw.kafka_timeout) {
            None => DEFAULT_TIMEOUT,
            Some(v) => parse_timeout(&v).unwrap_or_else(|| {
                errors.push(format!(
                    "KAFKA_TIMEOUT={v:?}: expected a positive duration such as `5s`, or a number of seconds"
                ));
                DEFAULT_TIMEOUT
            }),
        };
        if let Some(p) = &protocol {
            if !PROTOCOLS.contains(&p.as_str()) {
                errors.push(format!(
                    "KAFKA_SECURITY_PROTOCOL={p:?}: expected one of {}",
                    PROTOCOLS.join(", ")
                ));
            }
        }
        if username.is_some() != password.is_some() {
            errors.push("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD must be set together".to_owned());
        }
        if let Some(m) = &mechanism {
            if let Err(e) = Mechanism::new(m, String::new(), String::new()) {
                errors.push(e);
            }
        }
        let sasl = protocol.as_deref().is_some_and(|p| p.starts_with("sasl_"));
        let valid = protocol.as_deref().is_none_or(|p| PROTOCOLS.contains(&p));
        if sasl && (mechanism.is_none() || username.is_none()) {
            errors.push(format!(
                "KAFKA_SECURITY_PROTOCOL={}: set KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
                protocol.as_deref().unwrap_or_default()
            ));
        }
        if valid && !sasl && (mechanism.is_some() || username.is_some()) {
            // Credentials that would silently not be used.
            errors.push(format!(
                "KAFKA_SASL_* is set but KAFKA_SECURITY_PROTOCOL is {}: set sasl_plaintext or sasl_ssl",
                protocol.as_deref().unwrap_or("unset (plaintext)")
            ));
        }
        let Some(bootstrap_servers) = bootstrap else {
            let stray: Vec<&str> = [
                ("KAFKA_SECURITY_PROTOCOL", protocol.is_some()),
                ("KAFKA_SASL_MECHANISM", mechanism.is_some()),
                ("KAFKA_SASL_USERNAME", username.is_some()),
                ("KAFKA_SASL_PASSWORD", password.is_some()),
                ("KAFKA_SSL_CA_LOCATION", ca.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, is_set)| is_set.then_some(name))
            .collect();
            if stray.is_empty() && errors.is_empty() {
                return Ok(None);
            }
            if !stray.is_empty() {
                errors.push(format!(
                    "{} set without KAFKA_BOOTSTRAP_SERVERS: set it",
                    stray.join(", ")
                ));
            }
            return Err(KafkaError::Settings(errors));
        };
        if !errors.is_empty() {
            return Err(KafkaError::Settings(errors));
        }
        Ok(Some(KafkaSettings {
            bootstrap_servers,
            security_protocol: protocol,
            sasl_mechanism: mechanism,
            sasl_username: username,
            sasl_password: password,
            ssl_ca_location: ca,
            timeout,
            caps: VersionCaps::default(),
        }))
    }

    /// Settings for `bootstrap_servers` with every other value at its default.
    pub fn new(bootstrap_servers: impl Into<String>, timeout: Duration) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.into(),
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            timeout,
            caps: VersionCaps::default(),
        }
    }

    /// Sends group requests of at most these versions, as to an older broker (tests of the
    /// one-request-per-group path; a broker that mishandles the batched versions).
    pub fn with_version_caps(mut self, caps: VersionCaps) -> KafkaSettings {
        self.caps = caps;
        self
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Bounds every broker request of one collection step.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How every connection is protected: TLS for `ssl`/`sasl_ssl` (its CA file read now;
    /// an error names it), SASL for `sasl_*`. The password goes into the mechanism only.
    pub(crate) fn security(&self) -> Result<Security, String> {
        let protocol = self.security_protocol.as_deref().unwrap_or("plaintext");
        let tls = match protocol {
            "ssl" | "sasl_ssl" => Some(TlsConfig::new(
                self.ssl_ca_location.as_deref().map(std::path::Path::new),
            )?),
            _ => None,
        };
        let sasl = match (
            protocol,
            &self.sasl_mechanism,
            &self.sasl_username,
            &self.sasl_password,
        ) {
            ("sasl_plaintext" | "sasl_ssl", Some(m), Some(user), Some(password)) => {
                Some(Mechanism::new(m, user.clone(), password.clone())?)
            }
            _ => None,
        };
        Ok(Security {
            tls,
            sasl,
            timeout: self.timeout,
            caps: self.caps,
        })
    }
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "***"))
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn parse_timeout(v: &str) -> Option<Duration> {
    let d = match v.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::try_from_secs_f64(secs).ok()?,
        Ok(_) => return None,
        Err(_) => v.parse::<Dur>().ok()?.0,
    };
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unset_is_not_configured() {
        assert!(KafkaSettings::from_vars(vars(&[("HOME", "/root")]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn reads_every_variable_and_hides_the_password() {
        let s = KafkaSettings::from_vars(vars(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "automaton"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
            ("KAFKA_SSL_CA_LOCATION", "/etc/ca.pem"),
            ("KAFKA_TIMEOUT", "2s"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.timeout(), Duration::from_secs(2));
        assert_eq!(s.bootstrap_servers(), "k1:9092,k2:9092");
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        // The CA file is read when the client is built; an error names it.
        let err = s.security().err().unwrap_or_default();
        assert!(err.starts_with("KAFKA_SSL_CA_LOCATION /etc/ca.pem: "), "{err}");
        let plain = KafkaSettings::from_vars(vars(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-256"),
            ("KAFKA_SASL_USERNAME", "automaton"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
        ]))
        .unwrap()
        .unwrap();
        let security = plain.security().unwrap();
        assert!(security.tls.is_none());
        assert_eq!(format!("{:?}", security.sasl), "Some(SCRAM-SHA-256 as automaton)");
    }

    #[test]
    fn sasl_needs_a_known_mechanism_and_credentials_need_sasl() {
        let errors = |pairs: &[(&str, &str)]| match KafkaSettings::from_vars(vars(pairs)) {
            Err(KafkaError::Settings(lines)) => lines,
            other => panic!("{other:?}"),
        };
        let lines = errors(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "GSSAPI"),
        ]);
        assert_eq!(
            lines,
            [
                "KAFKA_SASL_MECHANISM=\"GSSAPI\": expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                "KAFKA_SECURITY_PROTOCOL=sasl_ssl: set KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            ]
        );
        let lines = errors(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_SASL_USERNAME", "automaton"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
        ]);
        assert_eq!(
            lines,
            ["KAFKA_SASL_* is set but KAFKA_SECURITY_PROTOCOL is unset (plaintext): set sasl_plaintext or sasl_ssl"]
        );
    }

    #[test]
    fn default_timeout_is_five_seconds() {
        let s = KafkaSettings::from_vars(vars(&[("KAFKA_BOOTSTRAP_SERVERS", "k:9092")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.timeout(), DEFAULT_TIMEOUT);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = KafkaSettings::from_vars(vars(&[
            ("KAFKA_SECURITY_PROTOCOL", "tls"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
            ("KAFKA_TIMEOUT", "soon"),
        ]))
        .unwrap_err();
        let KafkaError::Settings(lines) = &err else {
            panic!("{err}")
        };
        assert_eq!(lines.len(), 4, "{lines:?}");
        let text = err.to_string();
        for name in [
            "KAFKA_TIMEOUT",
            "KAFKA_SECURITY_PROTOCOL",
            "KAFKA_SASL_USERNAME",
            "KAFKA_BOOTSTRAP_SERVERS",
        ] {
            assert!(text.contains(name), "{text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
    }
}

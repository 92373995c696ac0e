//! Why a signal could not be read. The reading is then unknown with this reason (never 0),
//! `automaton_signal_errors_total{source,kind}` counts it under [`SignalError::metric_label`],
//! and `/status` shows the text. No variant carries a secret: URLs are redacted and
//! connection strings never reach here.

use std::time::Duration;

use thiserror::Error;

use crate::clients::kafka::KafkaError;
use crate::clients::pg::PgError;
use crate::core::guard::breaker::CircuitOpen;

#[derive(Debug, Error)]
pub enum SignalError {
    /// The dependency is not configured in this process: the message names the setting.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// No answer in time; `who` names the dependency when one is asked.
    #[error("{} within {}s", who.map_or("no answer".to_owned(), |w| format!("{w} did not answer")), after.as_secs_f64())]
    Timeout {
        who: Option<&'static str>,
        after: Duration,
    },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// The pod watch has not listed yet, or keeps failing.
    #[error("{0}")]
    Watch(String),
    /// A local file could not be read (`path: reason`).
    #[error("{0}")]
    Io(String),
    /// A local file did not hold what the kind expects.
    #[error("{0}")]
    Parse(String),
    /// A JSON-RPC endpoint gave no usable number.
    #[error("{0}")]
    Rpc(String),
    /// Not asked: the dependency's circuit breaker is open (the text says until when).
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
    /// The blocking collector task itself failed.
    #[error("collector failed: {0}")]
    Task(String),
}

impl SignalError {
    /// A bounded label for `automaton_signal_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SignalError::NotConfigured(_) => "not_configured",
            SignalError::Timeout { .. } => "timeout",
            SignalError::Kafka(e) => e.metric_label(),
            SignalError::Postgres(e) => e.metric_label(),
            SignalError::Watch(_) => "watch",
            SignalError::Io(_) => "io",
            SignalError::Parse(_) => "parse",
            SignalError::Rpc(_) => "rpc",
            SignalError::CircuitOpen(_) => "circuit_open",
            SignalError::Task(_) => "task",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_name_who_did_not_answer() {
        let after = Duration::from_millis(1500);
        assert_eq!(
            SignalError::Timeout {
                who: Some("Kafka"),
                after
            }
            .to_string(),
            "Kafka did not answer within 1.5s"
        );
        assert_eq!(
            SignalError::Timeout { who: None, after }.to_string(),
            "no answer within 1.5s"
        );
        assert_eq!(
            SignalError::Timeout { who: None, after }.metric_label(),
            "timeout"
        );
    }
}

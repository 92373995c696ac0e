//! Execution of planned actions. Only what the guard let through reaches here. Kinds whose
//! executor needs Kubernetes or PostgreSQL are executable only when those are configured
//! ([`Executors`]); otherwise the engine runs them as dry-run and says so in the decision.

use std::time::Duration;

use thiserror::Error;

use super::ActionSpec;
use crate::decision::Decision;

#[derive(Debug, Error)]
pub enum ActionError {
    #[error("request to {url} failed: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}, expected {expected}")]
    Status {
        url: String,
        status: u16,
        expected: String,
    },
    #[error("no executor for `{0}` in this build")]
    NotExecutable(&'static str),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Which executors this daemon has: an action kind without one runs as dry-run and says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Executors {
    /// A Kubernetes API: the workload actions.
    pub kubernetes: bool,
    /// A PostgreSQL server: `terminate_idle_connections`.
    pub postgres: bool,
}

impl Executors {
    /// HTTP only (`http`, `notify`): what every daemon has.
    pub const HTTP_ONLY: Executors = Executors {
        kubernetes: false,
        postgres: false,
    };
    /// Everything, as `simulate` models it.
    pub const ALL: Executors = Executors {
        kubernetes: true,
        postgres: true,
    };

    pub fn can_execute(&self, spec: &ActionSpec) -> bool {
        match spec {
            ActionSpec::Http(_) | ActionSpec::Notify(_) => true,
            ActionSpec::TerminateIdleConnections(_) => self.postgres,
            ActionSpec::Scale(_)
            | ActionSpec::Restart(_)
            | ActionSpec::RaiseMemory(_)
            | ActionSpec::RunJob(_)
            | ActionSpec::CleanLogs(_) => self.kubernetes,
        }
    }
}

/// Executes actions; holds the shared HTTP client (connection reuse across ticks).
#[derive(Clone)]
pub struct Executor {
    client: reqwest::Client,
}

impl Executor {
    pub fn new() -> Result<Self, ActionError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("automaton/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ActionError::Client)?;
        Ok(Executor { client })
    }

    /// Runs one action; the outcome (a short text) goes into logs and `/status`.
    pub async fn execute(&self, spec: &ActionSpec, decision: &Decision) -> Result<String, ActionError> {
        match spec {
            ActionSpec::Http(http) => {
                let url = super::http::redacted(&http.url);
                let method =
                    reqwest::Method::from_bytes(http.method.as_bytes()).unwrap_or(reqwest::Method::POST);
                let mut req = self.client.request(method, &http.url).timeout(http.timeout.0);
                if let Some(body) = &http.body {
                    req = req.json(body);
                }
                let resp = req.send().await.map_err(|e| ActionError::Request {
                    url: url.clone(),
                    source: e.without_url(),
                })?;
                let status = resp.status().as_u16();
                if !http.accepts(status) {
                    let expected = http.expect_status.map_or("2xx".to_owned(), |s| s.to_string());
                    return Err(ActionError::Status {
                        url,
                        status,
                        expected,
                    });
                }
                Ok(format!("{url} answered {status}"))
            }
            ActionSpec::Notify(notify) => {
                let host = notify.host();
                let body = serde_json::json!({
                    "text": decision.summary(),
                    "decision": decision,
                });
                let resp = self
                    .client
                    .post(&notify.webhook)
                    .timeout(Duration::from_secs(10))
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| ActionError::Request {
                        url: format!("webhook/{host}"),
                        source: e.without_url(),
                    })?;
                let status = resp.status().as_u16();
                if !(200..300).contains(&status) {
                    return Err(ActionError::Status {
                        url: format!("webhook/{host}"),
                        status,
                        expected: "2xx".into(),
                    });
                }
                Ok(format!("webhook/{host} answered {status}"))
            }
            other => Err(ActionError::NotExecutable(other.kind())),
        }
    }
}

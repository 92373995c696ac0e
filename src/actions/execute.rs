//! Execution of planned actions. Only what the guard let through reaches here. Kinds whose
//! executor needs Kubernetes or PostgreSQL are executable only when those are configured
//! ([`Executors`]); otherwise the engine runs them as dry-run and says so in the decision.

use std::time::Duration;

use backon::Retryable;

use crate::clients::backoff::FullJitter;
use thiserror::Error;
use tracing::debug;

use super::ActionSpec;
use crate::core::decision::Decision;

#[derive(Debug, Error)]
pub enum ActionError {
    /// No connection was made (refused, reset, DNS, TLS, connect timeout): the request was
    /// never sent, so retrying cannot apply it twice.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Sent, but no answer in time. Not retried: the endpoint may have acted on it, and an
    /// admin call such as "reduce the cache" must not be applied twice.
    #[error("{url} did not answer within {after:?}; not retried, the request may have been applied")]
    Timeout { url: String, after: Duration },
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
        /// The server's `Retry-After` (429, 503), honoured by the retry.
        retry_after: Option<Duration>,
    },
    #[error("no executor for `{0}` in this build")]
    NotExecutable(&'static str),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl ActionError {
    /// Worth another attempt: nothing was sent, or the server said it failed (5xx) or asked
    /// us to come back (429). Other 4xx are permanent: the request is wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            ActionError::Connect { .. } => true,
            ActionError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ActionError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// `Retry-After` in its delta-seconds form (the HTTP-date form is read as absent).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
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

    /// The action kinds these executors can run, for the engine.
    pub fn executable(&self) -> crate::core::engine::Executable {
        let mut kinds = std::collections::BTreeSet::from(["http", "notify"]);
        if self.postgres {
            kinds.insert("terminate_idle_connections");
        }
        if self.kubernetes {
            kinds.extend(["scale", "restart", "raise_memory", "run_job", "clean_logs"]);
        }
        crate::core::engine::Executable::Only(kinds)
    }

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
    backoff: FullJitter,
}

/// One HTTP request of an action, rebuilt for every attempt.
struct Call<'a> {
    method: reqwest::Method,
    url: &'a str,
    /// What logs and errors show instead of the URL (which may hold a token).
    shown: String,
    body: Option<&'a serde_json::Value>,
    timeout: Duration,
    accepts: &'a (dyn Fn(u16) -> bool + Sync),
    expected: String,
}

impl Executor {
    pub fn new() -> Result<Self, ActionError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("automaton/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ActionError::Client)?;
        Ok(Executor {
            client,
            backoff: crate::clients::backoff::default_backoff(),
        })
    }

    /// Replaces the retry schedule (tests use a tiny one).
    pub fn with_backoff(mut self, backoff: FullJitter) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sends `call`, retrying transient failures with exponential backoff and full jitter;
    /// a `Retry-After` up to [`crate::clients::backoff::MAX_RETRY_AFTER`] replaces the computed delay. Returns the
    /// status and how many attempts it took.
    async fn send(&self, call: &Call<'_>) -> Result<(u16, usize), ActionError> {
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let once = || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut req = self
                .client
                .request(call.method.clone(), call.url)
                .timeout(call.timeout);
            if let Some(body) = call.body {
                req = req.json(body);
            }
            let resp = req.send().await.map_err(|e| {
                let (url, source) = (call.shown.clone(), e.without_url());
                if source.is_connect() {
                    ActionError::Connect { url, source }
                } else if source.is_timeout() {
                    ActionError::Timeout {
                        url,
                        after: call.timeout,
                    }
                } else {
                    ActionError::Request { url, source }
                }
            })?;
            let status = resp.status().as_u16();
            if (call.accepts)(status) {
                Ok(status)
            } else {
                Err(ActionError::Status {
                    url: call.shown.clone(),
                    status,
                    expected: call.expected.clone(),
                    retry_after: retry_after(&resp),
                })
            }
        };
        let status = once
            .retry(self.backoff)
            .when(ActionError::is_transient)
            .adjust(|e, next| crate::clients::backoff::after(e.retry_after(), next))
            .notify(|e, wait| debug!(error = %e, ?wait, "transient failure, retrying"))
            .await?;
        Ok((status, attempts.into_inner()))
    }

    /// Runs one action; the outcome (a short text) goes into logs and `/status`.
    pub async fn execute(&self, spec: &ActionSpec, decision: &Decision) -> Result<String, ActionError> {
        match spec {
            ActionSpec::Http(http) => {
                let accepts = |status| http.accepts(status);
                let call = Call {
                    method: reqwest::Method::from_bytes(http.method.as_bytes())
                        .unwrap_or(reqwest::Method::POST),
                    url: &http.url,
                    shown: crate::core::url::redacted(&http.url),
                    body: http.body.as_ref(),
                    timeout: http.timeout.0,
                    accepts: &accepts,
                    expected: http.expect_status.map_or("2xx".to_owned(), |s| s.to_string()),
                };
                let (status, attempts) = self.send(&call).await?;
                Ok(answered(&call.shown, status, attempts))
            }
            ActionSpec::Notify(notify) => {
                let body = serde_json::json!({
                    "text": decision.summary(),
                    "decision": decision,
                });
                let accepts = |status| (200..300).contains(&status);
                let call = Call {
                    method: reqwest::Method::POST,
                    url: &notify.webhook,
                    shown: format!("webhook/{}", notify.host()),
                    body: Some(&body),
                    timeout: Duration::from_secs(10),
                    accepts: &accepts,
                    expected: "2xx".to_owned(),
                };
                let (status, attempts) = self.send(&call).await?;
                Ok(answered(&call.shown, status, attempts))
            }
            other => Err(ActionError::NotExecutable(other.kind())),
        }
    }
}

fn answered(shown: &str, status: u16, attempts: usize) -> String {
    match attempts {
        1 => format!("{shown} answered {status}"),
        n => format!("{shown} answered {status} after {n} attempts"),
    }
}

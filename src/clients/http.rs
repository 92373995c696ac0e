//! The one HTTP client of actions (`http`, `notify`): connections reused across ticks, and
//! the shared retry policy (full jitter, `Retry-After` honoured up to a cap). What is sent
//! and what counts as success are the caller's; what may be retried is decided here.

use std::time::Duration;

use backon::Retryable;

use crate::clients::backoff::FullJitter;
use thiserror::Error;
use tracing::debug;

#[derive(Debug, Error)]
pub enum HttpError {
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
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl HttpError {
    /// Worth another attempt: nothing was sent, or the server said it failed (5xx) or asked
    /// us to come back (429). Other 4xx are permanent: the request is wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Connect { .. } => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether another attempt of `method` is safe. Nothing sent (a connect error) always
    /// is. For an idempotent method (GET, HEAD, PUT, DELETE, OPTIONS) so is every transient
    /// status. A POST or PATCH that got a 5xx may have acted before failing ("reduce the
    /// cache" four times): it is retried only on 429 or 503 with a `Retry-After` (the server
    /// says it did not take the request and when to come back), unless the caller opted in
    /// to 5xx retries (`retry_5xx`).
    pub fn may_retry(&self, method: &reqwest::Method, retry_5xx: bool) -> bool {
        if !self.is_transient() {
            return false;
        }
        if method.is_idempotent() || retry_5xx {
            return true;
        }
        match self {
            HttpError::Connect { .. } => true,
            HttpError::Status {
                status,
                retry_after: Some(_),
                ..
            } => *status == 429 || *status == 503,
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// `Retry-After` in its delta-seconds form (the HTTP-date form is read as absent).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The HTTP client of actions (connections reused across ticks) and its retry schedule.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    backoff: FullJitter,
    /// No request waits longer than this (ACTION_TIMEOUT), whatever its own timeout says.
    cap: Duration,
}

/// One HTTP request of an action, rebuilt for every attempt.
pub struct Call<'a> {
    pub method: reqwest::Method,
    pub url: &'a str,
    /// What logs and errors show instead of the URL (which may hold a token).
    pub shown: String,
    pub body: Option<&'a serde_json::Value>,
    pub timeout: Duration,
    pub accepts: &'a (dyn Fn(u16) -> bool + Sync),
    pub expected: String,
    /// Retry a non-idempotent method on any 5xx too (see [`HttpError::may_retry`]).
    pub retry_5xx: bool,
    /// Sent as `Idempotency-Key` (the action id; the same on every retry), so a receiver
    /// that honours it applies a call once however often it arrives.
    pub idempotency_key: Option<&'a str>,
}

impl HttpClient {
    pub fn new() -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("automaton/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpError::Client)?;
        Ok(HttpClient {
            client,
            backoff: crate::clients::backoff::default_backoff(),
            cap: Duration::MAX,
        })
    }

    /// Replaces the retry schedule (tests use a tiny one).
    /// The underlying client, for reads that need no retry policy (JSON-RPC signals): one
    /// connection pool for the whole process.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Caps every request's timeout (the writer's ACTION_TIMEOUT).
    pub fn with_cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    pub fn with_backoff(mut self, backoff: FullJitter) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sends `call`, retrying what may be retried ([`HttpError::may_retry`]) with exponential
    /// backoff and full jitter;
    /// a `Retry-After` up to [`crate::clients::backoff::MAX_RETRY_AFTER`] replaces the computed delay. Returns the
    /// status and how many attempts it took.
    pub async fn send(&self, call: &Call<'_>) -> Result<(u16, usize), HttpError> {
        let timeout = call.timeout.min(self.cap);
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let once = || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut req = self
                .client
                .request(call.method.clone(), call.url)
                .timeout(timeout);
            if let Some(body) = call.body {
                req = req.json(body);
            }
            if let Some(key) = call.idempotency_key {
                req = req.header("Idempotency-Key", key);
            }
            let resp = req.send().await.map_err(|e| {
                let (url, source) = (call.shown.clone(), e.without_url());
                if source.is_connect() {
                    HttpError::Connect { url, source }
                } else if source.is_timeout() {
                    HttpError::Timeout { url, after: timeout }
                } else {
                    HttpError::Request { url, source }
                }
            })?;
            let status = resp.status().as_u16();
            if (call.accepts)(status) {
                Ok(status)
            } else {
                Err(HttpError::Status {
                    url: call.shown.clone(),
                    status,
                    expected: call.expected.clone(),
                    retry_after: retry_after(&resp),
                })
            }
        };
        let status = once
            .retry(self.backoff)
            .when(|e| e.may_retry(&call.method, call.retry_5xx))
            .adjust(|e, next| crate::clients::backoff::after(e.retry_after(), next))
            .notify(|e, wait| debug!(error = %e, ?wait, "transient failure, retrying"))
            .await?;
        Ok((status, attempts.into_inner()))
    }
}

/// What logs and decisions say of a request that succeeded.
pub fn answered(shown: &str, status: u16, attempts: usize) -> String {
    match attempts {
        1 => format!("{shown} answered {status}"),
        n => format!("{shown} answered {status} after {n} attempts"),
    }
}

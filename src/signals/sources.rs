//! What signal collection reaches: the clients this process has (an HTTP client reused
//! across ticks, Kafka, PostgreSQL, the pod watch) and what counters keep between ticks. A
//! kind whose dependency is absent says so (`not_configured`) instead of guessing.

use std::sync::Arc;
use std::time::Duration;

use super::memory_oom_kills::OomKills;
use super::pods::PodSignals;
use super::SignalError;
use crate::clients::kafka::KafkaSource;
use crate::clients::pg::PgSource;
use crate::core::namespaces::Namespaces;

/// The collectors' shared context. Cheap to share; built once by the runtime, with the
/// dependencies attached as they are configured.
pub struct Sources {
    /// For JSON-RPC signals: the process's one HTTP client, connections reused across ticks.
    pub http: reqwest::Client,
    pub kafka: Option<KafkaSource>,
    pub postgres: Option<Arc<PgSource>>,
    /// The pod watch, when a Kubernetes API is configured.
    pub pods: Option<PodSignals>,
    /// The automaton's own namespace: the one of other systems' series (`prometheus`,
    /// `alert`) that carry no `namespace` label.
    pub namespace: Option<String>,
    /// The namespaces watched (WATCH_NAMESPACES), when a Kubernetes API is configured:
    /// series of other systems labelled with another namespace are not the automaton's to
    /// act on.
    pub namespaces: Option<Namespaces>,
    /// The last `oom_kill` counter of each `memory.events` file.
    pub oom_kills: OomKills,
    /// How long one collection may take: CHECK_INTERVAL, at most 10s.
    pub timeout: Duration,
    /// PROMETHEUS_TOKEN: the bearer token of `prometheus` queries, when the server wants one.
    pub prometheus_token: Option<String>,
    /// What Alertmanager pushed (`POST /alertmanager`), for the `alert` signal.
    pub alerts: Arc<super::alerts::AlertStore>,
}

impl Sources {
    /// `http` is the process's one HTTP client (`clients::http::HttpClient::client`).
    pub fn new(timeout: Duration, http: reqwest::Client) -> Self {
        Sources {
            http,
            kafka: None,
            postgres: None,
            pods: None,
            namespace: None,
            namespaces: None,
            oom_kills: OomKills::default(),
            timeout,
            prometheus_token: None,
            alerts: Arc::default(),
        }
    }

    /// Runs a blocking read (statvfs, a procfs or cgroup file) off the runtime, bounded by
    /// the timeout: a hung filesystem (NFS) makes the signal unknown, never stalls the loop.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, SignalError> + Send + 'static,
    ) -> Result<T, SignalError> {
        match tokio::time::timeout(self.timeout, tokio::task::spawn_blocking(work)).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(SignalError::Task(join.to_string())),
            Err(_) => Err(SignalError::Timeout {
                who: None,
                after: self.timeout,
            }),
        }
    }

    /// The pod watch, or why pod signals are unknown.
    pub fn pods(&self) -> Result<&PodSignals, SignalError> {
        self.pods.as_ref().ok_or(SignalError::NotConfigured(
            "no Kubernetes API configured (KUBERNETES=off, or no in-cluster or KUBECONFIG \
             configuration): pod signals are unknown",
        ))
    }
}

//! Dispatch of one collection to the collector of its kind, with a timeout: a hung
//! filesystem (NFS) or a slow dependency makes the signal unknown, never stalls the loop.
//! Pod, Kafka and PostgreSQL signals have their own long-lived sources (see `daemon`);
//! everything else is collected here.

use std::sync::Arc;
use std::time::Duration;

use super::{cgroup::OomKills, disk, psi, solana, SignalSpec};
use crate::core::series::Series;

/// What the host and HTTP collectors keep between ticks: one HTTP client (connections
/// reused across ticks) and the last value of each cumulative counter.
#[derive(Debug, Clone)]
pub struct Collectors {
    client: reqwest::Client,
    oom_kills: Arc<OomKills>,
}

impl Collectors {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("automaton/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Collectors {
            client,
            oom_kills: Arc::default(),
        })
    }

    /// Collects one source. `Err` is the reason the value is unknown.
    pub async fn collect(&self, spec: &SignalSpec, timeout: Duration) -> Result<Vec<Series>, String> {
        let work: Box<dyn FnOnce() -> Result<Vec<Series>, String> + Send> = match spec {
            SignalSpec::DiskUsage(d) => {
                let path = d.path.clone();
                Box::new(move || disk::collect(&path))
            }
            SignalSpec::MemoryPressure(m) => {
                let (path, weights) = (m.path.clone(), m.weights);
                Box::new(move || psi::collect(&path, &weights))
            }
            SignalSpec::MemoryOomKills(m) => {
                let (path, kills) = (m.path.clone(), self.oom_kills.clone());
                Box::new(move || kills.sample(&path))
            }
            SignalSpec::SlotLag(s) => return solana::collect(&self.client, s, timeout).await,
            other => {
                return Err(format!(
                    "`{}` is not collected by this build (no {} source configured)",
                    other.kind(),
                    other.source()
                ))
            }
        };
        match tokio::time::timeout(timeout, tokio::task::spawn_blocking(work)).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("collector failed: {join}")),
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs_f64())),
        }
    }
}

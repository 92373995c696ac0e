//! Dispatch of one collection to the collector of its kind, with a timeout: a hung
//! filesystem (NFS) or a slow dependency makes the signal unknown, never stalls the loop.

use std::time::Duration;

use super::{disk, psi, Series, SignalSpec};

/// Collects one source. `Err` is the reason the value is unknown.
pub async fn collect(spec: &SignalSpec, timeout: Duration) -> Result<Vec<Series>, String> {
    let work: Box<dyn FnOnce() -> Result<Vec<Series>, String> + Send> = match spec {
        SignalSpec::DiskUsage(d) => {
            let path = d.path.clone();
            Box::new(move || disk::collect(&path))
        }
        SignalSpec::MemoryPressure(m) => {
            let (path, weights) = (m.path.clone(), m.weights);
            Box::new(move || psi::collect(&path, &weights))
        }
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

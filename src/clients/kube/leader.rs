//! Leader election on a Kubernetes Lease, through kube-lease-manager (server-side apply on
//! the Lease, configurable duration and grace). Only the holder acts; a follower evaluates
//! and reports `skip not_leader`. If the Lease cannot be reached, this replica is not the
//! leader: two replicas that cannot see each other must never both act.

use std::time::Duration;

use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn, Instrument};

use crate::clients::kube::{Cluster, FIELD_MANAGER};

/// Lease timing: a lost leader is replaced after at most `duration` seconds; the holder
/// renews `grace` seconds before expiry.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub duration: u64,
    pub grace: u64,
}

impl LeaseTiming {
    /// Renews a third of the duration before expiry (at most 5 s before).
    pub fn from_duration(duration: u64) -> Self {
        LeaseTiming {
            duration,
            grace: (duration / 3).clamp(1, 5),
        }
    }
}

/// A running campaign: `leading` says whether this replica leads now.
pub struct Campaign {
    pub leading: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Campaign {
    /// Whether the campaign still runs (leading or standing by).
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops campaigning and releases the Lease if held, so another replica takes over at
    /// once instead of after the lease duration.
    pub async fn release(self) {
        drop(self.leading);
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            warn!("releasing the Lease took too long; the next leader waits for it to expire");
        }
    }
}

/// Starts campaigning for `lease_name`.
pub fn campaign(cluster: &Cluster, lease_name: &str, timing: LeaseTiming) -> Campaign {
    let (tx, rx) = watch::channel(false);
    let builder = {
        let (client, ns, id, name) = (
            cluster.client.clone(),
            cluster.namespace.clone(),
            cluster.identity.clone(),
            lease_name.to_owned(),
        );
        move || {
            LeaseManagerBuilder::new(client.clone(), name.clone())
                .with_namespace(ns.clone())
                .with_identity(id.clone())
                .with_duration(timing.duration)
                .with_grace(timing.grace)
                .with_field_manager(FIELD_MANAGER)
        }
    };
    let span = tracing::info_span!("leader", lease = lease_name, identity = %cluster.identity);
    let task = tokio::spawn(
        async move {
            let mut delay = Duration::from_millis(500);
            loop {
                let manager = match builder().build().await {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(error = %e, "cannot reach the Lease; not leading");
                        let _ = tx.send(false);
                        tokio::select! {
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(30));
                        continue;
                    }
                };
                delay = Duration::from_millis(500);
                let (mut leading, task) = manager.watch().await;
                loop {
                    let now = *leading.borrow_and_update();
                    if tx.send_if_modified(|cur| std::mem::replace(cur, now) != now) {
                        info!(leader = now, "leadership changed");
                    }
                    tokio::select! {
                        _ = tx.closed() => {
                            // Dropping `leading` makes the manager release the Lease.
                            drop(leading);
                            let _ = task.await;
                            return;
                        }
                        changed = leading.changed() => if changed.is_err() { break },
                    }
                }
                // The manager's task ended (an API error it could not ride out): not leading
                // until a new manager holds the Lease again.
                let _ = tx.send(false);
                match task.await {
                    Ok(Err(e)) => warn!(error = %e, "lease manager stopped"),
                    Err(e) => warn!(error = %e, "lease manager task failed"),
                    Ok(Ok(_)) => {}
                }
            }
        }
        .instrument(span),
    );
    Campaign { leading: rx, task }
}

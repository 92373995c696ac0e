//! The daemon's Kubernetes side: the pod watch, the Lease, the workload executor, and the
//! world the engine plans against (the live state of the workloads it may act on).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join, join_all};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Daemon;
use crate::clients::kube::error::ClusterError;
use crate::clients::kube::executor::KubeExecutor;
use crate::clients::kube::leader::{self, Campaign, LeaseTiming};
use crate::clients::kube::managers;
use crate::clients::kube::state::StateObject;
use crate::clients::kube::workload::{self, WorkloadRef};
use crate::clients::kube::Cluster;
use crate::core::world::SimWorld;
use crate::runtime::writer::Lease;
use crate::signals::pods::PodSignals;

pub(super) struct Kube {
    pub cluster: Cluster,
    pub leader: Campaign,
    /// Workloads as last read, for planning; the executor re-reads before writing.
    pub world: SimWorld,
    /// When each workload of `world` was read: it is read again after CHECK_INTERVAL, so
    /// a burst of watch events costs one read per new workload, not one per workload.
    pub read_at: HashMap<String, Instant>,
    /// The last failure to list HorizontalPodAutoscalers, so it is logged once, not per tick.
    pub hpa_error: Option<String>,
}

/// The breaker of the Kubernetes API (as `ActionSpec::dependency` and pod signals name it).
const KUBERNETES: &str = "kubernetes";

impl Daemon {
    /// Connects the daemon to a cluster: starts the pod watch (which sends on `push` when a
    /// signal changes) and the leader campaign, and lets workload actions execute.
    pub fn attach(&mut self, cluster: Cluster, push: mpsc::Sender<()>) {
        self.sources.pods = Some(PodSignals::spawn(
            cluster.client.clone(),
            Some(cluster.namespace.clone()),
            self.pod_watch_selector(),
            push,
        ));
        self.sources.namespace = Some(cluster.namespace.clone());
        let timing = LeaseTiming::from_duration(self.settings.lease_duration);
        let leader = leader::campaign(&cluster, &self.settings.lease_name, timing);
        // Requests and execs are bounded by ACTION_TIMEOUT, like the whole action.
        let cap = self.settings.action_timeout;
        self.writer.executors.kube = Some(KubeExecutor::new(&cluster).with_timeouts(
            cap.min(Duration::from_secs(10)),
            cap.min(Duration::from_secs(120)),
        ));
        self.writer.lease = Lease::Campaign(leader.leading.clone());
        let state = StateObject::new(&cluster, &format!("{}-state", self.settings.lease_name));
        self.guard_store = Some(super::durable::GuardStore::new(state, cluster.identity.clone()));
        self.engine.set_executable(self.writer.executors.executable());
        self.engine.set_leader(false);
        let pod_selector = self
            .sources
            .pods
            .as_ref()
            .map(|p| p.selector())
            .unwrap_or_default();
        info!(namespace = %cluster.namespace, lease = %self.settings.lease_name, %pod_selector, "Kubernetes attached");
        self.kube = Some(Kube {
            cluster,
            leader,
            world: SimWorld::default(),
            read_at: HashMap::new(),
            hpa_error: None,
        });
        self.install_rules();
    }

    /// Reads the Lease's verdict into the engine; without Kubernetes this replica is alone
    /// and leads.
    pub(super) fn update_leadership(&mut self) -> bool {
        let leading = self.kube.as_ref().is_none_or(|k| *k.leader.leading.borrow());
        self.engine.set_leader(leading);
        self.metrics.leader.set(i64::from(leading));
        leading
    }

    /// Reads the workloads the engine may plan for: the rules' fixed workload targets and
    /// the owners of this tick's pod series, each at most once per CHECK_INTERVAL, with the
    /// namespace's HorizontalPodAutoscalers. Nothing is guessed: a workload whose read
    /// failed, all those read while the HPA list failed, and all that are due while the
    /// Kubernetes circuit is open are left out, so a plan that needs them says "unknown".
    /// The reads go through the `kubernetes` breaker: they count as a failure only when no
    /// request was answered (a 403 or 404 is an answer).
    pub(super) async fn refresh_world(&mut self, owners: Vec<String>) {
        let max_age = self.settings.check_interval;
        let breakers = Arc::clone(&self.breakers);
        let Some(k) = &mut self.kube else { return };
        let mut wanted: Vec<&str> = self
            .engine
            .rules()
            .rules
            .iter()
            .filter_map(|r| r.fixed_target.as_deref())
            .chain(owners.iter().map(String::as_str))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        k.world.0.retain(|t, _| wanted.binary_search(&t.as_str()).is_ok());
        k.read_at.retain(|t, _| wanted.binary_search(&t.as_str()).is_ok());
        let stale: Vec<WorkloadRef> = wanted
            .iter()
            .filter(|t| k.read_at.get(**t).is_none_or(|at| at.elapsed() >= max_age))
            .filter_map(|t| t.parse().ok())
            .collect();
        if stale.is_empty() {
            return;
        }
        if let Err(why) = breakers.admit(KUBERNETES) {
            debug!(error = %why, "workloads not read for planning");
            k.forget(&stale);
            return;
        }
        let (client, ns) = (&k.cluster.client, k.cluster.namespace.as_str());
        let (reads, hpas) = join(
            join_all(stale.iter().map(|t| workload::get(client, ns, t))),
            managers::list_hpas(client, ns),
        )
        .await;
        let down = dependency_down(&reads, &hpas);
        breakers.record(KUBERNETES, down.as_deref().map_or(Ok(()), Err));
        let hpas = match hpas {
            Ok(hpas) => {
                k.hpa_error = None;
                hpas
            }
            Err(e) => {
                let error = e.to_string();
                if k.hpa_error.as_ref() != Some(&error) {
                    warn!(%error, "cannot list HorizontalPodAutoscalers: the workloads read now are left out of planning rather than assumed free of one");
                }
                k.hpa_error = Some(error);
                k.forget(&stale);
                return;
            }
        };
        for (target, read) in stale.iter().zip(reads) {
            let key = target.to_string();
            match read {
                Ok(live) => {
                    let mut world = live.to_world();
                    world.hpa = managers::hpa_for(&hpas, target);
                    k.world.0.insert(key.clone(), world);
                    k.read_at.insert(key, Instant::now());
                }
                Err(e) => {
                    debug!(target = %target, error = %e, "cannot read workload for planning");
                    k.world.0.remove(&key);
                    k.read_at.remove(&key);
                }
            }
        }
    }

    /// Forgets what was read of a workload the daemon just changed.
    pub(super) fn forget_workload(&mut self, target: &str) {
        if let Some(k) = &mut self.kube {
            k.world.0.remove(target);
            k.read_at.remove(target);
        }
    }
}

impl Kube {
    /// Leaves `targets` out of the planning world until they are read again.
    fn forget(&mut self, targets: &[WorkloadRef]) {
        for target in targets {
            let key = target.to_string();
            self.world.0.remove(&key);
            self.read_at.remove(&key);
        }
    }

    /// Releases the Lease on shutdown.
    pub async fn release(self) {
        self.leader.release().await;
    }
}

/// The error that says the API server is down, when no request of a refresh was answered.
fn dependency_down<T, U>(
    reads: &[Result<T, ClusterError>],
    hpas: &Result<U, ClusterError>,
) -> Option<String> {
    let errors: Vec<Option<&ClusterError>> = reads
        .iter()
        .map(|r| r.as_ref().err())
        .chain(std::iter::once(hpas.as_ref().err()))
        .collect();
    let answered = errors.iter().any(|e| e.is_none_or(|e| !e.is_transient()));
    (!answered)
        .then(|| errors.into_iter().flatten().next().map(ToString::to_string))
        .flatten()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::core::Status;

    use super::*;
    use crate::clients::kube::error::ApiRequest;

    fn get() -> ApiRequest {
        ApiRequest::new("GET", "get", "apps", "deployments", "prod", Some("web"))
    }

    fn timeout() -> Result<(), ClusterError> {
        Err(ClusterError::Timeout {
            request: Box::new(get()),
            after: Duration::from_secs(10),
        })
    }

    fn answered(code: u16, reason: &str) -> Result<(), ClusterError> {
        let status = Status::failure("no", reason).with_code(code).boxed();
        Err(ClusterError::from_kube(get(), kube::Error::Api(status)))
    }

    #[test]
    fn the_breaker_fails_only_when_nothing_was_answered() {
        assert!(dependency_down(&[timeout(), timeout()], &timeout()).is_some());
        assert_eq!(
            dependency_down(&[timeout()], &answered(503, "ServiceUnavailable")).as_deref(),
            Some("GET deployments.apps \"web\" in namespace \"prod\": no answer within 10s")
        );
        assert_eq!(dependency_down(&[timeout(), Ok(())], &timeout()), None);
        assert_eq!(dependency_down(&[answered(404, "NotFound")], &timeout()), None);
        assert_eq!(dependency_down(&[timeout()], &answered(403, "Forbidden")), None);
    }
}

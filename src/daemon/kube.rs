//! The daemon's Kubernetes side: the pod watch, the Lease, the workload executor, and the
//! world the engine plans against (the live state of the workloads it may act on).

use std::collections::HashMap;
use std::time::Instant;

use futures::future::join_all;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::Daemon;
use crate::actions::SimWorld;
use crate::cluster::actions::KubeExecutor;
use crate::cluster::workload::{self, WorkloadRef};
use crate::cluster::Cluster;
use crate::leader::{self, Campaign, LeaseTiming};
use crate::signals::pods::PodSignals;
use crate::signals::{Series, SignalSpec};

pub(super) struct Kube {
    pub cluster: Cluster,
    pub pods: PodSignals,
    pub executor: KubeExecutor,
    pub leader: Campaign,
    /// Workloads as last read, for planning; the executor re-reads before writing.
    pub world: SimWorld,
    /// When each workload of `world` was read: it is read again after CHECK_INTERVAL, so
    /// a burst of watch events costs one read per new workload, not one per workload.
    pub read_at: HashMap<String, Instant>,
}

impl Daemon {
    /// Connects the daemon to a cluster: starts the pod watch (which sends on `push` when a
    /// signal changes) and the leader campaign, and lets workload actions execute.
    pub fn attach(&mut self, cluster: Cluster, push: mpsc::Sender<()>) {
        let pods = PodSignals::spawn(cluster.client.clone(), Some(cluster.namespace.clone()), push);
        let timing = LeaseTiming::from_duration(self.settings.lease_duration);
        let leader = leader::campaign(&cluster, &self.settings.lease_name, timing);
        let executor = KubeExecutor::new(&cluster);
        self.executors.kubernetes = true;
        self.engine.set_executors(self.executors);
        self.engine.set_leader(false);
        info!(namespace = %cluster.namespace, lease = %self.settings.lease_name, "Kubernetes attached");
        self.kube = Some(Kube {
            cluster,
            pods,
            executor,
            leader,
            world: SimWorld::default(),
            read_at: HashMap::new(),
        });
    }

    pub(super) fn collect_pods(&self, spec: &SignalSpec) -> Result<Vec<Series>, String> {
        match &self.kube {
            Some(k) => k.pods.collect(spec, jiff::Timestamp::now()),
            None => Err(
                "no Kubernetes API configured (KUBERNETES=off, or no in-cluster or KUBECONFIG \
                         configuration): pod signals are unknown"
                    .to_owned(),
            ),
        }
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
    /// the owners of this tick's pod series, each at most once per CHECK_INTERVAL. A failed
    /// read leaves the workload out, so a plan that needs it says "unknown" instead of
    /// guessing.
    pub(super) async fn refresh_world(&mut self, owners: Vec<String>) {
        let max_age = self.settings.check_interval;
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
        let (client, ns) = (&k.cluster.client, k.cluster.namespace.as_str());
        let reads = join_all(stale.iter().map(|t| workload::get(client, ns, t))).await;
        for (target, read) in stale.iter().zip(reads) {
            let key = target.to_string();
            match read {
                Ok(live) => {
                    k.world.0.insert(key.clone(), live.to_world());
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
    /// Releases the Lease on shutdown.
    pub async fn release(self) {
        self.leader.release().await;
    }
}

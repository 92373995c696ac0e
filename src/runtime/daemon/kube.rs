//! The daemon's Kubernetes side: the pod watch, the Lease, the workload executor, and the
//! world the engine plans against (the live state of the workloads it may act on).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Daemon;
use crate::clients::kube::executor::KubeExecutor;
use crate::clients::kube::leader::{self, Campaign, LeaseTiming};
use crate::clients::kube::managers;
use crate::clients::kube::reflect::Workloads;
use crate::clients::kube::state::StateObject;
use crate::clients::kube::workload::WorkloadRef;
use crate::clients::kube::Cluster;
use crate::core::namespaces::Namespaces;
use crate::core::world::SimWorld;
use crate::runtime::writer::Lease;
use crate::signals::pods::PodSignals;

pub(super) struct Kube {
    pub leader: Campaign,
    /// The workloads the engine may plan for, this tick, from `workloads`; the executor
    /// re-reads before writing.
    pub world: SimWorld,
    /// The watched namespaces' Deployments, StatefulSets and HPAs, kept by reflectors.
    pub workloads: Workloads,
    /// WATCH_NAMESPACES as in force.
    pub watched: Namespaces,
    /// Whether planning already waited for the reflectors' first lists.
    pub first_lists_awaited: bool,
    /// The last failure to list each namespace's HorizontalPodAutoscalers, so it is logged
    /// once, not per tick (one namespace's missing grant must not repeat with the others').
    pub hpa_errors: BTreeMap<String, String>,
}

/// The breaker of the Kubernetes API (as `ActionSpec::dependency` and pod signals name it).
const KUBERNETES: &str = "kubernetes";

/// How long the first plans wait for the workloads' first lists (an API server that does
/// not answer leaves them unknown after this, as before).
const FIRST_LISTS: Duration = Duration::from_secs(5);

impl Daemon {
    /// Connects the daemon to a cluster: starts the pod watch (which sends on `push` when a
    /// signal changes) and the leader campaign, and lets workload actions execute.
    pub fn attach(&mut self, cluster: Cluster, push: mpsc::Sender<()>) {
        self.sources.pods = Some(PodSignals::spawn(
            cluster.client.clone(),
            &cluster.namespaces,
            self.pod_watch_plan(),
            push,
        ));
        self.sources.namespace = Some(cluster.namespace.clone());
        self.sources.namespaces = Some(cluster.namespaces.clone());
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
        info!(namespace = %cluster.namespace, watch_namespaces = %cluster.namespaces, lease = %self.settings.lease_name, %pod_selector, "Kubernetes attached");
        let workloads = Workloads::spawn(cluster.client.clone(), &cluster.namespaces);
        self.kube = Some(Kube {
            leader,
            world: SimWorld::default(),
            workloads,
            watched: cluster.namespaces.clone(),
            first_lists_awaited: false,
            hpa_errors: BTreeMap::new(),
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

    /// Builds the world the engine plans against from the reflectors' stores: the rules'
    /// fixed workload targets and the owners of this tick's pod series, each with the
    /// HorizontalPodAutoscalers over it. No request: the stores follow the API server by
    /// watch. Nothing is guessed: while a store cannot be trusted (not listed yet, or its
    /// watch failing) the workloads it holds are left out, so a plan that needs them says
    /// "unknown". A watch that gets no answer from the API server counts as a failure of
    /// the `kubernetes` breaker, a working one as a success, as the reads it replaces did.
    pub(super) async fn refresh_world(&mut self, owners: Vec<String>) {
        let breakers = Arc::clone(&self.breakers);
        let Some(k) = &mut self.kube else { return };
        if !k.first_lists_awaited {
            // Once: the first tick after a start comes before the stores have listed.
            k.workloads.listed(FIRST_LISTS).await;
            k.first_lists_awaited = true;
        }
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
        k.world.0.clear();
        match k.workloads.unreachable() {
            Some(why) => breakers.record(KUBERNETES, Err(&why)),
            None => breakers.record(KUBERNETES, Ok(())),
        }
        // The autoscalers of each namespace a wanted workload is in, read once per tick.
        let mut hpas: BTreeMap<String, Vec<HorizontalPodAutoscaler>> = BTreeMap::new();
        for target in wanted.iter().filter_map(|t| t.parse::<WorkloadRef>().ok()) {
            if !hpas.contains_key(&target.namespace) {
                match k.workloads.hpas(&target.namespace) {
                    Ok(found) => {
                        k.hpa_errors.remove(&target.namespace);
                        hpas.insert(target.namespace.clone(), found);
                    }
                    Err(error) => {
                        if k.hpa_errors.get(&target.namespace) != Some(&error) {
                            warn!(namespace = %target.namespace, %error, "HorizontalPodAutoscalers unknown: workloads are left out of planning rather than assumed free of one");
                        }
                        k.hpa_errors.insert(target.namespace.clone(), error);
                        continue;
                    }
                }
            }
            let Some(over) = hpas.get(&target.namespace) else {
                continue;
            };
            match k.workloads.get(&target) {
                Ok(Some(live)) => {
                    let mut world = live.to_world();
                    world.hpa = managers::hpa_for(over, &target);
                    k.world.0.insert(target.to_string(), world);
                }
                Ok(None) => debug!(target = %target, "workload not found: left out of planning"),
                Err(why) => debug!(target = %target, %why, "workload unknown: left out of planning"),
            }
        }
    }

    /// Forgets what was read of a workload the daemon just changed.
    pub(super) fn forget_workload(&mut self, target: &str) {
        if let Some(k) = &mut self.kube {
            k.world.0.remove(target);
        }
    }
}

impl Kube {
    /// Releases the Lease on shutdown.
    pub async fn release(self) {
        self.leader.release().await;
    }
}

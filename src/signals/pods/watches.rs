//! The running pod watches: one per namespace of WATCH_NAMESPACES (one across the cluster
//! for `*`) and per watch of the [`WatchPlan`], each with its own state. A new plan (the
//! rules changed) keeps the watches whose selector stays, points the others at the new
//! selectors (they list again in place, keeping what their state remembers, such as the
//! kills already counted), and starts or stops only the difference.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kube::Client;
use tokio::sync::{mpsc, watch as channel};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::scope::WatchPlan;
use super::state::PodState;
use super::watch::Watch;
use crate::clients::kube::owners::Owners;
use crate::core::namespaces::Namespaces;

/// One running watch.
pub(super) struct Running {
    pub state: Arc<Mutex<PodState>>,
    selector: channel::Sender<String>,
    /// Until its first list completes (or it stops first), it counts in `unlisted`.
    pending: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Running {
    fn selector(&self) -> String {
        self.selector.borrow().clone()
    }
}

/// What every watch is started with.
pub(super) struct Spawner {
    pub client: Client,
    pub owners: Arc<Owners>,
    pub trigger: mpsc::Sender<()>,
    pub namespaces: Namespaces,
    /// The watches whose first list has not completed: until 0, nothing wakes the daemon.
    pub unlisted: Arc<AtomicUsize>,
}

/// The watches of each namespace, in the plan's order.
pub(super) struct WatchSet {
    pub plan: WatchPlan,
    pub running: Vec<(Option<String>, Vec<Running>)>,
}

impl WatchSet {
    pub fn new(spawner: &Spawner, plan: WatchPlan) -> WatchSet {
        let mut set = WatchSet {
            plan: WatchPlan::from(String::new()),
            running: spawner
                .namespaces
                .watches()
                .into_iter()
                .map(|ns| (ns.map(str::to_owned), Vec::new()))
                .collect(),
        };
        set.reconcile(spawner, plan);
        set
    }

    /// Runs exactly the plan's watches in every namespace.
    pub fn reconcile(&mut self, spawner: &Spawner, plan: WatchPlan) {
        for (namespace, running) in &mut self.running {
            let mut old: Vec<Option<Running>> = std::mem::take(running).into_iter().map(Some).collect();
            let mut new: Vec<Option<Running>> = plan
                .watches
                .iter()
                .map(|wanted| {
                    let same = old
                        .iter()
                        .position(|r| r.as_ref().is_some_and(|r| r.selector() == *wanted));
                    same.and_then(|i| old[i].take())
                })
                .collect();
            let mut spare = old.into_iter().flatten();
            for (slot, wanted) in new.iter_mut().zip(&plan.watches) {
                if slot.is_some() {
                    continue;
                }
                *slot = Some(match spare.next() {
                    Some(reused) => {
                        let from = reused.selector.send_replace(wanted.clone());
                        tracing::info!(namespace = namespace.as_deref().unwrap_or("*"), %from, to = %wanted,
                            "pod watch selector changes; listing again");
                        reused
                    }
                    None => spawner.start(namespace.as_deref(), wanted),
                });
            }
            for stopped in spare {
                stop(spawner, &stopped);
            }
            *running = new.into_iter().flatten().collect();
        }
        self.plan = plan;
    }

    pub fn stop_all(&self, spawner: &Spawner) {
        for running in self.running.iter().flat_map(|(_, r)| r) {
            stop(spawner, running);
        }
    }
}

fn stop(spawner: &Spawner, running: &Running) {
    running.task.abort();
    if running.pending.swap(false, Ordering::SeqCst) {
        spawner.unlisted.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Spawner {
    fn start(&self, namespace: Option<&str>, selector: &str) -> Running {
        let state = Arc::new(Mutex::new(PodState::default()));
        let pending = Arc::new(AtomicBool::new(true));
        self.unlisted.fetch_add(1, Ordering::SeqCst);
        let (sender, selected) = channel::channel(selector.to_owned());
        let watch = Watch {
            state: state.clone(),
            owners: self.owners.clone(),
            trigger: self.trigger.clone(),
            unlisted: self.unlisted.clone(),
            pending: pending.clone(),
            owned: self.namespaces.clone(),
        };
        let span = tracing::info_span!("pod_signals", namespace = namespace.unwrap_or("*"), selector);
        let run = watch.run(self.client.clone(), namespace.map(str::to_owned), selected);
        Running {
            state,
            selector: sender,
            pending,
            task: tokio::spawn(run.instrument(span)),
        }
    }
}

//! Pod signals, event-driven: pod watches (list once, then watch; no polling) keep a
//! compact in-memory view, and each tick reads it without any request. The API server
//! filters each watch by a label selector ([`watch_plan`]): one watch for what every pod
//! rule's selector shares, or one per group of selectors when they share nothing, each rule
//! reading the watch made for its selector (the daemon plans again when a reload changes
//! the rules).
//!
//! The watches run in each namespace of WATCH_NAMESPACES (across the cluster for `*`), each
//! with its own state: a namespace's re-list forgets only its own pods, and a failing watch
//! makes the pod signals unknown, naming its namespace.
//!
//! Every series carries `pod`, `container` and `namespace`, and `owner`
//! (`NAMESPACE/deployment/NAME`, `NAMESPACE/statefulset/NAME`, see
//! [`crate::clients::kube::owners`]) when the pod belongs to a workload the automaton can act
//! on. Init containers count like the others. Only pods matching the
//! spec's `selector` count.
//!
//! - **`pod_oom_killed`**: a container whose `lastState.terminated.reason` is `OOMKilled`.
//!   Each kill is counted exactly once, ever: it is keyed by pod uid, container and the
//!   termination's `finishedAt` (its `containerID`, or the `restartCount`, when absent), so
//!   neither later updates of the pod (CrashLoopBackOff, Running again) nor a re-list (after
//!   410 Gone or a restart of the watch) count it again. The value of a series is the number
//!   of kills first seen since the previous `collect` of the same spec, and only series above
//!   0 are returned: a kill fires a rule once, the cooldown and the engine do the rest. A kill
//!   whose `finishedAt` is older than [`OLD_KILL`] when first seen is recorded, never counted
//!   (after a restart of the automaton, an old kill must not act again); so is a kill without
//!   `finishedAt` found by the very first list.
//! - **`pod_crash_loop`**: 1 per container whose `state.waiting.reason` is
//!   `CrashLoopBackOff`; only those are returned.
//! - **`pod_restarts`** (`window`): the restarts within the sliding window, from the increases
//!   of `restartCount` observed over time (the first sighting of a container is its baseline;
//!   the last [`RESTART_HISTORY`] increases are kept); returned when above 0.
//!
//! Deleted pods disappear at once; the keys of their kills are forgotten an hour later.
//! `collect` is `Err` (unknown, never 0) until the first list completed and while the watch
//! fails (a failed list until a list succeeds; a watch error once it repeats). After an
//! event that produced a new kill or a change of crash loop in a pod that a collected spec
//! selects, and after a list that made the signals known (the first one, or one that ended
//! a failure), the daemon is woken through the `trigger` channel, so it evaluates at once
//! instead of at the next tick.

mod observe;
mod scope;
mod state;
mod watch;
mod watches;

pub use scope::{watch_plan, watch_selector, WatchPlan, MAX_WATCHES};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use jiff::Timestamp;
use kube::Client;
use tokio::sync::mpsc;

pub use state::{KILL_LOG_KEEP, OLD_KILL, RESTART_HISTORY};

use super::SignalError;
use crate::clients::kube::owners::Owners;
use crate::core::namespaces::Namespaces;
use crate::core::series::Series;
pub use state::PodState;
use watch::lock;
use watches::{Spawner, WatchSet};

/// The pod signals of the watched namespaces: the running watches of each namespace (or
/// across the cluster) and what each has seen. Dropping it stops the watches.
pub struct PodSignals {
    set: Mutex<WatchSet>,
    spawner: Spawner,
    /// Owners of pods outside the watch (another system's series name them), by
    /// namespace/name, for [`UNWATCHED_TTL`].
    unwatched: Mutex<Unwatched>,
}

/// Owners of pods outside the watch by (namespace, name): the answer and when it was read.
type Unwatched = HashMap<(String, String), (Option<Option<String>>, Instant)>;

/// How long the owner of a pod outside the watch is reused before it is read again. A pod's
/// owner never changes; a deleted pod is forgotten this much later.
const UNWATCHED_TTL: Duration = Duration::from_secs(300);
/// Pods outside the watch remembered at most; beyond, all are forgotten at once.
const UNWATCHED_MAX: usize = 4096;

impl PodSignals {
    /// Starts the pod watches of `plan` ([`watch_plan`]; a `String` is one watch of that
    /// selector, `""`: all pods) in tasks of the current Tokio runtime, in each namespace of
    /// `namespaces` (across the cluster for `*`). `trigger` is woken (`try_send`) after a new
    /// OOM kill, a crash-loop change, or a list that made the signals known.
    pub fn spawn(
        client: Client,
        namespaces: &Namespaces,
        plan: impl Into<WatchPlan>,
        trigger: mpsc::Sender<()>,
    ) -> PodSignals {
        let spawner = Spawner {
            owners: Arc::new(Owners::new(client.clone())),
            client,
            trigger,
            namespaces: namespaces.clone(),
            unlisted: Arc::default(),
        };
        PodSignals {
            set: Mutex::new(WatchSet::new(&spawner, plan.into())),
            spawner,
            unwatched: Mutex::default(),
        }
    }

    fn set(&self) -> MutexGuard<'_, WatchSet> {
        // Every statement leaves the set whole; a panic elsewhere must not stop the signals.
        self.set.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The states of the watches that hold `namespace`'s pods.
    fn states_of(&self, namespace: &str) -> Vec<Arc<Mutex<PodState>>> {
        let set = self.set();
        let found = set
            .running
            .iter()
            .find(|(ns, _)| ns.as_deref().is_none_or(|n| n == namespace));
        found
            .map(|(_, running)| running.iter().map(|r| r.state.clone()).collect())
            .unwrap_or_default()
    }

    /// Runs the watches `plan` asks for from now on (the rules changed): a watch whose
    /// selector changes lists again, and pods the new one leaves out are forgotten.
    pub fn narrow(&self, plan: impl Into<WatchPlan>) {
        let plan = plan.into();
        let mut set = self.set();
        if set.plan != plan {
            set.reconcile(&self.spawner, plan);
        }
    }

    /// The label selectors the watches ask for, `; `-separated (`""`: all pods).
    pub fn selector(&self) -> String {
        self.set().plan.watches.join("; ")
    }

    /// The workload owning the pod `namespace/name`, through its owner chain (the watch's
    /// answer when it has one, else one cached ReplicaSet read; a pod the watch's selector
    /// leaves out is read once, see [`UNWATCHED_TTL`]): `Ok(None)` when no such pod exists
    /// (deleted since another system saw it), `Ok(Some(None))` when it has no workload the
    /// automaton acts on. Unknown while the watch is.
    pub async fn owner_of(&self, namespace: &str, name: &str) -> Result<Option<Option<String>>, SignalError> {
        let mut found = None;
        for state in self.states_of(namespace) {
            let st = lock(&state);
            st.status(Timestamp::now()).map_err(SignalError::Watch)?;
            found = found.or_else(|| st.find(namespace, name));
        }
        match found {
            None => self.owner_of_unwatched(namespace, name).await,
            Some((_, Some(known))) => Ok(Some(known)),
            Some((controller, None)) => self
                .spawner
                .owners
                .resolve(namespace, controller.as_ref())
                .await
                .map(Some)
                .map_err(|e| SignalError::Watch(e.to_string())),
        }
    }

    async fn owner_of_unwatched(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Option<String>>, SignalError> {
        let key = (namespace.to_owned(), name.to_owned());
        let cached = self.unwatched_cache().get(&key).cloned();
        if let Some((owner, at)) = cached {
            if at.elapsed() < UNWATCHED_TTL {
                return Ok(owner);
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.spawner.client.clone(), namespace);
        let owner = match pods.get_metadata_opt(name).await {
            Ok(None) => None,
            Ok(Some(pod)) => Some(
                self.spawner
                    .owners
                    .resolve_pod(&pod.metadata)
                    .await
                    .map_err(|e| SignalError::Watch(e.to_string()))?,
            ),
            Err(e) => return Err(SignalError::Watch(format!("GET pod {namespace}/{name}: {e}"))),
        };
        let mut cache = self.unwatched_cache();
        if cache.len() >= UNWATCHED_MAX {
            cache.clear();
        }
        cache.insert(key, (owner.clone(), Instant::now()));
        Ok(owner)
    }

    fn unwatched_cache(&self) -> MutexGuard<'_, Unwatched> {
        // A panic elsewhere while holding the lock leaves a valid map.
        self.unwatched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The series of one pod signal at `now`, from memory (no request): `read` picks them
    /// out of the state of the watch made for the spec's `selector` in each namespace (of
    /// every watch, without duplicates, for a selector the plan does not know), given the
    /// spec's key. Unknown (never empty) until every watch's first list completed and while
    /// one fails. Call it once per tick per distinct spec.
    pub fn read<S: serde::Serialize>(
        &self,
        kind: &str,
        spec: &S,
        selector: &str,
        now: Timestamp,
        mut read: impl FnMut(&mut PodState, &str) -> Result<Vec<Series>, String>,
    ) -> Result<Vec<Series>, SignalError> {
        // The watch caches each spec's parsed selector under this key; the whole spec names
        // it, as the rule set's source key does.
        let key = format!("{kind} {}", serde_json::to_string(spec).unwrap_or_default());
        let set = self.set();
        // Every state is checked before any is read: a kill counted in one namespace while
        // another's watch fails would be consumed by a reading that is then unknown.
        let many = set.running.len() > 1;
        for (namespace, running) in &set.running {
            for watch in running {
                lock(&watch.state).status(now).map_err(|why| match namespace {
                    Some(ns) if many => SignalError::Watch(format!("namespace {ns}: {why}")),
                    _ => SignalError::Watch(why),
                })?;
            }
        }
        let route = set.plan.route(selector);
        let mut series = Vec::new();
        for (_, running) in &set.running {
            let reads = running
                .iter()
                .enumerate()
                .filter(|(i, _)| route.is_none_or(|r| r == *i));
            for (_, watch) in reads {
                series.extend(read(&mut lock(&watch.state), &key).map_err(SignalError::Watch)?);
            }
        }
        if route.is_none() && set.plan.watches.len() > 1 {
            // A pod two watches send is read twice.
            let mut seen = HashSet::new();
            series.retain(|s| seen.insert(s.labels.clone()));
        }
        Ok(series)
    }
}

/// The rule-load check every pod kind makes of its `selector`.
pub fn selector_error(kind: &str, selector: &str) -> Option<String> {
    super::selector::Selector::parse(selector)
        .err()
        .map(|e| format!("{kind} `selector`: {e}"))
}

impl Drop for PodSignals {
    fn drop(&mut self) {
        self.set().stop_all(&self.spawner);
    }
}

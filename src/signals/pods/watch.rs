//! One pod watch: kube's `watcher` (list, then watch from its resourceVersion, re-list
//! on 410 Gone, with the default backoff), fed into [`PodState`], with owners resolved
//! before a change is published and the daemon woken after it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DeserializeGuard;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::observe::{pod_key, PodObs};
use super::state::{Changed, Owner, PodState};
use crate::clients::kube::owners::{Owners, RETRY_AFTER};
use crate::clients::kube::reflect::broken;
use crate::core::namespaces::Namespaces;

pub(super) struct Watch {
    pub state: Arc<Mutex<PodState>>,
    pub owners: Arc<Owners>,
    pub trigger: mpsc::Sender<()>,
    /// The watches (of all namespaces) whose first list has not completed. Until it is 0
    /// nothing wakes the daemon: the pod signals read as "waiting for the first pod list",
    /// and each early evaluation would count that against the `kubernetes` breaker.
    pub unlisted: Arc<AtomicUsize>,
    /// This watch still counts in `unlisted` (until its first list, or until it is stopped:
    /// whichever comes first takes it out).
    pub pending: Arc<AtomicBool>,
    /// The namespaces this replica owns: a watch across the cluster of a shard
    /// (SHARD=i/N) drops the pods of the other shards' namespaces.
    pub owned: Namespaces,
}

pub(super) fn lock(state: &Mutex<PodState>) -> MutexGuard<'_, PodState> {
    // The state stays consistent between statements; a panic elsewhere must not stop the
    // signals.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Watch {
    pub async fn run(self, client: Client, namespace: Option<String>, mut selector: watch::Receiver<String>) {
        // `DeserializeGuard`: one pod that does not parse is skipped, never ends the stream.
        let api: Api<DeserializeGuard<Pod>> = match &namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let mut retry = tokio::time::interval_at(tokio::time::Instant::now() + RETRY_AFTER, RETRY_AFTER);
        retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut relists = crate::clients::backoff::Reconnect::default();
        loop {
            // A watch that broke is started again from a fresh list, not resumed: the list's
            // end (InitDone) is the proof that the pods are known again, which a resumed
            // watch in a quiet namespace would give only at the next pod change. The API
            // server filters: only the pods some pod rule could read are sent.
            let labels = selector.borrow_and_update().clone();
            let config = if labels.is_empty() {
                watcher::Config::default()
            } else {
                watcher::Config::default().labels(&labels)
            };
            let stream = watcher(api.clone(), config).backoff(crate::clients::backoff::Reconnect::default());
            let mut stream = std::pin::pin!(stream);
            let mut reselected = false;
            loop {
                tokio::select! {
                    item = stream.next() => match item {
                        Some(Ok(event)) => {
                            kube::runtime::utils::Backoff::reset(&mut relists);
                            self.event(event).await
                        }
                        Some(Err(error)) => {
                            self.error(&error);
                            if broken(&error) {
                                break;
                            }
                        }
                        None => {
                            tracing::error!("the pod watcher ended; starting it again");
                            break;
                        }
                    },
                    _ = retry.tick() => self.retry_owners().await,
                    // The rules changed what to watch: list again with the new selector
                    // (the list's end forgets the pods it no longer holds). Closed: the
                    // signals were dropped, and the task with them.
                    changed = selector.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        reselected = true;
                        break;
                    }
                }
            }
            if reselected {
                continue;
            }
            tokio::time::sleep(relists.next().unwrap_or(RETRY_AFTER)).await;
        }
    }

    async fn event(&self, event: Event<DeserializeGuard<Pod>>) {
        let now = Timestamp::now();
        if let Event::InitApply(pod) | Event::Apply(pod) | Event::Delete(pod) = &event {
            if !self
                .owned
                .contains(pod.meta().namespace.as_deref().unwrap_or_default())
            {
                return;
            }
        }
        let outcome = match event {
            Event::Init => {
                lock(&self.state).begin_resync();
                return;
            }
            Event::InitDone => {
                let mut st = lock(&self.state);
                if self.pending.swap(false, Ordering::SeqCst) {
                    self.unlisted.fetch_sub(1, Ordering::SeqCst);
                }
                let was_unknown = st.status(now).is_err();
                st.recovered();
                let mut changed = st.finish_resync(now);
                changed.listed = was_unknown;
                changed
            }
            Event::InitApply(pod) | Event::Apply(pod) => match pod.0 {
                Ok(pod) => self.upsert(&pod).await,
                Err(invalid) => {
                    tracing::warn!(
                        pod = invalid.metadata.name.as_deref().unwrap_or_default(),
                        namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
                        error = %invalid.error,
                        "skipping a pod that does not parse"
                    );
                    return;
                }
            },
            Event::Delete(pod) => {
                let mut st = lock(&self.state);
                st.recovered();
                st.delete(&pod_key(pod.meta()), now)
            }
        };
        if outcome.wake() && self.unlisted.load(Ordering::SeqCst) == 0 {
            tracing::debug!(
                new_kills = outcome.new_kills,
                crash_changed = outcome.crash_changed,
                "waking the daemon"
            );
            // Full: a wake-up is already pending; closed: the daemon is stopping.
            let _ = self.trigger.try_send(());
        }
    }

    /// Records a pod; its owner is resolved first, so the series carry `owner` as soon as
    /// they are readable.
    async fn upsert(&self, pod: &Pod) -> Changed {
        let obs = PodObs::from_pod(pod);
        let known = lock(&self.state).known_owner(&obs);
        let owner = match known {
            Some(target) => Owner::Known(target),
            None if obs.interesting() => match self.owners.resolve_pod(&pod.metadata).await {
                Ok(target) => Owner::Known(target),
                Err(error) => {
                    tracing::debug!(pod = %obs.meta.name, %error, "pod owner unknown for now");
                    Owner::Failed
                }
            },
            None => Owner::Unresolved,
        };
        let mut st = lock(&self.state);
        st.recovered();
        st.apply(obs, owner, Timestamp::now())
    }

    fn error(&self, error: &watcher::Error) {
        let Some((reason, until_relisted)) = describe(error) else {
            tracing::debug!(%error, "pod watch restarts");
            return;
        };
        let failing = lock(&self.state).fail(reason.clone(), until_relisted, Timestamp::now());
        if failing {
            tracing::warn!(%error, %reason, "pod signals unknown: the pod watch fails");
        } else {
            tracing::debug!(%error, "pod watch error; retrying");
        }
    }

    async fn retry_owners(&self) {
        let failed = lock(&self.state).failed_owners();
        for (key, namespace, controller) in failed {
            if let Ok(target) = self.owners.resolve(&namespace, controller.as_ref()).await {
                lock(&self.state).set_owner(&key, controller.as_ref(), target);
            }
        }
    }
}

/// The reason collection is unknown, and whether only a completed list clears it; `None`
/// for the routine restarts of a watch (410 Gone: the watcher re-lists).
fn describe(error: &watcher::Error) -> Option<(String, bool)> {
    match error {
        watcher::Error::InitialListFailed(e) => Some((client_reason("list", e), true)),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            Some((client_reason("watch", e), false))
        }
        watcher::Error::WatchError(status) if status.code == 410 => None,
        watcher::Error::WatchError(status) => Some((status_reason("watch", status), false)),
        watcher::Error::NoResourceVersion => None,
    }
}

fn client_reason(verb: &str, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status_reason(verb, status),
        other => format!("pod {verb} failed: {other}"),
    }
}

fn status_reason(verb: &str, status: &kube::core::Status) -> String {
    match status.code {
        403 => format!(
            "forbidden: the Role lacks list/watch on pods ({})",
            status.message
        ),
        401 => format!(
            "unauthorized: the API server rejected the ServiceAccount token ({})",
            status.message
        ),
        code => format!("pod {verb} failed: {code} {}: {}", status.reason, status.message),
    }
}

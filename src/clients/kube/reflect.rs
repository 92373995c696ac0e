//! The watched namespaces' Deployments, StatefulSets and HorizontalPodAutoscalers as
//! kube-runtime reflectors keep them: one list and then one watch each (per namespace of
//! WATCH_NAMESPACES, or one across the cluster for `*`), in memory without their
//! `managedFields` (often half of an object), so planning reads the workloads it may act
//! on without a request per tick. The executor still reads the live object right before
//! writing, under its resourceVersion: a store a watch event behind plans, never writes.
//!
//! A store is trusted once its first list completed and while its watch works: after an
//! error, until the next event (a broken watch starts again from a list, whose end is one)
//! or [`QUIET`] without a new error. Until then planning leaves the workloads out
//! ("unknown"), as it did when a read failed.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::error::{ApiRequest, ClusterError};
use super::workload::{LiveWorkload, WorkloadKind, WorkloadRef};
use crate::core::namespaces::Namespaces;

/// A watch error not repeated within this long was recovered from (the watcher retries
/// with its default backoff, at most about a minute apart).
const QUIET: Duration = Duration::from_secs(90);

#[derive(Default)]
struct Health {
    listed: bool,
    /// The last error, when, and whether the API server answered it (a 403 is an answer; a
    /// refused connection or a timeout is not).
    error: Option<(String, Instant, bool)>,
}

/// Whether a watch broke (not its initial list, which the watcher retries, nor a routine
/// 410 Gone, after which it lists again by itself): it is then started again from a list.
pub fn broken(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchStartFailed(_) | watcher::Error::WatchFailed(_) => true,
        watcher::Error::WatchError(status) => status.code != 410,
        watcher::Error::InitialListFailed(_) | watcher::Error::NoResourceVersion => false,
    }
}

/// The error as the operator needs it: an API server's answer through [`ClusterError`]
/// (a 403 names the missing grant), anything else as the watcher says it.
fn describe(error: &watcher::Error, list: &ApiRequest, watch: &ApiRequest) -> String {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status)) => {
            ClusterError::from_kube(list.clone(), kube::Error::Api(status.clone())).to_string()
        }
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => {
            ClusterError::from_kube(watch.clone(), kube::Error::Api(status.clone())).to_string()
        }
        other => other.to_string(),
    }
}

/// Whether the API server answered the request that failed.
fn answered(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => matches!(e, kube::Error::Api(_)),
        watcher::Error::WatchError(_) | watcher::Error::NoResourceVersion => true,
    }
}

/// One reflector: its store, how far it can be trusted, and its task (stopped on drop).
struct Reflected<K: Resource + Clone + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store: Store<K>,
    /// The resource, as errors name it (`deployments`).
    what: &'static str,
    health: Arc<Mutex<Health>>,
    task: JoinHandle<()>,
}

fn lock(health: &Mutex<Health>) -> MutexGuard<'_, Health> {
    // A panic elsewhere while holding the lock leaves valid flags.
    health.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K> Reflected<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// `namespace: None`: across the cluster, keeping only what `owned` contains (a
    /// shard's namespaces).
    fn spawn(
        client: Client,
        namespace: Option<&str>,
        owned: Namespaces,
        group: &'static str,
        what: &'static str,
    ) -> Self {
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let request = |verb| ApiRequest::new("GET", verb, group, what, namespace.unwrap_or_default(), None);
        let (list, watch) = (request("list"), request("watch"));
        let (store, writer) = reflector::store();
        let health = Arc::new(Mutex::new(Health::default()));
        let seen = health.clone();
        let span = tracing::info_span!("reflector", kind = what, namespace = namespace.unwrap_or("*"));
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let mut writer = writer;
                let mut relists = crate::clients::backoff::Reconnect::default();
                loop {
                    // A watch that broke starts again from a fresh list, not resumed: the
                    // list's end is the proof the store is current again, which a resumed
                    // watch in a quiet namespace would give only at the next change.
                    let stream = watcher(api.clone(), watcher::Config::default())
                        .backoff(crate::clients::backoff::Reconnect::default())
                        .modify(|o| o.managed_fields_mut().clear());
                    let mut stream = std::pin::pin!(stream);
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(event) => {
                                kube::runtime::utils::Backoff::reset(&mut relists);
                                let theirs = match &event {
                                    Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) => {
                                        !owned.contains(o.namespace().as_deref().unwrap_or_default())
                                    }
                                    Event::Init | Event::InitDone => false,
                                };
                                if !theirs {
                                    writer.apply_watcher_event(&event);
                                }
                                let mut h = lock(&seen);
                                if matches!(event, Event::InitDone) {
                                    h.listed = true;
                                }
                                if !matches!(event, Event::Init) {
                                    h.error = None;
                                }
                            }
                            Err(e) => {
                                let error = describe(&e, &list, &watch);
                                let mut h = lock(&seen);
                                if h.error.is_none() {
                                    tracing::warn!(%error, "{what} watch fails; the workloads it holds are left out of planning until it lists again");
                                }
                                h.error = Some((error, Instant::now(), answered(&e)));
                                if broken(&e) {
                                    break;
                                }
                            }
                        }
                    }
                    tokio::time::sleep(relists.next().unwrap_or(QUIET)).await;
                }
            },
            span,
        ));
        Reflected {
            store,
            what,
            health,
            task,
        }
    }

    /// Why the API server does not answer this watch now, if it does not.
    fn unreachable(&self) -> Option<String> {
        let h = lock(&self.health);
        match &h.error {
            Some((error, at, false)) if at.elapsed() < QUIET => Some(error.clone()),
            _ => None,
        }
    }

    /// The store, or why it cannot be trusted now.
    fn store(&self) -> Result<&Store<K>, String> {
        let (h, what) = (lock(&self.health), self.what);
        match &h.error {
            Some((error, at, _)) if at.elapsed() < QUIET => Err(format!("the {what} watch fails: {error}")),
            _ if !h.listed => Err(format!("the {what} are not listed yet")),
            _ => Ok(&self.store),
        }
    }
}

impl<K: Resource + Clone + 'static> Drop for Reflected<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reflectors of one namespace (`None`: all of them).
struct Scope {
    namespace: Option<String>,
    deployments: Reflected<Deployment>,
    stateful_sets: Reflected<StatefulSet>,
    hpas: Reflected<HorizontalPodAutoscaler>,
}

impl Scope {
    /// The three reflectors of `namespace` (`None`: across the cluster, keeping what
    /// `owned` contains).
    fn spawn(client: &Client, namespace: Option<&str>, owned: &Namespaces) -> Scope {
        let (apps, ns) = ("apps", namespace);
        Scope {
            namespace: namespace.map(str::to_owned),
            deployments: Reflected::spawn(client.clone(), ns, owned.clone(), apps, "deployments"),
            stateful_sets: Reflected::spawn(client.clone(), ns, owned.clone(), apps, "statefulsets"),
            hpas: Reflected::spawn(
                client.clone(),
                namespace,
                owned.clone(),
                "autoscaling",
                "horizontalpodautoscalers",
            ),
        }
    }

    fn unreachable(&self) -> Option<String> {
        self.deployments
            .unreachable()
            .or_else(|| self.stateful_sets.unreachable())
            .or_else(|| self.hpas.unreachable())
    }
}

/// The workloads of the watched namespaces and the HorizontalPodAutoscalers over them.
pub struct Workloads {
    scopes: Vec<Scope>,
    owned: Namespaces,
}

impl Workloads {
    /// Starts three reflectors per watched namespace (three in all for `*`) in tasks of
    /// the current Tokio runtime.
    pub fn spawn(client: Client, namespaces: &Namespaces) -> Workloads {
        let scopes = namespaces
            .watches()
            .into_iter()
            .map(|ns| Scope::spawn(&client, ns, namespaces));
        Workloads {
            scopes: scopes.collect(),
            owned: namespaces.clone(),
        }
    }

    fn scope(&self, namespace: &str) -> Result<&Scope, String> {
        let unwatched = || {
            format!(
                "namespace {namespace:?} is not watched (WATCH_NAMESPACES={})",
                self.owned
            )
        };
        if !self.owned.contains(namespace) {
            return Err(unwatched());
        }
        let mut scopes = self.scopes.iter();
        scopes
            .find(|s| s.namespace.as_deref().is_none_or(|n| n == namespace))
            .ok_or_else(unwatched)
    }

    /// The workload as last seen: `Ok(None)` when it does not exist; `Err` (why) while
    /// its kind's store cannot be trusted, or when its namespace is not watched.
    pub fn get(&self, target: &WorkloadRef) -> Result<Option<LiveWorkload>, String> {
        let scope = self.scope(&target.namespace)?;
        let (name, namespace) = (&target.name, &target.namespace);
        Ok(match target.kind {
            WorkloadKind::Deployment => scope
                .deployments
                .store()?
                .get(&ObjectRef::new(name).within(namespace))
                .map(|d| LiveWorkload::from_deployment(&d)),
            WorkloadKind::StatefulSet => scope
                .stateful_sets
                .store()?
                .get(&ObjectRef::new(name).within(namespace))
                .map(|s| LiveWorkload::from_stateful_set(&s)),
        })
    }

    /// The HorizontalPodAutoscalers of `namespace`, or why they are unknown.
    pub fn hpas(&self, namespace: &str) -> Result<Vec<HorizontalPodAutoscaler>, String> {
        let store = self.scope(namespace)?.hpas.store()?;
        let here = store
            .state()
            .into_iter()
            .filter(|h| h.namespace().as_deref() == Some(namespace));
        Ok(here.map(|h| (*h).clone()).collect())
    }

    /// Waits, at most `within`, until every store has completed its first list: the first
    /// plans after a start then have their workloads instead of waiting a tick.
    pub async fn listed(&self, within: Duration) {
        let all = async {
            for s in &self.scopes {
                let _ = s.deployments.store.wait_until_ready().await;
                let _ = s.stateful_sets.store.wait_until_ready().await;
                let _ = s.hpas.store.wait_until_ready().await;
            }
        };
        let _ = tokio::time::timeout(within, all).await;
    }

    /// Why the API server does not answer the watches now, if it does not: what the
    /// `kubernetes` breaker counts as a failure.
    pub fn unreachable(&self) -> Option<String> {
        self.scopes.iter().find_map(Scope::unreachable)
    }
}

//! Which workload a pod belongs to, as the engine's target string: the pod's controlling
//! owner (the `ownerReferences` entry with `controller: true`), followed one step up for
//! ReplicaSets:
//!
//! - Pod → ReplicaSet → Deployment: `deployment/NAME`, from one GET of the ReplicaSet's
//!   metadata, cached by namespace/name (the pods of one ReplicaSet cost one GET);
//! - Pod → StatefulSet: `statefulset/NAME`, from the pod alone (no request);
//! - anything else (DaemonSet, Job, a bare ReplicaSet, a bare pod): `None`, the pod has no
//!   owner the automaton can act on.
//!
//! A failed GET is remembered for [`RETRY_AFTER`] only (so a missing `get replicasets`
//! permission does not cost one request per pod event), then tried again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Api, Client};
use tokio::time::Instant;

/// How long a failed ReplicaSet look-up is answered from the cache before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Cached ReplicaSets beyond this are forgotten all at once (they are cheap to fetch again);
/// each rollout creates a ReplicaSet, so the cache must not grow forever.
const MAX_CACHED: usize = 4096;

/// A pod's owner could not be resolved now; it will be tried again after [`RETRY_AFTER`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("owner of the pods of replicaset {namespace}/{replica_set} unknown: {reason}")]
pub struct OwnerError {
    pub namespace: String,
    pub replica_set: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
enum Cached {
    Owner(Option<String>),
    Failed { reason: String, until: Instant },
}

/// Resolves pods to their workload, caching ReplicaSet look-ups. Cheap to share behind an
/// `Arc`; the cache lock is never held across a request.
pub struct Owners {
    client: Client,
    cache: Mutex<HashMap<(String, String), Cached>>,
}

/// The controlling owner reference of an object (`controller: true`), if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// What a controlling owner reference leads to without any request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The target is known: `statefulset/NAME`, `deployment/NAME`, or `None` (no workload).
    Done(Option<String>),
    /// A ReplicaSet (of this name): its own controller decides.
    ReplicaSet(String),
}

fn is_apps(api_version: &str) -> bool {
    // `extensions/v1beta1` is how pre-1.16 clusters wrote ReplicaSet references.
    matches!(api_version.split_once('/'), Some(("apps" | "extensions", _)))
}

/// The first step of the resolution, from the pod's controlling owner reference.
pub fn step(controller: Option<&OwnerReference>) -> Step {
    match controller {
        Some(r) if is_apps(&r.api_version) && r.kind == "ReplicaSet" => Step::ReplicaSet(r.name.clone()),
        Some(r) if is_apps(&r.api_version) && r.kind == "StatefulSet" => {
            Step::Done(Some(format!("statefulset/{}", r.name)))
        }
        Some(r) if is_apps(&r.api_version) && r.kind == "Deployment" => {
            Step::Done(Some(format!("deployment/{}", r.name)))
        }
        _ => Step::Done(None),
    }
}

impl Owners {
    pub fn new(client: Client) -> Self {
        Owners {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Cached>> {
        // A panic elsewhere while holding the lock leaves a valid map: keep using it.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The target string of the workload owning the pod with this metadata, qualified with
    /// the pod's namespace (`prod/deployment/api`). `Ok(None)`: the pod has no owner the
    /// automaton acts on. `Err`: the ReplicaSet could not be read now.
    pub async fn resolve_pod(&self, pod: &ObjectMeta) -> Result<Option<String>, OwnerError> {
        self.resolve(pod.namespace.as_deref().unwrap_or_default(), controller_of(pod))
            .await
    }

    /// [`Owners::resolve_pod`] from the pod's namespace and controlling owner reference.
    pub async fn resolve(
        &self,
        namespace: &str,
        controller: Option<&OwnerReference>,
    ) -> Result<Option<String>, OwnerError> {
        let owner = self.resolve_in(namespace, controller).await?;
        Ok(owner.map(|target| format!("{namespace}/{target}")))
    }

    /// The owner as `KIND/NAME` within the pod's namespace.
    async fn resolve_in(
        &self,
        namespace: &str,
        controller: Option<&OwnerReference>,
    ) -> Result<Option<String>, OwnerError> {
        let name = match step(controller) {
            Step::Done(target) => return Ok(target),
            Step::ReplicaSet(name) => name,
        };
        let key = (namespace.to_owned(), name);
        match self.cache().get(&key) {
            Some(Cached::Owner(target)) => return Ok(target.clone()),
            Some(Cached::Failed { reason, until }) if Instant::now() < *until => {
                return Err(OwnerError {
                    namespace: key.0.clone(),
                    replica_set: key.1.clone(),
                    reason: format!("{reason} (cached; retried after {}s)", RETRY_AFTER.as_secs()),
                })
            }
            _ => {}
        }
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.0);
        let entry = match api.get_metadata(&key.1).await {
            Ok(rs) => Cached::Owner(match step(controller_of(&rs.metadata)) {
                // A ReplicaSet is never owned by a ReplicaSet; only its Deployment counts.
                Step::Done(Some(target)) if target.starts_with("deployment/") => Some(target),
                _ => None,
            }),
            Err(error) => {
                tracing::warn!(
                    namespace = %key.0,
                    replica_set = %key.1,
                    %error,
                    "replicaset look-up failed; pods of it carry no `owner` until it succeeds"
                );
                Cached::Failed {
                    reason: describe(&error),
                    until: Instant::now() + RETRY_AFTER,
                }
            }
        };
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key.clone(), entry.clone());
        match entry {
            Cached::Owner(target) => Ok(target),
            Cached::Failed { reason, .. } => Err(OwnerError {
                namespace: key.0,
                replica_set: key.1,
                reason,
            }),
        }
    }
}

fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 403 => {
            format!(
                "forbidden: the Role lacks get on replicasets ({})",
                status.message
            )
        }
        kube::Error::Api(status) => format!("{} {}: {}", status.code, status.reason, status.message),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(api_version: &str, kind: &str, name: &str, controller: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller,
            block_owner_deletion: None,
        }
    }

    #[test]
    fn only_the_controlling_reference_counts() {
        let meta = ObjectMeta {
            owner_references: Some(vec![
                owner("apps/v1", "StatefulSet", "not-controller", None),
                owner("apps/v1", "ReplicaSet", "web-7d4b9c", Some(true)),
            ]),
            ..Default::default()
        };
        assert_eq!(controller_of(&meta).map(|r| r.name.as_str()), Some("web-7d4b9c"));
        assert_eq!(controller_of(&ObjectMeta::default()), None);
    }

    #[test]
    fn first_steps_by_kind() {
        let cases = [
            (
                owner("apps/v1", "ReplicaSet", "web-1", Some(true)),
                Step::ReplicaSet("web-1".into()),
            ),
            (
                owner("extensions/v1beta1", "ReplicaSet", "old-1", Some(true)),
                Step::ReplicaSet("old-1".into()),
            ),
            (
                owner("apps/v1", "StatefulSet", "db", Some(true)),
                Step::Done(Some("statefulset/db".into())),
            ),
            (
                owner("apps/v1", "DaemonSet", "agent", Some(true)),
                Step::Done(None),
            ),
            (owner("batch/v1", "Job", "migrate", Some(true)), Step::Done(None)),
            // A custom resource that happens to be called ReplicaSet is not `apps`.
            (
                owner("example.com/v1", "ReplicaSet", "x", Some(true)),
                Step::Done(None),
            ),
        ];
        for (reference, want) in cases {
            assert_eq!(step(Some(&reference)), want, "{reference:?}");
        }
        assert_eq!(step(None), Step::Done(None));
    }
}

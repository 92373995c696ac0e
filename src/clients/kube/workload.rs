//! Typed look-ups of Deployments and StatefulSets: the live state an action reads again right
//! before it writes, and what the daemon feeds the engine as its planning world.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client, Resource};

use super::error::{ApiRequest, ClusterError};
use super::{last_action_key, managers};
use crate::core::target::Target;
use crate::core::values::Bytes;
use crate::core::values::ValueError;
use crate::core::world::{Resources, Workload};

/// The pod template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    /// As written in targets: `deployment`, `statefulset`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
        }
    }

    /// The API kind: `Deployment`, `StatefulSet`.
    pub fn kind(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        }
    }

    /// The API resource (plural): `deployments`, `statefulsets`.
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
        }
    }
}

/// A workload the engine names as `NAMESPACE/deployment/NAME` or
/// `NAMESPACE/statefulset/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkloadRef {
    pub namespace: String,
    pub kind: WorkloadKind,
    pub name: String,
}

impl WorkloadRef {
    /// The request that reaches this workload (or its `subresource`), for error messages.
    pub fn request(&self, method: &'static str, verb: &'static str, subresource: Option<&str>) -> ApiRequest {
        let resource = match subresource {
            Some(sub) => format!("{}/{sub}", self.kind.resource()),
            None => self.kind.resource().to_owned(),
        };
        ApiRequest::new(method, verb, "apps", resource, &self.namespace, Some(&self.name))
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind.as_str(), self.name)
    }
}

impl FromStr for WorkloadRef {
    type Err = ValueError;

    /// Parses the engine's (namespace-qualified) target strings with the rule language's
    /// own parser, so both accept exactly the same names.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let unqualified = || {
            ValueError(format!(
                "`{s}` names no namespace: the engine qualifies every workload target"
            ))
        };
        match s.parse::<Target>()? {
            Target::Deployment { namespace, name } => Ok(WorkloadRef {
                namespace: namespace.ok_or_else(unqualified)?,
                kind: WorkloadKind::Deployment,
                name,
            }),
            Target::StatefulSet { namespace, name } => Ok(WorkloadRef {
                namespace: namespace.ok_or_else(unqualified)?,
                kind: WorkloadKind::StatefulSet,
                name,
            }),
            Target::Owner => Err(ValueError(
                "`owner` must be resolved to `deployment/NAME` or `statefulset/NAME` first".to_owned(),
            )),
        }
    }
}

/// A Deployment or StatefulSet as the API server has it now.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveWorkload {
    pub kind: WorkloadKind,
    pub name: String,
    pub uid: String,
    /// For optimistic concurrency: a patch carrying it fails with 409 if the object changed.
    pub resource_version: String,
    /// `spec.replicas`.
    pub replicas: Option<u32>,
    /// `metadata.labels` (where GitOps tools mark what they apply).
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations` (the per-rule last-action times, `automaton.dev/paused`).
    pub annotations: BTreeMap<String, String>,
    /// Memory request and limit of each container of the pod template, by name. A quantity
    /// that is not a plain byte count (`500m`) is left unknown rather than guessed.
    pub containers: BTreeMap<String, Resources>,
    /// The pod template's `kubectl.kubernetes.io/restartedAt`.
    pub restarted_at: Option<String>,
    /// `spec.paused` of a Deployment (a paused rollout, not `automaton.dev/paused`).
    pub paused: bool,
    /// The rollout strategy type: `RollingUpdate`, `Recreate`, `OnDelete`.
    pub strategy: Option<String>,
    /// What Events are attached to.
    pub object_ref: ObjectReference,
}

impl LiveWorkload {
    pub fn from_deployment(d: &Deployment) -> Self {
        let spec = d.spec.as_ref();
        let mut live = Self::new(
            WorkloadKind::Deployment,
            d.meta(),
            d.object_ref(&()),
            spec.and_then(|s| s.replicas),
            spec.map(|s| &s.template),
        );
        live.paused = spec.and_then(|s| s.paused).unwrap_or(false);
        live.strategy = spec
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.clone());
        live
    }

    pub fn from_stateful_set(s: &StatefulSet) -> Self {
        let spec = s.spec.as_ref();
        let mut live = Self::new(
            WorkloadKind::StatefulSet,
            s.meta(),
            s.object_ref(&()),
            spec.and_then(|s| s.replicas),
            spec.map(|s| &s.template),
        );
        live.strategy = spec
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|s| s.type_.clone());
        live
    }

    fn new(
        kind: WorkloadKind,
        meta: &ObjectMeta,
        object_ref: ObjectReference,
        replicas: Option<i32>,
        template: Option<&PodTemplateSpec>,
    ) -> Self {
        let containers = template
            .and_then(|t| t.spec.as_ref())
            .map(|spec| {
                spec.containers
                    .iter()
                    .map(|c| {
                        let res = c.resources.as_ref();
                        let resources = Resources {
                            memory_request: memory(res.and_then(|r| r.requests.as_ref())),
                            memory_limit: memory(res.and_then(|r| r.limits.as_ref())),
                        };
                        (c.name.clone(), resources)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let restarted_at = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(RESTARTED_AT).cloned());
        LiveWorkload {
            kind,
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            replicas: replicas.and_then(|r| u32::try_from(r).ok()),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            containers,
            restarted_at,
            paused: false,
            strategy: None,
            object_ref,
        }
    }

    pub fn target(&self) -> WorkloadRef {
        WorkloadRef {
            namespace: self.object_ref.namespace.clone().unwrap_or_default(),
            kind: self.kind,
            name: self.name.clone(),
        }
    }

    /// What planning needs of this workload. `hpa` stays unknown here: the autoscalers are
    /// other objects ([`managers::hpa_for`]).
    pub fn to_world(&self) -> Workload {
        Workload {
            replicas: self.replicas,
            containers: self.containers.clone(),
            paused: managers::paused(&self.annotations),
            gitops: managers::gitops(&self.labels, &self.annotations),
            hpa: None,
        }
    }

    /// When `rule` last acted on this workload, from its `automaton.dev/last-action-<rule>`
    /// annotation. An annotation that is not an RFC 3339 time counts as absent.
    pub fn last_action(&self, rule: &str) -> Option<jiff::Timestamp> {
        self.annotations
            .get(&last_action_key(rule))
            .and_then(|value| value.parse().ok())
    }
}

/// The memory quantity of a requests or limits map, in bytes.
fn memory(map: Option<&BTreeMap<String, Quantity>>) -> Option<Bytes> {
    map?.get("memory")?.0.parse().ok()
}

/// Reads a workload. One request, not retried: the executor retries around it, and the
/// daemon simply reads again at its next tick.
pub async fn get(client: &Client, target: &WorkloadRef) -> Result<LiveWorkload, ClusterError> {
    let wrap = |e| ClusterError::from_kube(target.request("GET", "get", None), e);
    let namespace = &target.namespace;
    match target.kind {
        WorkloadKind::Deployment => Api::<Deployment>::namespaced(client.clone(), namespace)
            .get(&target.name)
            .await
            .map(|d| LiveWorkload::from_deployment(&d))
            .map_err(wrap),
        WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .get(&target.name)
            .await
            .map(|s| LiveWorkload::from_stateful_set(&s))
            .map_err(wrap),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn targets_parse_like_the_rule_language() {
        let d: WorkloadRef = "prod/deployment/email-service".parse().unwrap();
        assert_eq!(
            (d.namespace.as_str(), d.kind, d.name.as_str()),
            ("prod", WorkloadKind::Deployment, "email-service")
        );
        assert_eq!(d.to_string(), "prod/deployment/email-service");
        let s: WorkloadRef = "solana/statefulset/validator".parse().unwrap();
        assert_eq!(s.kind.resource(), "statefulsets");
        let unqualified = "deployment/email-service".parse::<WorkloadRef>().unwrap_err();
        assert!(unqualified.0.contains("names no namespace"), "{unqualified}");
        for bad in ["owner", "prod/pod/x", "prod/deployment/", "prod/cronjob/backup"] {
            assert!(bad.parse::<WorkloadRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn live_state_becomes_the_planning_world() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "app", "namespace": "prod", "uid": "u-1", "resourceVersion": "42",
                "annotations": {"automaton.dev/last-action-oom": "2025-06-01T12:00:00Z"}},
            "spec": {"replicas": 2, "selector": {}, "paused": true, "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2025-05-01T00:00:00Z"}},
                "spec": {"containers": [
                    {"name": "app", "resources": {"requests": {"memory": "512Mi", "cpu": "100m"}, "limits": {"memory": "1Gi"}}},
                    {"name": "sidecar", "resources": {"limits": {"memory": "500m"}}}
                ]}}}
        }))
        .unwrap();
        let live = LiveWorkload::from_deployment(&d);
        assert_eq!((live.uid.as_str(), live.resource_version.as_str()), ("u-1", "42"));
        assert!(live.paused);
        assert_eq!(live.restarted_at.as_deref(), Some("2025-05-01T00:00:00Z"));
        let world = live.to_world();
        assert_eq!(world.replicas, Some(2));
        assert!(!world.paused, "a paused rollout is not automaton.dev/paused");
        assert_eq!((world.gitops.as_deref(), world.hpa.as_deref()), (None, None));
        assert_eq!(world.containers["app"].memory_request, Some(Bytes(512 << 20)));
        assert_eq!(world.containers["app"].memory_limit, Some(Bytes(1 << 30)));
        assert_eq!(world.containers["sidecar"], Resources::default());
        assert_eq!(
            live.last_action("oom").map(|t| t.to_string()),
            Some("2025-06-01T12:00:00Z".to_owned())
        );
        assert_eq!(live.last_action("other"), None);
        assert_eq!(live.object_ref.kind.as_deref(), Some("Deployment"));
        assert_eq!(live.object_ref.api_version.as_deref(), Some("apps/v1"));
    }
}

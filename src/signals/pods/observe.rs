//! What the pod signals need of a Pod object: its identity, labels and controlling owner,
//! and per container (init containers included) the restart count, whether it waits in
//! `CrashLoopBackOff`, and its `OOMKilled` terminations: the current state's (a container of
//! a `restartPolicy: Never` or `OnFailure` pod that stays terminated, or one in the seconds to
//! minutes of CrashLoopBackOff before its restart) and the last state's (after the restart).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::clients::kube::owners::controller_of;

/// The identity of a pod: its uid, or `namespace/name` when the object has none.
pub fn pod_key(meta: &ObjectMeta) -> String {
    match meta.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        ),
    }
}

/// An `OOMKilled` termination: `id` tells one kill from the next, and is the same whether
/// the kill is read from the current state (before the restart) or from the last state
/// (after it), so a kill seen early is not counted again later.
#[derive(Debug, Clone, PartialEq)]
pub struct Kill {
    pub id: String,
    pub finished_at: Option<Timestamp>,
}

/// What the signals need of one container status.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerObs {
    pub name: String,
    pub restart_count: i32,
    pub crash_loop: bool,
    /// The current state's OOM kill first, then the last state's.
    pub oom: Vec<Kill>,
}

/// The identifying part of a pod, shared by its record and its kills.
#[derive(Debug, PartialEq)]
pub struct PodMeta {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// What the signals need of one pod (init and regular containers).
#[derive(Debug, Clone, PartialEq)]
pub struct PodObs {
    pub key: String,
    pub meta: Arc<PodMeta>,
    pub controller: Option<OwnerReference>,
    pub containers: Vec<ContainerObs>,
}

impl PodObs {
    pub fn from_pod(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let statuses = status
            .and_then(|s| s.init_container_statuses.as_deref())
            .unwrap_or_default()
            .iter()
            .chain(
                status
                    .and_then(|s| s.container_statuses.as_deref())
                    .unwrap_or_default(),
            );
        PodObs {
            key: pod_key(&pod.metadata),
            meta: Arc::new(PodMeta {
                name: pod.metadata.name.clone().unwrap_or_default(),
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                labels: pod.metadata.labels.clone().unwrap_or_default(),
            }),
            controller: controller_of(&pod.metadata).cloned(),
            containers: statuses.map(container).collect(),
        }
    }

    /// Whether the pod may produce a series now, so its owner is worth resolving.
    pub fn interesting(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.restart_count > 0 || c.crash_loop || !c.oom.is_empty())
    }
}

fn container(s: &ContainerStatus) -> ContainerObs {
    let waiting = s.state.as_ref().and_then(|st| st.waiting.as_ref());
    // Terminated now: the kubelet has not restarted it yet, and will count the restart it
    // is about to make, which is what the last state will say then.
    let now = s
        .state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .and_then(|t| kill(t, s.restart_count.saturating_add(1)));
    let last = s
        .last_state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .and_then(|t| kill(t, s.restart_count));
    ContainerObs {
        name: s.name.clone(),
        restart_count: s.restart_count,
        crash_loop: waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff"),
        oom: now.into_iter().chain(last).collect(),
    }
}

/// An `OOMKilled` termination, identified by its end, else its container, else the restart
/// count it leads to.
fn kill(t: &ContainerStateTerminated, restarts: i32) -> Option<Kill> {
    if t.reason.as_deref() != Some("OOMKilled") {
        return None;
    }
    let finished_at = t.finished_at.as_ref().map(|at| at.0);
    let id = match (finished_at, t.container_id.as_deref()) {
        (Some(at), _) => format!("finished {at}"),
        (None, Some(id)) if !id.is_empty() => format!("container {id}"),
        _ => format!("restart {restarts}"),
    };
    Some(Kill { id, finished_at })
}

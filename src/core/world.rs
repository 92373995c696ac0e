//! The world that actions plan against: the workloads they change. The simulator keeps a
//! [`SimWorld`] that executed plans update; the daemon passes what it has observed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::Effect;
use super::values::Bytes;

/// What planning needs to know of a Deployment or StatefulSet.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Current `spec.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Containers of the pod template, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, Resources>,
    /// `automaton.dev/paused: "true"`: an operator said hands off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The GitOps tool that reverts spec changes to this object (`argocd: INSTANCE`,
    /// `flux: NAME`), from its labels and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<String>,
    /// The HorizontalPodAutoscaler that owns its replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<Bytes>,
}

/// Read access to the observed world.
pub trait World {
    fn workload(&self, target: &str) -> Option<&Workload>;
}

/// Knows nothing: every plan that needs the current state says so instead of guessing.
pub struct NoWorld;

impl World for NoWorld {
    fn workload(&self, _: &str) -> Option<&Workload> {
        None
    }
}

/// An in-memory world, as a `simulate` timeline declares it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SimWorld(pub BTreeMap<String, Workload>);

impl World for SimWorld {
    fn workload(&self, target: &str) -> Option<&Workload> {
        self.0.get(target)
    }
}

impl SimWorld {
    /// Applies an executed plan, as the API server would.
    pub fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::SetReplicas { target, replicas } => {
                self.0.entry(target.clone()).or_default().replicas = Some(*replicas);
            }
            Effect::SetMemory {
                target,
                container,
                request,
                limit,
            } => {
                let res = self
                    .0
                    .entry(target.clone())
                    .or_default()
                    .containers
                    .entry(container.clone())
                    .or_default();
                res.memory_request = Some(*request);
                res.memory_limit = Some(*limit);
            }
            Effect::RolloutRestart { .. } | Effect::External => {}
        }
    }
}

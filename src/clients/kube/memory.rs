//! A container's memory request and limit in a workload's pod template: read from the live
//! object and written back by a strategic merge patch (containers merge by name) guarded by
//! the `resourceVersion` just read. Shared by `raise_memory` and the rollback.

use serde_json::json;

use super::error::ClusterError;
use super::workload::{LiveWorkload, WorkloadRef};
use crate::core::values::Bytes;

/// A memory request and limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub request: Bytes,
    pub limit: Bytes,
}

/// The strategic merge patch that sets one container's memory request and limit (containers
/// merge by name), guarded by the `resourceVersion` just read.
pub fn memory_patch(live: &LiveWorkload, container: &str, memory: Memory) -> serde_json::Value {
    json!({
        "metadata": {"resourceVersion": live.resource_version},
        "spec": {"template": {"spec": {"containers": [{
            "name": container,
            "resources": {
                "requests": {"memory": memory.request.to_string()},
                "limits": {"memory": memory.limit.to_string()},
            },
        }]}}},
    })
}

/// The container's memory as the live template has it; both must be known to raise them.
pub fn current(live: &LiveWorkload, target: &WorkloadRef, container: &str) -> Result<Memory, ClusterError> {
    let res = live.containers.get(container).ok_or_else(|| {
        ClusterError::Invalid(format!(
            "{target} has no container `{container}` (containers: {})",
            live.containers.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    match (res.memory_request, res.memory_limit) {
        (Some(request), Some(limit)) => Ok(Memory { request, limit }),
        _ => Err(ClusterError::Invalid(format!(
            "container `{container}` of {target} has no memory request and limit in bytes to raise"
        ))),
    }
}

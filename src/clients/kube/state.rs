//! The guard state object: one ConfigMap the automaton owns (`automaton-state`, key
//! `state.json`), read whole and written whole under its resourceVersion, so two writers
//! never overwrite each other silently (the loser gets a 409, reads again and merges).
//!
//! A ConfigMap rather than the Lease's annotations: the leader renews its Lease every few
//! seconds, and every renewal would make a state write under the Lease's resourceVersion
//! lose its race; annotations share 256 KiB with everything else on the object, a
//! ConfigMap's data holds 1 MiB; and `kubectl get configmap automaton-state -o yaml` shows
//! operators exactly what the guard remembers. What the text means is the runtime's
//! business (runtime/daemon/durable.rs); this is only the object.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

use super::error::{ApiRequest, ClusterError};
use super::{Cluster, FIELD_MANAGER};

/// The key of the document in the ConfigMap's data.
pub const KEY: &str = "state.json";

/// The state object of one namespace.
#[derive(Clone)]
pub struct StateObject {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    timeout: Duration,
}

/// The document as read, with the version a write must name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    /// `None`: the object does not exist yet (or holds no document).
    pub text: Option<String>,
    /// `None`: the object does not exist; the next write creates it.
    pub resource_version: Option<String>,
}

impl StateObject {
    pub fn new(cluster: &Cluster, name: &str) -> Self {
        StateObject {
            api: Api::namespaced(cluster.client.clone(), &cluster.namespace),
            namespace: cluster.namespace.clone(),
            name: name.to_owned(),
            timeout: Duration::from_secs(10),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn request(&self, method: &'static str, verb: &'static str, named: bool) -> ApiRequest {
        let name = named.then_some(self.name.as_str());
        ApiRequest::new(method, verb, "", "configmaps", &self.namespace, name)
    }

    async fn timed<T>(
        &self,
        request: ApiRequest,
        call: impl std::future::Future<Output = kube::Result<T>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| ClusterError::from_kube(request, e)),
            Err(_) => Err(ClusterError::Timeout {
                request: Box::new(request),
                after: self.timeout,
            }),
        }
    }

    /// The document and its version. A missing object is an empty state, not an error.
    pub async fn read(&self) -> Result<Stored, ClusterError> {
        let request = self.request("GET", "get", true);
        match self.timed(request, self.api.get_opt(&self.name)).await? {
            None => Ok(Stored::default()),
            Some(cm) => Ok(Stored {
                text: cm.data.and_then(|mut d| d.remove(KEY)),
                resource_version: cm.metadata.resource_version,
            }),
        }
    }

    /// Writes the document: creates the object when `resource_version` is `None`, else
    /// replaces it under that version. Another writer in between is a conflict
    /// ([`ClusterError::is_conflict`] or, for a create, `is_already_exists`). Returns the
    /// new version.
    pub async fn write(&self, text: String, resource_version: Option<&str>) -> Result<String, ClusterError> {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: resource_version.map(str::to_owned),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/name".to_owned(), "automaton".to_owned()),
                    ("app.kubernetes.io/component".to_owned(), "guard-state".to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(KEY.to_owned(), text)])),
            ..ConfigMap::default()
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let written = match resource_version {
            None => {
                let request = self.request("POST", "create", false);
                self.timed(request, self.api.create(&params, &cm)).await?
            }
            Some(_) => {
                let request = self.request("PUT", "update", true);
                self.timed(request, self.api.replace(&self.name, &params, &cm))
                    .await?
            }
        };
        Ok(written.metadata.resource_version.unwrap_or_default())
    }
}

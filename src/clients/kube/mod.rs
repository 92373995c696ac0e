//! Kubernetes: the client and namespace every Kubernetes part shares, the pod-owner and
//! workload look-ups, and the executor of workload actions. Everything here is I/O; the
//! engine never sees a kube type.

pub mod error;
pub mod exec;
pub mod executor;
pub mod leader;
pub mod managers;
pub mod memory;
pub mod owners;
pub mod reflect;
pub mod rollback;
pub mod state;
pub mod workload;

use kube::Client;

use crate::core::namespaces::Namespaces;

/// The one field manager of every write (server-side apply and patches), so `kubectl get -o
/// yaml --show-managed-fields` tells what the automaton changed.
pub const FIELD_MANAGER: &str = "automaton";

/// Annotation prefix of the per-rule last-action time kept on each target, so cooldowns
/// survive a restart and are shared by replicas. Rule names are limited to 51 characters so
/// that `last-action-<rule>` fits the 63-character limit of an annotation name.
pub const LAST_ACTION_PREFIX: &str = "automaton.dev/last-action-";

/// A connected cluster: the client, the automaton's own namespace (the downward API
/// `NAMESPACE`: its Lease, its guard state, its CronJobs), the namespaces it watches and acts
/// in (WATCH_NAMESPACES, by default its own) and this replica's identity (`POD_NAME`), used
/// for Events and the Lease.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    pub namespaces: Namespaces,
    pub identity: String,
}

/// The annotation key of a rule's last action.
pub fn last_action_key(rule: &str) -> String {
    format!("{LAST_ACTION_PREFIX}{rule}")
}

/// Why the Kubernetes API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("KUBERNETES=on but no configuration was found (in-cluster or KUBECONFIG): {0}")]
    NoConfig(#[source] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Connects as the settings say. `Ok(None)` means "run without Kubernetes" (mode `off`, or
/// mode `auto` with no configuration found), which the daemon reports on every pod signal
/// and workload action instead of failing.
/// Whether `connect` would find a configuration (in-cluster or KUBECONFIG), without
/// contacting the API: what `automaton check --env` judges the pod rules by.
pub async fn configured(settings: &crate::settings::Settings) -> bool {
    settings.kubernetes != crate::settings::KubeMode::Off && kube::Config::infer().await.is_ok()
}

pub async fn connect(settings: &crate::settings::Settings) -> Result<Option<Cluster>, ConnectError> {
    use crate::settings::KubeMode;
    if settings.kubernetes == KubeMode::Off {
        return Ok(None);
    }
    let config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(e) if settings.kubernetes == KubeMode::Auto => {
            tracing::info!(error = %e, "no Kubernetes configuration found: pod signals and workload actions are off");
            return Ok(None);
        }
        Err(e) => return Err(ConnectError::NoConfig(e)),
    };
    let default_ns = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(ConnectError::Client)?;
    let namespace = settings
        .namespace
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|ns| ns.trim().to_owned())
                .filter(|ns| !ns.is_empty())
        })
        .unwrap_or(default_ns);
    let mut namespaces = settings
        .watch_namespaces
        .clone()
        .unwrap_or_else(|| Namespaces::only(&namespace));
    if let Some(shard) = settings.shard {
        namespaces = namespaces.sharded(shard);
        if namespaces == Namespaces::List(Vec::new()) {
            tracing::warn!(%shard, "this shard owns none of WATCH_NAMESPACES: it watches and heals nothing");
        }
    }
    tracing::info!(%namespace, watch_namespaces = %namespaces, identity = %settings.pod_name, "connected to the Kubernetes API");
    Ok(Some(Cluster {
        client,
        namespace,
        namespaces,
        identity: settings.pod_name.clone(),
    }))
}

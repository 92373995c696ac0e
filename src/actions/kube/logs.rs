//! `clean_logs`: runs the rule's fixed argv (`find PATH -name PATTERN -type f -mtime +N
//! -delete`) through `exec` in every running pod the selector matches: no shell, nothing
//! taken from signal labels. `pods/exec` is granted only by the optional component
//! `deploy/components/clean-logs`; without it the first exec fails with a clear 403.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, ListParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::{Ctx, KubeExecutor, Outcome};
use crate::actions::logs::CleanLogs;
use crate::clients::kube::error::{ApiRequest, ClusterError};
use crate::core::decision::SkipReason;

/// How much of the command's stderr an error quotes.
const STDERR_KEPT: usize = 512;

impl KubeExecutor {
    pub(super) async fn clean_logs(&self, ctx: &Ctx<'_>, spec: &CleanLogs) -> Result<Outcome, ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&spec.selector);
        let request = ApiRequest::new("GET", "list", "", "pods", &self.namespace, None);
        let list = self.call(&request, || pods.list(&params)).await?;
        let running: Vec<&Pod> = list.items.iter().filter(|pod| is_running(pod)).collect();
        if running.is_empty() {
            return Ok(Outcome::skipped(
                SkipReason::Bound,
                format!("no running pod matches `{}`: nothing to clean", spec.selector),
            ));
        }

        let argv = spec.argv();
        let mut cleaned = Vec::new();
        let mut failed = Vec::new();
        for pod in running {
            let name = pod.name_any();
            let container = match &spec.container {
                Some(c) if has_container(pod, c) => c.clone(),
                Some(c) => {
                    failed.push(format!("{name}: no container `{c}`"));
                    continue;
                }
                None => match pod.spec.as_ref().and_then(|s| s.containers.first()) {
                    Some(first) => first.name.clone(),
                    None => continue,
                },
            };
            match self.exec(&pods, &name, &container, &argv).await {
                Ok(()) => {
                    let files = format!(
                        "files `{}` older than {} in {} ({container})",
                        spec.pattern, spec.older_than, spec.path
                    );
                    let note = ctx.note(&files, "deleted");
                    self.publish(&pod.object_ref(&()), "LogsCleaned", "CleanLogs", note)
                        .await;
                    cleaned.push(name);
                }
                // Without `pods/exec` in the Role every other pod would be refused alike.
                Err(error @ ClusterError::Forbidden { .. }) => return Err(error),
                Err(error) => failed.push(format!("{name}: {error}")),
            }
        }
        if cleaned.is_empty() {
            return Err(ClusterError::Exec {
                target: format!("pods matching `{}`", spec.selector),
                message: format!("no pod was cleaned: {}", failed.join("; ")),
            });
        }
        let mut detail = format!(
            "deleted `{}` files older than {} in {} of {} pod(s) matching `{}`",
            spec.pattern,
            spec.older_than,
            spec.path,
            cleaned.len(),
            spec.selector
        );
        if !failed.is_empty() {
            detail.push_str(&format!("; failed: {}", failed.join("; ")));
        }
        Ok(Outcome::done(
            detail,
            json!({"pods_cleaned": cleaned.len(), "pods": cleaned, "failed": failed.len(), "argv": argv}),
        ))
    }

    /// Runs `argv` in the container and waits for its exit status.
    async fn exec(
        &self,
        pods: &Api<Pod>,
        pod: &str,
        container: &str,
        argv: &[String],
    ) -> Result<(), ClusterError> {
        let request = ApiRequest::new(
            "GET",
            "get and create",
            "",
            "pods/exec",
            &self.namespace,
            Some(pod),
        );
        let params = AttachParams::default()
            .container(container)
            .stdin(false)
            .stdout(false)
            .stderr(true);
        self.retrying(&request, self.exec_timeout, || async {
            let mut attached = pods
                .exec(pod, argv.to_vec(), &params)
                .await
                .map_err(|e| ClusterError::from_kube(request.clone(), e))?;
            let status = attached.take_status();
            let stderr = attached.stderr();
            // Drain stderr while waiting, or a chatty command would block on a full pipe.
            let (status, stderr) = tokio::join!(
                async move {
                    match status {
                        Some(status) => status.await,
                        None => None,
                    }
                },
                drain(stderr)
            );
            let failure = |message: String| ClusterError::Exec {
                target: format!("pod {pod:?}"),
                message,
            };
            attached.join().await.map_err(|e| failure(e.to_string()))?;
            match status {
                Some(s) if s.status.as_deref() == Some("Success") => Ok(()),
                Some(s) => {
                    let message = s.message.unwrap_or_else(|| "the command failed".to_owned());
                    Err(failure(format!("{message} {}", stderr.trim()).trim().to_owned()))
                }
                None => Err(failure("the connection closed without an exit status".to_owned())),
            }
        })
        .await
    }
}

fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn has_container(pod: &Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.name == name))
}

/// Reads a stream to its end, keeping its first bytes.
async fn drain<R: tokio::io::AsyncRead + Unpin>(reader: Option<R>) -> String {
    let Some(mut reader) = reader else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = STDERR_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

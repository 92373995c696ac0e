//! A command run in a container over `pods/exec` (kube's WebSocket exec), waited for to its
//! exit status, its stderr kept for the error: what `clean_logs` runs in each pod.

use k8s_openapi::api::core::v1::Pod;
use kube::api::AttachParams;
use kube::Api;
use tokio::io::AsyncReadExt;

use super::error::{ApiRequest, ClusterError};
use super::executor::KubeExecutor;

/// How much of the command's stderr an error quotes.
const STDERR_KEPT: usize = 512;

/// Runs `argv` in the container and waits for its exit status.
pub async fn exec(
    kube: &KubeExecutor,
    pods: &Api<Pod>,
    namespace: &str,
    pod: &str,
    container: &str,
    argv: &[String],
) -> Result<(), ClusterError> {
    let request = ApiRequest::new("GET", "get and create", "", "pods/exec", namespace, Some(pod));
    let params = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(false)
        .stderr(true);
    kube.retrying(&request, kube.exec_timeout, || async {
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

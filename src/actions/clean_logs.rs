//! `clean_logs`: delete old log files inside pods with a fixed argv
//! (`find PATH -name PATTERN -type f -mtime +N -delete`) run through `exec` in every running
//! pod the selector matches: no shell, nothing from signal labels in the command, and PATH
//! must be absolute without `..`. `pods/exec` is granted only by the optional component
//! `deploy/components/clean-logs`; without it the first exec fails with a clear 403.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, ListParams};
use kube::{Api, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::{Action, ActionError, ExecCtx};
use crate::clients::kube::error::{ApiRequest, ClusterError};
use crate::clients::kube::executor::{Act, KubeExecutor};
use crate::core::decision::SkipReason;
use crate::core::plan::Outcome;
use crate::core::plan::{Effect, Plan, PlanCtx, PlanError};
use crate::core::values::Dur;
use crate::signals::SignalSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanLogs {
    /// Label selector of the pods to clean.
    pub selector: String,
    /// The container to exec into (default: the pod's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The directory to clean: absolute, no `..`.
    pub path: String,
    /// File name pattern for `find -name`.
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// Only files last modified longer ago than this (default 7d).
    #[serde(default = "default_older_than")]
    pub older_than: Dur,
}

fn default_pattern() -> String {
    "*.log".to_owned()
}

fn default_older_than() -> Dur {
    Dur(std::time::Duration::from_secs(7 * 86400))
}

impl CleanLogs {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        // An empty selector matches every pod of the namespace: `find -delete` everywhere.
        if self.selector.trim().is_empty() {
            errors.push("clean_logs `selector` must not be empty: it would match every pod".to_owned());
        } else if let Some(e) = crate::signals::pods::selector_error("clean_logs", &self.selector) {
            errors.push(e);
        }
        // One spelling per directory: no `..` (escapes it), no `//` or `/.` (hide where it
        // goes from a reader), and not `/`.
        let parts: Vec<&str> = self.path.split('/').skip(1).collect();
        if !self.path.starts_with('/')
            || parts.iter().any(|p| *p == ".." || *p == ".")
            || self.path.contains("//")
            || self.path.contains("/.")
        {
            errors.push(format!(
                "clean_logs `path` must be absolute, without `..`, `//` or `/.`, found `{}`",
                self.path
            ));
        }
        if self.path.trim_end_matches('/').is_empty() {
            errors.push("clean_logs `path` must not be `/`".to_owned());
        }
        if self.pattern.is_empty() || self.pattern.contains('/') {
            errors.push(format!(
                "clean_logs `pattern` must be a file name pattern, found `{}`",
                self.pattern
            ));
        }
        // A bare `*` deletes every old file, whatever it is: name what a log looks like.
        if self.pattern.chars().all(|c| c == '*') && !self.pattern.is_empty() {
            errors.push(format!(
                "clean_logs `pattern` `{}` matches every file: name the logs, e.g. `*.log`",
                self.pattern
            ));
        }
        errors
    }

    /// The exact argv run in the container. Every element comes from the rule file.
    pub fn argv(&self) -> Vec<String> {
        let days = self.older_than.0.as_secs().div_ceil(86400).max(1);
        [
            "find",
            &self.path,
            "-name",
            &self.pattern,
            "-type",
            "f",
            "-mtime",
            &format!("+{}", days - 1),
            "-delete",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn plan(&self) -> Plan {
        Plan::new(
            json!({"selector": self.selector, "argv": self.argv()}),
            Effect::External,
        )
    }
}

impl Action for CleanLogs {
    fn dependency(&self) -> String {
        "kubernetes".to_owned()
    }

    fn target(&self, _labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        Ok(format!("pods/{}", self.selector))
    }

    fn validate(&self, _signal: &SignalSpec) -> Vec<String> {
        CleanLogs::validate(self)
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        Ok(CleanLogs::plan(self))
    }

    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move { Ok(clean_logs(cx.kube()?, &cx.act(), self).await?) })
    }
}

/// How much of the command's stderr an error quotes.
const STDERR_KEPT: usize = 512;

async fn clean_logs(kube: &KubeExecutor, act: &Act<'_>, spec: &CleanLogs) -> Result<Outcome, ClusterError> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let params = ListParams::default().labels(&spec.selector);
    let request = ApiRequest::new("GET", "list", "", "pods", &kube.namespace, None);
    let list = kube.call(&request, || pods.list(&params)).await?;
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
        match exec(kube, &pods, &name, &container, &argv).await {
            Ok(()) => {
                let files = format!(
                    "files `{}` older than {} in {} ({container})",
                    spec.pattern, spec.older_than, spec.path
                );
                let note = kube.note(act, &files, "deleted");
                kube.publish(&pod.object_ref(&()), "LogsCleaned", "CleanLogs", note)
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
    kube: &KubeExecutor,
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
        &kube.namespace,
        Some(pod),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_matches_find_semantics_and_paths_are_checked() {
        let spec = CleanLogs {
            selector: "app=x".into(),
            container: None,
            path: "/var/log/app".into(),
            pattern: "*.log".into(),
            older_than: default_older_than(),
        };
        // `-mtime +6` matches files at least 7 whole days old.
        assert_eq!(
            spec.argv().join(" "),
            "find /var/log/app -name *.log -type f -mtime +6 -delete"
        );
        assert!(spec.validate().is_empty());
        for bad in [
            "var/log",
            "/var/../etc",
            "/",
            "//",
            "/var//log",
            "/var/./log",
            "/var/.hidden",
        ] {
            let s = CleanLogs {
                path: bad.into(),
                ..spec.clone()
            };
            assert!(!s.validate().is_empty(), "{bad}");
        }
        for bad in ["*", "**", "", "a/b"] {
            let s = CleanLogs {
                pattern: bad.into(),
                ..spec.clone()
            };
            assert!(!s.validate().is_empty(), "pattern {bad:?}");
        }
        for bad in ["", "  ", "app in (", "=x"] {
            let s = CleanLogs {
                selector: bad.into(),
                ..spec.clone()
            };
            assert!(!s.validate().is_empty(), "selector {bad:?}");
        }
    }
}

//! `clean_logs`: delete old log files inside pods with a fixed argv
//! (`find PATH -name PATTERN -type f -mtime +N -delete`) run through `exec` in every running
//! pod the selector matches: no shell, nothing from signal labels in the command, and PATH
//! must be absolute without `..`. With `target: owner` only the pods the series names are
//! cleaned, among those the selector matches: `pod/NAME`, or `pvc/NAME` for the pods that
//! mount that claim (a volume-usage series from Prometheus), each target with its own
//! cooldown. `pods/exec` is granted only by the optional component
//! `deploy/components/clean-logs`; without it the first exec fails with a clear 403.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, ActionError, ExecCtx, OwnerKind};
use crate::clients::kube::error::{ApiRequest, ClusterError};
use crate::clients::kube::exec::exec;
use crate::clients::kube::executor::{Act, KubeExecutor};
use crate::core::decision::SkipReason;
use crate::core::plan::Outcome;
use crate::core::plan::{Effect, Plan, PlanCtx, PlanError};
use crate::core::target::ObjectRef;
use crate::core::values::Dur;
use crate::signals::SignalSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanLogs {
    /// Label selector of the pods to clean: the pods that opted in.
    pub selector: String,
    /// `owner`: only the pods the series names, among those `selector` matches: `pod/NAME`,
    /// or `pvc/NAME` for the pods that mount that claim. Absent: every pod `selector` matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<FromSeries>,
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

/// The one target a `clean_logs` takes from its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromSeries {
    Owner,
}

/// Which of the selected pods one execution cleans.
#[derive(Debug, PartialEq)]
enum Scope<'a> {
    All,
    Pod(&'a str),
    Claim(&'a str),
}

impl<'a> Scope<'a> {
    /// The pods a target names, and their namespace (`None`: the automaton's own, where a
    /// rule's fixed `pods/SELECTOR` cleans).
    fn of(target: &'a str) -> (Option<&'a str>, Scope<'a>) {
        match ObjectRef::parse(target) {
            Some(o) if o.kind == "pod" => (Some(o.namespace), Scope::Pod(o.name)),
            Some(o) if o.kind == "pvc" => (Some(o.namespace), Scope::Claim(o.name)),
            _ => (None, Scope::All),
        }
    }

    fn contains(&self, pod: &Pod) -> bool {
        match self {
            Scope::All => true,
            Scope::Pod(name) => pod.metadata.name.as_deref() == Some(name),
            Scope::Claim(claim) => pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .any(|c| c.claim_name == *claim),
        }
    }

    fn describe(&self, selector: &str) -> String {
        match self {
            Scope::All => format!("pods matching `{selector}`"),
            Scope::Pod(name) => format!("pod {name} (matching `{selector}`)"),
            Scope::Claim(claim) => format!("pods mounting pvc {claim} (matching `{selector}`)"),
        }
    }
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

    pub fn plan(&self, target: &str) -> Plan {
        Plan::new(
            json!({"selector": self.selector, "target": target, "argv": self.argv()}),
            Effect::External,
        )
    }
}

impl Action for CleanLogs {
    fn dependency(&self) -> String {
        "kubernetes".to_owned()
    }

    fn target(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        if self.target.is_none() {
            return Ok(format!("pods/{}", self.selector));
        }
        match labels.get("owner") {
            Some(owner) if matches!(OwnerKind::of(owner), Some(OwnerKind::Pod | OwnerKind::Volume)) => {
                Ok(owner.clone())
            }
            Some(owner) => Err(PlanError::Target(format!(
                "the series' owner `{owner}` is neither a pod nor a volume claim: nothing to clean"
            ))),
            None => Err(PlanError::Target(
                "the series has no `owner` label to resolve `target: owner`".to_owned(),
            )),
        }
    }

    fn target_from_series(&self) -> bool {
        self.target.is_some()
    }

    fn owner_kinds(&self) -> &'static [OwnerKind] {
        &[OwnerKind::Pod, OwnerKind::Volume]
    }

    fn validate(&self, _signal: &SignalSpec) -> Vec<String> {
        CleanLogs::validate(self)
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        Ok(CleanLogs::plan(self, ctx.target))
    }

    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        let (namespace, scope) = Scope::of(&cx.decision.target);
        Box::pin(async move {
            let kube = cx.kube()?;
            let namespace = namespace.unwrap_or(&kube.namespace);
            Ok(clean_logs(kube, &cx.act(), self, namespace, scope).await?)
        })
    }
}

async fn clean_logs(
    kube: &KubeExecutor,
    act: &Act<'_>,
    spec: &CleanLogs,
    namespace: &str,
    scope: Scope<'_>,
) -> Result<Outcome, ClusterError> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let params = ListParams::default().labels(&spec.selector);
    let request = ApiRequest::new("GET", "list", "", "pods", namespace, None);
    let list = kube.call(&request, || pods.list(&params)).await?;
    let running: Vec<&Pod> = list
        .items
        .iter()
        .filter(|pod| is_running(pod) && scope.contains(pod))
        .collect();
    let what = scope.describe(&spec.selector);
    if running.is_empty() {
        return Ok(Outcome::skipped(
            SkipReason::Bound,
            format!("no running pod among the {what}: nothing to clean"),
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
        match exec(kube, &pods, namespace, &name, &container, &argv).await {
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
            target: what,
            message: format!("no pod was cleaned: {}", failed.join("; ")),
        });
    }
    let mut detail = format!(
        "deleted `{}` files older than {} in {} in {} of {} running pod(s) ({what})",
        spec.pattern,
        spec.older_than,
        spec.path,
        cleaned.len(),
        cleaned.len() + failed.len(),
    );
    if !failed.is_empty() {
        detail.push_str(&format!("; failed: {}", failed.join("; ")));
    }
    Ok(Outcome::done(
        detail,
        json!({"pods_cleaned": cleaned.len(), "pods": cleaned, "failed": failed.len(), "argv": argv}),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_matches_find_semantics_and_paths_are_checked() {
        let spec = CleanLogs {
            selector: "app=x".into(),
            target: None,
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

    #[test]
    fn targets_from_series_narrow_the_selected_pods() {
        let spec = CleanLogs {
            selector: "app=x".into(),
            target: Some(FromSeries::Owner),
            container: None,
            path: "/var/log/app".into(),
            pattern: "*.log".into(),
            older_than: default_older_than(),
        };
        let owner = |o: &str| BTreeMap::from([("owner".to_owned(), o.to_owned())]);
        assert_eq!(Action::target(&spec, &owner("pvc/data-0")).unwrap(), "pvc/data-0");
        assert_eq!(Action::target(&spec, &owner("pod/web-0")).unwrap(), "pod/web-0");
        assert!(Action::target(&spec, &owner("deployment/web")).is_err());
        assert!(Action::target(&spec, &BTreeMap::new()).is_err());
        let fixed = CleanLogs { target: None, ..spec };
        assert_eq!(
            Action::target(&fixed, &owner("pvc/data-0")).unwrap(),
            "pods/app=x"
        );

        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0"},
            "spec": {"containers": [{"name": "app"}],
                     "volumes": [{"name": "logs", "emptyDir": {}},
                                 {"name": "data", "persistentVolumeClaim": {"claimName": "data-0"}}]}
        }))
        .unwrap();
        let contains = |target| Scope::of(target).1.contains(&pod);
        assert!(contains("prod/pvc/data-0"));
        assert!(!contains("prod/pvc/data-1"));
        assert!(contains("prod/pod/web-0"));
        assert!(!contains("prod/pod/web-1"));
        assert!(contains("pods/app=x"));
        assert_eq!(Scope::of("batch/pod/web-0"), (Some("batch"), Scope::Pod("web-0")));
        assert_eq!(Scope::of("pods/app=x").0, None);
    }
}

//! `run_job`: a Job from a CronJob's `jobTemplate`, built as `kubectl create job
//! --from=cronjob/NAME` builds it (snapshot backups, ledger pruning), under a name derived
//! from the CronJob and the time. The name is fixed before the first attempt, so when a
//! retried create finds it taken, the earlier attempt created it. While a Job of the CronJob
//! (ours or the CronJob controller's) is still running, none is started (`job_active`): two
//! prunes or backups of one volume at once is how a ledger gets corrupted, whatever the
//! CronJob's `concurrencyPolicy` says.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ListParams, PostParams};
use kube::{Api, Resource};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::debug;

use super::{Action, ActionError, ExecCtx, ReconcileCtx, Reconciled};
use crate::clients::kube::error::{ApiRequest, ClusterError};
use crate::clients::kube::executor::{Act, KubeExecutor};
use crate::clients::kube::FIELD_MANAGER;
use crate::core::decision::SkipReason;
use crate::core::plan::Outcome;
use crate::core::plan::{Effect, Plan, PlanCtx, PlanError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunJob {
    /// Name of the CronJob in the automaton's namespace.
    pub from_cronjob: String,
}

impl RunJob {
    pub fn plan(&self) -> Plan {
        Plan::new(json!({"job_from_cronjob": self.from_cronjob}), Effect::External)
    }
}

impl Action for RunJob {
    fn dependency(&self) -> String {
        "kubernetes".to_owned()
    }

    fn target(&self, _labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        Ok(format!("cronjob/{}", self.from_cronjob))
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        Ok(RunJob::plan(self))
    }

    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move { Ok(run_job(cx.kube()?, &cx.act(), self).await?) })
    }

    /// Done when a Job of ours from the CronJob is named for a time at or after the
    /// decision (`NAME-UNIXTIME`, kubectl's `instantiate: manual` annotation).
    fn reconcile<'a>(&'a self, cx: &'a ReconcileCtx<'a>) -> BoxFuture<'a, Result<Reconciled, ActionError>> {
        Box::pin(async move {
            let kube = cx.kube()?;
            let name = self.from_cronjob.as_str();
            let cronjobs: Api<CronJob> = Api::namespaced(kube.client.clone(), &kube.namespace);
            let request = ApiRequest::new("GET", "get", "batch", "cronjobs", &kube.namespace, Some(name));
            let cronjob = kube.call(&request, || cronjobs.get(name)).await?;
            let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &kube.namespace);
            let since = cx.since().as_second();
            let created = jobs_of(kube, &jobs, &cronjob).await?.iter().any(|job| {
                let ours = job
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(INSTANTIATE))
                    .is_some_and(|v| v == "manual");
                let at = job
                    .metadata
                    .name
                    .as_deref()
                    .and_then(|n| n.rsplit('-').next())
                    .and_then(|t| t.parse::<i64>().ok());
                ours && at.is_some_and(|at| at >= since)
            });
            Ok(if created {
                Reconciled::Done
            } else {
                Reconciled::NotDone
            })
        })
    }
}

/// The annotation kubectl puts on a Job it creates from a CronJob.
pub const INSTANTIATE: &str = "cronjob.kubernetes.io/instantiate";

/// Job names stay within 63 characters: the Job controller copies them into a label.
const MAX_NAME: usize = 63;

async fn run_job(kube: &KubeExecutor, act: &Act<'_>, spec: &RunJob) -> Result<Outcome, ClusterError> {
    let name = spec.from_cronjob.as_str();
    let cronjobs: Api<CronJob> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let request = ApiRequest::new("GET", "get", "batch", "cronjobs", &kube.namespace, Some(name));
    let cronjob = kube.call(&request, || cronjobs.get(name)).await?;

    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &kube.namespace);
    if let Some(running) = running_job(kube, &jobs, &cronjob).await? {
        return Ok(Outcome::skipped(
            SkipReason::JobActive,
            format!("job/{running} of cronjob/{name} is still running: not starting another"),
        ));
    }
    let job = job_from_cronjob(&cronjob, &job_name(name, kube.now()))?;
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let request = ApiRequest::new(
        "POST",
        "create",
        "batch",
        "jobs",
        &kube.namespace,
        Some(&job_name),
    );
    let attempts = AtomicU32::new(0);
    let created = kube
        .call(&request, || {
            attempts.fetch_add(1, Ordering::Relaxed);
            jobs.create(&params, &job)
        })
        .await;
    match created {
        Ok(_) => {}
        Err(error) if error.is_already_exists() && attempts.load(Ordering::Relaxed) > 1 => {
            debug!(%error, "an earlier attempt whose answer was lost created the Job");
        }
        Err(error) => return Err(error),
    }

    let note = kube.note(act, &format!("cronjob/{name}"), &format!("job/{job_name}"));
    kube.publish(&cronjob.object_ref(&()), "JobCreated", "RunJob", note)
        .await;
    Ok(Outcome::done(
        format!("job/{job_name} created from cronjob/{name}"),
        json!({"from_cronjob": name, "job": [null, job_name]}),
    ))
}

/// The name of a Job the CronJob controls that has not finished, if any.
async fn running_job(
    kube: &KubeExecutor,
    jobs: &Api<Job>,
    cronjob: &CronJob,
) -> Result<Option<String>, ClusterError> {
    Ok(jobs_of(kube, jobs, cronjob)
        .await?
        .iter()
        .find(|job| !finished(job))
        .and_then(|job| job.metadata.name.clone()))
}

/// The Jobs the CronJob controls: listed by the jobTemplate's labels (every Job of the
/// CronJob carries them), matched by owner uid.
async fn jobs_of(kube: &KubeExecutor, jobs: &Api<Job>, cronjob: &CronJob) -> Result<Vec<Job>, ClusterError> {
    let uid = cronjob.metadata.uid.as_deref().unwrap_or_default();
    let labels = cronjob
        .spec
        .as_ref()
        .and_then(|s| s.job_template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let selector: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let params = ListParams::default().labels(&selector.join(","));
    let request = ApiRequest::new("GET", "list", "batch", "jobs", &kube.namespace, None);
    let list = kube.call(&request, || jobs.list(&params)).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|job| controlled_by(job, uid))
        .collect())
}

fn controlled_by(job: &Job, uid: &str) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Complete or Failed: the Job controller's final conditions.
pub fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// A unique, valid Job name: the CronJob's name (shortened when needed) and the Unix time
/// in seconds. The CronJob controller's own Jobs end in minutes, so they never collide.
pub fn job_name(cronjob: &str, at: Timestamp) -> String {
    let suffix = format!("-{}", at.as_second());
    let room = MAX_NAME.saturating_sub(suffix.len());
    let mut prefix = cronjob;
    if prefix.len() > room {
        let mut cut = room;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix = &prefix[..cut];
    }
    format!("{}{suffix}", prefix.trim_end_matches(['-', '.']))
}

/// The Job `kubectl create job NAME --from=cronjob/X` creates: the jobTemplate's labels, its
/// annotations over `cronjob.kubernetes.io/instantiate: manual`, its spec, and the CronJob
/// as controller owner. Like kubectl, without `blockOwnerDeletion`: setting it needs
/// `update` on `cronjobs/finalizers` wherever OwnerReferencesPermissionEnforcement is on, a
/// permission the Role does not grant.
pub fn job_from_cronjob(cronjob: &CronJob, name: &str) -> Result<Job, ClusterError> {
    let cronjob_name = cronjob.metadata.name.clone().unwrap_or_default();
    let template = cronjob
        .spec
        .as_ref()
        .map(|spec| &spec.job_template)
        .ok_or_else(|| ClusterError::Invalid(format!("cronjob/{cronjob_name} has no spec")))?;
    let uid =
        cronjob.metadata.uid.clone().ok_or_else(|| {
            ClusterError::Invalid(format!("cronjob/{cronjob_name} has no uid to own the Job"))
        })?;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = BTreeMap::from([(INSTANTIATE.to_owned(), "manual".to_owned())]);
    annotations.extend(meta.annotations.unwrap_or_default());
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            annotations: Some(annotations),
            labels: meta.labels,
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".to_owned(),
                kind: "CronJob".to_owned(),
                name: cronjob_name,
                uid,
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_unique_valid_and_short() {
        let at: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        assert_eq!(job_name("snapshot", at), "snapshot-1748779200");
        let long = "a-very-long-cronjob-name-that-already-uses-fifty-two-c";
        let name = job_name(long, at);
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-1748779200"));
        let dash = format!("{}-b", "x".repeat(51));
        assert_eq!(job_name(&dash, at), format!("{}-1748779200", "x".repeat(51)));
    }
}

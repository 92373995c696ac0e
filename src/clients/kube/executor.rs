//! What every workload action needs of the Kubernetes API: the live object read again,
//! the cooldown recorded on it (the `automaton.dev/last-action-<rule>` annotation, so a
//! cooldown survives a restart and is shared by replicas), requests under a timeout and the
//! retry policy, patches with the one field manager, and Events. The actions themselves
//! (`actions/*.rs`) decide what to write.

use std::future::Future;
use std::time::Duration;

use backon::Retryable;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde_json::json;
use tracing::{debug, warn};

use crate::clients::backoff::{self, FullJitter};
use crate::clients::kube::error::{ApiRequest, ClusterError};
use crate::clients::kube::workload::{self, LiveWorkload, WorkloadKind, WorkloadRef};
use crate::clients::kube::{last_action_key, managers, Cluster, FIELD_MANAGER};
use crate::core::decision::{Decision, SkipReason};
use crate::core::plan::Outcome;
use crate::core::values::Condition;

/// Reads and patches of one workload write when the object keeps changing under it.
const WRITE_ATTEMPTS: u32 = 3;

/// What one attempt of a workload write decided, from the object just read.
pub enum Write<T> {
    /// Nothing to write: the live object made the action unnecessary.
    Skip(Outcome),
    /// This patch, carrying the resourceVersion read, and what the action keeps for later.
    Patch(Patch<serde_json::Value>, T),
}

/// `reportingController` of every Event.
pub const REPORTER: &str = "automaton";

/// Executes workload actions, each in its target's namespace.
#[derive(Clone)]
pub struct KubeExecutor {
    pub client: Client,
    /// The automaton's own namespace (its CronJobs for `run_job`).
    pub namespace: String,
    recorder: Recorder,
    backoff: FullJitter,
    /// Per API request.
    timeout: Duration,
    /// Per `exec` (a `find -delete` over a large directory takes a while).
    pub exec_timeout: Duration,
    clock: fn() -> Timestamp,
}

/// The rule and decision an action is executed for: what the cooldown annotation, the
/// Event notes and the logs name.
pub struct Act<'a> {
    /// The rule's name.
    pub rule: &'a str,
    /// The rule's cooldown, checked against the annotation on the live object.
    pub cooldown: Duration,
    /// The rule's condition, which Event notes quote beside the value that met it.
    pub when: Condition,
    pub decision: &'a Decision,
}

impl KubeExecutor {
    pub fn new(cluster: &Cluster) -> Self {
        let reporter = Reporter {
            controller: REPORTER.to_owned(),
            instance: Some(cluster.identity.clone()),
        };
        KubeExecutor {
            recorder: Recorder::new(cluster.client.clone(), reporter),
            client: cluster.client.clone(),
            namespace: cluster.namespace.clone(),
            backoff: backoff::default_backoff(),
            timeout: Duration::from_secs(10),
            exec_timeout: Duration::from_secs(120),
            clock: Timestamp::now,
        }
    }

    /// Replaces the retry schedule of transient failures (tests use a tiny one).
    pub fn with_backoff(mut self, backoff: FullJitter) -> Self {
        self.backoff = backoff;
        self
    }

    /// Replaces the timeouts of one API request and of one `exec`.
    pub fn with_timeouts(mut self, request: Duration, exec: Duration) -> Self {
        self.timeout = request;
        self.exec_timeout = exec;
        self
    }

    /// Replaces the wall clock that stamps and checks the last-action annotation.
    pub fn with_clock(mut self, clock: fn() -> Timestamp) -> Self {
        self.clock = clock;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Event note: `rule R: BEFORE → AFTER (action ID at TIME: value V, when > T)`,
    /// with the wall-clock time of the write and the value and threshold that fired it.
    pub fn note(&self, act: &Act<'_>, before: &str, after: &str) -> String {
        let d = act.decision;
        let id = d.id.as_deref().unwrap_or("-");
        let value = d.value.map_or("unknown".to_owned(), |v| v.to_string());
        format!(
            "rule {}: {before} → {after} (action {id} at {}: value {value}, when {})",
            act.rule,
            self.now(),
            act.when
        )
    }

    /// Now, to the second: the annotation and `restartedAt` are RFC 3339 like kubectl's.
    pub fn now(&self) -> Timestamp {
        let now = (self.clock)();
        Timestamp::from_second(now.as_second()).unwrap_or(now)
    }

    /// Runs one request with a timeout, retrying transient failures on the backoff; the
    /// `retryAfterSeconds` of a Status (up to [`backoff::MAX_RETRY_AFTER`]) replaces its delay.
    pub async fn retrying<T, F, Fut>(
        &self,
        request: &ApiRequest,
        timeout: Duration,
        mut attempt: F,
    ) -> Result<T, ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClusterError>>,
    {
        let timed = || {
            let fut = attempt();
            async move {
                match tokio::time::timeout(timeout, fut).await {
                    Ok(result) => result,
                    Err(_) => Err(ClusterError::Timeout {
                        request: Box::new(request.clone()),
                        after: timeout,
                    }),
                }
            }
        };
        timed
            .retry(self.backoff)
            .when(ClusterError::is_transient)
            .adjust(|error, next| backoff::after(error.retry_after(), next))
            .notify(|error, delay| warn!(%error, ?delay, "transient Kubernetes API failure, retrying"))
            .await
    }

    /// [`Self::retrying`] for a kube call, wrapping its error with the request.
    pub async fn call<T, F, Fut>(&self, request: &ApiRequest, mut call: F) -> Result<T, ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        self.retrying(request, self.timeout, || {
            let fut = call();
            async move { fut.await.map_err(|e| ClusterError::from_kube(request.clone(), e)) }
        })
        .await
    }

    /// The workload as it is now.
    pub async fn live(&self, target: &WorkloadRef) -> Result<LiveWorkload, ClusterError> {
        let request = target.request("GET", "get", None);
        self.retrying(&request, self.timeout, || workload::get(&self.client, target))
            .await
    }

    /// `Some(skip)` while the annotation of the rule's last action is newer than its cooldown
    /// (a time in the future, from a skewed clock, counts as inside the cooldown).
    pub fn inside_cooldown(&self, act: &Act<'_>, live: &LiveWorkload, now: Timestamp) -> Option<Outcome> {
        let last = live.last_action(act.rule)?;
        let cooldown = SignedDuration::try_from(act.cooldown).unwrap_or(SignedDuration::MAX);
        let since = now.duration_since(last);
        if since >= cooldown {
            return None;
        }
        let left = cooldown.checked_sub(since).unwrap_or(cooldown);
        Some(Outcome::skipped(
            SkipReason::Cooldown,
            format!(
                "{}: rule {} last acted at {last} ({}); {}s of cooldown left",
                live.target(),
                act.rule,
                last_action_key(act.rule),
                left.as_secs()
            ),
        ))
    }

    /// The one write of a workload action. Reads the object, skips inside the rule's
    /// cooldown (its annotation), lets `decide` skip or build the patch (the change and the
    /// last-action annotation together, under the resourceVersion read), and writes it. A
    /// 409 means someone wrote in between (another replica, or this action before a crash):
    /// the object is read again and everything re-checked, at most three times in all.
    /// `Ok(Err(skip))` when nothing was written; else the object the write was decided on
    /// and what `decide` kept of its reasoning.
    pub async fn write_once<T>(
        &self,
        act: &Act<'_>,
        target: &WorkloadRef,
        mut decide: impl FnMut(&LiveWorkload, Timestamp) -> Result<Write<T>, ClusterError>,
    ) -> Result<Result<(LiveWorkload, T), Outcome>, ClusterError> {
        let mut attempt = 1;
        loop {
            let live = self.live(target).await?;
            let now = self.now();
            if let Some(skip) = self.inside_cooldown(act, &live, now) {
                return Ok(Err(skip));
            }
            // The engine skips a paused target it knows; this read is the last word, also
            // for a plan made without the target in the world (a restart needs none).
            if managers::paused(&live.annotations) {
                let why = format!("{target} is annotated automaton.dev/paused: \"true\"");
                return Ok(Err(Outcome::skipped(SkipReason::Paused, why)));
            }
            let (patch, kept) = match decide(&live, now)? {
                Write::Skip(skip) => return Ok(Err(skip)),
                Write::Patch(patch, kept) => (patch, kept),
            };
            match self.patch_workload(target, &patch).await {
                Ok(()) => return Ok(Ok((live, kept))),
                Err(error) if error.is_conflict() && attempt < WRITE_ATTEMPTS => {
                    debug!(%error, attempt, "the workload changed since it was read; reading it again");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Whether `rule`'s last-action annotation on the live workload is at or after `since`:
    /// its change was written (the annotation rides in the same patch).
    pub async fn acted_since(
        &self,
        target: &WorkloadRef,
        rule: &str,
        since: Timestamp,
    ) -> Result<bool, ClusterError> {
        let live = self.live(target).await?;
        Ok(live.last_action(rule).is_some_and(|at| at >= since))
    }

    /// Patches the workload itself (not a subresource) with the field manager.
    pub async fn patch_workload(
        &self,
        target: &WorkloadRef,
        patch: &Patch<serde_json::Value>,
    ) -> Result<(), ClusterError> {
        let request = target.request("PATCH", "patch", None);
        let params = patch_params();
        match target.kind {
            WorkloadKind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &target.namespace);
                self.call(&request, || api.patch(&target.name, &params, patch))
                    .await
                    .map(drop)
            }
            WorkloadKind::StatefulSet => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &target.namespace);
                self.call(&request, || api.patch(&target.name, &params, patch))
                    .await
                    .map(drop)
            }
        }
    }

    /// `spec.replicas` under the resourceVersion read just before: an absolute value, so a
    /// retried request cannot apply a `step` twice, and it cannot land on an object that
    /// changed in between (409).
    pub async fn set_replicas(
        &self,
        target: &WorkloadRef,
        resource_version: &str,
        replicas: u32,
    ) -> Result<(), ClusterError> {
        let body = json!({
            "metadata": {"resourceVersion": resource_version},
            "spec": {"replicas": replicas},
        });
        self.patch_workload(target, &Patch::Merge(body)).await
    }

    /// A Warning Event on a workload target: a verification that failed, a change that
    /// GitOps will revert. Best effort, like every Event.
    pub async fn warn(&self, target: &str, reason: &str, action: &str, note: String) {
        let live = match workload_ref(target) {
            Ok(target) => self.live(&target).await,
            Err(e) => Err(e),
        };
        match live {
            Ok(live) => {
                self.event(&live.object_ref, EventType::Warning, reason, action, note)
                    .await
            }
            Err(error) => warn!(%error, reason, "the Warning Event could not be recorded"),
        }
    }

    /// Records a Normal Event on `regarding`. A failed Event never fails the action.
    pub async fn publish(&self, regarding: &ObjectReference, reason: &str, action: &str, note: String) {
        self.event(regarding, EventType::Normal, reason, action, note)
            .await
    }

    async fn event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, 1024)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            warn!(%error, reason, "the Event could not be recorded");
        }
    }
}

pub fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

pub fn workload_ref(target: &str) -> Result<WorkloadRef, ClusterError> {
    target
        .parse()
        .map_err(|e: crate::core::values::ValueError| ClusterError::Invalid(e.0))
}

/// At most `max` bytes, cut at a character boundary (an Event note is limited to 1 kB).
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

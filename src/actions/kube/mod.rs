//! Execution of workload actions through the Kubernetes API. The engine has already guarded
//! and planned; each action here reads its object again, honours the cooldown recorded on it
//! (the `automaton.dev/last-action-<rule>` annotation, so a cooldown survives a restart and
//! is shared by replicas), skips what is already done, writes one absolute change with the
//! one field manager, and records an Event. One file per action.

mod job;
mod logs;
mod memory;
mod restart;
mod rollback;
mod scale;

use std::future::Future;
use std::time::Duration;

use backon::Retryable;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde::Serialize;
use tracing::{instrument, warn};

use crate::actions::ActionSpec;
use crate::actions::Rule;
use crate::clients::backoff::{self, FullJitter};
use crate::clients::kube::error::{ApiRequest, ClusterError};
use crate::clients::kube::workload::{self, LiveWorkload, WorkloadKind, WorkloadRef};
use crate::clients::kube::{last_action_key, Cluster, FIELD_MANAGER};
use crate::core::decision::{Decision, SkipReason};
use crate::core::plan::Effect;

pub use job::{job_from_cronjob, job_name};

/// `reportingController` of every Event.
pub const REPORTER: &str = "automaton";

/// What executing one decision did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// `Some` when nothing was written: the live object was inside the rule's cooldown
    /// (`cooldown`), already had the planned values (`bound`), or the decision was a dry run.
    pub skipped: Option<SkipReason>,
    /// One line for humans: what was done, or why not.
    pub detail: String,
    /// The live change, before → after, e.g. `{"replicas": [2, 6]}`.
    pub change: Option<serde_json::Value>,
}

impl Outcome {
    fn done(detail: String, change: serde_json::Value) -> Self {
        Outcome {
            skipped: None,
            detail,
            change: Some(change),
        }
    }

    fn skipped(reason: SkipReason, detail: String) -> Self {
        Outcome {
            skipped: Some(reason),
            detail,
            change: None,
        }
    }
}

/// Executes workload actions against one namespace.
#[derive(Clone)]
pub struct KubeExecutor {
    client: Client,
    namespace: String,
    recorder: Recorder,
    backoff: FullJitter,
    /// Per API request.
    timeout: Duration,
    /// Per `exec` (a `find -delete` over a large directory takes a while).
    exec_timeout: Duration,
    clock: fn() -> Timestamp,
}

/// The rule and decision an action is executed for.
struct Ctx<'a> {
    rule: &'a Rule,
    decision: &'a Decision,
}

impl Ctx<'_> {
    /// The Event note: `rule R: BEFORE → AFTER (decision at Ns)`.
    fn note(&self, before: &str, after: &str) -> String {
        let id = self.decision.id.as_deref().unwrap_or("-");
        format!(
            "rule {}: {before} → {after} (action {id}, decision at {}s)",
            self.rule.name,
            self.decision.at.as_secs()
        )
    }
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

    /// Executes the plan of an `act` decision of `rule`. `Ok` with `skipped` set means the
    /// live object made the action unnecessary and nothing was written.
    #[instrument(skip_all, fields(rule = %rule.name, target = %decision.target, action = rule.spec.action.kind()))]
    pub async fn execute(&self, rule: &Rule, decision: &Decision) -> Result<Outcome, ClusterError> {
        let kind = rule.spec.action.kind();
        if let ActionSpec::TerminateIdleConnections(_) | ActionSpec::Http(_) | ActionSpec::Notify(_) =
            rule.spec.action
        {
            return Err(ClusterError::NotKubernetes(kind));
        }
        if decision.dry_run {
            return Ok(Outcome::skipped(
                SkipReason::DryRun,
                format!("{kind} on {} is a dry run: nothing written", decision.target),
            ));
        }
        let plan = decision.plan.as_deref().ok_or_else(|| {
            ClusterError::Invalid(format!(
                "rule {} on {}: the decision carries no plan to execute",
                rule.name, decision.target
            ))
        })?;
        let ctx = Ctx { rule, decision };
        match (&rule.spec.action, &plan.effect) {
            (ActionSpec::Scale(_), Effect::SetReplicas { target, replicas }) => {
                self.scale(&ctx, &workload_ref(target)?, *replicas).await
            }
            (ActionSpec::Restart(_), Effect::RolloutRestart { target }) => {
                self.restart(&ctx, &workload_ref(target)?).await
            }
            (
                ActionSpec::RaiseMemory(_),
                Effect::SetMemory {
                    target,
                    container,
                    request,
                    limit,
                },
            ) => {
                let want = memory::Memory {
                    request: *request,
                    limit: *limit,
                };
                self.raise_memory(&ctx, &workload_ref(target)?, container, want)
                    .await
            }
            (ActionSpec::RunJob(spec), Effect::External) => self.run_job(&ctx, spec).await,
            (ActionSpec::CleanLogs(spec), Effect::External) => self.clean_logs(&ctx, spec).await,
            (_, effect) => Err(ClusterError::Invalid(format!(
                "rule {}: a `{kind}` action cannot execute the effect {effect:?}",
                rule.name
            ))),
        }
    }

    /// Now, to the second: the annotation and `restartedAt` are RFC 3339 like kubectl's.
    fn now(&self) -> Timestamp {
        let now = (self.clock)();
        Timestamp::from_second(now.as_second()).unwrap_or(now)
    }

    /// Runs one request with a timeout, retrying transient failures on the backoff; the
    /// `retryAfterSeconds` of a Status (up to [`backoff::MAX_RETRY_AFTER`]) replaces its delay.
    async fn retrying<T, F, Fut>(
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
    async fn call<T, F, Fut>(&self, request: &ApiRequest, mut call: F) -> Result<T, ClusterError>
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
    async fn live(&self, target: &WorkloadRef) -> Result<LiveWorkload, ClusterError> {
        let request = target.request("GET", "get", &self.namespace, None);
        self.retrying(&request, self.timeout, || {
            workload::get(&self.client, &self.namespace, target)
        })
        .await
    }

    /// `Some(skip)` while the annotation of the rule's last action is newer than its cooldown
    /// (a time in the future, from a skewed clock, counts as inside the cooldown).
    fn inside_cooldown(&self, ctx: &Ctx<'_>, live: &LiveWorkload, now: Timestamp) -> Option<Outcome> {
        let last = live.last_action(&ctx.rule.name)?;
        let cooldown = SignedDuration::try_from(ctx.rule.cooldown).unwrap_or(SignedDuration::MAX);
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
                ctx.rule.name,
                last_action_key(&ctx.rule.name),
                left.as_secs()
            ),
        ))
    }

    /// The merge patch that records the rule's last action on the workload.
    fn stamp(&self, ctx: &Ctx<'_>, at: Timestamp) -> serde_json::Value {
        serde_json::json!({"metadata": {"annotations": {last_action_key(&ctx.rule.name): at.to_string()}}})
    }

    /// Patches the workload itself (not a subresource) with the field manager.
    async fn patch_workload(
        &self,
        target: &WorkloadRef,
        patch: &Patch<serde_json::Value>,
    ) -> Result<(), ClusterError> {
        let request = target.request("PATCH", "patch", &self.namespace, None);
        let params = patch_params();
        match target.kind {
            WorkloadKind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
                self.call(&request, || api.patch(&target.name, &params, patch))
                    .await
                    .map(drop)
            }
            WorkloadKind::StatefulSet => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
                self.call(&request, || api.patch(&target.name, &params, patch))
                    .await
                    .map(drop)
            }
        }
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
    async fn publish(&self, regarding: &ObjectReference, reason: &str, action: &str, note: String) {
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

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn workload_ref(target: &str) -> Result<WorkloadRef, ClusterError> {
    target.parse().map_err(ClusterError::Invalid)
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

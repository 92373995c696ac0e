//! The Kubernetes executor's actions against the scripted API server of `kube_support`:
//! each test lists the exact requests it expects and answers them with real payloads.

mod kube_support;

use automaton::core::decision::SkipReason;
use kube_support::*;
use serde_json::json;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// scale

#[tokio::test]
async fn scale_patches_replicas_and_the_annotation_in_one_guarded_patch_and_records_an_event() {
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(DEPLOYMENT, MERGE, scale_patch("kafka-consumer-lag", DEPLOYMENT_RV, 6)).reply(200, &deployment().replicas(6).json()),
        event(event_fields(
            "ScaledUp",
            "Scale",
            "rule kafka-consumer-lag: 1 replicas → 6 replicas (action sim-1 at 2025-06-01T12:00:00Z: value 20000, when > 0)",
            regarding_hello(),
        )),
    ];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("scaled");
    assert_eq!(outcome.skipped, None);
    assert_eq!(outcome.change, Some(json!({"replicas": [1, 6]})));
    assert_eq!(
        outcome.detail,
        "default/deployment/hello-world scaled from 1 to 6 replicas"
    );
}

#[tokio::test]
async fn scale_down_after_the_cooldown_expired() {
    let live = deployment()
        .replicas(5)
        .annotation("automaton.dev/last-action-kafka-consumer-lag", &at(-600));
    let script = vec![
        get(DEPLOYMENT).reply(200, &live.json()),
        patch(
            DEPLOYMENT,
            MERGE,
            scale_patch("kafka-consumer-lag", DEPLOYMENT_RV, 2),
        )
        .reply(200, &live.json()),
        event(
            json!({"reason": "ScaledDown", "note": "rule kafka-consumer-lag: 5 replicas → 2 replicas (action sim-1 at 2025-06-01T12:00:00Z: value 10, when < 100)"}),
        ),
    ];
    // A rule that removes capacity: it fires on a low value.
    let scale_down = rule(
        "kafka-consumer-lag",
        "kafka_lag: {group: email-service-group}",
        "scale: {target: deployment/hello-world, replicas: 2}",
    )
    .replace("when: \"> 0\"", "when: \"< 100\"");
    let decision = decide(
        &scale_down,
        "deployment/hello-world: {replicas: 5}",
        &[("group", "email-service-group")],
        10.0,
    );
    let outcome = execute(script, &decision).await.expect("scaled down");
    assert_eq!(outcome.change, Some(json!({"replicas": [5, 2]})));
}

#[tokio::test]
async fn scale_already_at_the_target_is_bound_and_writes_nothing() {
    // The engine planned from a stale world (1 replica); the live object already has 6.
    let script = vec![get(DEPLOYMENT).reply(200, &deployment().replicas(6).json())];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
    assert_eq!(
        outcome.detail,
        "default/deployment/hello-world already has 6 replicas"
    );
    assert_eq!(outcome.change, None);
}

#[tokio::test]
async fn a_scale_up_planned_on_a_stale_world_never_scales_down_what_someone_added_since() {
    // Planned 1 → 6; someone has scaled to 8 in between: no write.
    let script = vec![get(DEPLOYMENT).reply(200, &deployment().replicas(8).json())];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
    assert_eq!(
        outcome.detail,
        "default/deployment/hello-world now has 8 replicas: setting 6 would go against the rule's direction"
    );
}

#[tokio::test]
async fn a_scale_that_loses_its_race_reads_again_and_finds_the_other_writers_cooldown() {
    // Between our read and our patch another replica (or this one before a crash) scaled
    // and stamped: the precondition fails, the object is read again, the cooldown holds.
    let stamped = deployment()
        .replicas(6)
        .resource_version("649500")
        .annotation("automaton.dev/last-action-kafka-consumer-lag", &at(-1));
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(
            DEPLOYMENT,
            MERGE,
            scale_patch("kafka-consumer-lag", DEPLOYMENT_RV, 6),
        )
        .fail(failure("derived/409-conflict-optimistic-lock")),
        get(DEPLOYMENT).reply(200, &stamped.json()),
    ];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Cooldown), "{}", outcome.detail);
}

#[tokio::test]
async fn a_restarted_daemon_inside_the_cooldown_reads_it_from_the_annotation_and_writes_nothing() {
    // A fresh engine has no cooldown in memory and acts; the target remembers the last action
    // of another replica (or of this one before its restart) a minute ago.
    let live = deployment().annotation("automaton.dev/last-action-kafka-consumer-lag", &at(-60));
    let script = vec![get(DEPLOYMENT).reply(200, &live.json())];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Cooldown));
    assert_eq!(
        outcome.detail,
        "default/deployment/hello-world: rule kafka-consumer-lag last acted at 2025-06-01T11:59:00Z \
         (automaton.dev/last-action-kafka-consumer-lag); 240s of cooldown left"
    );
}

#[tokio::test]
async fn scale_of_a_statefulset_patches_the_statefulset() {
    let (rule, decision) = decide(
        &rule(
            "slot-lag",
            "kafka_lag: {group: g}",
            "scale: {target: statefulset/redis-master, replicas: 3}",
        ),
        "statefulset/redis-master: {replicas: 1}",
        &[("group", "g")],
        1.0,
    );
    let script = vec![
        get(STATEFULSET).reply(200, &statefulset().json()),
        patch(STATEFULSET, MERGE, scale_patch("slot-lag", STATEFULSET_RV, 3))
            .reply(200, &statefulset().replicas(3).json()),
        event(
            json!({"reason": "ScaledUp", "regarding": {"kind": "StatefulSet", "name": "redis-master",
            "uid": "1f80ab97-8bf6-11e8-aff0-42010a8a0fc6"}}),
        ),
    ];
    let outcome = execute(script, &(rule, decision)).await.expect("scaled");
    assert_eq!(outcome.change, Some(json!({"replicas": [1, 3]})));
}

// ---------------------------------------------------------------------------------------
// restart

#[tokio::test]
async fn restart_sends_kubectls_patch_and_never_deletes_pods() {
    let body = json!({
        "metadata": {
            "resourceVersion": DEPLOYMENT_RV,
            "annotations": {"automaton.dev/last-action-crash-loop": NOW},
        },
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": NOW}}}},
    });
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(DEPLOYMENT, STRATEGIC, body).reply(200, &deployment().json()),
        event(event_fields(
            "RolloutRestarted",
            "RolloutRestart",
            "rule crash-loop: restartedAt never → restartedAt 2025-06-01T12:00:00Z (action sim-1 at 2025-06-01T12:00:00Z: value 1, when > 0)",
            regarding_hello(),
        )),
    ];
    let outcome = execute(script, &restart("deployment/hello-world"))
        .await
        .expect("restarted");
    assert_eq!(outcome.change, Some(json!({"restarted_at": [null, NOW]})));
}

#[tokio::test]
async fn a_target_found_paused_right_before_the_write_is_skipped_without_a_write() {
    // The engine planned the restart without the target in its world (a restart needs
    // none); the live read before the write finds automaton.dev/paused and stops there.
    let paused = deployment().annotation("automaton.dev/paused", "true");
    let script = vec![get(DEPLOYMENT).reply(200, &paused.json())];
    let outcome = execute(script, &restart("deployment/hello-world"))
        .await
        .expect("answered");
    assert_eq!(outcome.skipped, Some(SkipReason::Paused));
    assert_eq!(
        outcome.detail,
        "default/deployment/hello-world is annotated automaton.dev/paused: \"true\""
    );
}

#[tokio::test]
async fn restart_of_an_on_delete_statefulset_says_pods_roll_only_when_deleted() {
    let body = json!({
        "metadata": {
            "resourceVersion": STATEFULSET_RV,
            "annotations": {"automaton.dev/last-action-crash-loop": NOW},
        },
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": NOW}}}},
    });
    let script = vec![
        get(STATEFULSET).reply(200, &statefulset().json()),
        patch(STATEFULSET, STRATEGIC, body).reply(200, &statefulset().json()),
        event(
            json!({"reason": "RolloutRestarted", "regarding": {"kind": "StatefulSet", "name": "redis-master"}}),
        ),
    ];
    let outcome = execute(script, &restart("statefulset/redis-master"))
        .await
        .expect("restarted");
    assert!(outcome.detail.contains("OnDelete"), "{}", outcome.detail);
}

// ---------------------------------------------------------------------------------------
// raise_memory

/// The strategic merge patch raising hello-world to 1Gi/2Gi, guarded by `rv`.
fn memory_patch(rv: &str) -> Exchange {
    let body = json!({
        "metadata": {
            "resourceVersion": rv,
            "annotations": {"automaton.dev/last-action-pod-oom-killed": NOW},
        },
        "spec": {"template": {"spec": {"containers": [{
            "name": "hello-world",
            "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        }]}}},
    });
    patch(DEPLOYMENT, STRATEGIC, body)
}

#[tokio::test]
async fn raise_memory_doubles_request_and_limit_with_a_resource_version_precondition() {
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().memory("512Mi", "1Gi").json()),
        memory_patch("649432").reply(200, &deployment().memory("1Gi", "2Gi").json()),
        event(event_fields(
            "MemoryRaised",
            "RaiseMemory",
            "rule pod-oom-killed: container hello-world memory 512Mi/1Gi → 1Gi/2Gi (request/limit) (action sim-1 at 2025-06-01T12:00:00Z: value 1, when > 0)",
            regarding_hello(),
        )),
    ];
    let outcome = execute(script, &raise_memory()).await.expect("raised");
    assert_eq!(
        outcome.change,
        Some(
            json!({"container": "hello-world", "memory_request": ["512Mi", "1Gi"], "memory_limit": ["1Gi", "2Gi"]})
        )
    );
}

#[tokio::test]
async fn raise_memory_reads_again_after_a_conflict_and_retries() {
    let changed = deployment().memory("512Mi", "1Gi").resource_version("649500");
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().memory("512Mi", "1Gi").json()),
        memory_patch("649432").fail(failure("derived/409-conflict-optimistic-lock")),
        get(DEPLOYMENT).reply(200, &changed.json()),
        memory_patch("649500").reply(200, &deployment().memory("1Gi", "2Gi").json()),
        event(json!({"reason": "MemoryRaised"})),
    ];
    let outcome = execute(script, &raise_memory())
        .await
        .expect("raised on the second attempt");
    assert_eq!(outcome.skipped, None);
}

#[tokio::test]
async fn raise_memory_after_a_conflict_finds_it_already_raised() {
    let raised = deployment().memory("1Gi", "2Gi").resource_version("649500");
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().memory("512Mi", "1Gi").json()),
        memory_patch("649432").fail(failure("derived/409-conflict-optimistic-lock")),
        get(DEPLOYMENT).reply(200, &raised.json()),
    ];
    let outcome = execute(script, &raise_memory()).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
}

#[tokio::test]
async fn raise_memory_gives_up_after_three_conflicts() {
    let live = deployment().memory("512Mi", "1Gi");
    let conflict = || memory_patch("649432").fail(failure("derived/409-conflict-optimistic-lock"));
    let script = vec![
        get(DEPLOYMENT).reply(200, &live.json()),
        conflict(),
        get(DEPLOYMENT).reply(200, &live.json()),
        conflict(),
        get(DEPLOYMENT).reply(200, &live.json()),
        conflict(),
    ];
    let err = execute(script, &raise_memory()).await.expect_err("a conflict");
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("the object has been modified"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Failures

#[tokio::test]
async fn forbidden_is_a_clear_error_and_is_not_retried() {
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(
            DEPLOYMENT,
            MERGE,
            scale_patch("kafka-consumer-lag", DEPLOYMENT_RV, 6),
        )
        .fail(failure("derived/403-forbidden-rbac")),
    ];
    let err = execute(script, &scale_to(6, 1)).await.expect_err("forbidden");
    assert_eq!(err.metric_label(), "forbidden");
    assert!(
        err.to_string().starts_with(
            "PATCH deployments.apps \"hello-world\" in namespace \"default\": forbidden: the \
             automaton's Role lacks `patch` on deployments.apps — see deploy/base/role.yaml"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_target_is_not_found_and_is_not_retried() {
    let script = vec![get(DEPLOYMENT).fail(failure("kube-rs/failure_with_details3/status1"))];
    let err = execute(script, &scale_to(6, 1)).await.expect_err("not found");
    assert_eq!(err.metric_label(), "not_found");
    assert!(err.to_string().contains("the target does not exist"), "{err}");
}

#[tokio::test]
async fn too_many_requests_and_server_errors_are_retried_then_succeed() {
    let script = vec![
        // API Priority and Fairness answers 429 in plain text, not as a Status.
        get(DEPLOYMENT).fail((429, "Too many requests, please try again later.".to_owned())),
        get(DEPLOYMENT).fail(failure("kubeclient/namespace_exception")),
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(
            DEPLOYMENT,
            MERGE,
            scale_patch("kafka-consumer-lag", DEPLOYMENT_RV, 6),
        )
        .fail((503, String::new())),
        patch(
            DEPLOYMENT,
            MERGE,
            scale_patch("kafka-consumer-lag", DEPLOYMENT_RV, 6),
        )
        .reply(200, &deployment().json()),
        event(json!({"reason": "ScaledUp"})),
    ];
    let outcome = execute(script, &scale_to(6, 1))
        .await
        .expect("scaled after retries");
    assert_eq!(outcome.change, Some(json!({"replicas": [1, 6]})));
}

#[tokio::test]
async fn a_request_without_answer_times_out_and_is_retried() {
    let script = vec![
        get(DEPLOYMENT).hang(),
        get(DEPLOYMENT).reply(200, &deployment().replicas(6).json()),
    ];
    let (executor, server) = executor(script);
    let executor = executor.with_timeouts(Duration::from_millis(50), Duration::from_secs(1));
    let (rule, decision) = scale_to(6, 1);
    let outcome = run(&executor, &rule, &decision)
        .await
        .expect("answered the second time");
    drop(executor);
    server.await.expect("the API server script failed");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
}

#[tokio::test]
async fn transient_failures_give_up_after_the_last_retry() {
    let busy = || get(DEPLOYMENT).fail(failure("kubeclient/namespace_exception"));
    let script = vec![busy(), busy(), busy(), busy()];
    let err = execute(script, &scale_to(6, 1)).await.expect_err("still failing");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn a_failed_event_does_not_fail_the_action() {
    let script = vec![
        get(DEPLOYMENT).reply(200, &deployment().json()),
        patch(
            DEPLOYMENT,
            MERGE,
            scale_patch("kafka-consumer-lag", DEPLOYMENT_RV, 6),
        )
        .reply(200, &deployment().json()),
        event(json!({"reason": "ScaledUp"})).fail(failure("derived/403-forbidden-rbac")),
    ];
    let outcome = execute(script, &scale_to(6, 1)).await.expect("scaled");
    assert_eq!(outcome.skipped, None);
}

// ---------------------------------------------------------------------------------------
// run_job

#[tokio::test]
async fn run_job_creates_the_job_kubectl_create_job_from_cronjob_would() {
    let decision = decide(
        &rule(
            "ledger-prune",
            "disk_usage: {path: /var/lib/ledger}",
            "run_job: {from_cronjob: hello}",
        ),
        "{}",
        &[],
        90.0,
    );
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "hello-1748779200",
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual", "backup.example.com/kind": "snapshot"},
            "labels": {"app": "hello"},
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                "uid": "3c1f2a9e-5b7d-4e8a-9f60-2d4b8c6e1a07", "controller": true,
            }],
        },
        "spec": {"template": {"metadata": {}, "spec": {
            "containers": [{
                "args": ["/bin/sh", "-c", "date; echo Hello from the Kubernetes cluster"],
                "image": "busybox", "imagePullPolicy": "IfNotPresent", "name": "hello", "resources": {},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            }],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "OnFailure", "schedulerName": "default-scheduler",
            "securityContext": {}, "terminationGracePeriodSeconds": 30,
        }}},
    });
    let mut created = job.clone();
    created["metadata"]["uid"] = json!("9d0b6a8e-2f4c-4b51-8e0a-6c7d5e4f3a21");
    // The CronJob's Jobs, by its jobTemplate's labels: one finished, one of another owner.
    let mut done = job.clone();
    done["metadata"]["name"] = json!("hello-29145600");
    done["status"] = json!({"conditions": [{"type": "Complete", "status": "True"}]});
    let mut other = job.clone();
    other["metadata"]["name"] = json!("hello-of-someone-else");
    other["metadata"]["ownerReferences"][0]["uid"] = json!("0b8f3a2c-0000-4000-8000-000000000000");
    let script = vec![
        get("/apis/batch/v1/namespaces/default/cronjobs/hello")
            .reply(200, &fixture("cronjob-batch-v1-hello.yaml")),
        get("/apis/batch/v1/namespaces/default/jobs")
            .query("labelSelector", "app=hello")
            .reply(200, &job_list(vec![done, other])),
        exchange(
            "POST",
            "/apis/batch/v1/namespaces/default/jobs",
            Expect::Exact(job),
        )
        .query("fieldManager", "automaton")
        .reply(201, &created),
        event(event_fields(
            "JobCreated",
            "RunJob",
            "rule ledger-prune: cronjob/hello → job/hello-1748779200 (action sim-1 at 2025-06-01T12:00:00Z: value 90, when > 0)",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                "uid": "3c1f2a9e-5b7d-4e8a-9f60-2d4b8c6e1a07"}),
        )),
    ];
    let outcome = execute(script, &decision).await.expect("created");
    assert_eq!(outcome.detail, "job/hello-1748779200 created from cronjob/hello");
}

fn job_list(items: Vec<serde_json::Value>) -> serde_json::Value {
    json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "7"}, "items": items})
}

#[tokio::test]
async fn run_job_starts_nothing_while_a_job_of_the_cronjob_runs() {
    let decision = decide(
        &rule(
            "ledger-prune",
            "disk_usage: {path: /var/lib/ledger}",
            "run_job: {from_cronjob: hello}",
        ),
        "{}",
        &[],
        90.0,
    );
    let running = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "hello-29145660", "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
            "uid": "3c1f2a9e-5b7d-4e8a-9f60-2d4b8c6e1a07", "controller": true}]},
        "spec": {"template": {"spec": {"containers": []}}},
        "status": {"active": 1},
    });
    // No POST: the script ends after the list.
    let script = vec![
        get("/apis/batch/v1/namespaces/default/cronjobs/hello")
            .reply(200, &fixture("cronjob-batch-v1-hello.yaml")),
        get("/apis/batch/v1/namespaces/default/jobs")
            .query("labelSelector", "app=hello")
            .reply(200, &job_list(vec![running])),
    ];
    let outcome = execute(script, &decision).await.expect("decided");
    assert_eq!(
        outcome.skipped,
        Some(automaton::core::decision::SkipReason::JobActive)
    );
    assert_eq!(
        outcome.detail,
        "job/hello-29145660 of cronjob/hello is still running: not starting another"
    );
}

// ---------------------------------------------------------------------------------------
// clean_logs

#[tokio::test]
async fn clean_logs_execs_the_exact_argv_in_running_pods_and_a_403_is_clear() {
    let decision = decide(
        &rule(
            "app-logs",
            "disk_usage: {path: /var/log}",
            "clean_logs: {selector: app=web, path: /var/log/app, older_than: 7d}",
        ),
        "{}",
        &[],
        90.0,
    );
    let pods = json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "424384600"},
        "items": [
            fixture("pod-running-hello-world-kspan.yaml"),
            fixture("pod-running-terminating.yaml"),
            fixture("pod-running-never-ready.yaml"),
        ],
    });
    let mut exec = get("/api/v1/namespaces/default/pods/slow-start-pod/exec")
        .query("stderr", "true")
        .query("container", "slow-container");
    for arg in [
        "find",
        "/var/log/app",
        "-name",
        "*.log",
        "-type",
        "f",
        "-mtime",
        "+6",
        "-delete",
    ] {
        exec = exec.query("command", arg);
    }
    exec.upgrade = true;
    let script = vec![
        get("/api/v1/namespaces/default/pods")
            .query("labelSelector", "app=web")
            .reply(200, &pods),
        // Only the running pod that is not being deleted; the pending one is left alone.
        exec.fail(failure("derived/403-forbidden-rbac")),
    ];
    let err = execute(script, &decision).await.expect_err("forbidden");
    assert!(
        err.to_string().contains(
            "forbidden: the automaton's Role lacks `get and create` on pods/exec — see deploy/components/clean-logs"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn clean_logs_without_running_pods_does_nothing() {
    let decision = decide(
        &rule(
            "app-logs",
            "disk_usage: {path: /var/log}",
            "clean_logs: {selector: app=web, path: /var/log/app}",
        ),
        "{}",
        &[],
        90.0,
    );
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
        "items": [fixture("pod-running-hello-world-kspan.yaml")]});
    let script = vec![get("/api/v1/namespaces/default/pods")
        .query("labelSelector", "app=web")
        .reply(200, &pods)];
    let outcome = execute(script, &decision).await.expect("a skip");
    assert_eq!(outcome.skipped, Some(SkipReason::Bound));
}

// ---------------------------------------------------------------------------------------
// What is not executed here

#[tokio::test]
async fn other_kinds_and_dry_runs_send_no_request() {
    let notify = decide(
        &rule(
            "tell",
            "disk_usage: {path: /}",
            &format!("notify: {{webhook: \"http://127.0.0.1:{}/x\"}}", closed_port()),
        ),
        "{}",
        &[],
        90.0,
    );
    // A webhook goes through the HTTP client, never the Kubernetes API.
    let (kube, server) = executor(vec![]);
    let err = run_any(&kube, &notify.0, &notify.1)
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, automaton::actions::ActionError::Http(_)), "{err}");
    drop(kube);
    server.await.expect("no Kubernetes request");

    // On a spawned task, as the daemon runs it: the future is Send.
    let (executor, server) = executor(vec![]);
    let (rule, mut decision) = scale_to(6, 1);
    decision.dry_run = true;
    let outcome = tokio::spawn(async move { run(&executor, &rule, &decision).await })
        .await
        .expect("the task ran")
        .expect("a skip");
    server.await.expect("no request");
    assert_eq!(outcome.skipped, Some(SkipReason::DryRun));
}

/// A local port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

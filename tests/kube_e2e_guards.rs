//! The whole binary against the fake API server: three Deployments whose pods are OOM
//! killed at once. The one annotated `automaton.dev/paused: "true"` and the one Flux applies
//! (with GITOPS_POLICY=skip) are read, recognised and left alone with their reasons; the
//! plain one is healed. The workloads are read with the namespace's HPA list.

mod common;

use std::time::Duration;

use common::scenario::{oom_scenario, OOM_RULES};
use common::{eventually, Automaton, FakeKube};
use serde_json::Value;

fn is_patch_of(r: &Value, deployment: &str) -> bool {
    r["method"] == "PATCH" && r["path"] == format!("/apis/apps/v1/namespaces/prod/deployments/{deployment}")
}

/// `oom_scenario(3)` with app-0 paused, app-1 applied by a Flux Kustomization and an HPA on
/// app-2 (which owns its replicas, not its memory).
fn scenario() -> String {
    let plain = |i: u32| {
        format!("metadata: {{name: app-{i}, uid: 00000000-0000-0000-0000-{i:012}, labels: {{app: app-{i}}}}}")
    };
    let mut y = oom_scenario(3, 2.0, 0.0);
    for (i, extra) in [
        (0, "annotations: {automaton.dev/paused: \"true\"}, labels: {app: app-0}"),
        (
            1,
            "labels: {app: app-1, kustomize.toolkit.fluxcd.io/name: apps, kustomize.toolkit.fluxcd.io/namespace: flux-system}",
        ),
    ] {
        let with = format!("metadata: {{name: app-{i}, uid: 00000000-0000-0000-0000-{i:012}, {extra}}}");
        assert!(y.contains(&plain(i)), "the scenario's Deployment app-{i} changed shape");
        y = y.replacen(&plain(i), &with, 1);
    }
    let hpa = r#"  - apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    metadata: {name: app-2}
    spec:
      scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: app-2}
      minReplicas: 1
      maxReplicas: 10
      metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
events:
"#;
    y.replacen("events:\n", hpa, 1)
}

/// Whether the log has a skip of the rule on `prod/deployment/NAME` with `reason`.
fn skipped(a: &Automaton, deployment: &str, reason: &str) -> bool {
    let target = format!("\"target\":\"prod/deployment/{deployment}\"");
    let reason = format!("\"reason\":\"{reason}\"");
    a.logs()
        .lines()
        .any(|l| l.contains("\"message\":\"action skipped\"") && l.contains(&target) && l.contains(&reason))
}

#[test]
fn paused_and_gitops_workloads_are_left_alone_and_the_plain_one_is_healed() {
    let fake = FakeKube::start(&scenario());
    let dir = fake.dir.path().join("rules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("oom.yaml"), OOM_RULES).unwrap();
    let a = Automaton::start(
        &fake.kubeconfig,
        &dir,
        "automaton-a",
        &[("GITOPS_POLICY", "skip")],
    );

    fake.wait_for("the memory patch of app-2", Duration::from_secs(60), |r| {
        is_patch_of(r, "app-2")
    });
    eventually("the skips of app-0 and app-1", Duration::from_secs(30), || {
        (skipped(&a, "app-0", "paused") && skipped(&a, "app-1", "gitops")).then_some(())
    });
    let requests = fake.requests();
    for left_alone in ["app-0", "app-1"] {
        assert!(
            !requests.iter().any(|r| is_patch_of(r, left_alone)),
            "{left_alone} was written"
        );
    }
    assert!(
        requests.iter().any(|r| r["method"] == "GET"
            && r["path"] == "/apis/autoscaling/v2/namespaces/prod/horizontalpodautoscalers"),
        "the HPAs were listed"
    );
    assert!(
        a.logs()
            .lines()
            .any(|l| l.contains("flux kustomization: flux-system/apps")),
        "the skip names the tool"
    );
}

//! Builds fakekube scenarios: Deployments that own a ReplicaSet that owns one pod each, and a
//! timeline of OOM kills of those pods.

use std::fmt::Write;

/// `n` Deployments `app-0..n` (2 replicas, container `app` 512Mi/1Gi), each with a
/// ReplicaSet and one running pod labelled for healing; pod `i` is OOMKilled at
/// `first + i * gap` seconds after the automaton's first watch.
pub fn oom_scenario(n: usize, first: f64, gap: f64) -> String {
    let mut y = String::from("namespace: prod\nclock: first_watch\nbookmark_interval: 5\nobjects:\n");
    for i in 0..n {
        let _ = write!(
            y,
            r#"  - apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: app-{i}, uid: 00000000-0000-0000-0000-{i:012}, labels: {{app: app-{i}}}}}
    spec:
      replicas: 2
      selector: {{matchLabels: {{app: app-{i}}}}}
      template:
        metadata: {{labels: {{app: app-{i}, automaton.dev/heal: "true"}}}}
        spec:
          containers:
            - {{name: app, image: "registry.example/app:1.0", resources: {{requests: {{memory: 512Mi}}, limits: {{memory: 1Gi}}}}}}
    status: {{replicas: 2, readyReplicas: 2, observedGeneration: 1}}
  - apiVersion: apps/v1
    kind: ReplicaSet
    metadata:
      name: app-{i}-5d8f7
      labels: {{app: app-{i}, pod-template-hash: 5d8f7}}
      ownerReferences: [{{apiVersion: apps/v1, kind: Deployment, name: app-{i}, uid: 00000000-0000-0000-0000-{i:012}, controller: true}}]
    spec: {{replicas: 2, selector: {{matchLabels: {{app: app-{i}}}}}}}
  - apiVersion: v1
    kind: Pod
    metadata:
      name: app-{i}-5d8f7-x{i}
      labels: {{app: app-{i}, automaton.dev/heal: "true", pod-template-hash: 5d8f7}}
      ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: app-{i}-5d8f7, uid: 10000000-0000-0000-0000-{i:012}, controller: true}}]
    spec: {{containers: [{{name: app, image: "registry.example/app:1.0"}}]}}
    status:
      phase: Running
      containerStatuses: [{{name: app, ready: true, restartCount: 0, image: "registry.example/app:1.0", imageID: "", state: {{running: {{startedAt: "{start}"}}}}}}]
"#,
            start = super::rfc3339_ago(3600),
        );
    }
    y.push_str("events:\n");
    for i in 0..n {
        let after = first + gap * i as f64;
        let _ = write!(
            y,
            r#"  - after: {after}
    type: MODIFIED
    kind: Pod
    name: app-{i}-5d8f7-x{i}
    patch:
      status:
        containerStatuses:
          - name: app
            ready: false
            restartCount: 1
            image: "registry.example/app:1.0"
            imageID: ""
            state: {{running: {{startedAt: "{now}"}}}}
            lastState: {{terminated: {{exitCode: 137, reason: OOMKilled, startedAt: "{start}", finishedAt: "{now}", containerID: "containerd://{i:064}"}}}}
"#,
            start = super::rfc3339_ago(3600),
            now = super::rfc3339_ago(0),
        );
    }
    y
}

/// The rule of these tests: an OOM kill of a labelled pod doubles its memory.
pub const OOM_RULES: &str = r#"rules:
  - name: oom
    priority: critical
    signal: {pod_oom_killed: {selector: "automaton.dev/heal=true"}}
    when: "> 0"
    action: {raise_memory: {target: owner}}
    cooldown: 10m
"#;

/// Deployments of one replica each, named `names` (label `app: NAME`), for rules that act on
/// a workload a signal names (`prometheus`, `alert`).
pub fn deployments(names: &[&str]) -> String {
    let mut y = String::from("namespace: prod\nclock: start\nobjects:\n");
    for name in names {
        let _ = write!(
            y,
            "  - apiVersion: apps/v1\n    kind: Deployment\n    metadata: {{name: {name}, labels: {{app: {name}}}}}\n    spec:\n      replicas: 1\n      selector: {{matchLabels: {{app: {name}}}}}\n      template:\n        metadata: {{labels: {{app: {name}}}}}\n        spec: {{containers: [{{name: {name}, image: x}}]}}\n"
        );
    }
    y
}

//! The shipped packs end to end through the binary: the shipped rule file (only its
//! `for: 5m` shortened; the timelines in tests/timelines pin the hold), the fake API server
//! with scripted `pods/exec`, and for the Prometheus packs a real Prometheus scraping what
//! the kubelet, cAdvisor and kube-state-metrics would expose (served here).
//!
//! - disk (rules/disk.yaml): the log volume mounted at DISK_PATH over its threshold cleans
//!   old logs in every labelled pod with the shipped argv, once; a pod whose `find` exits 1
//!   is reported as failed beside the one cleaned.
//! - volumes (rules/volumes.yaml): a claim over DISK_SPACE_THRESHOLD% gets old logs cleaned
//!   in the labelled pods that mount it, with exactly the shipped argv, once per claim; a
//!   command that exits 1 is a failed action with its stderr, never a success.
//! - memory (rules/memory.yaml): a container near its limit gets its Deployment's memory
//!   raised, the Deployment found through the pod's owner chain (pod → ReplicaSet →
//!   Deployment) from the `pod` label alone.

mod common;

use std::time::{Duration, Instant};

use common::prometheus::{Exporter, Prometheus};
use common::scenario::oom_scenario;
use common::{eventually, Automaton, FakeKube};
use serde_json::Value;

const ARGV: [&str; 9] = [
    "find",
    "/var/log/app",
    "-name",
    "*.log",
    "-type",
    "f",
    "-mtime",
    "+6",
    "-delete",
];

/// The shipped pack `file`, acting after one reading instead of five minutes.
fn shipped_rules(dir: &std::path::Path, file: &str) -> std::path::PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("rules")
            .join(file),
    )
    .expect("the shipped pack");
    assert!(text.contains("    for: 5m\n"), "{file} holds for 5m");
    std::fs::write(rules.join(file), text.replace("    for: 5m\n", "    for: 0s\n")).expect("write");
    rules
}

/// `kubelet_volume_stats_*` of claims in `prod` (and one in `staging`, whose same-named
/// claim is not ours), as used percent of a 100 GB capacity.
fn volume_stats(used: &[(&str, &str, u64)]) -> String {
    let mut body = String::from(
        "# TYPE kubelet_volume_stats_used_bytes gauge\n# TYPE kubelet_volume_stats_capacity_bytes gauge\n",
    );
    for (namespace, claim, percent) in used {
        let labels = format!("namespace=\"{namespace}\",persistentvolumeclaim=\"{claim}\"");
        body.push_str(&format!(
            "kubelet_volume_stats_used_bytes{{{labels}}} {}\nkubelet_volume_stats_capacity_bytes{{{labels}}} 100000000000\n",
            percent * 1_000_000_000
        ));
    }
    body
}

/// A running pod with container `app`, mounting `claim`, labelled for healing or not.
fn pod(name: &str, claim: &str, heal: bool) -> String {
    let label = if heal {
        ", automaton.dev/heal: \"true\""
    } else {
        ""
    };
    format!(
        "  - apiVersion: v1\n    kind: Pod\n    metadata: {{name: {name}, labels: {{app: web{label}}}}}\n    spec:\n      containers: [{{name: app, image: x}}]\n      volumes: [{{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}]\n    status: {{phase: Running}}\n"
    )
}

fn execs(fake: &FakeKube) -> Vec<(String, Value)> {
    fake.requests()
        .into_iter()
        .filter_map(|r| {
            let argv = r.get("exec_command")?.clone();
            let pod = r["path"].as_str()?.split('/').nth(6)?.to_owned();
            Some((pod, argv))
        })
        .collect()
}

#[test]
fn the_disk_pack_cleans_logs_in_every_labelled_pod_once() {
    let mut scenario = String::from("namespace: prod\nclock: start\nobjects:\n");
    scenario.push_str(&pod("web-0", "data-web-0", true));
    scenario.push_str(&pod("web-1", "data-web-1", true));
    scenario.push_str(&pod("backup-0", "data-web-0", false));
    scenario
        .push_str("exec:\n  web-1: {stderr: \"find: '/var/log/app': Permission denied\\n\", exit_code: 1}\n");
    let fake = FakeKube::start(&scenario);
    let rules = shipped_rules(fake.dir.path(), "disk.yaml");
    // The "log volume": a directory of this machine, which holds something, so its usage is
    // over a threshold of 0%.
    let volume = fake.dir.path().display().to_string();
    let a = Automaton::start(
        &fake.kubeconfig,
        &rules,
        "automaton-a",
        &[("DISK_PATH", volume.as_str()), ("DISK_SPACE_THRESHOLD", "0")],
    );
    let done =
        r#"healing_actions_total{action="clean_logs",dry_run="false",rule="disk-space",success="true"}"#;
    eventually("the clean recorded", Duration::from_secs(60), || {
        a.metric(done).filter(|n| *n >= 1.0)
    });
    // The outcome's log line is written just after the metric counts it: wait for it too.
    let summary = "in /var/log/app in 1 of 2 running pod(s) (pods matching `automaton.dev/heal=true`)";
    let logged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("the clean logged", Duration::from_secs(10), || {
            a.logs().contains(summary).then_some(())
        })
    }));
    let logs = a.logs();
    assert!(logged.is_ok(), "one cleaned, one failed: {logs}");
    assert!(
        logs.contains("web-1: ") && logs.contains("Permission denied"),
        "{logs}"
    );

    let checks = || {
        a.metric(r#"healing_checks_total{rule="disk-space"}"#)
            .unwrap_or(0.0)
    };
    let seen = checks();
    eventually("three more ticks", Duration::from_secs(30), || {
        (checks() >= seen + 3.0).then_some(())
    });
    let mut seen_execs = execs(&fake);
    seen_execs.sort_by(|a, b| a.0.cmp(&b.0));
    let pods: Vec<&str> = seen_execs.iter().map(|(pod, _)| pod.as_str()).collect();
    assert_eq!(
        pods,
        ["web-0", "web-1"],
        "every labelled pod once, within the cooldown"
    );
    for (pod, argv) in &seen_execs {
        assert_eq!(*argv, serde_json::json!(ARGV), "{pod}");
    }
}

#[test]
fn the_volume_pack_cleans_logs_in_the_pods_of_a_full_claim_once() {
    let exporter = Exporter::start(&volume_stats(&[
        ("prod", "data-web-0", 50),
        ("prod", "data-web-1", 40),
        ("prod", "data-logs-0", 95),
        ("staging", "data-web-1", 99),
    ]));
    let prometheus = Prometheus::start(&exporter);
    prometheus.wait_for_series("kubelet_volume_stats_used_bytes", 4);
    let mut scenario = String::from("namespace: prod\nclock: start\nobjects:\n");
    scenario.push_str(&pod("web-0", "data-web-0", true));
    scenario.push_str(&pod("web-1", "data-web-1", true));
    scenario.push_str(&pod("logs-0", "data-logs-0", true));
    // Mounts the full claim but did not opt in: never touched.
    scenario.push_str(&pod("backup-0", "data-web-0", false));
    scenario.push_str(
        "exec:\n  logs-0: {stderr: \"find: '/var/log/app': Permission denied\\n\", exit_code: 1}\n  web-0: {stdout: \"\", exit_code: 0, delay: 0.05}\n",
    );
    let fake = FakeKube::start(&scenario);
    let rules = shipped_rules(fake.dir.path(), "volumes.yaml");
    let url = prometheus.url();
    let a = Automaton::start(
        &fake.kubeconfig,
        &rules,
        "automaton-a",
        &[("PROMETHEUS_URL", url.as_str())],
    );

    // The failure path: logs-0's claim is full from the start, and its `find` exits 1.
    let failed =
        r#"healing_actions_total{action="clean_logs",dry_run="false",rule="volume-space",success="false"}"#;
    eventually("the failed clean of data-logs-0", Duration::from_secs(60), || {
        a.metric(failed).filter(|n| *n >= 1.0)
    });
    // The outcome's log line is written just after the metric counts it: wait for it too.
    let logged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("the failed clean logged", Duration::from_secs(10), || {
            a.logs().contains("no pod was cleaned").then_some(())
        })
    }));
    let logs = a.logs();
    assert!(logged.is_ok(), "{logs}");
    assert!(
        logs.contains("Permission denied"),
        "the stderr is in the log: {logs}"
    );

    // data-web-0 crosses the threshold in Prometheus: from the exporter to the exec.
    let crossed = Instant::now();
    exporter.set(&volume_stats(&[
        ("prod", "data-web-0", 92),
        ("prod", "data-web-1", 40),
        ("prod", "data-logs-0", 95),
        ("staging", "data-web-1", 99),
    ]));
    let exec = fake.wait_for("the exec into web-0", Duration::from_secs(30), |r| {
        r.get("exec_command").is_some() && r["path"] == "/api/v1/namespaces/prod/pods/web-0/exec"
    });
    let latency = crossed.elapsed();
    eprintln!(
        "claim over its threshold in the exporter → the exec: {latency:?} (scrape 1 s, CHECK_INTERVAL 1 s)"
    );
    assert_eq!(exec["exec_command"], serde_json::json!(ARGV), "{exec}");
    assert_eq!(exec["query"]["container"], "app", "{exec}");
    let succeeded =
        r#"healing_actions_total{action="clean_logs",dry_run="false",rule="volume-space",success="true"}"#;
    eventually(
        "the clean of data-web-0 recorded",
        Duration::from_secs(30),
        || a.metric(succeeded).filter(|n| *n >= 1.0),
    );

    // More ticks with everything unchanged: each claim's cooldown holds.
    let checks = || {
        a.metric(r#"healing_checks_total{rule="volume-space"}"#)
            .unwrap_or(0.0)
    };
    let seen = checks();
    eventually("three more ticks", Duration::from_secs(30), || {
        (checks() >= seen + 3.0).then_some(())
    });
    let mut pods: Vec<String> = execs(&fake).into_iter().map(|(pod, _)| pod).collect();
    pods.sort();
    assert_eq!(
        pods,
        ["logs-0", "web-0"],
        "one exec per full claim, only into labelled pods mounting it; data-web-1 of staging is not ours"
    );
    assert_eq!(a.metric(succeeded), Some(1.0));
    assert_eq!(a.metric(failed), Some(1.0));
}

#[test]
fn the_memory_pack_raises_the_memory_of_the_workload_owning_the_pod() {
    // Deployments app-0 and app-1, each owning a ReplicaSet owning one pod (container `app`,
    // limit 1Gi); no kill ever happens.
    let scenario = oom_scenario(2, 1e9, 0.0);
    let gib = 1024.0 * 1024.0 * 1024.0;
    let memory = |app0: f64| {
        let mut body = String::from(
            "# TYPE container_memory_working_set_bytes gauge\n# TYPE kube_pod_container_resource_limits gauge\n",
        );
        for (i, used) in [(0, app0), (1, 0.4)] {
            let pod = format!("namespace=\"prod\",pod=\"app-{i}-5d8f7-x{i}\",container=\"app\"");
            body.push_str(&format!(
                "container_memory_working_set_bytes{{{pod}}} {}\nkube_pod_container_resource_limits{{{pod},resource=\"memory\",unit=\"byte\"}} {gib}\n",
                used * gib
            ));
        }
        body
    };
    let exporter = Exporter::start(&memory(0.5));
    let prometheus = Prometheus::start(&exporter);
    let fake = FakeKube::start(&scenario);
    let rules = shipped_rules(fake.dir.path(), "memory.yaml");
    let url = prometheus.url();
    let a = Automaton::start(
        &fake.kubeconfig,
        &rules,
        "automaton-a",
        &[("PROMETHEUS_URL", url.as_str())],
    );
    prometheus.wait_for_series("kube_pod_container_resource_limits", 2);
    let evaluated = r#"healing_checks_total{rule="memory-high"}"#;
    eventually("the rule evaluated", Duration::from_secs(60), || {
        a.metric(evaluated).filter(|v| *v >= 1.0)
    });

    let crossed = Instant::now();
    exporter.set(&memory(0.93));
    let path = "/apis/apps/v1/namespaces/prod/deployments/app-0";
    let patch = fake.wait_for("the memory of app-0", Duration::from_secs(30), |r| {
        r["method"] == "PATCH" && r["path"] == path
    });
    eprintln!(
        "working set over its threshold in the exporter → the PATCH: {:?} (scrape 1 s, CHECK_INTERVAL 1 s)",
        crossed.elapsed()
    );
    let container = &patch["body"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "app", "{patch}");
    assert_eq!(container["resources"]["limits"]["memory"], "1536Mi", "{patch}");
    let checks = || {
        a.metric(r#"healing_checks_total{rule="memory-high"}"#)
            .unwrap_or(0.0)
    };
    let seen = checks();
    eventually("three more ticks", Duration::from_secs(30), || {
        (checks() >= seen + 3.0).then_some(())
    });
    let patches: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "PATCH" && r["path"].as_str().is_some_and(|p| p.contains("/deployments/")))
        .collect();
    assert_eq!(patches.len(), 1, "app-0 once, app-1 (40%) never: {patches:?}");
}

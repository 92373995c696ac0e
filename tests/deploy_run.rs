//! The install as `kubectl apply -k` makes it, run for real: `kubectl kustomize deploy/`
//! (and the production overlay) is rendered, and the binary is started with exactly the
//! rendered container's args, environment (its `env`, with fieldRefs and secretKeyRefs
//! resolved as the kubelet would, and the `envFrom` ConfigMap) and rule ConfigMap, against
//! `../shared/tools/fakekube.py`. With Kafka, PostgreSQL and a Solana validator absent, it
//! must become Ready (`/readyz` 200) within 30 s: readiness means "can do its job", the
//! sources that do not answer are listed, not a reason, and rules whose dependency is not
//! configured are disabled.

mod common;
mod deploy_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get as get, FakeKube};
use deploy_support::{deploy, kubectl_kustomize};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;

/// The namespace and pod the kubelet would give the container.
const NAMESPACE: &str = "prod";
const POD_NAME: &str = "self-healing-automaton-7d9c5b6f4-x2x9q";
/// The Secret the production overlay reads, as an operator would have created it.
const PG_PASSWORD: &str = "pg-Secret-4f1d9a";

/// What one run of the rendered install showed.
struct Run {
    /// `/readyz`'s body once it answered 200.
    ready: serde_json::Value,
    status: String,
    metrics: String,
    logs: String,
}

#[test]
fn the_rendered_base_becomes_ready_without_kafka_postgres_or_a_validator() {
    let Some(run) = run_rendered(&deploy(), &BTreeMap::new()) else {
        eprintln!("kubectl is not on PATH: the rendered install is not run");
        return;
    };
    assert_eq!(run.ready["ready"], true, "{}", run.ready);
    // The base ships the pod pack only, which needs nothing but the Kubernetes API: nothing
    // is degraded, nothing disabled.
    assert_eq!(run.ready, serde_json::json!({"ready": true}));
    let status: serde_json::Value = serde_json::from_str(&run.status).expect("JSON");
    let names = rule_names(&status);
    assert_eq!(
        names,
        ["pod-oom-killed", "pod-restart-loop", "pod-restarting"],
        "{}",
        run.logs
    );
    assert_eq!(status["disabled_rules"], serde_json::json!([]));
    assert!(
        run.metrics.contains("automaton_rules_disabled 0"),
        "{}",
        run.metrics
    );
}

#[test]
fn the_rendered_production_overlay_becomes_ready_with_its_dependencies_down() {
    let secrets = BTreeMap::from([(
        (
            "self-healing-credentials".to_owned(),
            "POSTGRES_PASSWORD".to_owned(),
        ),
        PG_PASSWORD.to_owned(),
    )]);
    let Some(run) = run_rendered(&deploy().join("overlays/production"), &secrets) else {
        eprintln!("kubectl is not on PATH: the rendered install is not run");
        return;
    };
    assert_eq!(run.ready["ready"], true, "{}", run.ready);
    // Kafka and PostgreSQL are configured but do not answer (their Services do not exist
    // here): listed, not a reason to be unready; the engine does not act on them.
    let degraded = run.ready["degraded"].to_string();
    for source in ["kafka", "postgres"] {
        assert!(degraded.contains(source), "{source} missing from {degraded}");
    }
    let status: serde_json::Value = serde_json::from_str(&run.status).expect("JSON");
    let names = rule_names(&status);
    for rule in [
        "kafka-consumer-lag",
        "postgres-connections",
        "pod-oom-killed",
        "pod-restart-loop",
    ] {
        assert!(names.contains(&rule), "{rule} not running: {names:?}");
    }
    // The seed's priorities.
    let priority = |name: &str| {
        status["rules"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["name"] == name))
            .map(|r| r["priority"].clone())
    };
    assert_eq!(priority("pod-oom-killed"), Some("critical".into()));
    assert_eq!(priority("pod-restart-loop"), Some("critical".into()));
    assert_eq!(priority("kafka-consumer-lag"), Some("high".into()));
    assert_eq!(priority("postgres-connections"), Some("high".into()));
    assert_eq!(priority("pod-restarting"), Some("low".into()));
    assert_eq!(
        priority("disk-space").unwrap_or_else(|| "medium".into()),
        "medium"
    );
    // The log volume is not mounted on this machine: the disk rule says so instead of
    // measuring another filesystem.
    if !Path::new("/var/log/app").exists() {
        let disabled = status["disabled_rules"].to_string();
        assert!(
            disabled.contains("disk-space") && disabled.contains("/var/log/app"),
            "{disabled}"
        );
    }
    // The password reached the daemon (PostgreSQL is configured) and nothing shows it.
    for (what, text) in [
        ("/status", &run.status),
        ("/metrics", &run.metrics),
        ("the log", &run.logs),
    ] {
        assert!(!text.contains(PG_PASSWORD), "the PostgreSQL password in {what}");
    }
}

/// The names of the rules `/status` shows as running.
fn rule_names(status: &serde_json::Value) -> Vec<&str> {
    status["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect()
}

/// Renders `dir` with `kubectl kustomize` and runs the binary as the kubelet would run its
/// container, until `/readyz` is 200 (30 s at most). `secrets` answers secretKeyRefs,
/// by (Secret, key). `None` when kubectl is not installed.
fn run_rendered(dir: &Path, secrets: &BTreeMap<(String, String), String>) -> Option<Run> {
    let rendered = kubectl_kustomize(dir)?;
    let mut deployments = Vec::new();
    let mut config_maps = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let value = serde_yaml::Value::deserialize(doc).expect("a YAML document");
        match value["kind"].as_str() {
            Some("Deployment") => {
                deployments.push(serde_yaml::from_value::<Deployment>(value).expect("a Deployment"))
            }
            Some("ConfigMap") => {
                let cm: ConfigMap = serde_yaml::from_value(value).expect("a ConfigMap");
                config_maps.insert(
                    cm.metadata.name.clone().expect("a name"),
                    cm.data.unwrap_or_default(),
                );
            }
            _ => {}
        }
    }
    let [deployment] = &deployments[..] else {
        panic!("one Deployment, found {}", deployments.len());
    };
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec");
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == "automaton")
        .expect("the automaton container");

    // The rule ConfigMap, mounted where the container mounts it: here, a directory of ours.
    let dir = tempfile::tempdir().expect("a temp dir");
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "rules")
        .expect("the rules mount");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "rules")
        .and_then(|v| v.config_map.as_ref())
        .expect("the rules volume");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("the rules directory");
    for (file, text) in &config_maps[&volume.name] {
        std::fs::write(rules_dir.join(file), text).expect("a rule file");
    }

    // The environment: envFrom's ConfigMaps, then `env` (fieldRefs as the kubelet resolves
    // them), the mount path replaced by our directory.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let name = &from.config_map_ref.as_ref().expect("a configMapRef").name;
        env.extend(config_maps[name].clone());
    }
    for var in container.env.iter().flatten() {
        let value = match (
            &var.value,
            var.value_from.as_ref().and_then(|f| f.field_ref.as_ref()),
        ) {
            (Some(value), _) => value.clone(),
            (None, Some(field)) if field.field_path == "metadata.namespace" => NAMESPACE.to_owned(),
            (None, Some(field)) if field.field_path == "metadata.name" => POD_NAME.to_owned(),
            (None, None) => {
                let Some(secret) = var.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref()) else {
                    panic!("an env var this test cannot resolve: {}", var.name);
                };
                match secrets.get(&(secret.name.clone(), secret.key.clone())) {
                    Some(value) => value.clone(),
                    // The kubelet leaves an optional variable out when its key is missing.
                    None if secret.optional == Some(true) => continue,
                    None => panic!("no Secret {}/{} for {}", secret.name, secret.key, var.name),
                }
            }
            other => panic!("an env var this test cannot resolve: {} {other:?}", var.name),
        };
        env.insert(var.name.clone(), value);
    }
    assert_eq!(env.get("RULES_DIR"), Some(&mount.mount_path));
    env.insert("RULES_DIR".into(), rules_dir.display().to_string());
    // Outside a pod: a kubeconfig instead of the service account, a free port instead of
    // 8000 (the probes' port is checked in tests/deploy.rs).
    // The first pod list answers 2 s late, after the first evaluation: CHECK_INTERVAL is 60
    // in the rendered ConfigMap, and readiness must not wait a minute for the next tick.
    let scenario = format!(
        "namespace: {NAMESPACE}\nobjects: []\nfaults:\n  - {{method: GET, path_regex: '/pods$', query_regex: '^(?!.*watch=true)', delay: 2, times: 1}}\n"
    );
    let fake = FakeKube::start(&scenario);
    env.insert("KUBECONFIG".into(), fake.kubeconfig.display().to_string());
    let port = free_port();
    env.insert("LISTEN_ADDR".into(), format!("127.0.0.1:{port}"));
    // Tests run side by side: any free port for the admin listener too.
    env.insert("ADMIN_ADDR".into(), "127.0.0.1:0".into());
    env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());

    let args = container.args.clone().unwrap_or_default();
    assert_eq!(args, ["run"]);
    let log = dir.path().join("automaton.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_automaton"))
        .args(&args)
        .env_clear()
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("the automaton starts");

    let started = Instant::now();
    let mut last = None;
    let ready = loop {
        let answer = get(port, "/readyz");
        if answer.as_ref().is_some_and(|(code, _)| *code == 200) {
            break answer.map(|(_, body)| body);
        }
        last = answer;
        if started.elapsed() > Duration::from_secs(30) || child.try_wait().ok().flatten().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = get(port, "/status").map(|(_, body)| body).unwrap_or_default();
    let metrics = get(port, "/metrics").map(|(_, body)| body).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let body = ready.unwrap_or_else(|| panic!("not Ready within 30 s: {last:?}\n{logs}"));
    Some(Run {
        ready: serde_json::from_str(&body).expect("JSON"),
        status,
        metrics,
        logs,
    })
}

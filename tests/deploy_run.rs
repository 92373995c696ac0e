//! The install as `kubectl apply -k deploy/` makes it, run for real: `kubectl kustomize
//! deploy/` is rendered, and the binary is started with exactly the rendered container's
//! args, environment (its `env` and the `envFrom` ConfigMap) and rule ConfigMap, against
//! `../shared/tools/fakekube.py`. With Kafka, PostgreSQL and a Solana validator absent, it
//! must become Ready (`/readyz` 200) within 30 s: readiness means "can do its job", and the
//! sources that do not answer are listed, not a reason.

mod common;
mod deploy_support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::FakeKube;
use deploy_support::{deploy, kubectl_kustomize};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;

/// The namespace and pod the kubelet would give the container.
const NAMESPACE: &str = "prod";
const POD_NAME: &str = "self-healing-automaton-7d9c5b6f4-x2x9q";

#[test]
fn the_rendered_base_becomes_ready_without_kafka_postgres_or_a_validator() {
    let Some(rendered) = kubectl_kustomize(&deploy()) else {
        eprintln!("kubectl is not on PATH: the rendered install is not run");
        return;
    };
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port();
    env.insert("LISTEN_ADDR".into(), format!("127.0.0.1:{port}"));
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
    let _ = child.kill();
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let body = ready.unwrap_or_else(|| panic!("not Ready within 30 s: {last:?}\n{logs}"));
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ready["ready"], true, "{body}");
    // What does not answer is said (no validator listens on 127.0.0.1:8899) and did not
    // keep the pod unready; Kafka and PostgreSQL are not configured, so their rules are
    // disabled, never evaluated, with the setting that would enable them in the log.
    let degraded = ready["degraded"].to_string();
    assert!(degraded.contains("solana_rpc"), "{degraded}");
    assert!(
        !degraded.contains("kafka") && !degraded.contains("postgres"),
        "{degraded}"
    );
    for setting in ["KAFKA_BOOTSTRAP_SERVERS", "POSTGRES_HOST"] {
        assert!(
            logs.contains(setting),
            "no disabled-rule line naming {setting}:\n{logs}"
        );
    }
}

/// `GET` on the daemon's port: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((code, body))
}

//! The monitoring kit (deploy/components/monitoring), checked with the real tools: the
//! PrometheusRule's alerts pass `promtool check rules` and `promtool test rules`
//! (tests/monitoring/alerts.test.yaml: one test per alert), each links an existing section
//! of docs/runbook.md, the dashboard's queries parse, and every metric the alerts and the
//! dashboard name is exported by a running daemon.

mod common;
mod deploy_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{free_port, http_get};
use deploy_support::{deploy, kubectl_kustomize, relative, repo};

fn kit() -> PathBuf {
    repo().join("deploy/components/monitoring")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The PrometheusRule's `spec`: a Prometheus rule file.
fn rule_groups() -> serde_yaml::Value {
    let rule: serde_yaml::Value =
        serde_yaml::from_str(&read(&kit().join("prometheusrule.yaml"))).expect("YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    rule["spec"].clone()
}

fn alerts() -> Vec<serde_yaml::Value> {
    let spec = rule_groups();
    let groups = spec["groups"].as_sequence().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read(&kit().join("dashboard.json"))).expect("the dashboard is JSON")
}

/// Every query of the dashboard.
fn dashboard_queries() -> Vec<String> {
    let d = dashboard();
    let panels = d["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("an expr").to_owned())
        .collect()
}

fn promtool(dir: &Path, args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is not installed: run scripts/deps.sh (Debian `prometheus`)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_alerts_and_runs_a_test_for_each() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(
        dir.path().join("alerts.rules.yaml"),
        serde_yaml::to_string(&rule_groups()).expect("YAML"),
    )
    .expect("write the rules");
    let tests = read(&repo().join("tests/monitoring/alerts.test.yaml"));
    std::fs::write(dir.path().join("alerts.test.yaml"), &tests).expect("write the tests");
    promtool(dir.path(), &["check", "rules", "alerts.rules.yaml"]);
    promtool(dir.path(), &["test", "rules", "alerts.test.yaml"]);

    let runbook = read(&repo().join("docs/runbook.md"));
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let tested: BTreeSet<String> = tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("alertname: "))
        .map(str::to_owned)
        .collect();
    let alerts = alerts();
    let names: BTreeSet<String> = alerts
        .iter()
        .map(|a| a["alert"].as_str().expect("an alert name").to_owned())
        .collect();
    // The list: no leader, a source down, reloads failing, actions failing, a
    // quarantine, the budget exhausted, a breaker open; and the automaton gone.
    for expected in [
        "AutomatonDown",
        "AutomatonNoLeader",
        "AutomatonSignalSourceDown",
        "AutomatonRulesReloadFailing",
        "AutomatonActionsFailing",
        "AutomatonQuarantined",
        "AutomatonBudgetExhausted",
        "AutomatonCircuitOpen",
    ] {
        assert!(names.contains(expected), "{expected} missing");
    }
    assert_eq!(
        tested, names,
        "a promtool test per alert, and none for an alert that is not there"
    );
    for a in &alerts {
        let name = a["alert"].as_str().expect("a name");
        let url = a["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no runbook_url"));
        let anchor = url
            .strip_prefix("docs/runbook.md#")
            .unwrap_or_else(|| panic!("{name}: {url} is not a docs/runbook.md section"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: its own section");
        assert!(
            sections.contains(anchor),
            "{name}: docs/runbook.md has no `## {name}`"
        );
        for key in ["summary", "description"] {
            assert!(
                a["annotations"][key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        assert!(a["labels"]["severity"].as_str().is_some(), "{name}: no severity");
    }
}

#[test]
fn the_shipped_prometheus_rule_queries_parse() {
    let set = automaton::rules::load(&[repo().join("rules")], &|_| None).expect("the shipped rules load");
    let queries: Vec<Value> = set
        .rules
        .iter()
        .filter_map(|r| match &r.spec.signal {
            automaton::signals::SignalSpec::Prometheus(p) => Some(p.query.clone()),
            _ => None,
        })
        .enumerate()
        .map(|(i, q)| serde_json::json!({"record": format!("shipped:query_{i}"), "expr": q}))
        .collect();
    assert!(!queries.is_empty(), "the memory pack queries Prometheus");
    let file = serde_json::json!({"groups": [{"name": "shipped", "rules": queries}]});
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("shipped.rules.yaml"), file.to_string()).expect("write");
    promtool(dir.path(), &["check", "rules", "shipped.rules.yaml"]);
}

#[test]
fn the_dashboard_queries_parse_and_cover_what_operators_ask() {
    let queries = dashboard_queries();
    // Grafana's variables as Prometheus would see them once Grafana substituted them.
    let groups: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let expr = q.replace("$__rate_interval", "5m").replace("$namespace", ".*");
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": groups}]});
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("dashboard.rules.yaml"), file.to_string()).expect("write");
    promtool(dir.path(), &["check", "rules", "dashboard.rules.yaml"]);

    let all = queries.join("\n");
    // Actions by rule and outcome, skips by reason, values against thresholds, breakers,
    // verifications, tick duration.
    for metric in [
        "healing_actions_total",
        "automaton_action_outcomes_total",
        "automaton_skips_total",
        "automaton_signal_value",
        "automaton_rule_threshold",
        "automaton_circuit_breaker_state",
        "automaton_verifications_total",
        "automaton_tick_duration_seconds_bucket",
    ] {
        assert!(all.contains(metric), "the dashboard does not show {metric}");
    }
    let d = dashboard();
    assert_eq!(d["uid"], "automaton");
    let kustomization = read(&kit().join("kustomization.yaml"));
    assert!(
        kustomization.contains("grafana_dashboard: \"1\""),
        "the Grafana sidecar's label"
    );
}

/// Metric names in PromQL: ours all start with `automaton_` or `healing_`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices(['a', 'h']) {
        let rest = &text[start..];
        if !(rest.starts_with("automaton_") || rest.starts_with("healing_")) {
            continue;
        }
        if start > 0 && text[..start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

/// A receiver that answers 200 to every request, for the rule's action.
fn receiver() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("an address").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    port
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_name_is_exported_by_a_running_daemon() {
    let mut wanted = BTreeSet::new();
    for a in alerts() {
        wanted.extend(metric_names(a["expr"].as_str().expect("an expr")));
    }
    for q in dashboard_queries() {
        wanted.extend(metric_names(&q));
    }
    assert!(wanted.len() >= 15, "{wanted:?}");

    // A daemon that acts (a disk rule always above 0, an HTTP action), reads a source that
    // is down (a validator RPC on a closed port) and has nothing else configured.
    let dir = tempfile::tempdir().expect("a temp dir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("a rules dir");
    let admin = receiver();
    let closed = free_port();
    std::fs::write(
        rules.join("rules.yaml"),
        format!(
            "rules:\n  - name: disk\n    signal: {{disk_usage: {{path: \"{}\"}}}}\n    when: \"> 0\"\n    for: 0s\n    action: {{http: {{method: POST, url: \"http://127.0.0.1:{admin}/reduce\", expect_status: 200}}}}\n    cooldown: 1h\n  - name: validator\n    signal: {{slot_lag: {{rpc: \"http://127.0.0.1:{closed}\", reference: [\"http://127.0.0.1:{closed}/ref\"]}}}}\n    when: \"> 10\"\n    action: {{notify: {{webhook: \"http://127.0.0.1:{admin}/hook\"}}}}\n",
            dir.path().display()
        ),
    )
    .expect("rules written");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_automaton"))
        .args(["run"])
        .env_clear()
        .env("RULES_DIR", &rules)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("ADMIN_ADDR", "127.0.0.1:0")
        .env("CHECK_INTERVAL", "200ms")
        .env("KUBERNETES", "off")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the automaton starts");
    let started = Instant::now();
    let metrics = loop {
        let text = http_get(port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        if text.contains("healing_latency_seconds_count") && text.contains("automaton_signal_errors_total{") {
            break Some(text);
        }
        if started.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let metrics = metrics.expect("the daemon acted and read a down source within 30 s");
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in &wanted {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| exported.contains(f)))
            .unwrap_or(name);
        assert!(
            exported.contains(family),
            "{name} is named by the kit but not exported:\n{metrics}"
        );
    }
}

#[test]
fn kubectl_kustomize_adds_the_kit_to_the_base_in_one_line() {
    let overlay = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let to_deploy = relative(overlay.path(), &deploy());
    let text = format!(
        "resources: [{}]\ncomponents: [{}]\n",
        to_deploy.join("base").display(),
        to_deploy.join("components/monitoring").display()
    );
    std::fs::write(overlay.path().join("kustomization.yaml"), text).expect("write the overlay");
    let Some(built) = kubectl_kustomize(overlay.path()) else {
        eprintln!("kubectl is not on PATH: skipping `kubectl kustomize`");
        return;
    };
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&built)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} missing from the build"))
            .clone()
    };
    let service = find("Service", "self-healing-automaton");
    let monitor = find("ServiceMonitor", "self-healing-automaton");
    // The ServiceMonitor selects the Service by its labels and scrapes its named port.
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    for (key, value) in selector {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the Service's label {key:?}"
        );
    }
    let port = &monitor["spec"]["endpoints"][0]["port"];
    let ports = service["spec"]["ports"].as_sequence().expect("ports");
    assert!(
        ports.iter().any(|p| &p["name"] == port),
        "the Service has no port {port:?}"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    find("PrometheusRule", "self-healing-automaton");
    let dashboard = find("ConfigMap", "self-healing-automaton-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = dashboard["data"]["automaton.json"]
        .as_str()
        .expect("the dashboard");
    assert_eq!(json, read(&kit().join("dashboard.json")));
}

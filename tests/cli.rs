//! The command line: every setting a flag and a variable, listed with its default by
//! `--help`; secrets from the environment only; every invalid value reported at once.

mod common;

use common::run_automaton as automaton;

/// Every variable of README's settings table, and the Kafka and PostgreSQL ones.
fn documented_variables() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let table = readme
        .split("## Settings")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README's settings section");
    let mut names: Vec<String> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or("");
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    names.retain(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    assert!(names.len() >= 18, "{names:?}");
    names
}

const SECRETS: [&str; 4] = [
    "NOTIFY_WEBHOOK",
    "KAFKA_SASL_PASSWORD",
    "POSTGRES_PASSWORD",
    "DATABASE_URL",
];

#[test]
fn run_help_lists_every_setting_with_its_variable_and_default() {
    let (code, help, _) = automaton(&["run", "--help"], &[]);
    assert_eq!(code, 0);
    for name in documented_variables() {
        if SECRETS.contains(&name.as_str()) {
            assert!(
                help.contains(&format!("\n  {name} ")),
                "{name} is listed as a secret:\n{help}"
            );
            continue;
        }
        assert!(
            help.contains(&format!("[env: {name}=")),
            "{name} missing from `run --help`:\n{help}"
        );
    }
    for name in [
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_TIMEOUT",
        "POSTGRES_HOST",
        "POSTGRES_CONNECT_TIMEOUT",
    ] {
        assert!(
            help.contains(&format!("[env: {name}=")),
            "{name} missing:\n{help}"
        );
    }
    assert!(help.contains("[env: CHECK_INTERVAL=] [default: 15s]"), "{help}");
    assert!(help.contains("[env: ACTION_TIMEOUT=] [default: 30s]"), "{help}");
    // Secrets have no flag (a flag shows them in `ps`).
    assert!(
        !help.contains("--notify-webhook") && !help.contains("--postgres-password"),
        "{help}"
    );
}

#[test]
fn a_set_variable_shows_in_help_but_a_secret_never_does() {
    let env = [("CHECK_INTERVAL", "1m"), ("POSTGRES_PASSWORD", "hunter2")];
    let (_, help, _) = automaton(&["run", "--help"], &env);
    assert!(help.contains("[env: CHECK_INTERVAL=1m]"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
}

#[test]
fn every_invalid_setting_is_reported_at_once_whether_flag_or_variable() {
    let (code, _, stderr) = automaton(
        &[
            "run",
            "--once",
            "--check-interval",
            "soon",
            "--gitops-policy",
            "sometimes",
        ],
        &[("ACTION_TIMEOUT", "11m"), ("MAX_REPLICAS", "0")],
    );
    assert_eq!(code, 2, "{stderr}");
    for name in [
        "CHECK_INTERVAL=\"soon\"",
        "GITOPS_POLICY=\"sometimes\"",
        "ACTION_TIMEOUT=\"11m\"",
        "MAX_REPLICAS=\"0\"",
    ] {
        assert!(stderr.contains(name), "{name} missing from:\n{stderr}");
    }
}

#[test]
fn a_flag_overrides_its_variable() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(
        dir.path().join("rules.yaml"),
        "rules:\n  - name: lag\n    signal: {disk_usage: {path: /}}\n    when: \"> 1\"\n    action: {notify: {webhook: \"http://127.0.0.1:9/x\"}}\n",
    )
    .expect("rules written");
    let rules = dir.path().to_str().expect("a UTF-8 path");
    // RULES_DIR names a directory that does not exist; `--rules` wins.
    let (code, stdout, stderr) = automaton(
        &["run", "--once", "--rules", rules, "--kubernetes", "off"],
        &[("RULES_DIR", "/no/such/dir"), ("LOG_FORMAT", "json")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"rule\":\"lag\""), "{stdout}");
}

#[test]
fn check_with_the_environment_lists_the_rules_it_would_disable_and_why() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let here = dir.path().to_str().expect("a UTF-8 path");
    std::fs::write(
        dir.path().join("rules.yaml"),
        format!(
            "rules:\n  - name: lag\n    signal: {{kafka_lag: {{group: g}}}}\n    when: \"> 1\"\n    action: {{notify: {{webhook: \"http://127.0.0.1:9/x\"}}}}\n  - name: disk\n    signal: {{disk_usage: {{path: {here}}}}}\n    when: \"> 99\"\n    action: {{notify: {{webhook: \"http://127.0.0.1:9/x\"}}}}\n  - name: volume\n    signal: {{disk_usage: {{path: {here}/not-mounted}}}}\n    when: \"> 99\"\n    action: {{notify: {{webhook: \"http://127.0.0.1:9/x\"}}}}\n"
        ),
    )
    .expect("rules written");
    // Without --env: only the files are judged.
    let (code, stdout, stderr) = automaton(&["check", here], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("disabled"), "{stdout}");

    let (code, stdout, stderr) = automaton(&["check", "--env", here], &[("KUBERNETES", "off")]);
    assert_eq!(code, 0, "{stderr}");
    let file = dir.path().join("rules.yaml");
    let lag = format!(
        "disabled: {}:2: rule `lag` (kafka_lag): Kafka is not configured: set KAFKA_BOOTSTRAP_SERVERS",
        file.display()
    );
    assert!(stdout.contains(&lag), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "rule `volume` (disk_usage): {here}/not-mounted does not exist"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("here: 1 rules run, 2 disabled"), "{stdout}");

    // With Kafka configured, only the missing volume is left.
    let (code, stdout, _) = automaton(
        &["check", "--env", here],
        &[("KUBERNETES", "off"), ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")],
    );
    assert_eq!(code, 0);
    assert!(stdout.contains("here: 2 rules run, 1 disabled"), "{stdout}");

    // An invalid setting is an error, as it is for `run`.
    let (code, _, stderr) = automaton(&["check", "--env", here], &[("CHECK_INTERVAL", "soon")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("CHECK_INTERVAL"), "{stderr}");
}

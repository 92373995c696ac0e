//! Nothing secret is ever shown: a validator RPC URL with a user and password, an API key
//! in its query and a token in its path is redacted in `/status`, `/readyz`, `/metrics` and
//! the log of a running daemon; substitution refuses the automaton's own secrets and the
//! names in SECRET_VARS; an error quotes `${VAR}`, not the value it held.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, run_automaton as automaton};

const SECRETS: [&str; 3] = ["pa55word", "k3y-s3cr3t", "4d2f8e9a1b3c5d7e9f0a2b4c6d8e0f1a"];

#[test]
fn urls_with_credentials_are_redacted_everywhere_a_running_daemon_shows_them() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let closed = free_port();
    let rpc = format!(
        "http://validator:pa55word@127.0.0.1:{closed}/4d2f8e9a1b3c5d7e9f0a2b4c6d8e0f1a?api-key=k3y-s3cr3t"
    );
    std::fs::write(
        dir.path().join("rules.yaml"),
        format!(
            "rules:\n  - name: lag\n    signal: {{slot_lag: {{rpc: \"{rpc}\", reference: [\"{rpc}&ref=1\"]}}}}\n    when: \"> 10\"\n    action: {{notify: {{webhook: \"{rpc}\"}}}}\n"
        ),
    )
    .expect("rules written");
    let port = free_port();
    let log = dir.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_automaton"))
        .arg("run")
        .env_clear()
        .env("RULES_DIR", dir.path())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("ADMIN_ADDR", "127.0.0.1:0")
        .env("CHECK_INTERVAL", "200ms")
        .env("KUBERNETES", "off")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("the automaton starts");
    let started = Instant::now();
    let mut shown = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        let status = http_get(port, "/status")
            .map(|(_, body)| body)
            .unwrap_or_default();
        if status.contains("\"up\":false") && status.contains("recent_decisions") {
            shown = ["/status", "/readyz", "/metrics"]
                .iter()
                .map(|p| {
                    (
                        p.to_string(),
                        http_get(port, p).map(|(_, body)| body).unwrap_or_default(),
                    )
                })
                .collect();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    shown.push((
        "the log".to_owned(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    ));
    assert!(shown.len() == 4, "the source never went down:\n{}", shown[0].1);
    let status = &shown[0].1;
    // Still useful: the host, the port, the query's keys.
    assert!(
        status.contains(&format!("127.0.0.1:{closed}/***?api-key=***")),
        "{status}"
    );
    for (what, text) in &shown {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} shown in {what}:\n{text}");
        }
    }
}

#[test]
fn substitution_refuses_secrets_and_errors_quote_the_variable() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let here = dir.path().to_str().expect("UTF-8");
    let rule = |extra: &str| {
        format!(
            "rules:\n  - name: disk\n    description: \"{extra}\"\n    signal: {{disk_usage: {{path: {here}}}}}\n    when: \"> 99\"\n    for: ${{HOLD:-1m}}\n    action: {{notify: {{webhook: \"http://127.0.0.1:9/x\"}}}}\n"
        )
    };
    std::fs::write(dir.path().join("rules.yaml"), rule("${POSTGRES_PASSWORD}")).expect("written");
    let (code, stdout, _) = automaton(&["check", here], &[("POSTGRES_PASSWORD", "pg-Secret-1")]);
    assert_eq!(code, 1);
    assert!(stdout.contains("`${POSTGRES_PASSWORD}` is a secret"), "{stdout}");
    assert!(!stdout.contains("pg-Secret-1"), "{stdout}");

    std::fs::write(dir.path().join("rules.yaml"), rule("${VAULT_TOKEN}")).expect("written");
    let env = [("VAULT_TOKEN", "hvs.Secret2"), ("SECRET_VARS", "VAULT_TOKEN")];
    let (code, stdout, _) = automaton(&["check", here], &env);
    assert_eq!(code, 1);
    assert!(stdout.contains("`${VAULT_TOKEN}` is a secret"), "{stdout}");
    assert!(!stdout.contains("hvs.Secret2"), "{stdout}");

    // A value that does not fit is quoted as its variable.
    std::fs::write(dir.path().join("rules.yaml"), rule("disk")).expect("written");
    let (code, stdout, _) = automaton(&["check", here], &[("HOLD", "hunter2s")]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("${HOLD}") && !stdout.contains("hunter2"),
        "{stdout}"
    );
}

//! `automaton test`: the shipped rules pass their timelines; a wrong expectation, an action
//! nobody expected, and an expectation naming no rule each fail with a readable diff and
//! exit 1, like `promtool test rules`.

mod common;

use std::path::Path;

use common::run_automaton as automaton;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[test]
fn the_shipped_rules_and_the_seed_rules_pass_the_seed_timeline() {
    for rules in ["rules", "tests/rules/seed"] {
        let (code, out, err) = automaton(
            &[
                "test",
                "--rules",
                &repo(rules),
                &repo("tests/timelines/seed.yaml"),
            ],
            &[],
        );
        assert_eq!(code, 0, "{rules}: {out}{err}");
        assert!(out.contains("seed.yaml: ok (6 expectations)"), "{out}");
        assert!(out.contains("1 of 1 files passed"), "{out}");
    }
}

/// The seed timeline with its expectations replaced.
fn timeline_expecting(dir: &Path, name: &str, expect: &str) -> String {
    let seed = std::fs::read_to_string(repo("tests/timelines/seed.yaml")).expect("seed");
    let steps = seed.split("\nexpect:\n").next().expect("the steps");
    let path = dir.join(name);
    std::fs::write(&path, format!("{steps}\nexpect:\n{expect}")).expect("write");
    path.display().to_string()
}

#[test]
fn every_shipped_pack_passes_its_timeline() {
    let files: Vec<String> = ["seed", "pods", "postgres", "disk", "memory", "volumes"]
        .iter()
        .map(|f| repo(&format!("tests/timelines/{f}.yaml")))
        .collect();
    let mut args = vec!["test", "--rules"];
    let rules = repo("rules");
    args.push(&rules);
    args.extend(files.iter().map(String::as_str));
    let (code, out, err) = automaton(&args, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("6 of 6 files passed"), "{out}");
}

#[test]
fn mismatches_show_what_was_expected_and_what_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The scale expected 15 s early, and the raise_memory not expected at all.
    let wrong = timeline_expecting(
        dir.path(),
        "wrong.yaml",
        "  - {at: 45s, rule: kafka-consumer-lag, decision: act, action: scale}\n  - {at: 1m, rule: kafka-consumer-lag, decision: act}\n",
    );
    let good = repo("tests/timelines/seed.yaml");
    let (code, out, err) = automaton(&["test", "--rules", &repo("rules"), &wrong, &good], &[]);
    assert_eq!(code, 1, "{out}{err}");
    let diff = "wrong.yaml: FAILED\n  expected at 45s rule kafka-consumer-lag decision act action scale\n       got at 45s rule kafka-consumer-lag target deployment/email-service decision none action scale\n  unexpected at 30s rule pod-oom-killed target deployment/email-service decision act action raise_memory\n";
    assert!(out.contains(diff), "{out}");
    assert!(out.contains("seed.yaml: ok"), "every file is run: {out}");
    assert!(out.contains("1 of 2 files passed"), "{out}");
}

#[test]
fn an_expectation_naming_no_rule_or_verdict_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = timeline_expecting(
        dir.path(),
        "bad.yaml",
        "  - {at: 1m, rule: kafka-lag, decision: acted}\n",
    );
    let (code, out, err) = automaton(&["test", "--rules", &repo("rules"), &bad], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("bad.yaml: expect[0]: no rule named `kafka-lag` in the rule set"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml: expect[0]: decision `acted`: expected act, skip or none"),
        "{err}"
    );
    // A misspelt key is a parse error with its line and column.
    let typo = timeline_expecting(
        dir.path(),
        "typo.yaml",
        "  - {at: 1m, rule: kafka-consumer-lag, verdict: act}\n",
    );
    let (code, _, err) = automaton(&["test", "--rules", &repo("rules"), &typo], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("typo.yaml:") && err.contains("unknown field `verdict`"),
        "{err}"
    );
}

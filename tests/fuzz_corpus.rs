//! The rule loader fuzzer's corpus, replayed as a regression test: CI runs every input the
//! fuzzer kept (`fuzz/corpus/rule_loader/`) and every crash it found and we fixed
//! (`fuzz/regressions/rule_loader/`) through the same checks as the fuzz target
//! (`fuzz/check.rs`), on stable and without libFuzzer. To fuzz (nightly, in `fuzz/`):
//! `cargo +nightly fuzz run rule_loader -- -dict=rule_loader.dict -max_len=4096`; copy a
//! crash you fixed into `fuzz/regressions/rule_loader/`.

use std::path::{Path, PathBuf};

include!("../fuzz/check.rs");

fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs the checks on every file, reporting all that fail (not just the first) by name.
fn replay(files: &[PathBuf]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut failed = Vec::new();
    for file in files {
        let data = std::fs::read(file).expect("a readable input");
        match std::panic::catch_unwind(|| check_rule_loader(&data)) {
            Ok(outcome) => outcomes.push(outcome),
            Err(_) => failed.push(file.display().to_string()),
        }
    }
    assert!(
        failed.is_empty(),
        "inputs failing the checks:\n{}",
        failed.join("\n")
    );
    outcomes
}

#[test]
fn the_corpus_passes_every_check() {
    let files = inputs("fuzz/corpus/rule_loader");
    assert!(files.len() >= 20, "the corpus is missing: {} files", files.len());
    let outcomes = replay(&files);
    // Both sides of the loader are exercised, not only its error paths.
    let loaded = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Loaded(n) if *n > 0))
        .count();
    let rejected = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Rejected(_)))
        .count();
    assert!(loaded >= 5, "only {loaded} inputs load rules");
    assert!(rejected >= 5, "only {rejected} inputs are rejected");
}

#[test]
fn fixed_crashes_stay_fixed() {
    let files = inputs("fuzz/regressions/rule_loader");
    replay(&files);
}

#[test]
fn the_repository_rules_pass_the_checks_and_load() {
    let files: Vec<PathBuf> = ["rules", "tests/rules/seed"]
        .iter()
        .flat_map(|d| inputs(d))
        .collect();
    for (file, outcome) in files.iter().zip(replay(&files)) {
        assert!(
            matches!(outcome, Outcome::Loaded(n) if n > 0),
            "{} does not load: {outcome:?}",
            file.display()
        );
    }
}

#[test]
fn the_checks_see_what_the_fuzzer_sees() {
    // The shared checks see what the fuzzer sees: its environment, YAML's line breaks, and
    // an unset variable rejected (at a position the checks verify).
    assert_eq!(
        check_rule_loader(b"rules:\n  - name: x\n    when: \"> ${NOPE}\"\n"),
        Outcome::Rejected(1)
    );
    assert_eq!(yaml_lines("a\r\nb\rc\nd\u{2028}e"), ["a", "b", "c", "d", "e"]);
    assert_eq!(fuzz_env("T").as_deref(), Some("15000"));
}

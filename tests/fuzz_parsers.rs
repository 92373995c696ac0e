//! The parser fuzzers' corpora, replayed as regression tests: every input the fuzzers kept
//! (`fuzz/corpus/{rpc,psi,events,settings,timeline}/`) and every crash they found and we
//! fixed (`fuzz/regressions/<target>/`) goes through the same checks as the fuzz targets
//! (`fuzz/parsers.rs`), on stable and without libFuzzer. To fuzz (nightly, in `fuzz/`):
//! `cargo +nightly fuzz run TARGET corpus/TARGET -- -runs=1000000`.

use std::path::{Path, PathBuf};

include!("../fuzz/parsers.rs");

fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Replays the corpus and the regressions of `target` through `check`, reporting every
/// input that fails by name; returns how many the parser accepted and rejected.
fn replay(target: &str, check: fn(&[u8]) -> bool) -> (usize, usize) {
    let mut files = inputs(&format!("fuzz/corpus/{target}"));
    assert!(
        files.len() >= 5,
        "the {target} corpus is missing: {} files",
        files.len()
    );
    files.extend(inputs(&format!("fuzz/regressions/{target}")));
    let (mut accepted, mut rejected, mut failed) = (0, 0, Vec::new());
    for file in &files {
        let data = std::fs::read(file).expect("a readable input");
        match std::panic::catch_unwind(|| check(&data)) {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => failed.push(file.display().to_string()),
        }
    }
    assert!(
        failed.is_empty(),
        "{target} inputs failing the checks:\n{}",
        failed.join("\n")
    );
    (accepted, rejected)
}

#[test]
fn json_rpc_answers() {
    let (accepted, rejected) = replay("rpc", check_rpc);
    assert!(
        accepted >= 3 && rejected >= 3,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn psi_files() {
    let (accepted, rejected) = replay("psi", check_psi);
    assert!(
        accepted >= 2 && rejected >= 2,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn memory_events_files() {
    let (accepted, rejected) = replay("events", check_events);
    assert!(
        accepted >= 2 && rejected >= 2,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn settings_from_the_environment() {
    let (accepted, rejected) = replay("settings", check_settings);
    assert!(
        accepted >= 2 && rejected >= 2,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn timelines() {
    let (accepted, rejected) = replay("timeline", check_timeline);
    assert!(
        accepted >= 1 && rejected >= 1,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn the_checks_catch_what_they_promise() {
    // A body that is not our answer is never a slot.
    assert!(!check_rpc(br#"{"jsonrpc": "2.0", "result": 5, "id": 8}"#));
    assert!(check_rpc(br#"{"jsonrpc": "2.0", "result": 5, "id": 7}"#));
    // NaN pressure is refused, not read as "no pressure".
    assert!(!check_psi(b"some avg10=NaN avg60=0 avg300=0 total=0\n"));
    assert!(check_events(b"oom 1\noom_kill 1\n"));
    assert!(!check_settings(b"CHECK_INTERVAL=18446744073709551615\n"));
}

//! The layout docs/ARCHITECTURE.md promises, checked on the source: which top-level module
//! may import which (no cycle), a pure core, one registry line per kind, small files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module of `src/` may import (docs/ARCHITECTURE.md, "What may import
/// what").
const ALLOWED: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("settings", &["core"]),
    ("cli", &["core", "settings"]),
    ("clients", &["core", "settings"]),
    ("signals", &["core", "clients"]),
    ("actions", &["core", "clients", "signals"]),
    ("rules", &["core", "signals", "actions"]),
    (
        "runtime",
        &["core", "settings", "clients", "signals", "actions", "rules"],
    ),
];

/// Crates the pure core never names.
const NOT_IN_CORE: &[&str] = &[
    "kube::",
    "k8s_openapi::",
    "kafka_protocol::",
    "tokio_postgres::",
    "reqwest::",
    "tokio::",
    "std::time::Instant",
    "SystemTime",
];

/// "Files stay small (~400 lines)".
const MAX_LINES: usize = 450;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The code of a file without its unit tests (which may use anything).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("a readable file");
    let is_tests = path.file_name().is_some_and(|n| n == "tests.rs");
    if is_tests {
        return String::new();
    }
    text.split("#[cfg(test)]").next().unwrap_or("").to_owned()
}

/// Top-level module → the files that make it.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src()).expect("src/") {
        let path = entry.expect("an entry").path();
        let name = path.file_stem().expect("a name").to_string_lossy().into_owned();
        if name == "main" || name == "lib" {
            continue;
        }
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path]
        };
        modules.insert(name, files);
    }
    modules
}

fn imports(files: &[PathBuf], names: &BTreeSet<String>, own: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for file in files {
        let text = code(file);
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if names.contains(&name) && name != own {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn top_level_modules_import_only_what_the_architecture_allows() {
    let modules = modules();
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, files) in &modules {
        let Some(may) = allowed.get(module.as_str()) else {
            problems.push(format!("src/{module} is not in docs/ARCHITECTURE.md's table"));
            continue;
        };
        for import in imports(files, &names, module) {
            if !may.contains(&import.as_str()) {
                problems.push(format!("{module} imports {import}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_core_does_no_io_and_reads_no_clock() {
    let mut problems = Vec::new();
    for file in rust_files(&src().join("core")) {
        let text = code(&file);
        for name in NOT_IN_CORE {
            if text.contains(name) {
                problems.push(format!("{} names {name}", file.display()));
            }
        }
    }
    // The circuit breakers' shared registry keeps its own epoch: the one documented
    // exception, as the breakers are shared by collection and execution across tasks.
    problems.retain(|p| !(p.contains("guard/breaker.rs") && p.ends_with("std::time::Instant")));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_kind_is_one_module_and_one_registry_line() {
    for (folder, registry) in [("signals", "signals! {"), ("actions", "actions! {")] {
        let registry_folder = folder;
        let dir = src().join(folder);
        let text = std::fs::read_to_string(dir.join("mod.rs")).expect("the registry");
        let start = text.rfind(registry).expect("the registry call");
        let body = &text[start + registry.len()..];
        let body = &body[..body.find('}').expect("its end")];
        let lines: Vec<&str> = body.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert!(!lines.is_empty());
        for line in lines {
            let module = line.split_whitespace().next().expect("`module => Kind`");
            let file = dir.join(format!("{module}.rs"));
            let folder = dir.join(module).join("mod.rs");
            assert!(
                file.exists() || folder.exists(),
                "{registry_folder}: `{line}` names no module file"
            );
            // No other file of the crate names the kind's type: everything about it is in
            // its own module (the registry line aside).
            let kind = line
                .split("=>")
                .nth(1)
                .and_then(|k| k.split_whitespace().next())
                .map(|k| k.trim_end_matches(','))
                .expect("the kind's type");
            for other in rust_files(&src()) {
                let inside = other.starts_with(dir.join(module)) || other == file;
                // The registries themselves name every kind (and `Client::Postgres` or
                // `Client::Http` are clients, not kinds).
                let registry = other == src().join("signals/mod.rs") || other == src().join("actions/mod.rs");
                if inside || registry {
                    continue;
                }
                // A match arm or a constructor of the kind, or a path into its module.
                let text = code(&other);
                let spec = if registry_folder == "signals" {
                    "SignalSpec"
                } else {
                    "ActionSpec"
                };
                let named = [
                    format!("{spec}::{kind}("),
                    format!("{registry_folder}::{module}::"),
                ]
                .iter()
                .any(|pattern| text.contains(pattern.as_str()));
                assert!(
                    !named || allowed_mention(&other, kind),
                    "{} names `{kind}` outside its module",
                    other.display()
                );
            }
        }
    }
}

/// Where a kind may be named outside its own module, and why.
fn allowed_mention(file: &Path, kind: &str) -> bool {
    let file = file.to_string_lossy();
    // `automaton_kafka_consumer_lag` is exported from the `kafka_lag` readings; `scale`'s `per_lag`
    // reads the partitions of a `kafka_lag` signal; a `notify_first` is executed as a
    // `notify`.
    (kind == "KafkaLag"
        && (file.ends_with("runtime/daemon/collect.rs")
            || file.ends_with("actions/scale.rs")
            || file.ends_with("actions/scale/tests.rs")))
        || (kind == "Notify"
            && (file.ends_with("runtime/writer.rs") || file.ends_with("runtime/daemon/follow_up.rs")))
}

#[test]
fn files_stay_small() {
    let mut big: Vec<(usize, PathBuf)> = rust_files(&src())
        .into_iter()
        .map(|f| (std::fs::read_to_string(&f).expect("readable").lines().count(), f))
        .filter(|(n, _)| *n > MAX_LINES)
        .collect();
    big.sort();
    assert!(big.is_empty(), "over {MAX_LINES} lines: {big:#?}");
}

/// No `unsafe` anywhere: the library and the binary forbid it (a module cannot `allow` what
/// a crate forbids), and no file tries.
#[test]
fn no_unsafe_code() {
    for root in ["lib.rs", "main.rs"] {
        let text = std::fs::read_to_string(src().join(root)).expect("readable");
        assert!(
            text.contains("#![forbid(unsafe_code)]"),
            "{root} forbids unsafe_code"
        );
    }
    let unsafe_files: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("readable");
            text.contains("unsafe ") || text.contains("allow(unsafe_code)")
        })
        .collect();
    assert!(unsafe_files.is_empty(), "unsafe in {unsafe_files:#?}");
}

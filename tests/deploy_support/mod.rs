//! Helpers shared by the manifest tests (tests/deploy.rs, tests/deploy_solana.rs): reading
//! files, the round-trip type check, RBAC questions answered like `kubectl auth can-i`, and
//! `kubectl kustomize` when it is installed.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn deploy() -> PathBuf {
    repo().join("deploy")
}

/// The base (deploy/kustomization.yaml points at it; overlays build on it).
pub fn base() -> PathBuf {
    deploy().join("base")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Deserializes `value` into `T` and serializes it back, failing on any difference:
/// k8s-openapi skips fields it does not know, so a misspelt field would otherwise vanish.
pub fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, String> {
    let object: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    diff("", value, &back, &mut lost);
    if lost.is_empty() {
        Ok(object)
    } else {
        Err(lost.join("; "))
    }
}

fn diff(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, va) in a {
                let p = format!("{path}.{key}");
                match b.get(key) {
                    Some(vb) => diff(&p, va, vb, out),
                    None => out.push(format!("{p} is not a field of this kind")),
                }
            }
            out.extend(
                b.keys()
                    .filter(|k| !a.contains_key(*k))
                    .map(|k| format!("{path}.{k} appeared")),
            );
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} came back as {b}")),
    }
}

pub fn strings(value: &Value, key: &str) -> Vec<String> {
    let list = value
        .get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.iter()
        .map(|v| v.as_str().expect("a list of strings").to_owned())
        .collect()
}

/// Every (verb, group/resource) the rules name, as `verb group/resource`.
pub fn grants(rules: &[PolicyRule]) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for r in rules {
        for group in r.api_groups.iter().flatten() {
            for resource in r.resources.iter().flatten() {
                all.extend(r.verbs.iter().map(|v| format!("{v} {group}/{resource}")));
            }
        }
    }
    all
}

/// `to` relative to the directory `from`; both absolute.
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let up = std::iter::repeat_n(Component::ParentDir, from.len() - common);
    up.chain(to[common..].iter().copied()).collect()
}

/// `kubectl kustomize DIR`, or None when kubectl is not installed.
pub fn kubectl_kustomize(dir: &Path) -> Option<String> {
    match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("kubectl: {e}"),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "kubectl kustomize {}: {stderr}",
                dir.display()
            );
            Some(String::from_utf8(out.stdout).expect("UTF-8"))
        }
    }
}

/// Answers like `kubectl auth can-i VERB GROUP/RESOURCE [NAME]`: a rule naming objects
/// (`resourceNames`) allows only requests for one of them; `*/scale` matches any resource's
/// `scale` subresource.
pub fn can_i(rules: &[PolicyRule], verb: &str, group: &str, resource: &str, name: Option<&str>) -> bool {
    let subresource = resource.split_once('/').map(|(_, sub)| sub);
    rules.iter().any(|r| {
        r.verbs.iter().any(|v| v == verb || v == "*")
            && r.api_groups.iter().flatten().any(|g| g == group || g == "*")
            && r.resources.iter().flatten().any(|res| {
                res == resource
                    || res == "*"
                    || res.strip_prefix("*/").is_some_and(|sub| Some(sub) == subresource)
            })
            && match r.resource_names.as_deref() {
                None | Some([]) => true,
                Some(names) => name.is_some_and(|n| names.iter().any(|x| x == n)),
            }
    })
}

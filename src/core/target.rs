//! Targets: `deployment/NAME`, `statefulset/NAME` (in the automaton's own namespace),
//! `NAMESPACE/deployment/NAME`, or `owner` (the workload that owns the pod a pod signal is
//! about). Inside the engine every Kubernetes target is namespace-qualified
//! (`NAMESPACE/KIND/NAME`, see [`qualify`]): the same name in two namespaces is two targets.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::plan::PlanError;
use crate::core::values::{is_dns1123, is_dns1123_label, ValueError};

/// The Kubernetes kinds targets and owner labels name, as they write them.
const KINDS: [&str; 5] = ["deployment", "statefulset", "pod", "pvc", "cronjob"];

/// A namespace-qualified Kubernetes object as a target names it: `NAMESPACE/KIND/NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectRef<'a> {
    pub namespace: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

impl<'a> ObjectRef<'a> {
    /// `NAMESPACE/KIND/NAME` with a kind of [`KINDS`]; anything else (`http/…`, an
    /// unqualified `deployment/x`) is not one.
    pub fn parse(target: &'a str) -> Option<ObjectRef<'a>> {
        let mut parts = target.splitn(3, '/');
        let (namespace, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
        let valid = KINDS.contains(&kind) && !namespace.is_empty() && !name.is_empty() && !name.contains('/');
        valid.then_some(ObjectRef {
            namespace,
            kind,
            name,
        })
    }
}

impl fmt::Display for ObjectRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// The engine's form of a target: `KIND/NAME` of a Kubernetes kind is in the `home`
/// namespace (the automaton's own), so it becomes `HOME/KIND/NAME`. A target that already
/// names its namespace, or is no Kubernetes object (`http/…`, `webhook/…`, `postgres/…`),
/// is returned as it is.
pub fn qualify(target: &str, home: &str) -> String {
    match target.split_once('/') {
        Some((kind, name)) if KINDS.contains(&kind) && !name.contains('/') => format!("{home}/{target}"),
        _ => target.to_owned(),
    }
}

/// A target without its namespace (`deployment/api` of `prod/deployment/api`): what a
/// message about an object already placed in its namespace names.
pub fn unqualified(target: &str) -> &str {
    match ObjectRef::parse(target) {
        Some(object) => &target[object.namespace.len() + 1..],
        None => target,
    }
}

/// What the `owner` label of a signal's series names, and so what `target: owner` of an
/// action acts on: a workload (pod signals; `prometheus`/`alert` with `target: owner` or
/// `deployment/{{label}}`), one pod (`pod/{{pod}}`) or a volume claim
/// (`pvc/{{persistentvolumeclaim}}`: the pods that mount it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    Workload,
    Pod,
    Volume,
}

impl OwnerKind {
    /// How rule files and errors name it.
    pub fn describe(self) -> &'static str {
        match self {
            OwnerKind::Workload => "a workload (`deployment/NAME`, `statefulset/NAME`)",
            OwnerKind::Pod => "a pod (`pod/NAME`)",
            OwnerKind::Volume => "a volume claim (`pvc/NAME`)",
        }
    }

    /// The kind of an owner string (`prod/deployment/api`, `pod/api-0`, `prod/pvc/data-0`).
    pub fn of(owner: &str) -> Option<OwnerKind> {
        match ObjectRef::parse(owner) {
            Some(object) => OwnerKind::of_kind(object.kind),
            None => OwnerKind::of_kind(owner.split_once('/')?.0),
        }
    }

    /// The kind a target's `KIND` names (`deployment`, `pod`, `pvc`).
    pub fn of_kind(kind: &str) -> Option<OwnerKind> {
        match kind {
            "deployment" | "statefulset" => Some(OwnerKind::Workload),
            "pod" => Some(OwnerKind::Pod),
            "pvc" => Some(OwnerKind::Volume),
            _ => None,
        }
    }
}

/// What a rule's action acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A Deployment; `namespace: None` is the automaton's own.
    Deployment {
        namespace: Option<String>,
        name: String,
    },
    StatefulSet {
        namespace: Option<String>,
        name: String,
    },
    /// The workload each series names in its `owner` label.
    Owner,
}

impl Target {
    /// The concrete target for a series: the rule's own (`deployment/NAME`, qualified
    /// later by the engine, see [`qualify`]), or the series' `owner`.
    pub fn resolve(&self, labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        match self {
            Target::Owner => match labels.get("owner") {
                Some(owner) if OwnerKind::of(owner) == Some(OwnerKind::Workload) => Ok(owner.clone()),
                Some(owner) => Err(PlanError::Target(format!(
                    "the series' owner `{owner}` is not a workload: `target: owner` of a workload action acts on one"
                ))),
                None => Err(PlanError::Target(
                    "the series has no `owner` label to resolve `target: owner`".to_owned(),
                )),
            },
            other => Ok(other.to_string()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, namespace, name) = match self {
            Target::Deployment { namespace, name } => ("deployment", namespace, name),
            Target::StatefulSet { namespace, name } => ("statefulset", namespace, name),
            Target::Owner => return f.write_str("owner"),
        };
        match namespace {
            Some(ns) => write!(f, "{ns}/{kind}/{name}"),
            None => write!(f, "{kind}/{name}"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ValueError(format!(
                "invalid target `{s}`: expected `deployment/NAME`, `statefulset/NAME`, `NAMESPACE/deployment/NAME` or `owner`"
            ))
        };
        if s == "owner" {
            return Ok(Target::Owner);
        }
        let parts: Vec<&str> = s.split('/').collect();
        let (namespace, kind, name) = match parts[..] {
            [kind, name] => (None, kind, name),
            [ns, kind, name] => (Some(ns), kind, name),
            _ => return Err(bad()),
        };
        if let Some(ns) = namespace.filter(|ns| !is_dns1123_label(ns)) {
            return Err(ValueError(format!(
                "invalid target `{s}`: `{ns}` is not a namespace name (lowercase letters, digits, `-`)"
            )));
        }
        if !is_dns1123(name) {
            return Err(ValueError(format!("invalid target `{s}`: `{name}` is not a Kubernetes object name (lowercase letters, digits, `-`, `.`)")));
        }
        let (namespace, name) = (namespace.map(str::to_owned), name.to_owned());
        match kind {
            "deployment" => Ok(Target::Deployment { namespace, name }),
            "statefulset" => Ok(Target::StatefulSet { namespace, name }),
            _ => Err(bad()),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::core::values::parse_scalar(d, "a target such as `deployment/NAME`", str::parse)
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_targets() {
        assert_eq!(
            "deployment/email-service".parse::<Target>().unwrap(),
            Target::Deployment {
                namespace: None,
                name: "email-service".into()
            }
        );
        let qualified = "solana/statefulset/validator".parse::<Target>().unwrap();
        assert_eq!(
            qualified,
            Target::StatefulSet {
                namespace: Some("solana".into()),
                name: "validator".into()
            }
        );
        assert_eq!(qualified.to_string(), "solana/statefulset/validator");
        for bad in [
            "deployment/",
            "pod/x",
            "deployment/Email",
            "email-service",
            "deployment/-x",
            "Prod/deployment/x",
            "a.b/deployment/x",
            "/deployment/x",
            "a/b/deployment/x",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        let labels = BTreeMap::from([("owner".to_owned(), "deployment/api".to_owned())]);
        assert_eq!(Target::Owner.resolve(&labels).unwrap(), "deployment/api");
        assert!(Target::Owner.resolve(&BTreeMap::new()).is_err());
        let volume = BTreeMap::from([("owner".to_owned(), "pvc/data-0".to_owned())]);
        assert!(Target::Owner.resolve(&volume).is_err());
        assert_eq!(OwnerKind::of("pvc/data-0"), Some(OwnerKind::Volume));
        assert_eq!(OwnerKind::of("pod/api-0"), Some(OwnerKind::Pod));
        assert_eq!(OwnerKind::of("statefulset/pg"), Some(OwnerKind::Workload));
        assert_eq!(OwnerKind::of("job/x"), None);
        assert_eq!(OwnerKind::of("prod/pvc/data-0"), Some(OwnerKind::Volume));
        assert_eq!(OwnerKind::of("prod/job/x"), None);
    }

    #[test]
    fn kubernetes_targets_are_qualified_with_the_home_namespace() {
        assert_eq!(qualify("deployment/api", "prod"), "prod/deployment/api");
        assert_eq!(qualify("cronjob/backup", "prod"), "prod/cronjob/backup");
        assert_eq!(
            qualify("staging/deployment/api", "prod"),
            "staging/deployment/api"
        );
        // A namespace may be named like a kind.
        assert_eq!(qualify("pod/deployment/api", "prod"), "pod/deployment/api");
        for other in [
            "http/https://hooks.example/x",
            "webhook/hooks.example",
            "postgres/*",
            "owner",
        ] {
            assert_eq!(qualify(other, "prod"), other);
        }
        let object = ObjectRef::parse("prod/pvc/data-0").unwrap();
        assert_eq!(
            (object.namespace, object.kind, object.name),
            ("prod", "pvc", "data-0")
        );
        assert_eq!(object.to_string(), "prod/pvc/data-0");
        assert_eq!(unqualified("prod/deployment/api"), "deployment/api");
        assert_eq!(unqualified("http/https://x/y"), "http/https://x/y");
        for not in [
            "deployment/api",
            "http/https://x/y",
            "prod/job/x",
            "prod/deployment/",
        ] {
            assert_eq!(ObjectRef::parse(not), None, "{not}");
        }
    }
}

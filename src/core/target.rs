//! Workload targets: `deployment/NAME`, `statefulset/NAME`, or `owner` (the workload that
//! owns the pod a pod signal is about).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::plan::PlanError;
use crate::core::values::ValueError;

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

    /// The kind of an owner string (`deployment/api`, `pod/api-0`, `pvc/data-0`).
    pub fn of(owner: &str) -> Option<OwnerKind> {
        match owner.split_once('/')?.0 {
            "deployment" | "statefulset" => Some(OwnerKind::Workload),
            "pod" => Some(OwnerKind::Pod),
            "pvc" => Some(OwnerKind::Volume),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Deployment(String),
    StatefulSet(String),
    Owner,
}

impl Target {
    /// The concrete `kind/name` for a series.
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
        match self {
            Target::Deployment(n) => write!(f, "deployment/{n}"),
            Target::StatefulSet(n) => write!(f, "statefulset/{n}"),
            Target::Owner => f.write_str("owner"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ValueError(format!(
                "invalid target `{s}`: expected `deployment/NAME`, `statefulset/NAME` or `owner`"
            ))
        };
        if s == "owner" {
            return Ok(Target::Owner);
        }
        let (kind, name) = s.split_once('/').ok_or_else(bad)?;
        if !crate::core::values::is_dns1123(name) {
            return Err(ValueError(format!("invalid target `{s}`: `{name}` is not a Kubernetes object name (lowercase letters, digits, `-`, `.`)")));
        }
        match kind {
            "deployment" => Ok(Target::Deployment(name.to_owned())),
            "statefulset" => Ok(Target::StatefulSet(name.to_owned())),
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
            Target::Deployment("email-service".into())
        );
        assert_eq!(
            "statefulset/validator".parse::<Target>().unwrap(),
            Target::StatefulSet("validator".into())
        );
        for bad in [
            "deployment/",
            "pod/x",
            "deployment/Email",
            "email-service",
            "deployment/-x",
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
    }
}

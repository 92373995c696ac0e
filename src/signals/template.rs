//! Targets of other systems' series (`prometheus`, `alert`), shared by those signals: a
//! template over each series' labels (`deployment/{{deployment}}`, `pod/{{pod}}`,
//! `pvc/{{persistentvolumeclaim}}`), or `owner`, the workload owning the series' `pod` (in
//! its `namespace`) through the owner chain the pod signals use. The result rides on the
//! series as `owner`, qualified with the series' `namespace` (the automaton's own when it
//! has none), so an action's `target: owner` acts on that object in that namespace.
//!
//! A series labelled with a namespace the automaton does not watch (WATCH_NAMESPACES) is
//! dropped: it is not the automaton's to act on.

use std::collections::BTreeMap;

use super::{OwnerKind, SignalError, Sources};
use crate::core::series::Series;
use crate::core::target::qualify;

/// The `target` that resolves a series' `pod` + `namespace` through the owner chain.
pub const OWNER: &str = "owner";

/// The pieces of a template: literal text and `{{label}}` names.
enum Piece<'a> {
    Text(&'a str),
    Label(&'a str),
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push(Piece::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("`target`: `{{{{` without `}}}}` in `{template}`"))?;
        let name = after[..close].trim();
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "`target`: `{{{{{name}}}}}` is not a label name in `{template}`"
            ));
        }
        out.push(Piece::Label(name));
        rest = &after[close + 2..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// What a `target` names.
pub fn owner_kind(target: &str) -> Option<OwnerKind> {
    if target == OWNER {
        Some(OwnerKind::Workload)
    } else {
        OwnerKind::of(target)
    }
}

/// Rule-load checks of a `target`.
pub fn check(template: &str) -> Vec<String> {
    if template == OWNER {
        return Vec::new();
    }
    let mut errors = Vec::new();
    match pieces(template) {
        Err(e) => errors.push(e),
        Ok(p) if !p.iter().any(|p| matches!(p, Piece::Label(_))) => errors.push(format!(
            "`target`: `{template}` names no label: every series would be one object; name it in the action instead"
        )),
        Ok(_) => {}
    }
    if owner_kind(template).is_none() {
        errors.push(format!(
            "`target` must be `owner` or name a workload, a pod or a volume claim: `deployment/{{{{label}}}}`, `statefulset/{{{{label}}}}`, `pod/{{{{label}}}}` or `pvc/{{{{label}}}}`, found `{template}`"
        ));
    }
    errors
}

/// The target of a series with these labels. A label the template needs and the series
/// lacks is an error: the source does not give what the rule expects. So is a value that is
/// not a Kubernetes name: it could only address the wrong object.
pub fn render(template: &str, labels: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    for piece in pieces(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Label(name) => match labels.get(name).filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(format!(
                        "a series has no label `{name}`, which `target: {template}` needs"
                    ))
                }
            },
        }
    }
    let name = out.split_once('/').map_or("", |(_, n)| n);
    if !crate::core::values::is_dns1123(name) {
        return Err(format!(
            "`target: {template}` gives `{out}`, and `{name}` is not a Kubernetes object name"
        ));
    }
    Ok(out)
}

/// The series of one reading, with `owner` set from `target`. Without a target the series
/// are returned as they are.
pub async fn attach(
    sources: &Sources,
    target: Option<&str>,
    readings: Vec<(BTreeMap<String, String>, f64)>,
) -> Result<Vec<Series>, SignalError> {
    let Some(target) = target else {
        return Ok(readings
            .into_iter()
            .map(|(labels, value)| Series { labels, value })
            .collect());
    };
    let mut out = Vec::with_capacity(readings.len());
    for (mut labels, value) in readings {
        let namespace = labels.get("namespace").filter(|n| !n.is_empty());
        if let (Some(watched), Some(theirs)) = (&sources.namespaces, namespace) {
            if !watched.contains(theirs) {
                continue;
            }
        }
        if target == OWNER {
            let pod = labels.get("pod").filter(|p| !p.is_empty()).ok_or_else(|| {
                SignalError::Parse("a series has no label `pod`, which `target: owner` needs".to_owned())
            })?;
            let namespace = namespace.or(sources.namespace.as_ref()).ok_or_else(|| {
                SignalError::Parse(
                    "a series has no label `namespace`, which `target: owner` needs".to_owned(),
                )
            })?;
            match sources.pods()?.owner_of(namespace, pod).await? {
                // Gone since the other system saw it: nothing of it to act on.
                None => continue,
                // No workload the automaton acts on: the series stays, without an owner.
                Some(None) => {}
                Some(Some(owner)) => {
                    labels.insert("owner".to_owned(), owner);
                }
            }
        } else {
            let owner = render(target, &labels).map_err(SignalError::Parse)?;
            let owner = match namespace.or(sources.namespace.as_ref()) {
                Some(ns) => qualify(&owner, ns),
                None => owner,
            };
            labels.insert("owner".to_owned(), owner);
        }
        out.push(Series { labels, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::namespaces::Namespaces;

    #[test]
    fn targets_come_from_each_series_labels() {
        let labels = BTreeMap::from([
            ("deployment".to_owned(), "api".to_owned()),
            ("namespace".to_owned(), "prod".to_owned()),
            ("persistentvolumeclaim".to_owned(), "data-pg-0".to_owned()),
            ("pod".to_owned(), "Bad_Name".to_owned()),
        ]);
        assert_eq!(
            render("deployment/{{deployment}}", &labels).unwrap(),
            "deployment/api"
        );
        assert_eq!(
            render("deployment/{{ deployment }}", &labels).unwrap(),
            "deployment/api"
        );
        assert_eq!(
            render("pvc/{{persistentvolumeclaim}}", &labels).unwrap(),
            "pvc/data-pg-0"
        );
        let err = render("statefulset/{{statefulset}}", &labels).unwrap_err();
        assert!(err.contains("no label `statefulset`"), "{err}");
        let err = render("pod/{{pod}}", &labels).unwrap_err();
        assert!(
            err.contains("`Bad_Name` is not a Kubernetes object name"),
            "{err}"
        );
        assert!(check("deployment/api")[0].contains("names no label"));
        assert!(check("deployment/{{1x}}")[0].contains("not a label name"));
        assert!(check("pod/{{pod")[0].contains("without"));
        assert!(check("job/{{job}}")[0].contains("must be `owner` or name"));
        assert!(check("statefulset/{{sts}}").is_empty());
        assert!(check("pod/{{pod}}").is_empty());
        assert!(check("owner").is_empty());
        assert_eq!(owner_kind("owner"), Some(OwnerKind::Workload));
        assert_eq!(
            owner_kind("pvc/{{persistentvolumeclaim}}"),
            Some(OwnerKind::Volume)
        );
        assert_eq!(owner_kind("pod/{{pod}}"), Some(OwnerKind::Pod));
    }

    fn reading(pairs: &[(&str, &str)]) -> (BTreeMap<String, String>, f64) {
        let labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (labels, 1.0)
    }

    #[tokio::test]
    async fn series_of_unwatched_namespaces_are_dropped_and_owner_needs_the_pod_watch() {
        let http = reqwest::Client::new();
        let mut sources = Sources::new(std::time::Duration::from_secs(1), http);
        sources.namespace = Some("prod".to_owned());
        sources.namespaces = Some(Namespaces::parse("prod,batch").unwrap());
        let readings = vec![
            reading(&[("namespace", "prod"), ("deployment", "api")]),
            reading(&[("namespace", "staging"), ("deployment", "api")]),
            reading(&[("namespace", "batch"), ("deployment", "api")]),
            reading(&[("deployment", "web")]),
        ];
        let series = attach(&sources, Some("deployment/{{deployment}}"), readings.clone())
            .await
            .unwrap();
        let owners: Vec<&str> = series.iter().map(|s| s.labels["owner"].as_str()).collect();
        // Each in its own namespace; one without a namespace label in the automaton's.
        assert_eq!(
            owners,
            [
                "prod/deployment/api",
                "batch/deployment/api",
                "prod/deployment/web"
            ]
        );
        // Without a target nothing is filtered: the action names its own target.
        assert_eq!(attach(&sources, None, readings.clone()).await.unwrap().len(), 4);
        // `owner` through the owner chain needs the pod watch: unknown, not guessed.
        let err = attach(&sources, Some(OWNER), vec![reading(&[("pod", "api-1")])])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no Kubernetes API"), "{err}");
        let err = attach(&sources, Some(OWNER), vec![reading(&[("namespace", "prod")])])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no label `pod`"), "{err}");
    }
}

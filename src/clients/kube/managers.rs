//! Who else manages a workload, read from the live objects: an operator who paused the
//! automaton on it (`automaton.dev/paused`), a GitOps tool that reverts spec changes (Argo
//! CD, Flux), a HorizontalPodAutoscaler that owns its replicas. The engine's guard skips on
//! what these find; nothing here decides.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

use super::workload::WorkloadRef;

/// `"true"` on a workload: an operator said hands off.
pub const PAUSED: &str = "automaton.dev/paused";

const ARGO_INSTANCE: &str = "argocd.argoproj.io/instance";
const ARGO_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
const FLUX_KUSTOMIZATION: &str = "kustomize.toolkit.fluxcd.io";
const FLUX_HELMRELEASE: &str = "helm.toolkit.fluxcd.io";

/// Whether the annotations pause the automaton on this workload.
pub fn paused(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(PAUSED).is_some_and(|v| v == "true")
}

/// The GitOps tool that applies this workload, from the labels and annotations it stamps
/// on what it applies: `argocd: INSTANCE` (the label of label tracking, else the tracking id
/// of annotation tracking), `flux kustomization: NS/NAME`, `flux helmrelease: NS/NAME`.
pub fn gitops(labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> Option<String> {
    let argo = labels
        .get(ARGO_INSTANCE)
        .or_else(|| annotations.get(ARGO_TRACKING_ID));
    if let Some(app) = argo {
        return Some(format!("argocd: {app}"));
    }
    let flux = |prefix: &str, what: &str| {
        let name = labels.get(&format!("{prefix}/name"))?;
        Some(match labels.get(&format!("{prefix}/namespace")) {
            Some(ns) => format!("flux {what}: {ns}/{name}"),
            None => format!("flux {what}: {name}"),
        })
    };
    flux(FLUX_KUSTOMIZATION, "kustomization").or_else(|| flux(FLUX_HELMRELEASE, "helmrelease"))
}

/// The HorizontalPodAutoscalers (names, joined) whose `scaleTargetRef` is `target`. A
/// reference without an `apiVersion` is counted: leaving replicas alone is the safe reading.
pub fn hpa_for(hpas: &[HorizontalPodAutoscaler], target: &WorkloadRef) -> Option<String> {
    let mut names: Vec<&str> = hpas
        .iter()
        .filter(|hpa| {
            hpa.metadata
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == target.namespace)
        })
        .filter(|hpa| {
            hpa.spec.as_ref().is_some_and(|spec| {
                let r = &spec.scale_target_ref;
                let group = r
                    .api_version
                    .as_deref()
                    .map(|v| v.split_once('/').map_or("", |(g, _)| g));
                r.kind == target.kind.kind()
                    && r.name == target.name
                    && group.is_none_or(|g| g == "apps" || g == "extensions")
            })
        })
        .filter_map(|hpa| hpa.metadata.name.as_deref())
        .collect();
    names.sort_unstable();
    (!names.is_empty()).then(|| names.join(", "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn paused_only_on_true() {
        assert!(paused(&map(&[(PAUSED, "true")])));
        for value in ["false", "True", "yes", ""] {
            assert!(!paused(&map(&[(PAUSED, value)])), "{value:?}");
        }
        assert!(!paused(&map(&[])));
    }

    #[test]
    fn gitops_tools_from_their_labels_and_annotations() {
        let none = map(&[]);
        let cases = [
            (
                map(&[(ARGO_INSTANCE, "guestbook")]),
                none.clone(),
                Some("argocd: guestbook"),
            ),
            (
                none.clone(),
                map(&[(ARGO_TRACKING_ID, "guestbook:apps/Deployment:default/web")]),
                Some("argocd: guestbook:apps/Deployment:default/web"),
            ),
            (
                map(&[
                    ("kustomize.toolkit.fluxcd.io/name", "apps"),
                    ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
                ]),
                none.clone(),
                Some("flux kustomization: flux-system/apps"),
            ),
            (
                map(&[("kustomize.toolkit.fluxcd.io/name", "apps")]),
                none.clone(),
                Some("flux kustomization: apps"),
            ),
            (
                map(&[
                    ("helm.toolkit.fluxcd.io/name", "podinfo"),
                    ("helm.toolkit.fluxcd.io/namespace", "flux-system"),
                ]),
                none.clone(),
                Some("flux helmrelease: flux-system/podinfo"),
            ),
            // Applied by hand or by Helm alone: nobody reverts.
            (
                map(&[("app.kubernetes.io/managed-by", "Helm")]),
                map(&[("meta.helm.sh/release-name", "web")]),
                None,
            ),
            (none.clone(), none.clone(), None),
        ];
        for (labels, annotations, want) in cases {
            assert_eq!(
                gitops(&labels, &annotations).as_deref(),
                want,
                "{labels:?} {annotations:?}"
            );
        }
    }

    #[test]
    fn an_hpa_owns_the_workload_its_scale_target_ref_names() {
        let hpa = |name: &str, api_version: Option<&str>, kind: &str, target: &str| {
            serde_json::from_value::<HorizontalPodAutoscaler>(json!({
                "metadata": {"name": name},
                "spec": {"maxReplicas": 10, "scaleTargetRef":
                    {"apiVersion": api_version, "kind": kind, "name": target}},
            }))
            .expect("an HPA")
        };
        let hpas = [
            hpa("web", Some("apps/v1"), "Deployment", "web"),
            hpa("db", Some("apps/v1"), "StatefulSet", "db"),
            hpa("rollout", Some("argoproj.io/v1alpha1"), "Rollout", "api"),
            hpa("bare", None, "Deployment", "legacy"),
        ];
        let owner = |target: &str| hpa_for(&hpas, &target.parse().expect("a target"));
        assert_eq!(owner("prod/deployment/web").as_deref(), Some("web"));
        assert_eq!(owner("prod/statefulset/db").as_deref(), Some("db"));
        assert_eq!(owner("prod/statefulset/web"), None, "the kind must match");
        assert_eq!(
            owner("prod/deployment/api"),
            None,
            "a Rollout is not the Deployment"
        );
        assert_eq!(owner("prod/deployment/legacy").as_deref(), Some("bare"));
        assert_eq!(owner("prod/deployment/other"), None);
    }
}

//! The planning world read from real objects: `automaton.dev/paused`, Argo CD and Flux
//! marks, and HorizontalPodAutoscalers become the `Workload` the engine plans against, and
//! the engine skips with the right reason. The daemon's `refresh_world` joins exactly these
//! pieces (`LiveWorkload::to_world` and `managers::hpa_for` over what the reflectors hold,
//! tests/kube_reflect.rs).

mod kube_support;

use std::time::Duration;

use automaton::clients::kube::managers::hpa_for;
use automaton::clients::kube::workload::LiveWorkload;
use automaton::core::decision::{Decision, SkipReason, Verdict};
use automaton::core::engine::EngineConfig;
use automaton::core::world::{SimWorld, Workload};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube_support::*;

/// As the daemon keys it: in the namespace of the engine's rules (the test engine's `default`).
const TARGET: &str = "default/deployment/nginx-deployment";

/// The world `refresh_world` builds from a Deployment fixture and the HPA list fixture.
fn world_of(deployment: &str, with_hpas: bool) -> Workload {
    let d: Deployment = serde_json::from_value(fixture(deployment)).expect("a Deployment");
    let live = LiveWorkload::from_deployment(&d);
    let mut world = live.to_world();
    if with_hpas {
        world.hpa = hpa_for(&hpas(), &live.target());
    }
    world
}

fn hpas() -> Vec<HorizontalPodAutoscaler> {
    serde_json::from_value(fixture("hpa-autoscaling-v2-list.yaml")["items"].clone()).expect("HPAs")
}

const SCALE: &str = "scale: {target: deployment/nginx-deployment, replicas: 3}";
const MEMORY: &str = "raise_memory: {target: deployment/nginx-deployment, factor: 2}";

/// The decision of a firing rule with `action` on nginx-deployment, planned against `w`.
fn decision(action: &str, w: Workload, gitops_skip: bool) -> Decision {
    let config = EngineConfig {
        executable: automaton::core::engine::Executable::All,
        gitops_skip,
        ..EngineConfig::default()
    };
    let (_, mut engine) = engine_with(&rule("lag", "kafka_lag: {group: g}", action), config);
    sample(
        &mut engine,
        60,
        &[("group", "g"), ("container", "nginx")],
        20000.0,
    );
    let world = SimWorld([(TARGET.to_owned(), w)].into());
    let mut decisions = engine.evaluate(Duration::from_secs(60), &world);
    assert_eq!(decisions.len(), 1, "{decisions:#?}");
    decisions.remove(0)
}

fn skipped(d: &Decision) -> (Option<SkipReason>, String) {
    let detail = d.detail.as_ref().map(|x| x.to_string()).unwrap_or_default();
    (d.reason, detail)
}

#[test]
fn a_plain_deployment_is_free_to_act_on() {
    // hello-world: no pause, no GitOps marks, no HPA aimed at it.
    let w = world_of("deployment-apps-v1-hello-world.yaml", true);
    assert_eq!(
        (w.paused, w.gitops.as_deref(), w.hpa.as_deref()),
        (false, None, None)
    );
    let d = decision(SCALE, w, true);
    assert_eq!((d.decision, d.reason), (Verdict::Act, None), "{d:#?}");
}

#[test]
fn the_paused_annotation_skips_every_action_with_paused() {
    let w = world_of("deployment-apps-v1-paused.yaml", false);
    assert!(w.paused);
    for action in [SCALE, MEMORY] {
        let d = decision(action, w.clone(), false);
        assert_eq!(d.decision, Verdict::Skip);
        assert_eq!(
            skipped(&d),
            (
                Some(SkipReason::Paused),
                "the target is annotated automaton.dev/paused: \"true\"".to_owned()
            )
        );
    }
}

#[test]
fn argo_cd_and_flux_objects_are_gitops_skipped_or_acted_on_with_a_warning() {
    let argo = world_of("deployment-apps-v1-argocd.yaml", false);
    assert_eq!(argo.gitops.as_deref(), Some("argocd: nginx"), "the label wins");
    let flux = world_of("deployment-apps-v1-flux.yaml", false);
    assert_eq!(
        flux.gitops.as_deref(),
        Some("flux kustomization: flux-system/apps")
    );
    for (w, tool) in [
        (argo, "argocd: nginx"),
        (flux, "flux kustomization: flux-system/apps"),
    ] {
        let d = decision(SCALE, w.clone(), true);
        assert_eq!(
            skipped(&d),
            (
                Some(SkipReason::Gitops),
                format!("managed by {tool}, which would revert the change (GITOPS_POLICY=skip)")
            )
        );
        // GITOPS_POLICY=warn: acted on, the decision names the tool for the Warning Event.
        let d = decision(SCALE, w, false);
        assert_eq!(d.decision, Verdict::Act, "{d:#?}");
        assert_eq!(d.gitops.as_deref(), Some(tool));
    }
}

#[test]
fn an_hpa_on_the_workload_skips_scale_but_not_other_actions() {
    let w = world_of("deployment-apps-v1-paused.yaml", true);
    assert_eq!(w.hpa.as_deref(), Some("nginx"));
    let mut w = Workload { paused: false, ..w };
    w.containers
        .get_mut("nginx")
        .expect("container nginx")
        .memory_request = Some("128Mi".parse().unwrap());
    w.containers
        .get_mut("nginx")
        .expect("container nginx")
        .memory_limit = Some("256Mi".parse().unwrap());
    let d = decision(SCALE, w.clone(), false);
    assert_eq!(
        skipped(&d),
        (
            Some(SkipReason::HpaManaged),
            "HorizontalPodAutoscaler nginx owns the replicas of default/deployment/nginx-deployment"
                .to_owned()
        )
    );
    let d = decision(MEMORY, w, false);
    assert_eq!(
        d.decision,
        Verdict::Act,
        "the HPA owns replicas, not memory: {d:#?}"
    );
}

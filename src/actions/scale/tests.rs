//! The plan of `scale`: every mode and bound, and the direction rule.

use std::collections::BTreeMap;

use super::*;
use crate::core::plan::Limits;
use crate::core::world::{SimWorld, Workload};

fn plan(scale: &Scale, current: u32, value: f64, partitions: Option<u32>) -> Plan {
    plan_when(scale, current, value, partitions, crate::core::values::Op::Gt)
}

fn plan_when(
    scale: &Scale,
    current: u32,
    value: f64,
    partitions: Option<u32>,
    when: crate::core::values::Op,
) -> Plan {
    let world = SimWorld(BTreeMap::from([(
        "deployment/app".to_owned(),
        Workload {
            replicas: Some(current),
            ..Default::default()
        },
    )]));
    let mut labels = BTreeMap::new();
    if let Some(p) = partitions {
        labels.insert("partitions".to_owned(), p.to_string());
    }
    let limits = Limits::default();
    let ctx = PlanCtx {
        target: "deployment/app",
        value,
        labels: &labels,
        world: &world,
        limits: &limits,
        when,
    };
    scale.plan(&ctx).unwrap()
}

fn spec(replicas: Option<u32>, step: Option<i64>, per_lag: Option<u64>, max: Option<u32>) -> Scale {
    Scale {
        target: Target::Deployment {
            namespace: None,
            name: "app".into(),
        },
        replicas,
        step,
        per_lag,
        min: None,
        max,
    }
}

#[test]
fn never_above_rule_max_or_max_replicas() {
    let p = plan(&spec(Some(30), None, None, Some(50)), 1, 0.0, None);
    assert_eq!(p.change["replicas"], json!([1, 10]));
    assert_eq!(p.change["cap"], json!("max"));
    let p = plan(&spec(None, Some(3), None, Some(4)), 2, 0.0, None);
    assert_eq!(p.change["replicas"], json!([2, 4]));
}

#[test]
fn already_there_is_a_noop() {
    let p = plan(&spec(Some(6), None, None, None), 6, 0.0, None);
    assert!(p.noop.is_some());
    let p = plan(&spec(None, Some(1), None, Some(5)), 5, 0.0, None);
    assert!(p.noop.is_some(), "{:?}", p.change);
}

/// Found by the property tests: `step: 1, max: 5` on a workload someone scaled to 8
/// used to plan 8 → 5 in the middle of the incident.
#[test]
fn a_scale_never_moves_against_the_pressure_that_fired_it() {
    use crate::core::values::Op;
    let up = plan(&spec(None, Some(1), None, Some(5)), 8, 0.0, None);
    assert_eq!(up.change["replicas"], json!([8, 8]));
    assert!(
        up.noop.as_deref().unwrap().contains("never scales down"),
        "{:?}",
        up.noop
    );
    let up = plan(&spec(Some(6), None, None, None), 8, 20000.0, None);
    assert!(up.noop.is_some(), "a `>` rule with replicas: 6 leaves 8 alone");
    let per_lag = plan(&spec(None, None, Some(5000), None), 8, 6000.0, Some(12));
    assert!(
        per_lag.noop.is_some(),
        "lag 6000 wants 2, the workload has 8: left alone"
    );
    let down = plan_when(&spec(Some(1), None, None, None), 6, 10.0, None, Op::Lt);
    assert_eq!(down.change["replicas"], json!([6, 1]));
    let down = plan_when(&spec(Some(3), None, None, None), 1, 10.0, None, Op::Lt);
    assert!(down.noop.as_deref().unwrap().contains("never scales up"));
    let down = plan(&spec(None, Some(-2), None, None), 1, 0.0, None);
    assert!(
        down.noop.is_some(),
        "a negative step never adds, even at MIN_REPLICAS"
    );
    let exact = plan_when(&spec(Some(3), None, None, None), 8, 0.0, None, Op::Eq);
    assert_eq!(exact.change["replicas"], json!([8, 3]));
}

#[test]
fn per_lag_is_capped_by_partitions_then_max() {
    let p = plan(&spec(None, None, Some(1000), None), 1, 4500.0, Some(3));
    assert_eq!(p.change["replicas"], json!([1, 3]));
    assert_eq!(p.change["cap"], json!("partitions"));
    let p = plan(&spec(None, None, Some(1000), None), 1, 4500.0, Some(12));
    assert_eq!(p.change["replicas"], json!([1, 5]));
    assert!(p.change.get("cap").is_none());
    let p = plan(&spec(None, None, Some(10), Some(8)), 1, 4500.0, Some(64));
    assert_eq!(p.change["replicas"], json!([1, 8]));
    assert_eq!(p.change["cap"], json!("max"));
}

#[test]
fn validation_needs_exactly_one_mode() {
    let kafka = SignalSpec::KafkaLag(crate::signals::KafkaLag {
        group: "g".into(),
        topic: None,
        offset_reset: Default::default(),
    });
    assert_eq!(
        spec(Some(1), None, None, None).validate(&kafka),
        Vec::<String>::new()
    );
    assert_eq!(spec(Some(1), Some(1), None, None).validate(&kafka).len(), 1);
    assert_eq!(spec(None, None, None, None).validate(&kafka).len(), 1);
}

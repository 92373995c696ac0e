//! WATCH_NAMESPACES as installed: `kubectl kustomize` renders the two example overlays and
//! the test reads their RBAC like `kubectl auth can-i` would. With a list
//! (overlays/namespaces), every listed namespace has a RoleBinding of the
//! `automaton-watched` ClusterRole to the automaton's ServiceAccount in its own namespace,
//! and no other namespace gets anything; with `*` (overlays/cluster-wide) one
//! ClusterRoleBinding grants the same verbs everywhere. Neither grants a delete, a Secret or
//! a wildcard, nor the automaton's own state or run_job outside its namespace. With shards
//! (overlays/shards), three such cluster-wide installs, each in its own namespace with its
//! own names, SHARD 0/3, 1/3 and 2/3.

mod deploy_support;

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding};
use serde_json::Value;

use deploy_support::{can_i, deploy, grants, kubectl_kustomize, typed};

/// Every grant a watched namespace needs, and nothing more.
fn watched_grants() -> BTreeSet<String> {
    [
        ("", "pods", &["get", "list", "watch"][..]),
        ("apps", "deployments", &["get", "list", "watch", "patch"]),
        ("apps", "statefulsets", &["get", "list", "watch", "patch"]),
        ("apps", "replicasets", &["get"]),
        ("autoscaling", "horizontalpodautoscalers", &["list", "watch"]),
        ("", "events", &["create", "patch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ]
    .iter()
    .flat_map(|(group, resource, verbs)| verbs.iter().map(move |v| format!("{v} {group}/{resource}")))
    .collect()
}

/// The rendered overlay's objects of one kind, typed.
fn of_kind<T: serde::de::DeserializeOwned + serde::Serialize>(docs: &[Value], kind: &str) -> Vec<T> {
    docs.iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| typed(d).unwrap_or_else(|e| panic!("{kind}: {e}")))
        .collect()
}

fn render(overlay: &str) -> Option<Vec<Value>> {
    let Some(text) = kubectl_kustomize(&deploy().join(overlay)) else {
        eprintln!("kubectl is not on PATH: skipping the {overlay} overlay");
        return None;
    };
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde_yaml::from_value::<Value>(serde_yaml::Value::deserialize(d).expect("YAML")).expect("JSON")
        })
        .collect();
    Some(docs)
}

use serde::Deserialize;

/// A setting of the ConfigMap `name`.
fn setting(docs: &[Value], name: &str, key: &str) -> String {
    let maps: Vec<ConfigMap> = of_kind(docs, "ConfigMap");
    let settings = maps
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some(name))
        .expect("the settings ConfigMap");
    settings.data.as_ref().expect("data")[key].clone()
}

fn watch_namespaces(docs: &[Value]) -> String {
    setting(docs, "self-healing-config", "WATCH_NAMESPACES")
}

fn assert_least_privilege(rules: &[PolicyRule]) {
    assert_eq!(
        grants(rules),
        watched_grants(),
        "exactly what a watched namespace needs"
    );
    for (verb, group, resource) in [
        ("delete", "", "pods"),
        ("get", "", "secrets"),
        ("create", "", "pods/exec"),
        ("get", "", "configmaps"),
        ("patch", "coordination.k8s.io", "leases"),
        ("create", "batch", "jobs"),
        ("update", "apps", "deployments"),
    ] {
        assert!(
            !can_i(rules, verb, group, resource, None),
            "can-i {verb} {group}/{resource} should be no"
        );
    }
}

#[test]
fn every_listed_namespace_is_bound_and_no_other() {
    let Some(docs) = render("overlays/namespaces") else {
        return;
    };
    let listed: BTreeSet<String> = watch_namespaces(&docs).split(',').map(str::to_owned).collect();
    assert_eq!(listed, BTreeSet::from(["team-a".to_owned(), "team-b".to_owned()]));
    let roles: Vec<ClusterRole> = of_kind(&docs, "ClusterRole");
    let [role] = &roles[..] else {
        panic!("one ClusterRole: {roles:?}")
    };
    assert_eq!(role.metadata.name.as_deref(), Some("automaton-watched"));
    assert_least_privilege(role.rules.as_deref().unwrap_or_default());
    assert!(
        of_kind::<ClusterRoleBinding>(&docs, "ClusterRoleBinding").is_empty(),
        "nothing cluster-wide"
    );

    let bindings: Vec<RoleBinding> = of_kind(&docs, "RoleBinding");
    let mut bound = BTreeSet::new();
    for b in bindings.iter().filter(|b| b.role_ref.kind == "ClusterRole") {
        assert_eq!(b.role_ref.name, "automaton-watched");
        let subjects: Vec<(&str, &str, Option<&str>)> = b
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()))
            .collect();
        assert_eq!(
            subjects,
            [("ServiceAccount", "self-healing-sa", Some("automaton"))]
        );
        bound.insert(
            b.metadata
                .namespace
                .clone()
                .expect("a RoleBinding in its namespace"),
        );
    }
    assert_eq!(
        bound, listed,
        "a RoleBinding in each listed namespace, in no other"
    );
    // The automaton itself, its Role and its state stay in its own namespace.
    for d in docs
        .iter()
        .filter(|d| d["kind"] != "ClusterRole" && d["kind"] != "RoleBinding")
    {
        assert_eq!(
            d["metadata"]["namespace"], "automaton",
            "{}",
            d["metadata"]["name"]
        );
    }
}

#[test]
fn a_star_is_one_cluster_role_binding_of_the_same_grants() {
    let Some(docs) = render("overlays/cluster-wide") else {
        return;
    };
    assert_eq!(watch_namespaces(&docs), "*");
    let roles: Vec<ClusterRole> = of_kind(&docs, "ClusterRole");
    let [role] = &roles[..] else {
        panic!("one ClusterRole: {roles:?}")
    };
    assert_eq!(role.metadata.name.as_deref(), Some("automaton-cluster"));
    assert_least_privilege(role.rules.as_deref().unwrap_or_default());
    let bindings: Vec<ClusterRoleBinding> = of_kind(&docs, "ClusterRoleBinding");
    let [binding] = &bindings[..] else {
        panic!("one ClusterRoleBinding: {bindings:?}")
    };
    assert_eq!(binding.role_ref.name, "automaton-cluster");
    let subject = binding.subjects.iter().flatten().next().expect("a subject");
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("self-healing-sa", Some("automaton")),
        "the overlay's namespace fills the subject"
    );
}

#[test]
fn shards_are_whole_installs_apart_from_each_other() {
    let Some(docs) = render("overlays/shards") else {
        return;
    };
    let deployments: Vec<Deployment> = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 3);
    let bindings: Vec<ClusterRoleBinding> = of_kind(&docs, "ClusterRoleBinding");
    let roles: Vec<ClusterRole> = of_kind(&docs, "ClusterRole");
    let mut shards = BTreeSet::new();
    for (i, d) in deployments.iter().enumerate() {
        let ns = d.metadata.namespace.clone().expect("a namespace");
        assert_eq!(ns, format!("automaton-shard-{i}"));
        let suffix = format!("-shard-{i}");
        let config = format!("self-healing-config{suffix}");
        assert_eq!(setting(&docs, &config, "WATCH_NAMESPACES"), "*");
        shards.insert(setting(&docs, &config, "SHARD"));
        let pod = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("a pod spec");
        let account = pod.service_account_name.clone().expect("a ServiceAccount");
        assert_eq!(account, format!("self-healing-sa{suffix}"));
        // Its own ClusterRole, bound to its own ServiceAccount only.
        let binding = bindings
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some(&format!("automaton-cluster{suffix}")))
            .expect("the shard's ClusterRoleBinding");
        assert_eq!(binding.role_ref.name, format!("automaton-cluster{suffix}"));
        let subjects: Vec<(&str, Option<&str>)> = binding
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.name.as_str(), s.namespace.as_deref()))
            .collect();
        assert_eq!(subjects, [(account.as_str(), Some(ns.as_str()))]);
    }
    assert_eq!(shards, BTreeSet::from(["0/3", "1/3", "2/3"].map(String::from)));
    assert_eq!(roles.len(), 3);
    for role in &roles {
        assert_least_privilege(role.rules.as_deref().unwrap_or_default());
    }
    let namespaces: BTreeSet<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Namespace")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["automaton-shard-0", "automaton-shard-1", "automaton-shard-2"])
    );
}

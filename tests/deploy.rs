//! The Kubernetes manifests in `deploy/` and the `Dockerfile`, checked without a cluster:
//! every object parses into its k8s-openapi type with no field left over, the RBAC keeps its
//! promises (answered like `kubectl auth can-i`), the Deployment is locked down, the settings
//! and rule files it ships (the base's pod pack and each pack component's) are valid for the
//! daemon, and, when kubectl is on PATH, `kubectl kustomize` builds the base, every pack
//! component and the production overlay.

mod deploy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::Metadata;
use serde::Deserialize;
use serde_json::Value;

use deploy_support::{base, can_i, deploy, grants, kubectl_kustomize, read, relative, repo, strings, typed};

const RULES_DIR: &str = "/etc/automaton/rules";
const RULES_CONFIG_MAP: &str = "automaton-rules";

/// Every non-empty YAML document of `text`, as JSON.
fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        match Value::deserialize(doc).map_err(|e| e.to_string())? {
            Value::Null => {}
            v => docs.push(v),
        }
    }
    Ok(docs)
}

/// The objects of a set of manifests, by kind.
#[derive(Debug, Default)]
struct Objects {
    service_accounts: Vec<ServiceAccount>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    config_maps: Vec<ConfigMap>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    disruption_budgets: Vec<PodDisruptionBudget>,
}

impl Objects {
    fn add_yaml(&mut self, text: &str) -> Result<(), String> {
        documents(text)?.iter().try_for_each(|doc| self.add(doc))
    }

    fn add(&mut self, value: &Value) -> Result<(), String> {
        let kind = value.get("kind").and_then(Value::as_str).ok_or("no kind")?;
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or("no metadata.name")?;
        let wrap = |e: String| format!("{kind} {name}: {e}");
        match kind {
            "ServiceAccount" => self.service_accounts.push(typed(value).map_err(wrap)?),
            "Role" => self.roles.push(typed(value).map_err(wrap)?),
            "RoleBinding" => self.role_bindings.push(typed(value).map_err(wrap)?),
            "ClusterRole" => self.cluster_roles.push(typed(value).map_err(wrap)?),
            "ClusterRoleBinding" => self.cluster_role_bindings.push(typed(value).map_err(wrap)?),
            "ConfigMap" => self.config_maps.push(typed(value).map_err(wrap)?),
            "Deployment" => self.deployments.push(typed(value).map_err(wrap)?),
            "Service" => self.services.push(typed(value).map_err(wrap)?),
            "PodDisruptionBudget" => self.disruption_budgets.push(typed(value).map_err(wrap)?),
            other => {
                return Err(format!(
                    "{other} {name}: a kind this test does not know yet; add it"
                ))
            }
        }
        Ok(())
    }

    /// Every object as (kind, metadata).
    fn all(&self) -> Vec<(&'static str, &ObjectMeta)> {
        fn each<'a, T: Metadata<Ty = ObjectMeta>>(
            kind: &'static str,
            items: &'a [T],
        ) -> Vec<(&'static str, &'a ObjectMeta)> {
            items.iter().map(|o| (kind, o.metadata())).collect()
        }
        [
            each("ServiceAccount", &self.service_accounts),
            each("Role", &self.roles),
            each("RoleBinding", &self.role_bindings),
            each("ClusterRole", &self.cluster_roles),
            each("ClusterRoleBinding", &self.cluster_role_bindings),
            each("ConfigMap", &self.config_maps),
            each("Deployment", &self.deployments),
            each("Service", &self.services),
            each("PodDisruptionBudget", &self.disruption_budgets),
        ]
        .concat()
    }

    fn names(&self) -> BTreeSet<String> {
        self.all()
            .iter()
            .map(|(kind, m)| format!("{kind}/{}", m.name.as_deref().unwrap_or("")))
            .collect()
    }

    fn rules(&self) -> Vec<PolicyRule> {
        self.roles
            .iter()
            .flat_map(|r| r.rules.clone().unwrap_or_default())
            .collect()
    }

    fn config_map(&self, name: &str) -> BTreeMap<String, String> {
        named(&self.config_maps, name).data.clone().unwrap_or_default()
    }
}

fn named<'a, T: Metadata<Ty = ObjectMeta>>(items: &'a [T], name: &str) -> &'a T {
    items
        .iter()
        .find(|o| o.metadata().name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no object named {name}"))
}

/// A kustomization file as plain YAML (it is not a Kubernetes object).
fn kustomization(dir: &Path) -> Value {
    let docs = documents(&read(&dir.join("kustomization.yaml"))).expect("kustomization.yaml parses");
    docs.into_iter().next().expect("kustomization.yaml is not empty")
}

/// The objects of the files a kustomization lists in `resources` (the generated ConfigMap
/// is checked on its own and through `kubectl kustomize`).
fn load(dir: &Path) -> Objects {
    let mut objects = Objects::default();
    for file in strings(&kustomization(dir), "resources") {
        let path = dir.join(&file);
        let text = read(&path);
        objects
            .add_yaml(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    objects
}

/// `files:` of the rules configMapGenerator of the kustomization in `dir` (the base or a
/// pack component), as (key, path relative to `dir`); none when it has no such generator.
fn generated_rule_files(dir: &Path) -> Vec<(String, String)> {
    let k = kustomization(dir);
    let Some(rules) = k
        .get("configMapGenerator")
        .and_then(Value::as_array)
        .and_then(|g| g.iter().find(|g| g["name"] == RULES_CONFIG_MAP))
    else {
        return Vec::new();
    };
    let file_name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    strings(rules, "files")
        .into_iter()
        .map(|f| match f.split_once('=') {
            Some((key, path)) => (key.to_owned(), path.to_owned()),
            None => (file_name(&f), f),
        })
        .collect()
}

/// Every rule file shipped, over the base and the components: (key, its path).
fn shipped_rule_files() -> Vec<(String, PathBuf)> {
    let mut all = Vec::new();
    for dir in kustomization_dirs() {
        for (key, file) in generated_rule_files(&dir) {
            all.push((key, dir.join(file)));
        }
    }
    all.sort();
    all
}

/// What no Role of this project may ever grant, whatever the object name.
fn never_granted(rules: &[PolicyRule]) -> Vec<String> {
    let mut found = Vec::new();
    for r in rules {
        let all = r.verbs.iter().chain(
            [&r.api_groups, &r.resources, &r.resource_names]
                .into_iter()
                .flatten()
                .flatten(),
        );
        for word in all {
            match word.as_str() {
                "*" => found.push(format!("a wildcard in {r:?}")),
                "delete" | "deletecollection" => found.push(format!("{word} in {r:?}")),
                w if w == "secrets" || w.starts_with("secrets/") => found.push(format!("secrets in {r:?}")),
                _ => {}
            }
        }
    }
    found
}

/// The base's promises, as `kubectl auth can-i --as=system:serviceaccount:NS:self-healing-sa`
/// would answer them.
fn assert_base_promises(rules: &[PolicyRule]) {
    for (verb, group, resource) in [
        ("get", "", "pods"),
        ("list", "", "pods"),
        ("watch", "", "pods"),
        ("get", "apps", "deployments"),
        ("list", "apps", "deployments"),
        ("watch", "apps", "deployments"),
        ("patch", "apps", "deployments"),
        ("watch", "apps", "statefulsets"),
        ("patch", "apps", "statefulsets"),
        ("get", "apps", "replicasets"),
        ("list", "autoscaling", "horizontalpodautoscalers"),
        ("watch", "autoscaling", "horizontalpodautoscalers"),
        ("get", "batch", "cronjobs"),
        ("create", "batch", "jobs"),
        ("create", "", "events"),
        ("create", "", "configmaps"),
        ("create", "events.k8s.io", "events"),
        ("patch", "events.k8s.io", "events"),
        ("get", "coordination.k8s.io", "leases"),
        ("create", "coordination.k8s.io", "leases"),
        ("patch", "coordination.k8s.io", "leases"),
    ] {
        assert!(
            can_i(rules, verb, group, resource, None),
            "can-i {verb} {group}/{resource} should be yes"
        );
    }
    for (verb, group, resource) in [
        ("delete", "", "pods"),
        ("delete", "apps", "deployments"),
        ("deletecollection", "", "pods"),
        ("get", "", "secrets"),
        ("list", "", "secrets"),
        ("create", "", "pods/exec"),
        ("get", "", "pods/exec"),
        ("update", "apps", "deployments"),
        ("create", "apps", "deployments"),
        ("patch", "", "pods"),
        ("create", "", "pods"),
        ("update", "coordination.k8s.io", "leases"),
        ("get", "", "configmaps"),
        ("update", "", "configmaps"),
        ("patch", "apps", "deployments/scale"),
        ("watch", "apps", "replicasets"),
        ("patch", "autoscaling", "horizontalpodautoscalers"),
    ] {
        assert!(
            !can_i(rules, verb, group, resource, None),
            "can-i {verb} {group}/{resource} should be no"
        );
    }
    // The guard state: its own ConfigMap, by name, and no other.
    for verb in ["get", "update"] {
        assert!(
            can_i(rules, verb, "", "configmaps", Some("automaton-state")),
            "{verb} the state"
        );
        assert!(
            !can_i(rules, verb, "", "configmaps", Some("automaton-rules")),
            "{verb} another ConfigMap"
        );
    }
    assert_eq!(never_granted(rules), Vec::<String>::new());
}

/// The container port a probe or Service names, as a number.
fn port_number(container: &Container, port: &IntOrString) -> Option<i32> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port),
    }
}

fn automaton_container(d: &Deployment) -> &Container {
    let pod = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec");
    pod.containers
        .iter()
        .find(|c| c.name == "automaton")
        .expect("a container named automaton")
}

/// YAML files under `dir`, except rule files (named like rules/*.yaml), the Solana component
/// (CronJobs and patches: tests/deploy_solana.rs), the monitoring kit (Prometheus Operator
/// kinds: tests/monitoring.rs) and overlays (patches: rendered below).
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("readable")
        .map(|e| e.expect("readable entry"))
    {
        let path = entry.path();
        if entry.file_type().expect("a file type").is_dir() {
            if path != deploy().join("components/solana")
                && path != deploy().join("components/monitoring")
                && path != deploy().join("overlays")
            {
                found.extend(yaml_files(&path));
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && !repo().join("rules").join(entry.file_name()).exists()
        {
            found.push(path);
        }
    }
    found.sort();
    found
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "kustomization.yaml")
}

/// Files under deploy/ that should hold Kubernetes objects.
fn manifest_files() -> Vec<PathBuf> {
    yaml_files(&deploy())
        .into_iter()
        .filter(|p| !is_kustomization(p))
        .collect()
}

/// Directories under deploy/ holding a kustomization (the root, the base, the components
/// but Solana's).
fn kustomization_dirs() -> Vec<PathBuf> {
    let dirs = yaml_files(&deploy()).into_iter().filter(|p| is_kustomization(p));
    let mut dirs: Vec<PathBuf> = dirs
        .map(|p| p.parent().expect("a directory").to_owned())
        .collect();
    dirs.push(deploy().join("components/solana"));
    dirs.push(deploy().join("components/monitoring"));
    dirs.push(deploy().join("overlays/production"));
    dirs.push(deploy().join("overlays/namespaces"));
    dirs.push(deploy().join("overlays/cluster-wide"));
    for shards in ["", "/shard-0", "/shard-1", "/shard-2", "/namespace"] {
        dirs.push(deploy().join(format!("overlays/shards{shards}")));
    }
    dirs.sort();
    dirs
}

#[test]
fn round_trip_rejects_a_misspelt_field() {
    let good = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 8000, targetPort: http}]\n";
    let mut objects = Objects::default();
    objects.add_yaml(good).expect("a correct Service parses");
    assert_eq!(objects.names(), BTreeSet::from(["Service/x".to_owned()]));

    let bad = include_str!("../deploy/base/deployment.yaml").replace("readinessProbe:", "readynessProbe:");
    let err = Objects::default()
        .add_yaml(&bad)
        .expect_err("a misspelt field must fail");
    assert!(err.contains(".readynessProbe is not a field"), "{err}");

    let wrong_kind = "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n";
    assert!(
        Objects::default().add_yaml(wrong_kind).is_err(),
        "an unexpected kind must fail"
    );
}

#[test]
fn every_manifest_is_a_namespace_agnostic_kubernetes_object() {
    let files = manifest_files();
    assert!(files.len() >= 7, "{files:?}");
    for file in &files {
        let mut objects = Objects::default();
        objects
            .add_yaml(&read(file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (kind, meta) in objects.all() {
            assert_eq!(
                meta.namespace,
                None,
                "{}: {kind} names a namespace",
                file.display()
            );
        }
        for binding in &objects.role_bindings {
            for subject in binding.subjects.iter().flatten() {
                assert_eq!(
                    subject.namespace,
                    None,
                    "{}: a subject names a namespace",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn kustomizations_list_existing_files_and_every_manifest() {
    let mut listed = BTreeSet::new();
    let dirs = kustomization_dirs();
    for dir in [
        "base",
        "components/clean-logs",
        "components/kafka",
        "components/disk",
    ] {
        assert!(dirs.contains(&deploy().join(dir)), "{dir} missing from {dirs:?}");
    }
    for dir in dirs {
        let k = kustomization(&dir);
        for entry in strings(&k, "resources")
            .into_iter()
            .chain(strings(&k, "components"))
        {
            let path = dir.join(&entry);
            assert!(
                path.is_file() || path.join("kustomization.yaml").is_file(),
                "{}: {entry} does not exist",
                dir.display()
            );
            listed.insert(path);
        }
    }
    for file in manifest_files() {
        assert!(
            listed.contains(&file),
            "{} is in no kustomization: never deployed",
            file.display()
        );
    }
    for (_, path) in shipped_rule_files() {
        // kustomize resolves symlinks and refuses a target outside the kustomization.
        let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            meta.is_file(),
            "{} must be a regular file, not a symlink",
            path.display()
        );
    }
}

#[test]
fn the_rules_config_map_ships_the_repository_rules() {
    let mut in_repo: Vec<String> = std::fs::read_dir(repo().join("rules"))
        .expect("rules/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    in_repo.sort();
    assert!(!in_repo.is_empty());
    let shipped = shipped_rule_files();
    let keys: Vec<String> = shipped.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys, in_repo,
        "the base and the pack components ship exactly rules/*.yaml, each once"
    );
    // The base ships the pod pack only: it needs nothing but the Kubernetes API.
    let base_keys: Vec<String> = generated_rule_files(&base())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(base_keys, ["pods.yaml"]);
    for (key, path) in shipped {
        assert_eq!(
            read(&path),
            read(&repo().join("rules").join(&key)),
            "{} differs from rules/{key}: copy rules/{key} there",
            path.display()
        );
    }
}

#[test]
fn the_shipped_settings_and_rules_are_valid_for_the_daemon() {
    let base = load(&base());
    let env = base.config_map("self-healing-config");
    for (key, value) in [
        ("KAFKA_LAG_THRESHOLD", "15000"),
        ("POSTGRES_CONN_THRESHOLD", "85"),
        ("DISK_SPACE_THRESHOLD", "85"),
        ("MEMORY_THRESHOLD", "85"),
        ("MIN_REPLICAS", "1"),
        ("MAX_REPLICAS", "10"),
        ("CHECK_INTERVAL", "60"),
        ("LOG_FORMAT", "json"),
        ("ACTION_BUDGET", "10/10m"),
        ("DRY_RUN", "false"),
        ("MAX_MEMORY", "8Gi"),
    ] {
        assert_eq!(
            env.get(key).map(String::as_str),
            Some(value),
            "self-healing-config {key}"
        );
    }

    let settings =
        automaton::settings::Settings::from_vars(env.clone()).expect("the ConfigMap is valid settings");
    assert_eq!(settings.check_interval, std::time::Duration::from_secs(60));
    assert!(!settings.dry_run);

    let lookup = |name: &str| env.get(name).cloned();
    let files: Vec<PathBuf> = shipped_rule_files().into_iter().map(|(_, path)| path).collect();
    let rules = automaton::rules::load::load(&files, &lookup);
    let errors: Vec<String> = rules
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        Vec::<String>::new(),
        "the mounted rules load with the ConfigMap's environment"
    );
}

#[test]
fn base_rbac_is_least_privilege() {
    let base = load(&base());
    assert_eq!(base.roles.len(), 1);
    let rules = base.rules();
    assert_base_promises(&rules);
    // Exactly these, nothing more: each (verb, group/resource) the Role grants.
    let expected: BTreeSet<String> = [
        ("", "pods", &["get", "list", "watch"][..]),
        ("apps", "deployments", &["get", "list", "watch", "patch"]),
        ("apps", "statefulsets", &["get", "list", "watch", "patch"]),
        ("apps", "replicasets", &["get"]),
        ("autoscaling", "horizontalpodautoscalers", &["list", "watch"]),
        ("batch", "cronjobs", &["get", "list"]),
        ("batch", "jobs", &["list", "create"]),
        ("", "events", &["create", "patch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
        ("coordination.k8s.io", "leases", &["get", "create", "patch"]),
        ("", "configmaps", &["get", "update", "create"]),
    ]
    .iter()
    .flat_map(|(group, resource, verbs)| verbs.iter().map(move |v| format!("{v} {group}/{resource}")))
    .collect();
    assert_eq!(grants(&rules), expected);

    let binding = named(&base.role_bindings, "self-healing");
    assert_eq!(
        (binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()),
        ("Role", "self-healing")
    );
    let subjects: Vec<(&str, &str)> = binding
        .subjects
        .iter()
        .flatten()
        .map(|s| (s.kind.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(subjects, [("ServiceAccount", "self-healing-sa")]);
    named(&base.service_accounts, "self-healing-sa");
}

#[test]
fn only_the_clean_logs_component_grants_exec() {
    let component = load(&deploy().join("components/clean-logs"));
    let rules = component.rules();
    assert!(
        can_i(&rules, "create", "", "pods/exec", None),
        "WebSocket exec on Kubernetes >= 1.35"
    );
    assert!(
        can_i(&rules, "get", "", "pods/exec", None),
        "WebSocket exec before 1.35"
    );
    assert!(can_i(&rules, "get", "", "pods", None));
    assert!(!can_i(&rules, "create", "", "pods/attach", None));
    assert_eq!(never_granted(&rules), Vec::<String>::new());

    let binding = named(&component.role_bindings, "self-healing-exec");
    assert_eq!(binding.role_ref.name, "self-healing-exec");
    let subject = binding.subjects.iter().flatten().next().expect("a subject");
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", "self-healing-sa")
    );
}

#[test]
fn can_i_matches_like_rbac() {
    let rule = |verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]| PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        resource_names: Some(names.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let star = [rule(&["*"], &["*"], &["*"], &[])];
    assert!(can_i(&star, "delete", "", "secrets", None));
    assert_eq!(never_granted(&star).len(), 3);
    let scale = [rule(&["patch"], &["apps"], &["*/scale"], &[])];
    assert!(can_i(&scale, "patch", "apps", "statefulsets/scale", None));
    assert!(!can_i(&scale, "patch", "apps", "statefulsets", None));
    let by_name = [rule(&["delete"], &[""], &["pods"], &["one"])];
    assert!(
        !can_i(&by_name, "delete", "", "pods", None),
        "a named rule allows no unnamed request"
    );
    assert!(!never_granted(&by_name).is_empty(), "but it still grants delete");
}

#[test]
fn the_deployment_is_locked_down() {
    let base = load(&base());
    let d = named(&base.deployments, "self-healing-automaton");
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(
        spec.replicas,
        Some(2),
        "two replicas, leader election picks the one that acts"
    );
    // Readiness never waits for a signal source, so a rolling update completes; no old
    // replica leaves before a new one is ready.
    let strategy = spec.strategy.as_ref().expect("a strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.as_ref().expect("rollingUpdate");
    assert_eq!(
        rolling.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("self-healing-sa"));
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for (k, v) in spec.selector.match_labels.iter().flatten() {
        assert_eq!(labels.get(k), Some(v), "the selector matches the pod template");
    }
    // The seed's runbook: `kubectl get pods -l app=self-healing-automaton`.
    assert_eq!(
        labels.get("app").map(String::as_str),
        Some("self-healing-automaton")
    );

    let c = automaton_container(d);
    // The image tag follows the crate's version, in the Deployment and in `images:`.
    let image = format!("automaton:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(c.image.as_deref(), Some(image.as_str()));
    let kustomization: serde_yaml::Value =
        serde_yaml::from_str(&read(&deploy().join("base/kustomization.yaml"))).expect("kustomization.yaml");
    assert_eq!(
        kustomization["images"][0]["newTag"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "deploy/base/kustomization.yaml `images:` tag"
    );
    assert_eq!(c.args.as_deref(), Some(&["run".to_owned()][..]));
    let sc = c.security_context.as_ref().expect("a container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert!(sc.run_as_user.is_some_and(|uid| uid != 0), "a non-root uid");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert!(caps.add.as_ref().is_none_or(Vec::is_empty));
    let seccomp = sc.seccomp_profile.as_ref().or(pod
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref()));
    assert_eq!(seccomp.map(|s| s.type_.as_str()), Some("RuntimeDefault"));

    for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz")] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("a {path} probe"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(port_number(c, &get.port), Some(8000), "{path} on port 8000");
    }

    let resources = c.resources.as_ref().expect("resources");
    for (what, set) in [("requests", &resources.requests), ("limits", &resources.limits)] {
        let set = set.clone().unwrap_or_default();
        assert!(
            set.contains_key("cpu") && set.contains_key("memory"),
            "{what} for cpu and memory"
        );
    }

    let env_from: Vec<&str> = c
        .env_from
        .iter()
        .flatten()
        .filter_map(|e| e.config_map_ref.as_ref())
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(env_from, ["self-healing-config"]);
    named(&base.config_maps, "self-healing-config");
    let env: BTreeMap<&str, (Option<&str>, Option<&str>)> = c
        .env
        .iter()
        .flatten()
        .map(|e| {
            let field = e
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            (e.name.as_str(), (e.value.as_deref(), field))
        })
        .collect();
    assert_eq!(env.get("NAMESPACE"), Some(&(None, Some("metadata.namespace"))));
    assert_eq!(env.get("POD_NAME"), Some(&(None, Some("metadata.name"))));
    assert_eq!(env.get("RULES_DIR"), Some(&(Some(RULES_DIR), None)));

    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == RULES_DIR)
        .expect("the rules mount");
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(
        mount.sub_path, None,
        "a subPath mount never sees ConfigMap updates"
    );
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the rules volume");
    assert_eq!(
        volume.config_map.as_ref().map(|c| c.name.as_str()),
        Some(RULES_CONFIG_MAP)
    );
}

#[test]
fn the_service_exposes_metrics_on_the_http_port() {
    let base = load(&base());
    let service = named(&base.services, "self-healing-automaton");
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        annotations.get("prometheus.io/port").map(String::as_str),
        Some("8000")
    );
    let spec = service.spec.as_ref().expect("spec");
    let port = spec.ports.iter().flatten().next().expect("a port");
    assert_eq!(port.port, 8000);
    let c = automaton_container(named(&base.deployments, "self-healing-automaton"));
    let target = port.target_port.as_ref().expect("a targetPort");
    assert_eq!(port_number(c, target), Some(8000));
    assert_eq!(
        spec.selector,
        base.deployments[0]
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
    );
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_copies_only_the_binary() {
    let text = read(&repo().join("Dockerfile")).replace("\\\n", " ");
    let instructions: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, args) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (op.to_uppercase(), args.trim().to_owned())
        })
        .collect();
    let froms: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let builder = &instructions[..froms[froms.len() - 1]];
    assert!(
        builder
            .iter()
            .any(|(op, args)| op == "RUN" && args.contains("cargo build --release --locked")),
        "the builder runs a locked release build"
    );

    let last = &instructions[froms[froms.len() - 1] + 1..];
    let of = |name: &str| {
        last.iter()
            .filter(|(op, _)| op == name)
            .map(|(_, a)| a.as_str())
            .collect::<Vec<_>>()
    };
    let user = of("USER").last().copied().expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap_or(user);
    assert!(uid != "0" && uid != "root", "USER {user} is root");
    let copies = of("COPY");
    assert_eq!(copies.len(), 1, "one COPY in the final stage: {copies:?}");
    assert!(
        copies[0].starts_with("--from="),
        "the final stage copies the binary from the builder"
    );
    assert!(
        of("ADD").is_empty() && of("RUN").is_empty(),
        "nothing else goes into the final stage"
    );
    assert_eq!(of("EXPOSE"), ["8000"]);
    assert_eq!(of("ENTRYPOINT"), [r#"["/automaton"]"#]);

    let ignored = read(&repo().join(".dockerignore"));
    assert!(
        ignored.lines().any(|l| l.trim_end_matches('/') == "target"),
        ".dockerignore skips target/"
    );
}

#[test]
fn kubectl_kustomize_builds_the_base_the_packs_and_the_production_overlay() {
    let Some(built) = kubectl_kustomize(&deploy()) else {
        eprintln!("kubectl is not on PATH: skipping `kubectl kustomize`; the files were checked one by one");
        return;
    };
    let mut installed = Objects::default();
    installed
        .add_yaml(&built)
        .unwrap_or_else(|e| panic!("kubectl kustomize deploy/: {e}"));
    let mut expected = load(&base()).names();
    expected.insert(format!("ConfigMap/{RULES_CONFIG_MAP}"));
    assert_eq!(
        installed.names(),
        expected,
        "no hash suffix, nothing more, nothing less"
    );
    assert_base_promises(&installed.rules());
    for (kind, meta) in installed.all() {
        assert_eq!(meta.namespace, None, "{kind} {:?} names a namespace", meta.name);
    }
    let rules = installed.config_map(RULES_CONFIG_MAP);
    let keys: Vec<&String> = rules.keys().collect();
    assert_eq!(keys, ["pods.yaml"], "the base ships the pod pack only");

    // Each pack is one line of an overlay, merges its rule file into the one ConfigMap and
    // grants nothing it should not; only the disk pack (clean_logs) brings pods/exec, the
    // volume pack (clean_logs too) is used with it or with clean-logs.
    for (packs, files, exec) in [
        (&["kafka"][..], &["kafka.yaml"][..], false),
        (&["postgres"], &["postgres.yaml"], false),
        (&["disk"], &["disk.yaml"], true),
        (&["memory"], &["memory.yaml"], false),
        (&["volumes"], &["volumes.yaml"], false),
        (&["volumes", "clean-logs"], &["volumes.yaml"], true),
        (&["disk", "volumes"], &["disk.yaml", "volumes.yaml"], true),
        (&["clean-logs"], &[], true),
    ] {
        let pack = packs.join("+");
        let overlay = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
        let to_deploy = relative(overlay.path(), &deploy());
        let components: Vec<String> = packs
            .iter()
            .map(|p| to_deploy.join("components").join(p).display().to_string())
            .collect();
        let text = format!(
            "resources: [{}]\ncomponents: [{}]\n",
            to_deploy.join("base").display(),
            components.join(", ")
        );
        std::fs::write(overlay.path().join("kustomization.yaml"), text).expect("write the overlay");
        let built = kubectl_kustomize(overlay.path()).expect("kubectl ran once already");
        let mut objects = Objects::default();
        objects
            .add_yaml(&built)
            .unwrap_or_else(|e| panic!("the {pack} overlay: {e}"));
        let rules = objects.config_map(RULES_CONFIG_MAP);
        assert_eq!(
            rules.get("pods.yaml"),
            Some(&read(&repo().join("rules/pods.yaml")))
        );
        for file in files {
            assert_eq!(
                rules.get(*file),
                Some(&read(&repo().join("rules").join(file))),
                "{pack}: {file} merged into {RULES_CONFIG_MAP}"
            );
        }
        assert!(
            !objects.names().iter().any(|n| n.contains("automaton-rules-")),
            "no hash suffix"
        );
        let granted = objects.rules();
        assert_eq!(
            can_i(&granted, "create", "", "pods/exec", None),
            exec,
            "{pack}: pods/exec"
        );
        assert!(can_i(&granted, "patch", "apps", "deployments", None));
        assert_eq!(never_granted(&granted), Vec::<String>::new());
    }

    // The production overlay: every pack but Solana, credentials from a Secret.
    let built = kubectl_kustomize(&deploy().join("overlays/production")).expect("kubectl ran once already");
    let mut production = Objects::default();
    production
        .add_yaml(&built)
        .unwrap_or_else(|e| panic!("kubectl kustomize deploy/overlays/production: {e}"));
    let keys: Vec<String> = production.config_map(RULES_CONFIG_MAP).into_keys().collect();
    assert_eq!(keys, ["disk.yaml", "kafka.yaml", "pods.yaml", "postgres.yaml"]);
    let settings = production.config_map("self-healing-config");
    for key in ["KAFKA_BOOTSTRAP_SERVERS", "POSTGRES_HOST", "DISK_PATH"] {
        assert!(
            settings.contains_key(key),
            "{key} missing from self-healing-config"
        );
    }
    for (key, value) in &settings {
        assert!(
            !key.contains("PASSWORD") && !key.contains("WEBHOOK") && !value.contains('@'),
            "{key}: a credential in the ConfigMap"
        );
    }
    let [deployment] = &production.deployments[..] else {
        panic!("one Deployment");
    };
    let container = automaton_container(deployment);
    let from_secret: Vec<&str> = container
        .env
        .iter()
        .flatten()
        .filter(|v| v.value_from.as_ref().is_some_and(|f| f.secret_key_ref.is_some()))
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(from_secret, ["POSTGRES_PASSWORD", "ALERT_WEBHOOK_URL"]);
    let mounts = container.volume_mounts.iter().flatten();
    assert!(
        mounts
            .filter(|m| m.mount_path == "/var/log/app")
            .all(|m| m.read_only == Some(true)),
        "the log volume is mounted read-only"
    );
    assert!(can_i(&production.rules(), "create", "", "pods/exec", None));
}

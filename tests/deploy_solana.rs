//! The `deploy/components/solana` kustomize component, checked without a cluster: every object and patch
//! parses into its k8s-openapi type with no field left over, the CronJobs are scheduled,
//! locked down and mount what they promise, the sidecar mounts the validator's volumes
//! read-only, the RBAC answers like `kubectl auth can-i`, the job scripts do what they say on
//! a scratch directory, and, when kubectl is on PATH, an overlay of the base, the component
//! and a validator StatefulSet builds.

mod deploy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::Value;

use deploy_support::{can_i, deploy, grants, kubectl_kustomize, read, relative, strings, typed};

const BACKUP: &str = "solana-snapshot-backup";
const PRUNE: &str = "solana-ledger-prune";
const VALIDATOR: &str = "agave-validator";
const VALIDATOR_VOLUMES: [(&str, &str); 3] = [
    ("ledger", "/mnt/ledger"),
    ("accounts", "/mnt/accounts"),
    ("snapshots", "/mnt/snapshots"),
];

fn solana() -> PathBuf {
    deploy().join("components/solana")
}

/// Every non-empty YAML document of `text`, as JSON.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn document(path: &Path) -> Value {
    let mut docs = documents(&read(path));
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

/// `patches:` of a kustomization, as paths.
fn patch_paths(k: &Value) -> Vec<String> {
    let list = k
        .get("patches")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.iter()
        .map(|p| p["path"].as_str().expect("a patch file").to_owned())
        .collect()
}

/// The objects of a build or of the component's `resources`.
#[derive(Debug, Default)]
struct Objects {
    cron_jobs: Vec<CronJob>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    config_maps: Vec<ConfigMap>,
    services: Vec<Service>,
    stateful_sets: Vec<StatefulSet>,
    service_accounts: Vec<ServiceAccount>,
    /// Every object as `Kind/name`, with whether it names a namespace.
    names: BTreeMap<String, bool>,
}

impl Objects {
    fn add_yaml(&mut self, text: &str) -> Result<(), String> {
        documents(text).iter().try_for_each(|doc| self.add(doc))
    }

    fn add(&mut self, value: &Value) -> Result<(), String> {
        let kind = value["kind"].as_str().ok_or("no kind")?;
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or("no metadata.name")?;
        let wrap = |e: String| format!("{kind} {name}: {e}");
        match kind {
            "CronJob" => self.cron_jobs.push(typed(value).map_err(wrap)?),
            "Role" => self.roles.push(typed(value).map_err(wrap)?),
            "RoleBinding" => self.role_bindings.push(typed(value).map_err(wrap)?),
            "ConfigMap" => self.config_maps.push(typed(value).map_err(wrap)?),
            "Service" => self.services.push(typed(value).map_err(wrap)?),
            "StatefulSet" => self.stateful_sets.push(typed(value).map_err(wrap)?),
            "ServiceAccount" => self.service_accounts.push(typed(value).map_err(wrap)?),
            other => {
                return Err(format!(
                    "{other} {name}: a kind this test does not know yet; add it"
                ))
            }
        }
        let namespaced = value.pointer("/metadata/namespace").is_some();
        self.names.insert(format!("{kind}/{name}"), namespaced);
        Ok(())
    }

    fn rules(&self) -> Vec<PolicyRule> {
        self.roles
            .iter()
            .flat_map(|r| r.rules.clone().unwrap_or_default())
            .collect()
    }

    fn cron_job(&self, name: &str) -> &CronJob {
        let found = self
            .cron_jobs
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name));
        found.unwrap_or_else(|| panic!("no CronJob {name}"))
    }
}

/// The objects of the files deploy/components/solana lists in `resources`.
fn component() -> Objects {
    let mut objects = Objects::default();
    for file in strings(&document(&solana().join("kustomization.yaml")), "resources") {
        let path = solana().join(&file);
        objects
            .add_yaml(&read(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    objects
}

/// The pod spec a StatefulSet patch adds, typed (the patch is not a whole StatefulSet).
fn patch_pod_spec(path: &Path) -> PodSpec {
    let patch = document(path);
    assert_eq!(
        (patch["kind"].as_str(), patch["metadata"]["name"].as_str()),
        (Some("StatefulSet"), Some(VALIDATOR))
    );
    let mut rest = patch.clone();
    let spec = rest["spec"]["template"]["spec"].take();
    let expected = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": VALIDATOR},
        "spec": {"template": {"spec": null}},
    });
    assert_eq!(rest, expected, "{}: patches the pod spec only", path.display());
    typed(&spec).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sidecar() -> (PodSpec, Container) {
    let pod = patch_pod_spec(&solana().join("statefulset-sidecar.yaml"));
    let c = pod
        .containers
        .iter()
        .find(|c| c.name == "automaton")
        .expect("an automaton container")
        .clone();
    (pod, c)
}

fn base_container() -> Container {
    let d: Deployment =
        typed(&document(&deploy().join("base/deployment.yaml"))).expect("the base Deployment");
    let pod = d.spec.and_then(|s| s.template.spec).expect("a pod spec");
    pod.containers
        .into_iter()
        .find(|c| c.name == "automaton")
        .expect("the base container")
}

fn job_pod(cj: &CronJob) -> PodSpec {
    let job = cj
        .spec
        .as_ref()
        .and_then(|s| s.job_template.spec.as_ref())
        .expect("a job spec");
    job.template.spec.clone().expect("a pod spec")
}

fn settings() -> BTreeMap<String, String> {
    let cm: ConfigMap = typed(&document(&solana().join("settings.yaml"))).expect("settings.yaml");
    assert_eq!(
        cm.metadata.name.as_deref(),
        Some("self-healing-config"),
        "patches the base's settings"
    );
    cm.data.unwrap_or_default()
}

#[test]
fn the_component_lists_existing_files_and_every_file() {
    let mut listed = BTreeSet::new();
    for dir in [solana(), solana().join("host-cgroup")] {
        let k = document(&dir.join("kustomization.yaml"));
        assert_eq!(
            k["apiVersion"],
            "kustomize.config.k8s.io/v1alpha1",
            "{}",
            dir.display()
        );
        assert_eq!(k["kind"], "Component", "{}", dir.display());
        let generated: Vec<String> = k["configMapGenerator"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| strings(g, "files"))
            .collect();
        for entry in strings(&k, "resources")
            .into_iter()
            .chain(patch_paths(&k))
            .chain(generated)
        {
            let path = dir.join(&entry);
            assert!(path.is_file(), "{}: {entry} does not exist", dir.display());
            listed.insert(path);
        }
    }
    let mut files = Vec::new();
    for dir in [solana(), solana().join("host-cgroup")] {
        for entry in std::fs::read_dir(&dir)
            .expect("readable")
            .map(|e| e.expect("an entry").path())
        {
            if entry.extension().is_some_and(|e| e == "yaml" || e == "yml")
                && entry.file_name().is_some_and(|n| n != "kustomization.yaml")
            {
                files.push(entry);
            }
        }
    }
    assert!(files.len() >= 9, "{files:?}");
    for file in files {
        assert!(
            listed.contains(&file),
            "{} is in no kustomization: never deployed",
            file.display()
        );
    }
}

#[test]
fn every_object_and_patch_parses_into_its_kubernetes_type() {
    let objects = component();
    let names: Vec<&String> = objects.names.keys().collect();
    assert_eq!(
        names,
        [
            "CronJob/solana-ledger-prune",
            "CronJob/solana-snapshot-backup",
            "Role/self-healing-solana",
            "RoleBinding/self-healing-solana"
        ]
    );
    assert!(
        objects.names.values().all(|ns| !ns),
        "no object names a namespace"
    );
    for binding in &objects.role_bindings {
        assert!(binding.subjects.iter().flatten().all(|s| s.namespace.is_none()));
    }
    patch_pod_spec(&solana().join("statefulset-sidecar.yaml"));
    patch_pod_spec(&solana().join("host-cgroup/statefulset-host-cgroup.yaml"));
    settings();
    // The deletions name objects the base really has.
    for (file, kind, base_file) in [
        ("without-deployment.yaml", "Deployment", "deployment.yaml"),
        (
            "without-disruption-budget.yaml",
            "PodDisruptionBudget",
            "poddisruptionbudget.yaml",
        ),
    ] {
        let patch = document(&solana().join(file));
        let base = document(&deploy().join("base").join(base_file));
        assert_eq!(patch["$patch"], "delete", "{file}");
        assert_eq!(
            (&patch["kind"], &patch["metadata"]["name"]),
            (&base["kind"], &base["metadata"]["name"])
        );
        assert_eq!(patch["apiVersion"], base["apiVersion"], "{file}");
        assert_eq!(kind, base["kind"]);
    }
}

#[test]
fn the_cronjobs_are_scheduled_and_never_overlap() {
    let objects = component();
    for (name, schedule, deadline) in [(BACKUP, "0 */6 * * *", 6 * 3600), (PRUNE, "30 3 * * *", 3600)] {
        let cj = objects.cron_job(name);
        let spec = cj.spec.as_ref().expect("spec");
        assert_eq!(spec.schedule, schedule, "{name}");
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"), "{name}");
        assert!(spec.starting_deadline_seconds.is_some_and(|s| s > 0), "{name}");
        assert!(spec.successful_jobs_history_limit.is_some() && spec.failed_jobs_history_limit.is_some());
        assert_ne!(spec.suspend, Some(true), "{name} runs on its schedule");
        let job = spec.job_template.spec.as_ref().expect("a job spec");
        assert!(job.backoff_limit.is_some_and(|b| (0..=3).contains(&b)), "{name}");
        let active = job.active_deadline_seconds.expect("activeDeadlineSeconds");
        assert!(
            active > 0 && active < deadline,
            "{name}: ends before the next run"
        );

        let pod = job_pod(cj);
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"), "{name}");
        assert_eq!(
            pod.automount_service_account_token,
            Some(false),
            "{name} needs no API token"
        );
        let terms = pod.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref());
        let terms = terms.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
        let term = terms
            .and_then(|t| t.first())
            .expect("a required podAffinity: the volumes are RWO");
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        let labels = term.label_selector.as_ref().and_then(|s| s.match_labels.clone());
        assert_eq!(
            labels,
            Some(BTreeMap::from([("app".to_owned(), VALIDATOR.to_owned())]))
        );
        let pod_labels = job
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        assert_ne!(
            pod_labels.get("app.kubernetes.io/name").map(String::as_str),
            Some("automaton"),
            "{name}: the base's Service and PodDisruptionBudget select that label"
        );
    }
}

#[test]
fn the_job_pods_are_locked_down() {
    let objects = component();
    for name in [BACKUP, PRUNE] {
        let pod = job_pod(objects.cron_job(name));
        let pod_sc = pod.security_context.clone().unwrap_or_default();
        assert_eq!(
            pod_sc.fs_group, None,
            "{name}: fsGroup would chown the whole volume"
        );
        assert_eq!(pod_sc.run_as_non_root, Some(true), "{name}");
        assert!(
            pod_sc.run_as_user.is_some_and(|u| u != 0),
            "{name}: a non-root uid"
        );
        let seccomp = pod_sc.seccomp_profile.as_ref().map(|s| s.type_.as_str());
        assert_eq!(seccomp, Some("RuntimeDefault"), "{name}");
        assert_eq!(pod.containers.len(), 1);
        let c = &pod.containers[0];
        let image = c.image.as_deref().expect("an image");
        let tag = image.rsplit_once(':').map(|(_, t)| t).expect("a tagged image");
        assert!(
            tag != "latest" && !tag.contains('/'),
            "{name}: a pinned tag, not {image}"
        );
        let sc = c.security_context.as_ref().expect("a container securityContext");
        assert_eq!(sc.run_as_non_root, Some(true), "{name}");
        assert_ne!(sc.run_as_user, Some(0), "{name}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
        assert_ne!(sc.privileged, Some(true), "{name}");
        let caps = sc.capabilities.as_ref().expect("capabilities");
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]), "{name}");
        assert!(caps.add.as_ref().is_none_or(Vec::is_empty), "{name}");
        let resources = c.resources.as_ref().expect("resources");
        for set in [&resources.requests, &resources.limits] {
            let set = set.clone().unwrap_or_default();
            assert!(
                set.contains_key("cpu") && set.contains_key("memory"),
                "{name}: cpu and memory"
            );
        }
    }
}

/// (mount path, read-only) of the job's container, by PVC claim name.
fn claims(cj: &CronJob) -> BTreeMap<String, (String, bool)> {
    let pod = job_pod(cj);
    let mut found = BTreeMap::new();
    for m in pod.containers[0].volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .expect("a volume per mount");
        if let Some(pvc) = &volume.persistent_volume_claim {
            let read_only = m.read_only == Some(true);
            assert_eq!(
                pvc.read_only == Some(true),
                read_only,
                "the claim and the mount agree"
            );
            found.insert(pvc.claim_name.clone(), (m.mount_path.clone(), read_only));
        }
    }
    found
}

#[test]
fn backup_reads_the_snapshots_and_prune_writes_only_snapshots_and_ledger() {
    let objects = component();
    let backup = claims(objects.cron_job(BACKUP));
    let expected = [("snapshots-agave-validator-0", ("/mnt/snapshots", true))];
    let expected: BTreeMap<String, (String, bool)> = expected
        .iter()
        .map(|(c, (p, ro))| (c.to_string(), (p.to_string(), *ro)))
        .collect();
    assert_eq!(
        backup, expected,
        "the backup mounts the snapshots read-only, nothing else"
    );

    let prune = claims(objects.cron_job(PRUNE));
    let expected = [
        ("ledger-agave-validator-0", ("/mnt/ledger", false)),
        ("snapshots-agave-validator-0", ("/mnt/snapshots", false)),
    ];
    let expected: BTreeMap<String, (String, bool)> = expected
        .iter()
        .map(|(c, (p, ro))| (c.to_string(), (p.to_string(), *ro)))
        .collect();
    assert_eq!(
        prune, expected,
        "prune writes to snapshots and ledger, never accounts"
    );
}

#[test]
fn the_sidecar_mounts_the_validator_volumes_read_only_and_is_configured_like_the_base() {
    let (pod, c) = sidecar();
    for (volume, path) in VALIDATOR_VOLUMES {
        let mount = c.volume_mounts.iter().flatten().find(|m| m.name == volume);
        let mount = mount.unwrap_or_else(|| panic!("{volume} is mounted"));
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (path, Some(true)),
            "{volume}"
        );
        assert!(
            pod.volumes.iter().flatten().all(|v| v.name != volume),
            "{volume} is the validator's own volume, not a new one"
        );
    }
    let writable: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.read_only != Some(true))
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(writable, ["/tmp"], "only the scratch space is writable");

    let base = base_container();
    assert_eq!(
        (&c.image, &c.args, &c.env_from),
        (&base.image, &base.args, &base.env_from)
    );
    assert_eq!(c.security_context, base.security_context);
    assert_eq!(c.resources, base.resources);
    for env in base.env.iter().flatten() {
        assert!(
            c.env.iter().flatten().any(|e| e == env),
            "{} as in the base",
            env.name
        );
    }
    let rules = base
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "rules")
        .expect("the base's rules");
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == rules.mount_path);
    let mount = mount.expect("the rules directory");
    assert_eq!(
        (mount.read_only, &mount.sub_path),
        (Some(true), &None),
        "hot reload needs a directory"
    );
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the rules volume");
    assert_eq!(
        volume.config_map.as_ref().map(|c| c.name.as_str()),
        Some("automaton-rules")
    );

    // Its own port, outside the validator's (RPC, PubSub, --dynamic-port-range 8000-10000).
    let listen = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "LISTEN_ADDR")
        .and_then(|e| e.value.clone());
    let port: i32 = listen
        .expect("LISTEN_ADDR")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    assert!(!(8000..=10000).contains(&port), "{port} collides with Agave");
    let named = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.container_port == port)
        .expect("the port, named");
    let probe = c
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("a /healthz probe");
    assert_eq!(probe.path.as_deref(), Some("/healthz"));
    assert_eq!(
        probe.port,
        IntOrString::String(named.name.clone().expect("a port name"))
    );
    assert!(
        c.readiness_probe.is_none(),
        "/readyz would make the validator pod unready"
    );

    // The API token reaches this container only.
    assert_eq!(pod.service_account_name.as_deref(), Some("self-healing-sa"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let token = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path.ends_with("/serviceaccount"));
    let token = token.expect("the token mount");
    assert_eq!(token.mount_path, "/var/run/secrets/kubernetes.io/serviceaccount");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == token.name)
        .expect("the token volume");
    let sources = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.clone())
        .unwrap_or_default();
    assert!(sources.iter().any(|s| s.service_account_token.is_some()));

    let secret = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "ALERT_WEBHOOK_URL")
        .and_then(|e| e.value_from.clone());
    let secret = secret
        .and_then(|v| v.secret_key_ref)
        .expect("the webhook URL from a Secret");
    assert_eq!(
        secret.optional,
        Some(true),
        "without it the rules' default webhook applies"
    );
}

#[test]
fn the_host_cgroup_component_mounts_read_only() {
    let pod = patch_pod_spec(&solana().join("host-cgroup/statefulset-host-cgroup.yaml"));
    let c = pod
        .containers
        .iter()
        .find(|c| c.name == "automaton")
        .expect("the sidecar");
    let mounts: Vec<_> = c.volume_mounts.iter().flatten().collect();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].read_only, Some(true));
    let path = settings()
        .get("MEMORY_EVENTS_PATH")
        .cloned()
        .expect("MEMORY_EVENTS_PATH");
    assert!(
        path.starts_with(&format!("{}/", mounts[0].mount_path)),
        "{path} is under the mount"
    );
}

#[test]
fn the_settings_hold_the_solana_keys_and_the_rules_load_with_them() {
    let data = settings();
    for (key, value) in [
        ("VALIDATOR_RPC_URL", "http://127.0.0.1:8899"),
        ("VALIDATOR_ADMIN_URL", "http://127.0.0.1:8900"),
        ("PSI_PATH", "/proc/pressure/memory"),
        ("LEDGER_PATH", "/mnt/ledger"),
        ("ACCOUNTS_PATH", "/mnt/accounts"),
        ("SNAPSHOTS_PATH", "/mnt/snapshots"),
        ("MEMORY_PRESSURE_HIGH", "15"),
        ("MEMORY_PRESSURE_LOW", "5"),
        ("SLOT_LAG_THRESHOLD", "10"),
        ("SLOT_LAG_RESTART", "1000"),
        ("VALIDATOR_STATEFULSET", VALIDATOR),
        ("DISK_USAGE_HIGH", "80"),
    ] {
        assert_eq!(data.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert!(data
        .get("REFERENCE_RPC_URL")
        .is_some_and(|u| u.starts_with("https://")));
    assert!(data.contains_key("MEMORY_EVENTS_PATH"));
    assert!(
        !data.contains_key("ALERT_WEBHOOK_URL"),
        "a webhook URL may hold a token: a Secret"
    );

    let base: ConfigMap = typed(&document(&deploy().join("base/configmap.yaml"))).expect("the base settings");
    let mut env = base.data.unwrap_or_default();
    env.extend(data.clone());
    automaton::settings::Settings::from_vars(env.clone()).expect("the merged ConfigMap is valid settings");

    // Every variable rules/solana.yaml reads is set here, so no threshold silently falls
    // back to a default nobody deployed (the webhook comes from the sidecar's Secret).
    let file = deploy().join("components/solana/solana.yaml");
    let text = read(&file);
    let used: BTreeSet<&str> = text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split(['}', ':']).next())
        .filter(|v| *v != "ALERT_WEBHOOK_URL")
        .collect();
    let unset: Vec<&&str> = used.iter().filter(|v| !data.contains_key(**v)).collect();
    assert!(
        unset.is_empty(),
        "rules/solana.yaml reads {unset:?}: add them to deploy/components/solana/settings.yaml"
    );
    let lookup = |name: &str| env.get(name).cloned();
    let loaded = automaton::rules::load::load_texts(&[(file.as_path(), text.as_str())], &lookup);
    let errors: Vec<String> = loaded
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        Vec::<String>::new(),
        "rules/solana.yaml loads with these settings"
    );
}

#[test]
fn rbac_grants_the_rule_pack_exactly_what_it_uses() {
    let objects = component();
    let rules = objects.rules();
    for (verb, group, resource, name) in [
        ("create", "batch", "jobs", None),
        ("get", "batch", "cronjobs", Some(BACKUP)),
        ("get", "batch", "cronjobs", Some(PRUNE)),
        ("get", "apps", "statefulsets", Some(VALIDATOR)),
        ("patch", "apps", "statefulsets", Some(VALIDATOR)),
    ] {
        assert!(
            can_i(&rules, verb, group, resource, name),
            "can-i {verb} {group}/{resource} {name:?}: yes"
        );
    }
    for (verb, group, resource, name) in [
        ("get", "batch", "cronjobs", Some("other")),
        ("get", "batch", "cronjobs", None),
        ("list", "batch", "cronjobs", None),
        ("patch", "apps", "statefulsets", Some("other")),
        ("patch", "apps", "deployments", Some(VALIDATOR)),
        ("update", "apps", "statefulsets", Some(VALIDATOR)),
        ("delete", "apps", "statefulsets", Some(VALIDATOR)),
        ("delete", "batch", "jobs", None),
        ("delete", "", "pods", None),
        ("get", "", "secrets", None),
        ("list", "", "secrets", None),
        ("create", "", "pods/exec", None),
    ] {
        assert!(
            !can_i(&rules, verb, group, resource, name),
            "can-i {verb} {group}/{resource} {name:?}: no"
        );
    }
    for r in &rules {
        let everything = r
            .verbs
            .iter()
            .chain(r.api_groups.iter().flatten())
            .chain(r.resources.iter().flatten());
        assert!(everything.clone().all(|w| w != "*"), "no wildcard in {r:?}");
        assert!(
            everything
                .clone()
                .all(|w| !w.starts_with("delete") && w != "secrets"),
            "{r:?}"
        );
        if r.resource_names.as_ref().is_some_and(|n| !n.is_empty()) {
            // RBAC cannot check a name on create or list: such a rule would silently allow none.
            assert!(r.verbs.iter().all(|v| v == "get" || v == "patch"), "{r:?}");
        }
    }

    // Nothing beyond the base Role: the component narrows, never widens.
    let base: Role = typed(&document(&deploy().join("base/role.yaml"))).expect("the base Role");
    let base = grants(&base.rules.unwrap_or_default());
    let extra: Vec<String> = grants(&rules).difference(&base).cloned().collect();
    assert_eq!(
        extra,
        Vec::<String>::new(),
        "the component grants what the base does not"
    );

    let binding = &objects.role_bindings[0];
    assert_eq!(
        (binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()),
        ("Role", "self-healing-solana")
    );
    let subjects: Vec<(&str, &str)> = binding
        .subjects
        .iter()
        .flatten()
        .map(|s| (s.kind.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(subjects, [("ServiceAccount", "self-healing-sa")]);
}

/// A job's shell script and environment, with its mount roots moved under `root`.
fn script(cj: &CronJob, root: &Path) -> (String, BTreeMap<String, String>) {
    let c = &job_pod(cj).containers[0];
    assert_eq!(
        c.command.as_deref(),
        Some(&["/bin/sh".to_owned(), "-c".to_owned()][..])
    );
    let moved = |s: &str| s.replace("/mnt/", &format!("{}/", root.display()));
    let text = moved(&c.args.as_ref().expect("the script")[0]);
    let env = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), moved(e.value.as_ref()?))))
        .collect();
    (text, env)
}

fn run(text: &str, env: &BTreeMap<String, String>) -> Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg(text)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env)
        .output();
    out.expect("sh runs")
}

/// A scratch copy of the validator's volumes, and the directory standing for /mnt (with a
/// space in its path, to catch a missing quote).
fn volumes(files: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let root = dir.path().join("mnt root");
    for sub in ["snapshots", "ledger/rocksdb"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    for file in files {
        std::fs::write(root.join(file), b"x").expect("write");
    }
    (dir, root)
}

fn listing(dir: &Path) -> BTreeSet<String> {
    let entries = std::fs::read_dir(dir)
        .expect("readable")
        .map(|e| e.expect("an entry"));
    entries
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

const SNAPSHOTS: [&str; 8] = [
    "snapshots/snapshot-100-4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi.tar.zst",
    "snapshots/snapshot-300-8opHzTAnfzRpPEx21XtnrVTX28YQuCpAjcn1PczScKh.tar.zst",
    "snapshots/snapshot-200-CiDwVBFgWV9E5MvXWoLgnEgn2hK7rJikbvfWavzAQz3.tar.zst",
    "snapshots/incremental-snapshot-200-250-GdnSyH3YtwcxFvQrVVJMm1JhTS4QVX7MFsX56uJLUfiZ.tar.zst",
    "snapshots/incremental-snapshot-300-350-5ZWj7a1f8tWkjBESHKgrLmXshuXxqeY9SYcfbshpAqPG.tar.zst",
    "snapshots/incremental-snapshot-300-320-9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin.tar.zst",
    "snapshots/snapshot-999-$(touch pwned).tar.zst",
    "snapshots/notes.txt",
];

#[test]
fn backup_uploads_the_newest_full_and_its_newest_incremental_as_arguments() {
    let objects = component();
    let (dir, root) = volumes(&SNAPSHOTS);
    let (text, mut env) = script(objects.cron_job(BACKUP), &root);

    let missing = run(&text, &env);
    assert!(!missing.status.success(), "no UPLOAD_COMMAND, no upload");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("UPLOAD_COMMAND is not set"), "{stderr}");

    let out = dir.path().join("uploaded");
    env.insert("OUT".into(), out.display().to_string());
    env.insert("UPLOAD_COMMAND".into(), r#"printf '%s\n' "$@" > "$OUT""#.into());
    let done = run(&text, &env);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let expected = format!(
        "{}\n{}\n",
        root.join(SNAPSHOTS[1]).display(),
        root.join(SNAPSHOTS[4]).display()
    );
    assert_eq!(
        read(&out),
        expected,
        "the newest full (300) and its newest incremental (350)"
    );
    assert!(
        ["pwned", "snapshots/pwned"]
            .iter()
            .all(|p| !root.join(p).exists())
            && !dir.path().join("pwned").exists(),
        "file names are never run"
    );
}

#[test]
fn prune_keeps_the_newest_fulls_and_removes_only_what_it_promises() {
    let objects = component();
    let mut files = SNAPSHOTS.to_vec();
    files.extend([
        "ledger/agave-validator.log",
        "ledger/agave-validator.log.1",
        "ledger/agave-validator.log.2.gz",
    ]);
    files.extend([
        "ledger/rocksdb/agave-validator.log.9",
        "ledger/genesis.bin",
        "ledger/other.log.1",
    ]);
    let (_dir, root) = volumes(&files);
    let week_ago = SystemTime::now() - Duration::from_secs(8 * 86_400);
    for old in [
        "agave-validator.log",
        "agave-validator.log.1",
        "rocksdb/agave-validator.log.9",
        "other.log.1",
    ] {
        let file = std::fs::File::options()
            .write(true)
            .open(root.join("ledger").join(old))
            .expect("open");
        file.set_modified(week_ago).expect("set mtime");
    }
    let (text, mut env) = script(objects.cron_job(PRUNE), &root);
    let before = (listing(&root.join("snapshots")), listing(&root.join("ledger")));

    env.insert("DRY_RUN".into(), "true".into());
    let dry = run(&text, &env);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert_eq!(
        (listing(&root.join("snapshots")), listing(&root.join("ledger"))),
        before
    );

    env.insert("DRY_RUN".into(), "false".into());
    let done = run(&text, &env);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let gone = |list: &[&str]| -> BTreeSet<String> {
        list.iter()
            .map(|f| f.rsplit('/').next().unwrap_or(f).to_owned())
            .collect()
    };
    let removed: BTreeSet<String> = before
        .0
        .difference(&listing(&root.join("snapshots")))
        .cloned()
        .collect();
    assert_eq!(
        removed,
        gone(&[SNAPSHOTS[0], SNAPSHOTS[3]]),
        "the oldest full, and the incremental on 200"
    );
    let removed: BTreeSet<String> = before
        .1
        .difference(&listing(&root.join("ledger")))
        .cloned()
        .collect();
    assert_eq!(
        removed,
        gone(&["agave-validator.log.1"]),
        "old rotated logs only, never the live log"
    );
    assert!(
        root.join("ledger/rocksdb/agave-validator.log.9").exists(),
        "never below LOG_DIR"
    );

    for (key, value) in [
        ("SNAPSHOTS_DIR", "/etc".to_owned()),
        ("LOG_DIR", format!("{}/ledger/../..", root.display())),
        ("KEEP_FULL_SNAPSHOTS", "0".to_owned()),
        ("LOG_PATTERN", "*".to_owned()),
    ] {
        let mut bad = env.clone();
        bad.insert(key.into(), value.clone());
        let refused = run(&text, &bad);
        assert!(!refused.status.success(), "{key}={value} must be refused");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("refusing"),
            "{key}={value}"
        );
    }
}

/// The smallest validator StatefulSet the component patches.
const VALIDATOR_STATEFULSET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: agave-validator}
spec:
  serviceName: agave-validator
  selector: {matchLabels: {app: agave-validator}}
  template:
    metadata: {labels: {app: agave-validator}}
    spec:
      containers:
        - name: agave-validator
          image: agave:2.2
          volumeMounts: [{name: ledger, mountPath: /mnt/ledger}]
  volumeClaimTemplates:
    - apiVersion: v1
      kind: PersistentVolumeClaim
      metadata: {name: ledger}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Ti}}}
";

#[test]
fn kubectl_kustomize_builds_the_base_with_the_component() {
    let overlay = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let to_deploy = relative(overlay.path(), &deploy());
    let text = format!(
        "resources: [{}, validator.yaml]\ncomponents: [{}, {}]\n",
        to_deploy.display(),
        to_deploy.join("components/solana").display(),
        to_deploy.join("components/solana/host-cgroup").display()
    );
    std::fs::write(overlay.path().join("kustomization.yaml"), text).expect("write the overlay");
    std::fs::write(overlay.path().join("validator.yaml"), VALIDATOR_STATEFULSET).expect("write");
    let Some(built) = kubectl_kustomize(overlay.path()) else {
        eprintln!("kubectl is not on PATH: skipping `kubectl kustomize`; the files were checked one by one");
        return;
    };
    let mut objects = Objects::default();
    let kinds = |doc: &Value| !matches!(doc["kind"].as_str(), Some("Deployment" | "PodDisruptionBudget"));
    let docs = documents(&built);
    assert!(
        docs.iter().all(kinds),
        "the sidecar replaces the Deployment and its budget"
    );
    docs.iter()
        .try_for_each(|d| objects.add(d))
        .unwrap_or_else(|e| panic!("the overlay: {e}"));
    assert!(objects.names.contains_key("CronJob/solana-snapshot-backup"));
    // The pack's rules are merged into the one rules ConfigMap, beside the pod pack.
    assert!(
        built.contains("  solana.yaml: |") && built.contains("  pods.yaml: |"),
        "{built}"
    );
    assert!(objects.names.contains_key("RoleBinding/self-healing-solana"));
    assert!(
        objects.names.values().all(|ns| !ns),
        "the build names no namespace"
    );

    let sts = &objects.stateful_sets[0];
    let pod = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec");
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["automaton", "agave-validator"]);
    let sidecar = &pod.containers[0];
    for (volume, _) in VALIDATOR_VOLUMES {
        let m = sidecar
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume)
            .expect("mounted");
        assert_eq!(m.read_only, Some(true), "{volume}");
    }
    let validator = &pod.containers[1];
    assert!(validator
        .volume_mounts
        .iter()
        .flatten()
        .all(|m| !m.name.starts_with("automaton")));

    let service = &objects.services[0];
    let spec = service.spec.as_ref().expect("spec");
    let selector = spec.selector.clone().unwrap_or_default();
    assert_eq!(
        selector,
        BTreeMap::from([("app".to_owned(), VALIDATOR.to_owned())])
    );
    let port = spec.ports.iter().flatten().next().expect("a port");
    assert_eq!(port.target_port, Some(IntOrString::String("automaton".into())));
    let scraped = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("prometheus.io/port").cloned());
    let sidecar_port = sidecar
        .ports
        .iter()
        .flatten()
        .next()
        .map(|p| p.container_port.to_string());
    assert_eq!(scraped, sidecar_port, "Prometheus scrapes the sidecar's port");

    let settings = objects
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("self-healing-config"));
    let data = settings.and_then(|c| c.data.clone()).expect("the settings");
    assert_eq!(
        data.get("CHECK_INTERVAL").map(String::as_str),
        Some("60"),
        "the base's keys stay"
    );
    assert_eq!(
        data.get("SLOT_LAG_RESTART").map(String::as_str),
        Some("1000"),
        "the component's are added"
    );
}

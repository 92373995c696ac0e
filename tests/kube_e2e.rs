//! The whole binary against a fake Kubernetes API server (../shared/tools/fakekube.py): a
//! pod's OOM kill arrives on the watch and is healed through the API exactly once, with an
//! Event; two replicas elect one leader through a Lease, only the leader acts, and the other
//! takes over when the leader stops.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use automaton::core::namespaces::Shard;
use common::scenario::{oom_scenario, OOM_RULES};
use common::{eventually, Automaton, FakeKube};
use serde_json::{json, Value};

fn is_patch_of(r: &Value, deployment: &str) -> bool {
    r["method"] == "PATCH" && r["path"] == format!("/apis/apps/v1/namespaces/prod/deployments/{deployment}")
}

fn rules_dir(fake: &FakeKube) -> std::path::PathBuf {
    let dir = fake.dir.path().join("rules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("oom.yaml"), OOM_RULES).unwrap();
    dir
}

#[test]
fn an_oom_kill_on_the_watch_raises_memory_once_with_an_event() {
    let fake = FakeKube::start(&oom_scenario(1, 2.0, 0.0));
    let rules = rules_dir(&fake);
    let a = Automaton::start(&fake.kubeconfig, &rules, "automaton-a", &[]);

    let patch = fake.wait_for("the memory patch", Duration::from_secs(60), |r| {
        is_patch_of(r, "app-0")
    });
    assert_eq!(patch["query"]["fieldManager"], "automaton", "{patch}");
    let body = &patch["body"];
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}}}]),
        "{patch}"
    );
    assert!(
        body["metadata"]["annotations"]["automaton.dev/last-action-oom"].is_string(),
        "{patch}"
    );
    let event = fake.wait_for("the Event", Duration::from_secs(10), |r| {
        r["method"] == "POST" && r["path"] == "/apis/events.k8s.io/v1/namespaces/prod/events"
    });
    assert_eq!(event["body"]["reason"], "MemoryRaised", "{event}");
    assert_eq!(event["body"]["regarding"]["name"], "app-0");

    // A few more ticks: the kill stays in the signal's window, the rule stays firing, and
    // the cooldown holds: still exactly one write.
    let checks = |a: &Automaton| a.metric(r#"healing_checks_total{rule="oom"}"#).unwrap_or(0.0);
    let seen = checks(&a);
    eventually("three more ticks", Duration::from_secs(30), || {
        (checks(&a) >= seen + 3.0).then_some(())
    });
    let patches = fake.requests().iter().filter(|r| is_patch_of(r, "app-0")).count();
    assert_eq!(patches, 1, "exactly one write for one kill");
    assert_eq!(
        a.metric(r#"healing_actions_total{action="raise_memory",dry_run="false",rule="oom",success="true"}"#),
        Some(1.0)
    );
    assert_eq!(a.metric("automaton_leader"), Some(1.0));
    assert_eq!(
        a.metric(r#"automaton_signal_source_up{source="kubernetes"}"#),
        Some(1.0)
    );
    assert!(
        a.logs().contains("\"message\":\"action executed\""),
        "{}",
        a.logs()
    );
    // The API server filtered: the pod list and watch asked for the rule's selector only.
    let pod_reads: Vec<serde_json::Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "GET" && r["path"] == "/api/v1/namespaces/prod/pods")
        .collect();
    assert!(pod_reads.len() >= 2, "a list and a watch: {pod_reads:?}");
    for r in &pod_reads {
        assert_eq!(r["query"]["labelSelector"], "automaton.dev/heal=true", "{r}");
    }
}

#[test]
fn an_oom_kill_at_the_memory_cap_is_told_once_and_never_patched() {
    let fake = FakeKube::start(&oom_scenario(1, 2.0, 0.0));
    let rules = rules_dir(&fake);
    // The container's limit is 1Gi already: doubling would raise only the request.
    let a = Automaton::start(&fake.kubeconfig, &rules, "automaton-a", &[("MAX_MEMORY", "1Gi")]);
    let at_cap = |r: &Value| {
        r["method"] == "POST"
            && r["path"] == "/apis/events.k8s.io/v1/namespaces/prod/events"
            && r["body"]["reason"] == "MemoryAtCap"
    };
    let event = fake.wait_for("the MemoryAtCap Event", Duration::from_secs(60), at_cap);
    assert_eq!(event["body"]["type"], "Warning", "{event}");
    assert_eq!(event["body"]["regarding"]["name"], "app-0", "{event}");
    let note = event["body"]["note"].as_str().unwrap_or_default();
    assert!(note.contains("no further") && note.contains("1Gi"), "{note}");
    let checks = |a: &Automaton| a.metric(r#"healing_checks_total{rule="oom"}"#).unwrap_or(0.0);
    let seen = checks(&a);
    eventually("three more ticks", Duration::from_secs(30), || {
        (checks(&a) >= seen + 3.0).then_some(())
    });
    let requests = fake.requests();
    assert_eq!(
        requests.iter().filter(|r| is_patch_of(r, "app-0")).count(),
        0,
        "never patched"
    );
    assert_eq!(
        requests.iter().filter(|r| at_cap(r)).count(),
        1,
        "told once, not every tick"
    );
    assert!(
        a.metric(r#"automaton_skips_total{reason="bound",rule="oom"}"#)
            .unwrap_or(0.0)
            >= 3.0,
        "bound at every evaluation"
    );
}

#[test]
fn two_replicas_one_leader_acts_and_the_other_takes_over() {
    // Kill 0 at 3s, kill 1 at 20s: between them the leader is stopped.
    let fake = FakeKube::start(&oom_scenario(2, 3.0, 17.0));
    let rules = rules_dir(&fake);
    let env = [("LEASE_DURATION", "4")];
    let mut a = Automaton::start(&fake.kubeconfig, &rules, "automaton-a", &env);
    let mut b = Automaton::start(&fake.kubeconfig, &rules, "automaton-b", &env);

    let leader = |x: &Automaton| x.metric("automaton_leader") == Some(1.0);
    eventually("one leader", Duration::from_secs(30), || {
        (leader(&a) || leader(&b)).then_some(())
    });
    fake.wait_for("the first memory patch", Duration::from_secs(60), |r| {
        is_patch_of(r, "app-0")
    });
    // The replica that acted is the one that logs the execution (read from the logs, not
    // from who leads a moment later: on a loaded machine a 4 s Lease may already have moved,
    // and the point is that exactly one acted).
    let mut acted = None;
    eventually("the leader's decision log", Duration::from_secs(10), || {
        acted = [executed(&a, "app-0"), executed(&b, "app-0")]
            .iter()
            .position(|&x| x);
        acted.map(|_| ())
    });
    let (first, second) = if acted == Some(0) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(!executed(second, "app-0"), "only one replica acted");
    // The other evaluates the same kill and does not act: it is not the leader (or, had it
    // just taken over, the cooldown annotation the first one wrote stops it).
    eventually("the follower's skip", Duration::from_secs(10), || {
        let logs = second.logs();
        (logs.contains("\"reason\":\"not_leader\"") || logs.contains("\"reason\":\"cooldown\"")).then_some(())
    });
    first.terminate();

    eventually("the follower to lead", Duration::from_secs(30), || {
        leader(second).then_some(())
    });
    fake.wait_for("the second memory patch", Duration::from_secs(60), |r| {
        is_patch_of(r, "app-1")
    });
    let requests = fake.requests();
    assert_eq!(
        requests.iter().filter(|r| is_patch_of(r, "app-0")).count(),
        1,
        "no duplicate action"
    );
    assert_eq!(
        requests.iter().filter(|r| is_patch_of(r, "app-1")).count(),
        1,
        "no duplicate action"
    );
    // The write is logged by the fake server before the replica logs its decision.
    eventually("the new leader's decision log", Duration::from_secs(10), || {
        executed(second, "app-1").then_some(())
    });
    assert!(
        !executed(second, "app-0"),
        "the follower never acted on the first kill"
    );
}

/// Whether the replica's log says it executed an action on the Deployment.
fn executed(a: &Automaton, deployment: &str) -> bool {
    let target = format!("\"target\":\"prod/deployment/{deployment}\"");
    a.logs()
        .lines()
        .any(|l| l.contains("\"message\":\"action executed\"") && l.contains(&target))
}

#[test]
fn a_kill_seen_while_standing_by_is_healed_the_moment_the_lease_is_taken() {
    // Another replica holds the Lease, and stops renewing it; the kill lands 1 s after the
    // first watch, while this replica stands by. CHECK_INTERVAL is a minute: only taking
    // the Lease can explain a prompt heal.
    let mut scenario = oom_scenario(1, 1.0, 0.0);
    let held = common::rfc3339_ago(0);
    let lease = format!(
        "  - apiVersion: coordination.k8s.io/v1\n    kind: Lease\n    metadata: {{name: automaton}}\n    spec: {{holderIdentity: gone-replica, leaseDurationSeconds: 6, acquireTime: \"{held}\", renewTime: \"{held}\", leaseTransitions: 0}}\n"
    );
    scenario = scenario.replacen("events:\n", &format!("{lease}events:\n"), 1);
    let fake = FakeKube::start(&scenario);
    let rules = rules_dir(&fake);
    let env = [("LEASE_DURATION", "6"), ("CHECK_INTERVAL", "60s")];
    let a = Automaton::start(&fake.kubeconfig, &rules, "automaton-a", &env);
    eventually("the kill seen while standing by", Duration::from_secs(30), || {
        a.logs().contains("\"reason\":\"not_leader\"").then_some(())
    });
    let patch = fake.wait_for("the memory patch", Duration::from_secs(30), |r| {
        is_patch_of(r, "app-0")
    });
    // On the fake's clock: from the request that took the Lease to the heal.
    let taken = fake
        .requests()
        .into_iter()
        .find(|r| {
            r["method"] == "PATCH"
                && r["path"] == "/apis/coordination.k8s.io/v1/namespaces/prod/leases/automaton"
                && r["body"]["spec"]["holderIdentity"] == "automaton-a"
                && r["status"] == 200
        })
        .expect("the Lease taken");
    let after = patch["t"].as_f64().unwrap() - taken["t"].as_f64().unwrap();
    assert!(
        (0.0..2.0).contains(&after),
        "healed at the takeover, not at the next tick (CHECK_INTERVAL 60s): {after:.3} s after"
    );
}

/// `oom_scenario(1, …)` in `namespace`: the same names, other uids.
fn in_namespace(objects: &str, namespace: &str, tag: char) -> String {
    objects
        .replace(
            "metadata: {name:",
            &format!("metadata: {{namespace: {namespace}, name:"),
        )
        .replace(
            "metadata:\n      name:",
            &format!("metadata:\n      namespace: {namespace}\n      name:"),
        )
        .replace("0000-0000-0000-", &format!("0000-0000-000{tag}-"))
}

#[test]
fn watched_namespaces_heal_the_same_name_in_its_own_namespace_only() {
    // app-0 in team-a and in team-b; the automaton itself in prod (its Lease, its state).
    let base = oom_scenario(1, 2.0, 0.0);
    let (objects, events) = base.split_once("events:\n").expect("events");
    let (head, objects) = objects.split_once("objects:\n").expect("objects");
    let events = events.replace("    kind: Pod\n", "    kind: Pod\n    namespace: team-b\n");
    let scenario = format!(
        "{head}objects:\n{}{}events:\n{events}",
        in_namespace(objects, "team-a", 'a'),
        in_namespace(objects, "team-b", 'b')
    );
    let fake = FakeKube::start(&scenario);
    let rules = rules_dir(&fake);
    // A rule naming its own target in prod, the automaton's namespace, which it does not
    // watch: disabled, never acted on blind.
    let outside = "rules:\n  - name: restart-prod\n    priority: critical\n    signal: {pod_crash_loop: {selector: \"automaton.dev/heal=true\"}}\n    when: \"> 0\"\n    action: {restart: {target: deployment/app-0}}\n";
    std::fs::write(rules.join("outside.yaml"), outside).unwrap();
    let a = Automaton::start(
        &fake.kubeconfig,
        &rules,
        "automaton-a",
        &[("WATCH_NAMESPACES", "team-b,team-a")],
    );
    let patch_in = |ns: &str| {
        let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/app-0");
        move |r: &Value| r["method"] == "PATCH" && r["path"] == path
    };
    fake.wait_for(
        "team-b's memory patch",
        Duration::from_secs(60),
        patch_in("team-b"),
    );
    let event = fake.wait_for("the Event in team-b", Duration::from_secs(10), |r| {
        r["method"] == "POST" && r["path"] == "/apis/events.k8s.io/v1/namespaces/team-b/events"
    });
    assert_eq!(event["body"]["regarding"]["namespace"], "team-b", "{event}");
    let checks = |a: &Automaton| a.metric(r#"healing_checks_total{rule="oom"}"#).unwrap_or(0.0);
    let seen = checks(&a);
    eventually("three more ticks", Duration::from_secs(30), || {
        (checks(&a) >= seen + 3.0).then_some(())
    });
    let status: Value = serde_json::from_str(&a.get("/status").expect("/status").1).expect("JSON");
    assert_eq!(status["kubernetes"]["watch_namespaces"], "team-a,team-b");
    let disabled = &status["disabled_rules"][0];
    assert_eq!(disabled["name"], "restart-prod", "{status}");
    assert_eq!(
        disabled["reason"],
        "its target prod/deployment/app-0 is in a namespace WATCH_NAMESPACES (team-a,team-b) does not list"
    );
    let log = fake.requests();
    assert_eq!(
        log.iter().filter(|r| patch_in("team-b")(r)).count(),
        1,
        "one write"
    );
    assert_eq!(
        log.iter().filter(|r| patch_in("team-a")(r)).count(),
        0,
        "team-a's app-0 untouched"
    );
    // One filtered pod watch per listed namespace, none across the cluster or in prod.
    let pod_paths: BTreeSet<&str> = log
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"].as_str().is_some_and(|p| p.ends_with("/pods")))
        .inspect(|r| assert_eq!(r["query"]["labelSelector"], "automaton.dev/heal=true", "{r}"))
        .filter_map(|r| r["path"].as_str())
        .collect();
    assert_eq!(
        pod_paths,
        BTreeSet::from(["/api/v1/namespaces/team-a/pods", "/api/v1/namespaces/team-b/pods"])
    );
    assert!(
        log.iter()
            .any(|r| r["path"] == "/apis/coordination.k8s.io/v1/namespaces/prod/leases/automaton"),
        "the Lease stays in the automaton's own namespace"
    );
    let executed = a
        .logs()
        .lines()
        .filter(|l| l.contains("\"message\":\"action executed\""))
        .map(|l| l.contains("\"target\":\"team-b/deployment/app-0\""))
        .collect::<Vec<_>>();
    assert_eq!(executed, [true], "{}", a.logs());
}

#[test]
fn two_shards_split_the_cluster_each_namespace_healed_by_exactly_one() {
    // app-0 in four namespaces, each OOM-killed; two replica sets, SHARD=0/2 and 1/2, each
    // with its own Lease, watching the whole cluster.
    let namespaces = ["team-a", "team-b", "team-c", "team-d"];
    let owns = |i: u32| {
        namespaces
            .iter()
            .filter(|ns| Shard { index: i, count: 2 }.owns(ns))
            .count()
    };
    assert_eq!((owns(0), owns(1)), (2, 2), "each shard has namespaces of its own");
    let base = oom_scenario(1, 2.0, 0.0);
    let (objects, events) = base.split_once("events:\n").expect("events");
    let (head, objects) = objects.split_once("objects:\n").expect("objects");
    let mut scenario = format!("{head}objects:\n");
    for (i, ns) in namespaces.iter().enumerate() {
        let tag = char::from(b'a' + u8::try_from(i).expect("a few"));
        scenario.push_str(&in_namespace(objects, ns, tag));
    }
    scenario.push_str("events:\n");
    for ns in namespaces {
        scenario.push_str(&events.replace(
            "    kind: Pod\n",
            &format!("    kind: Pod\n    namespace: {ns}\n"),
        ));
    }
    let fake = FakeKube::start(&scenario);
    let rules = rules_dir(&fake);
    let shard = |i: u32| {
        let (lease, shard) = (format!("automaton-{i}"), format!("{i}/2"));
        let env = [
            ("WATCH_NAMESPACES", "*"),
            ("SHARD", shard.as_str()),
            ("LEASE_NAME", lease.as_str()),
        ];
        Automaton::start(&fake.kubeconfig, &rules, &format!("shard-{i}"), &env)
    };
    let shards = [shard(0), shard(1)];
    let patch_in = |ns: &str, r: &Value| {
        r["method"] == "PATCH" && r["path"] == format!("/apis/apps/v1/namespaces/{ns}/deployments/app-0")
    };
    for ns in namespaces {
        fake.wait_for(&format!("{ns}'s memory patch"), Duration::from_secs(60), |r| {
            patch_in(ns, r)
        });
    }
    let checks = |a: &Automaton| a.metric(r#"healing_checks_total{rule="oom"}"#).unwrap_or(0.0);
    let seen: Vec<f64> = shards.iter().map(checks).collect();
    eventually("three more ticks of each", Duration::from_secs(30), || {
        shards
            .iter()
            .zip(&seen)
            .all(|(a, s)| checks(a) >= s + 3.0)
            .then_some(())
    });
    let log = fake.requests();
    for ns in namespaces {
        assert_eq!(
            log.iter().filter(|r| patch_in(ns, r)).count(),
            1,
            "{ns}: one write"
        );
        // Healed by the shard whose index its name hashes to, and only by it.
        let owner = (0..2)
            .find(|&i| Shard { index: i, count: 2 }.owns(ns))
            .expect("an owner");
        let target = format!("\"target\":\"{ns}/deployment/app-0\"");
        for (i, a) in shards.iter().enumerate() {
            let acted = a
                .logs()
                .lines()
                .any(|l| l.contains("\"message\":\"action executed\"") && l.contains(&target));
            assert_eq!(acted, i == owner as usize, "{ns}, shard {i}");
        }
    }
    // Each shard its own Lease, both held: no coordination beyond Kubernetes.
    for (i, a) in shards.iter().enumerate() {
        assert_eq!(a.metric("automaton_leader"), Some(1.0), "shard {i}");
        let lease = format!("/apis/coordination.k8s.io/v1/namespaces/prod/leases/automaton-{i}");
        assert!(log.iter().any(|r| r["path"] == lease), "shard {i}'s Lease");
    }
}

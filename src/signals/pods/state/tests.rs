use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;
use crate::core::series::Series;
use crate::signals::pods::observe::PodObs;

const T0: &str = "2025-06-01T12:00:00Z";

fn t(offset_secs: i64) -> Timestamp {
    let base: Timestamp = T0.parse().expect("T0");
    base + SignedDuration::from_secs(offset_secs)
}

/// A pod with one container `app`, as the API server would show it.
#[derive(Clone)]
struct PodBuilder(Value);

impl PodBuilder {
    fn new(name: &str) -> Self {
        PodBuilder(json!({
            "metadata": {"name": name, "namespace": "prod", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"}},
            "status": {"containerStatuses": [{"name": "app", "restartCount": 0,
                                              "state": {"running": {}}}]}
        }))
    }
    fn status(&mut self) -> &mut Value {
        &mut self.0["status"]["containerStatuses"][0]
    }
    fn restarts(mut self, n: i32) -> Self {
        self.status()["restartCount"] = json!(n);
        self
    }
    fn oom_killed_at(mut self, at: Timestamp) -> Self {
        self.status()["lastState"] = json!({"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                                           "finishedAt": at.to_string()}});
        self
    }
    fn oom_killed_without_time(mut self, container_id: &str) -> Self {
        self.status()["lastState"] =
            json!({"terminated": {"reason": "OOMKilled", "containerID": container_id}});
        self
    }
    /// Terminated by the OOM killer and not restarted yet (`state`, not `lastState`).
    fn oom_killed_now(mut self, at: Option<Timestamp>, container_id: &str) -> Self {
        let mut terminated = json!({"reason": "OOMKilled", "exitCode": 137});
        if let Some(at) = at {
            terminated["finishedAt"] = json!(at.to_string());
        }
        if !container_id.is_empty() {
            terminated["containerID"] = json!(container_id);
        }
        self.status()["state"] = json!({"terminated": terminated});
        self
    }
    fn running_after(mut self, terminated: Value) -> Self {
        self.status()["state"] = json!({"running": {}});
        self.status()["lastState"] = json!({"terminated": terminated});
        self
    }
    fn crash_looping(mut self) -> Self {
        self.status()["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        self
    }
    fn labels(mut self, labels: Value) -> Self {
        self.0["metadata"]["labels"] = labels;
        self
    }
    fn obs(&self) -> PodObs {
        let pod: Pod = serde_json::from_value(self.0.clone()).expect("pod");
        PodObs::from_pod(&pod)
    }
}

fn listed() -> PodState {
    let mut st = PodState::default();
    st.begin_resync();
    st.finish_resync(t(0));
    st
}

fn values(series: &[Series]) -> Vec<(String, f64)> {
    series
        .iter()
        .map(|s| (s.labels["pod"].clone(), s.value))
        .collect()
}

const W: Duration = Duration::from_secs(300);

#[test]
fn a_kill_counts_once_and_stays_for_the_window() {
    let mut st = listed();
    let killed = PodBuilder::new("web-1").restarts(1).oom_killed_at(t(-5));
    assert_eq!(st.apply(killed.obs(), Owner::Known(None), t(0)).new_kills, 1);
    // The same termination, seen again with a higher restartCount: not a new kill.
    let again = PodBuilder::new("web-1").restarts(3).oom_killed_at(t(-5));
    assert_eq!(st.apply(again.obs(), Owner::Known(None), t(10)).new_kills, 0);
    assert_eq!(
        values(&st.oom_killed("a", "app=web", W, t(20)).unwrap()),
        [("web-1".into(), 1.0)]
    );
    // Read again: the same one kill, not a second.
    assert_eq!(
        values(&st.oom_killed("a", "app=web", W, t(30)).unwrap()),
        [("web-1".into(), 1.0)]
    );
    // Another spec (another replica) reads the same kill.
    assert_eq!(st.oom_killed("b", "", W, t(30)).unwrap().len(), 1);
    // A second kill of the same container is new.
    let second = PodBuilder::new("web-1").restarts(4).oom_killed_at(t(40));
    assert_eq!(st.apply(second.obs(), Owner::Known(None), t(41)).new_kills, 1);
    assert_eq!(
        values(&st.oom_killed("a", "app=web", W, t(50)).unwrap()),
        [("web-1".into(), 2.0)],
        "two distinct kills in the window"
    );
    // Past the window of the first kill (first seen at 0 s), only the second remains;
    // past both, nothing.
    assert_eq!(
        values(&st.oom_killed("a", "app=web", W, t(300)).unwrap()),
        [("web-1".into(), 1.0)]
    );
    assert_eq!(st.oom_killed("a", "app=web", W, t(341)).unwrap(), []);
}

#[test]
fn a_kill_counts_the_moment_the_container_is_terminated_and_not_again_after_the_restart() {
    // With a finishedAt, a containerID, or neither (the restart count it leads to).
    let cases = [
        (Some(t(-1)), "containerd://abc"),
        (None, "containerd://abc"),
        (None, ""),
    ];
    for (at, id) in cases {
        let mut st = listed();
        let killed = PodBuilder::new("job-1").restarts(2).oom_killed_now(at, id);
        assert_eq!(
            st.apply(killed.obs(), Owner::Known(None), t(0)).new_kills,
            1,
            "{at:?} {id}"
        );
        assert_eq!(
            values(&st.oom_killed("a", "app=web", W, t(1)).unwrap()),
            [("job-1".into(), 1.0)]
        );
        // The kubelet restarts it: the same kill, now in lastState, one restart later.
        let mut terminated = json!({"reason": "OOMKilled", "exitCode": 137});
        if let Some(at) = at {
            terminated["finishedAt"] = json!(at.to_string());
        }
        if !id.is_empty() {
            terminated["containerID"] = json!(id);
        }
        let restarted = PodBuilder::new("job-1").restarts(3).running_after(terminated);
        assert_eq!(
            st.apply(restarted.obs(), Owner::Known(None), t(30)).new_kills,
            0,
            "{at:?} {id}"
        );
        assert_eq!(
            values(&st.oom_killed("a", "app=web", W, t(31)).unwrap()),
            [("job-1".into(), 1.0)],
            "still one kill"
        );
    }
    // A terminated container that was not OOM killed is no kill.
    let mut st = listed();
    let mut done = PodBuilder::new("job-2");
    done.status()["state"] = json!({"terminated": {"reason": "Completed", "exitCode": 0}});
    assert_eq!(st.apply(done.obs(), Owner::Known(None), t(0)).new_kills, 0);
}

#[test]
fn old_kills_and_kills_of_unknown_age_in_the_first_list_are_history() {
    let mut st = PodState::default();
    st.begin_resync();
    let old = PodBuilder::new("old").restarts(9).oom_killed_at(t(-16 * 60));
    let undated = PodBuilder::new("undated")
        .restarts(2)
        .oom_killed_without_time("containerd://a");
    let recent = PodBuilder::new("recent").restarts(1).oom_killed_at(t(-14 * 60));
    for p in [&old, &undated, &recent] {
        st.apply(p.obs(), Owner::Known(None), t(0));
    }
    st.finish_resync(t(0));
    assert_eq!(
        values(&st.oom_killed("a", "", W, t(1)).unwrap()),
        [("recent".into(), 1.0)]
    );
    // After the first list, a kill of unknown age is news.
    let fresh = PodBuilder::new("undated")
        .restarts(3)
        .oom_killed_without_time("containerd://b");
    assert_eq!(st.apply(fresh.obs(), Owner::Known(None), t(5)).new_kills, 1);
}

#[test]
fn a_relist_does_not_count_again_and_removes_the_pods_it_lacks() {
    let mut st = listed();
    let killed = PodBuilder::new("web-1")
        .restarts(1)
        .oom_killed_at(t(-5))
        .crash_looping();
    st.apply(killed.obs(), Owner::Known(None), t(0));
    st.apply(PodBuilder::new("web-2").obs(), Owner::Known(None), t(0));
    assert_eq!(st.oom_killed("a", "", W, t(1)).unwrap().len(), 1);
    st.begin_resync();
    assert_eq!(st.apply(killed.obs(), Owner::Known(None), t(60)).new_kills, 0);
    assert!(
        !st.finish_resync(t(60)).crash_changed,
        "web-2 was not crash looping"
    );
    assert_eq!(
        st.oom_killed("a", "", W, t(61)).unwrap().len(),
        1,
        "the re-list adds no second kill"
    );
    assert_eq!(
        values(&st.crash_loop("c", "", t(61)).unwrap()),
        [("web-1".into(), 1.0)]
    );
    st.begin_resync();
    assert!(st.finish_resync(t(70)).crash_changed, "web-1 is gone");
    assert_eq!(st.crash_loop("c", "", t(71)).unwrap(), []);
}

#[test]
fn crash_loop_changes_are_reported() {
    let mut st = listed();
    let p = PodBuilder::new("web-1").restarts(3);
    assert!(!st.apply(p.obs(), Owner::Unresolved, t(0)).crash_changed);
    let looping = PodBuilder::new("web-1").restarts(4).crash_looping();
    assert!(st.apply(looping.obs(), Owner::Unresolved, t(1)).crash_changed);
    assert!(!st.apply(looping.obs(), Owner::Unresolved, t(2)).crash_changed);
    assert!(st.delete("uid-web-1", t(3)).crash_changed);
}

#[test]
fn only_pods_a_collected_spec_selects_wake_the_daemon() {
    let mut st = listed();
    let db = PodBuilder::new("db-0").labels(json!({"app": "db"}));
    assert!(
        st.apply(db.clone().crash_looping().obs(), Owner::Unresolved, t(0))
            .wake(),
        "no spec yet"
    );
    assert_eq!(st.crash_loop("web", "app=web", t(1)).unwrap(), []);
    let web = PodBuilder::new("web-1").crash_looping();
    assert!(st.apply(web.obs(), Owner::Unresolved, t(2)).wake());
    assert!(
        !st.apply(db.obs(), Owner::Unresolved, t(3)).wake(),
        "no spec selects app=db"
    );
    let killed = PodBuilder::new("db-0")
        .labels(json!({"app": "db"}))
        .restarts(1)
        .oom_killed_at(t(3));
    assert!(!st.apply(killed.obs(), Owner::Unresolved, t(4)).wake());
    assert!(st.delete("uid-web-1", t(5)).wake());
    assert_eq!(
        values(&st.oom_killed("all", "", W, t(6)).unwrap()),
        [("db-0".into(), 1.0)],
        "still counted"
    );
}

#[test]
fn restarts_count_within_the_window_from_the_first_sighting_on() {
    let mut st = listed();
    let window = Duration::from_secs(600);
    st.apply(
        PodBuilder::new("web-1").restarts(7).obs(),
        Owner::Unresolved,
        t(0),
    );
    assert_eq!(
        st.restarts("r", "", window, t(1)).unwrap(),
        [],
        "the baseline is no restart"
    );
    st.apply(
        PodBuilder::new("web-1").restarts(8).obs(),
        Owner::Unresolved,
        t(100),
    );
    st.apply(
        PodBuilder::new("web-1").restarts(10).obs(),
        Owner::Unresolved,
        t(400),
    );
    assert_eq!(
        values(&st.restarts("r", "", window, t(500)).unwrap()),
        [("web-1".into(), 3.0)]
    );
    assert_eq!(
        values(&st.restarts("r", "", window, t(750)).unwrap()),
        [("web-1".into(), 2.0)]
    );
    assert_eq!(st.restarts("r", "", window, t(1000)).unwrap(), []);
}

#[test]
fn restart_history_is_bounded() {
    let mut st = listed();
    for i in 0..(RESTART_HISTORY as i32 + 10) {
        st.apply(
            PodBuilder::new("web-1").restarts(i).obs(),
            Owner::Unresolved,
            t(i64::from(i)),
        );
    }
    let all = st.restarts("r", "", Duration::from_secs(86400), t(100)).unwrap();
    assert_eq!(values(&all), [("web-1".into(), RESTART_HISTORY as f64)]);
}

#[test]
fn selectors_filter_and_owners_label_the_series() {
    let mut st = listed();
    let web = PodBuilder::new("web-1").crash_looping();
    let db = PodBuilder::new("db-0")
        .crash_looping()
        .labels(json!({"app": "db"}));
    st.apply(web.obs(), Owner::Known(Some("deployment/web".into())), t(0));
    st.apply(db.obs(), Owner::Failed, t(0));
    let web_only = st.crash_loop("w", "app in (web)", t(1)).unwrap();
    assert_eq!(web_only.len(), 1);
    assert_eq!(web_only[0].labels["owner"], "deployment/web");
    assert_eq!(web_only[0].labels["namespace"], "prod");
    assert_eq!(web_only[0].labels["container"], "app");
    let all = st.crash_loop("all", "", t(1)).unwrap();
    assert_eq!(values(&all), [("db-0".into(), 1.0), ("web-1".into(), 1.0)]);
    assert!(
        !all[0].labels.contains_key("owner"),
        "a failed look-up gives no owner"
    );
    assert_eq!(st.failed_owners().len(), 1);
    st.set_owner("uid-db-0", None, Some("statefulset/db".into()));
    assert_eq!(
        st.crash_loop("all", "", t(2)).unwrap()[0].labels["owner"],
        "statefulset/db"
    );
    assert!(st
        .crash_loop("bad", "app in (", t(2))
        .unwrap_err()
        .contains("invalid label selector"));
}

#[test]
fn status_waits_for_the_first_list_and_reports_failures() {
    let mut st = PodState::default();
    assert_eq!(st.status(t(0)).unwrap_err(), WAITING);
    assert!(st.fail("forbidden".into(), true, t(1)));
    assert_eq!(
        st.status(t(500)).unwrap_err(),
        "forbidden",
        "a failed list holds until a list"
    );
    st.recovered();
    st.begin_resync();
    st.finish_resync(t(2));
    assert_eq!(st.status(t(2)), Ok(()));
    // A single watch blip is not a failure; a repeated one is, until it stops repeating.
    assert!(!st.fail("reset".into(), false, t(10)));
    assert_eq!(st.status(t(10)), Ok(()));
    assert!(st.fail("reset".into(), false, t(12)));
    assert_eq!(st.status(t(13)).unwrap_err(), "reset");
    assert_eq!(st.status(t(200)), Ok(()));
}

#[test]
fn deleted_pods_disappear_and_their_kill_keys_are_pruned_later() {
    let mut st = listed();
    let killed = PodBuilder::new("web-1").restarts(1).oom_killed_at(t(-5));
    st.apply(killed.obs(), Owner::Known(None), t(0));
    st.delete("uid-web-1", t(10));
    assert!(st.pods.is_empty());
    assert_eq!(st.seen.len(), 1, "kept for a while");
    st.delete("another", t(10 + 3601));
    assert!(st.seen.is_empty());
}

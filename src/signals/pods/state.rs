//! The memory behind the pod signals: each pod's containers as last seen, the OOM kills seen
//! (each counted once, ever), restart increases, and how far each signal spec has read.
//! Pure: the watch task feeds it pods and the time, `collect` reads it, tests drive it
//! directly.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::observe::{Kill, PodMeta, PodObs};
use crate::signals::selector::Selector;

/// A kill whose `finishedAt` is older than this when first seen is recorded, never counted.
pub const OLD_KILL: Duration = Duration::from_secs(15 * 60);
/// Counted kills stay readable this long: the longest `pod_oom_killed` window.
pub const KILL_LOG_KEEP: Duration = Duration::from_secs(60 * 60);
/// The seen-kill keys of a deleted pod are forgotten after this.
const GONE_KEEP: Duration = Duration::from_secs(60 * 60);
/// A spec not collected for this long loses its read position and parsed selector.
const SPEC_IDLE: Duration = Duration::from_secs(60 * 60);
/// Kill keys remembered per container: `lastState` only ever shows the latest termination.
const KILLS_PER_CONTAINER: usize = 4;
/// Restart increases remembered per container; older ones fall out of every window.
pub const RESTART_HISTORY: usize = 32;
/// A transient watch error that is not repeated within this long was recovered from (the
/// watcher's backoff retries at least every ~60 s, and a resumed watch is silent).
const FAILURE_QUIET: Duration = Duration::from_secs(90);

/// Why collection is unknown before the first list completed.
pub const WAITING: &str = "waiting for the first pod list";

fn age(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

/// The workload of a pod, as far as it is known.
#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    /// Not looked up: the pod had nothing to report.
    Unresolved,
    /// Looked up: the target (`deployment/x`) or `None` (no workload to act on).
    Known(Option<String>),
    /// The look-up failed; retried later.
    Failed,
}

/// What applying an event changed that is worth waking the daemon for: only changes of pods
/// that a collected spec selects (of any pod before the first `collect`), and a list that
/// made the pod signals known again (the first one, or one that ended a failure: they, and
/// readiness with them, must not wait for the next CHECK_INTERVAL).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub new_kills: usize,
    pub crash_changed: bool,
    pub listed: bool,
}

impl Changed {
    pub fn wake(&self) -> bool {
        self.new_kills > 0 || self.crash_changed || self.listed
    }
}

struct ContainerRecord {
    name: String,
    restart_count: i32,
    crash_loop: bool,
    /// (when observed, by how much `restartCount` grew), oldest first.
    increases: VecDeque<(Timestamp, u32)>,
}

struct PodRecord {
    meta: Arc<PodMeta>,
    controller: Option<OwnerReference>,
    owner: Owner,
    containers: Vec<ContainerRecord>,
}

impl PodRecord {
    fn owner(&self) -> Option<String> {
        match &self.owner {
            Owner::Known(target) => target.clone(),
            _ => None,
        }
    }
}

fn same_controller(a: Option<&OwnerReference>, b: Option<&OwnerReference>) -> bool {
    a.map(|r| &r.uid) == b.map(|r| &r.uid)
}

#[derive(Default)]
struct SeenKills {
    by_container: HashMap<String, VecDeque<String>>,
    gone_since: Option<Timestamp>,
}

struct KillEvent {
    pod: String,
    meta: Arc<PodMeta>,
    owner: Option<String>,
    container: String,
    at: Timestamp,
}

struct SpecCursor {
    selector: Selector,
    last_used: Timestamp,
}

struct Failure {
    reason: String,
    at: Timestamp,
    repeats: u32,
    until_relisted: bool,
}

impl Failure {
    fn failing(&self, now: Timestamp) -> bool {
        self.until_relisted || (self.repeats >= 2 && age(now, self.at) < FAILURE_QUIET)
    }
}

/// Everything the pod signals remember.
#[derive(Default)]
pub struct PodState {
    pods: HashMap<String, PodRecord>,
    seen: HashMap<String, SeenKills>,
    kills: VecDeque<KillEvent>,
    specs: HashMap<String, SpecCursor>,
    /// During a (re-)list: the pods listed so far; the others are gone at its end.
    resync: Option<HashSet<String>>,
    listed: bool,
    failure: Option<Failure>,
}

impl PodState {
    /// `Err(reason)` while nothing trustworthy can be said.
    pub fn status(&self, now: Timestamp) -> Result<(), String> {
        if let Some(f) = self.failure.as_ref().filter(|f| f.failing(now)) {
            return Err(f.reason.clone());
        }
        if self.listed {
            Ok(())
        } else {
            Err(WAITING.to_owned())
        }
    }

    /// Records a watch error. `until_relisted`: only a completed list clears it (the list
    /// failed); otherwise it counts once repeated (a single blip the watcher recovers from
    /// silently is not a failure). Returns whether collection is now failing.
    pub fn fail(&mut self, reason: String, until_relisted: bool, now: Timestamp) -> bool {
        let repeats = match &self.failure {
            Some(f) if age(now, f.at) < FAILURE_QUIET => f.repeats + 1,
            _ => 1,
        };
        let failure = Failure {
            reason,
            at: now,
            repeats,
            until_relisted,
        };
        let failing = failure.failing(now);
        self.failure = Some(failure);
        failing
    }

    /// An event arrived: the watch works.
    pub fn recovered(&mut self) {
        self.failure = None;
    }

    /// The owner recorded for this pod, if it is known and still applies.
    pub fn known_owner(&self, obs: &PodObs) -> Option<Option<String>> {
        let rec = self.pods.get(&obs.key)?;
        match &rec.owner {
            Owner::Known(target) if same_controller(rec.controller.as_ref(), obs.controller.as_ref()) => {
                Some(target.clone())
            }
            _ => None,
        }
    }

    /// A pod by namespace and name: its controlling owner reference and its owner, when
    /// already resolved. `None`: no such pod is watched (gone, or in another namespace).
    pub fn find(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<(Option<OwnerReference>, Option<Option<String>>)> {
        let rec = self
            .pods
            .values()
            .find(|r| r.meta.name == name && r.meta.namespace == namespace)?;
        let known = match &rec.owner {
            Owner::Known(target) => Some(target.clone()),
            _ => None,
        };
        Some((rec.controller.clone(), known))
    }

    /// Pods whose owner look-up failed: (key, namespace, controlling reference).
    pub fn failed_owners(&self) -> Vec<(String, String, Option<OwnerReference>)> {
        let failed = self.pods.iter().filter(|(_, r)| r.owner == Owner::Failed);
        failed
            .map(|(key, r)| (key.clone(), r.meta.namespace.clone(), r.controller.clone()))
            .collect()
    }

    pub fn set_owner(&mut self, key: &str, controller: Option<&OwnerReference>, owner: Option<String>) {
        if let Some(rec) = self.pods.get_mut(key) {
            if same_controller(rec.controller.as_ref(), controller) {
                rec.owner = Owner::Known(owner);
            }
        }
    }

    /// A (re-)list starts.
    pub fn begin_resync(&mut self) {
        self.resync = Some(HashSet::new());
    }

    /// The list is complete: pods it did not contain are gone.
    pub fn finish_resync(&mut self, now: Timestamp) -> Changed {
        let mut out = Changed::default();
        if let Some(listed) = self.resync.take() {
            let gone: Vec<String> = self
                .pods
                .keys()
                .filter(|k| !listed.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                out.crash_changed |= self.delete(&key, now).crash_changed;
            }
        }
        self.listed = true;
        out
    }

    pub fn delete(&mut self, key: &str, now: Timestamp) -> Changed {
        let mut out = Changed::default();
        if let Some(rec) = self.pods.remove(key) {
            out.crash_changed = rec.containers.iter().any(|c| c.crash_loop) && self.watched(&rec.meta.labels);
        }
        if let Some(seen) = self.seen.get_mut(key) {
            seen.gone_since = Some(now);
        }
        self.seen
            .retain(|_, s| s.gone_since.is_none_or(|t| age(now, t) < GONE_KEEP));
        out
    }

    /// Records a pod as seen at `now`.
    pub fn apply(&mut self, obs: PodObs, owner: Owner, now: Timestamp) -> Changed {
        let mut out = Changed::default();
        if let Some(listed) = self.resync.as_mut() {
            listed.insert(obs.key.clone());
        }
        let mut old = self.pods.remove(&obs.key);
        let owner = match (owner, &old) {
            (Owner::Unresolved, Some(prev))
                if same_controller(prev.controller.as_ref(), obs.controller.as_ref()) =>
            {
                prev.owner.clone()
            }
            (owner, _) => owner,
        };
        let owner_label = match &owner {
            Owner::Known(target) => target.clone(),
            _ => None,
        };
        let meta = obs.meta.clone();
        let mut containers = Vec::with_capacity(obs.containers.len());
        for c in &obs.containers {
            let prev = old.as_mut().and_then(|p| {
                let i = p.containers.iter().position(|r| r.name == c.name)?;
                Some(p.containers.swap_remove(i))
            });
            let mut rec = prev.unwrap_or(ContainerRecord {
                name: c.name.clone(),
                // The first sighting is the baseline.
                restart_count: c.restart_count,
                crash_loop: false,
                increases: VecDeque::new(),
            });
            if c.restart_count > rec.restart_count {
                let grew = u32::try_from(c.restart_count - rec.restart_count).unwrap_or(u32::MAX);
                rec.increases.push_back((now, grew));
                if rec.increases.len() > RESTART_HISTORY {
                    rec.increases.pop_front();
                }
            }
            rec.restart_count = c.restart_count;
            out.crash_changed |= rec.crash_loop != c.crash_loop;
            rec.crash_loop = c.crash_loop;
            for kill in &c.oom {
                if self.first_sight(&obs.key, &c.name, &kill.id) && self.counts(kill, now) {
                    self.kills.push_back(KillEvent {
                        pod: obs.key.clone(),
                        meta: obs.meta.clone(),
                        owner: owner_label.clone(),
                        container: c.name.clone(),
                        at: now,
                    });
                    out.new_kills += 1;
                }
            }
            containers.push(rec);
        }
        // Containers no longer reported (a pod's containers do not change; be safe).
        out.crash_changed |= old.is_some_and(|p| p.containers.iter().any(|c| c.crash_loop));
        self.pods.insert(
            obs.key,
            PodRecord {
                meta: obs.meta,
                controller: obs.controller,
                owner,
                containers,
            },
        );
        self.prune_kills(now);
        if !self.watched(&meta.labels) {
            return Changed::default();
        }
        out
    }

    fn watched(&self, labels: &BTreeMap<String, String>) -> bool {
        self.specs.is_empty() || self.specs.values().any(|c| c.selector.matches(labels))
    }

    fn first_sight(&mut self, pod: &str, container: &str, id: &str) -> bool {
        let seen = self.seen.entry(pod.to_owned()).or_default();
        seen.gone_since = None;
        let ids = seen.by_container.entry(container.to_owned()).or_default();
        if ids.iter().any(|known| known == id) {
            return false;
        }
        ids.push_back(id.to_owned());
        if ids.len() > KILLS_PER_CONTAINER {
            ids.pop_front();
        }
        true
    }

    /// Whether a kill seen for the first time counts: recent, or of unknown age but seen
    /// after the first list (the first list of a fresh start shows history, not news).
    fn counts(&self, kill: &Kill, now: Timestamp) -> bool {
        match kill.finished_at {
            Some(at) => age(now, at) <= OLD_KILL,
            None => self.listed,
        }
    }

    fn prune_kills(&mut self, now: Timestamp) {
        while self.kills.front().is_some_and(|k| age(now, k.at) > KILL_LOG_KEEP) {
            self.kills.pop_front();
        }
    }
}

mod read;

#[cfg(test)]
mod tests;

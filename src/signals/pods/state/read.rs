//! The reading side of [`PodState`]: one `collect` of a spec, from memory.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;

use super::{age, ContainerRecord, PodState, SpecCursor, SPEC_IDLE};
use crate::core::series::Series;
use crate::signals::pods::observe::PodMeta;
use crate::signals::selector::Selector;

impl PodState {
    /// The read position and parsed selector of a spec (created at its first collect).
    fn cursor<'a>(
        specs: &'a mut HashMap<String, SpecCursor>,
        spec_key: &str,
        selector: &str,
        now: Timestamp,
    ) -> Result<&'a mut SpecCursor, String> {
        specs.retain(|_, c| age(now, c.last_used) < SPEC_IDLE);
        let cursor = match specs.entry(spec_key.to_owned()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(SpecCursor {
                selector: Selector::parse(selector).map_err(|e| e.to_string())?,
                last_used: now,
            }),
        };
        cursor.last_used = now;
        Ok(cursor)
    }

    /// `pod_oom_killed`: distinct kills first seen within `window` before `now`, by
    /// container. A window, not "since the last read": every replica reads the same value,
    /// so a follower that becomes leader still sees a recent kill (the target's cooldown
    /// annotation prevents a second action on it), and a rule stays firing for the window.
    pub fn oom_killed(
        &mut self,
        spec_key: &str,
        selector: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Vec<Series>, String> {
        self.prune_kills(now);
        let cursor = Self::cursor(&mut self.specs, spec_key, selector, now)?;
        let mut counts: BTreeMap<(&str, &str), (f64, &PodMeta, Option<String>)> = BTreeMap::new();
        for k in self.kills.iter().filter(|k| age(now, k.at) < window) {
            let (meta, owner) = match self.pods.get(&k.pod) {
                Some(rec) => (&*rec.meta, rec.owner().or_else(|| k.owner.clone())),
                None => (&*k.meta, k.owner.clone()),
            };
            if cursor.selector.matches(&meta.labels) {
                counts
                    .entry((&k.pod, &k.container))
                    .or_insert((0.0, meta, owner))
                    .0 += 1.0;
            }
        }
        let mut out: Vec<Series> = counts
            .into_iter()
            .map(|((_, container), (n, meta, owner))| series(meta, container, owner, n))
            .collect();
        sort(&mut out);
        Ok(out)
    }

    /// `pod_crash_loop`: 1 per container waiting in `CrashLoopBackOff`.
    pub fn crash_loop(
        &mut self,
        spec_key: &str,
        selector: &str,
        now: Timestamp,
    ) -> Result<Vec<Series>, String> {
        self.per_container(spec_key, selector, now, |c| if c.crash_loop { 1.0 } else { 0.0 })
    }

    /// `pod_restarts`: restarts observed within `window` before `now`.
    pub fn restarts(
        &mut self,
        spec_key: &str,
        selector: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Vec<Series>, String> {
        self.per_container(spec_key, selector, now, |c| {
            let within = c.increases.iter().filter(|(at, _)| age(now, *at) < window);
            within.map(|(_, n)| f64::from(*n)).sum()
        })
    }

    fn per_container(
        &mut self,
        spec_key: &str,
        selector: &str,
        now: Timestamp,
        value: impl Fn(&ContainerRecord) -> f64,
    ) -> Result<Vec<Series>, String> {
        let cursor = Self::cursor(&mut self.specs, spec_key, selector, now)?;
        let mut out = Vec::new();
        for rec in self
            .pods
            .values()
            .filter(|r| cursor.selector.matches(&r.meta.labels))
        {
            for c in &rec.containers {
                let v = value(c);
                if v > 0.0 {
                    out.push(series(&rec.meta, &c.name, rec.owner(), v));
                }
            }
        }
        sort(&mut out);
        Ok(out)
    }
}

fn series(meta: &PodMeta, container: &str, owner: Option<String>, value: f64) -> Series {
    let mut s = Series::single(value);
    s.labels.insert("pod".to_owned(), meta.name.clone());
    s.labels.insert("container".to_owned(), container.to_owned());
    s.labels.insert("namespace".to_owned(), meta.namespace.clone());
    if let Some(owner) = owner {
        s.labels.insert("owner".to_owned(), owner);
    }
    s
}

fn sort(series: &mut [Series]) {
    let key =
        |s: &Series| ["namespace", "pod", "container"].map(|k| s.labels.get(k).cloned().unwrap_or_default());
    series.sort_by_cached_key(key);
}

//! The guard state kept in the cluster, so a restart, an OOM kill of the automaton or a new
//! leader allows no action the guard would not have allowed one long-lived process.
//!
//! One document (clients/kube/state.rs holds the ConfigMap) carries the engine's lasting
//! guard state (`core::engine::Durable`) and a journal of action intents. The leader:
//! - reads it when it becomes leader (at start too), merges it into the engine and
//!   reconciles every intent without an outcome against the live object (the action kind
//!   says how, `Action::reconcile`) before anything acts: an action found not done is taken
//!   back, one found done or that leaves no trace to read stays counted (at most once);
//! - writes the intent of every action (its key is the action id), with the cooldown,
//!   budget and rate-limit marks the action takes, before executing it; an action whose
//!   intent cannot be written is not executed (`state_unsaved`) and is decided again;
//! - writes the outcome after, and the guard state at the end of a tick whenever it
//!   changed (a verification ended, a quarantine was cleared).
//!
//! Every write names the resourceVersion read or written last: a 409 means another writer
//! (a deposed leader) got there first, so the document is read and merged again before the
//! next action.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Daemon;
use crate::actions::{ReconcileCtx, Reconciled};
use crate::clients::kube::state::StateObject;
use crate::core::decision::{Decision, DecisionKind, Verdict, WriteOutcome};
use crate::core::engine::Durable;
use crate::core::plan::Effect;
use crate::core::target::qualify;

/// The document in the state object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    /// The format (1).
    #[serde(default)]
    pub version: u32,
    /// The replica that wrote it last.
    #[serde(default)]
    pub holder: String,
    #[serde(default)]
    pub guard: Durable,
    /// Recent actions, oldest first: open ones until reconciled, closed ones for a while
    /// for operators (`kubectl get configmap automaton-state -o yaml`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intents: Vec<Intent>,
}

/// An action about to be executed, then its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The idempotency key: the action id (unique across restarts).
    pub key: String,
    pub rule: String,
    pub target: String,
    pub action: String,
    /// Engine time (Unix milliseconds) of the decision.
    pub at: u64,
    pub effect: Effect,
    /// `succeeded`, `failed`, `timeout`, `refused`, `dropped`; or, for an intent found open
    /// at a start, what reconciling it found: `done`, `not_done`, `assumed_done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// Closed intents are kept this long, and at most this many.
const KEEP_CLOSED: Duration = Duration::from_secs(3600);
const MAX_CLOSED: usize = 32;

/// The daemon's side of the state object.
pub(super) struct GuardStore {
    object: StateObject,
    identity: String,
    doc: StateDoc,
    resource_version: Option<String>,
    /// Read (and reconciled) since this replica last became leader.
    loaded: bool,
    /// The guard state last written: a tick writes only when it changed.
    written: Option<Durable>,
    /// The last failure, shown in `/status`; logged when it changes.
    pub error: Option<String>,
}

impl GuardStore {
    pub fn new(object: StateObject, identity: String) -> Self {
        GuardStore {
            object,
            identity,
            doc: StateDoc::default(),
            resource_version: None,
            loaded: false,
            written: None,
            error: None,
        }
    }

    pub fn loaded(&self) -> bool {
        self.loaded
    }

    pub fn name(&self) -> &str {
        self.object.name()
    }

    pub fn open_intents(&self) -> usize {
        self.doc.intents.iter().filter(|i| i.outcome.is_none()).count()
    }

    fn prune(&mut self, now: Duration) {
        let cutoff = now.saturating_sub(KEEP_CLOSED);
        let cutoff = u64::try_from(cutoff.as_millis()).unwrap_or(u64::MAX);
        self.doc.intents.retain(|i| i.outcome.is_none() || i.at >= cutoff);
        let closed = self.doc.intents.iter().filter(|i| i.outcome.is_some()).count();
        let mut extra = closed.saturating_sub(MAX_CLOSED);
        self.doc.intents.retain(|i| {
            if extra > 0 && i.outcome.is_some() {
                extra -= 1;
                return false;
            }
            true
        });
    }

    /// Writes the document with `guard`. A conflict marks the store unloaded: the next
    /// tick reads and merges again before anything acts.
    async fn put(&mut self, guard: Durable, now: Duration) -> Result<(), String> {
        self.doc.version = 1;
        self.doc.holder.clone_from(&self.identity);
        self.doc.guard = guard;
        self.prune(now);
        let text = serde_json::to_string_pretty(&self.doc).map_err(|e| e.to_string())?;
        match self.object.write(text, self.resource_version.as_deref()).await {
            Ok(rv) => {
                self.resource_version = Some(rv);
                self.written = Some(self.doc.guard.clone());
                self.set_error(None);
                Ok(())
            }
            Err(e) => {
                if e.is_conflict() || e.is_already_exists() {
                    self.loaded = false;
                }
                let why = format!("writing configmap/{}: {e}", self.object.name());
                self.set_error(Some(why.clone()));
                Err(why)
            }
        }
    }

    fn set_error(&mut self, error: Option<String>) {
        if error != self.error {
            match &error {
                Some(e) => {
                    warn!(error = %e, "the guard state could not be kept in the cluster: no action until it can")
                }
                None if self.error.is_some() => {
                    info!(object = %self.object.name(), "the guard state is kept in the cluster again")
                }
                None => {}
            }
        }
        self.error = error;
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Daemon {
    /// Makes sure the leader holds the guard state before it acts: read, merged and
    /// reconciled once per leadership. A follower forgets it was loaded, so taking over
    /// later reads what the other leader wrote.
    pub(super) async fn load_guard_state(&mut self, leading: bool) {
        let Some(store) = self.guard_store.as_mut() else {
            return;
        };
        if !leading {
            store.loaded = false;
            return;
        }
        if store.loaded {
            return;
        }
        let stored = match store.object.read().await {
            Ok(stored) => stored,
            Err(e) => {
                store.set_error(Some(format!("reading configmap/{}: {e}", store.object.name())));
                return;
            }
        };
        let doc = match stored.text.as_deref().map(serde_json::from_str::<StateDoc>) {
            None => StateDoc::default(),
            Some(Ok(doc)) => doc,
            Some(Err(e)) => {
                store.set_error(Some(format!(
                    "configmap/{} key state.json is not a guard state ({e}): fix or delete it (deleting forgets cooldowns, rate limits and quarantines)",
                    store.object.name()
                )));
                return;
            }
        };
        // Written before targets named their namespace: in the automaton's own.
        let mut doc = doc;
        doc.guard = std::mem::take(&mut doc.guard).in_namespace(self.home());
        for intent in &mut doc.intents {
            intent.target = qualify(&intent.target, self.home());
        }
        // Merged: what this replica remembers and what the last writer kept.
        let mut open = Vec::new();
        for (i, intent) in doc.intents.iter().enumerate() {
            if intent.outcome.is_none() {
                open.push(i);
            }
        }
        self.engine.restore(&doc.guard);
        for i in open {
            let intent = doc.intents[i].clone();
            match self.reconcile(&intent).await {
                Ok(found) => {
                    if found == Reconciled::NotDone {
                        self.engine
                            .take_back(&intent.rule, &intent.target, Duration::from_millis(intent.at));
                    }
                    info!(key = %intent.key, rule = %intent.rule, target = %intent.target, action = %intent.action,
                        found = found.as_str(), "an action of an earlier leader or process, found without its outcome, reconciled");
                    doc.intents[i].outcome = Some(found.as_str().to_owned());
                }
                Err(why) => {
                    if let Some(store) = self.guard_store.as_mut() {
                        store.set_error(Some(format!(
                            "reconciling action {} ({} on {}): {why}",
                            intent.key, intent.rule, intent.target
                        )));
                    }
                    return;
                }
            }
        }
        let now = self.clock.now();
        let guard = self.engine.durable(now);
        let Some(store) = self.guard_store.as_mut() else {
            return;
        };
        store.doc = doc;
        store.resource_version = stored.resource_version;
        if store.put(guard, now).await.is_ok() {
            store.loaded = true;
            info!(object = %store.object.name(), open = store.open_intents(), "guard state read from the cluster");
        }
    }

    /// What became of an open intent, from the live object.
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciled, String> {
        let Some(rule) = self.loaded.rules.iter().find(|r| *r.name == *intent.rule) else {
            return Ok(Reconciled::Unknown);
        };
        let cx = ReconcileCtx {
            rule,
            target: &intent.target,
            acted_at: Duration::from_millis(intent.at),
            effect: &intent.effect,
            executors: &self.writer.executors,
        };
        match rule.spec.action.get().reconcile(&cx).await {
            Ok(found) => Ok(found),
            // The API is down or slow: try again next tick, acting on nothing meanwhile.
            Err(e) if e.dependency_down() => Err(e.to_string()),
            // An answer that will not change (the target is gone, the Role lacks a verb):
            // the action stays counted.
            Err(e) => {
                warn!(error = %e, key = %intent.key, "an open action cannot be read back from the live object: it stays counted");
                Ok(Reconciled::Unknown)
            }
        }
    }

    /// The guard state to write now: the engine's, less the marks of this tick's actions
    /// that have not had their intent recorded yet (`later`).
    fn guard_now(&self, now: Duration, later: &[Decision]) -> Durable {
        let mut guard = self.engine.durable(now);
        for d in later.iter().filter(|d| is_action(d)) {
            guard.without(d);
        }
        guard
    }

    /// Records the intent of an `act` before it is executed. `Err` says why it could not
    /// be, and the action must not run. `later` are the decisions of the tick after it.
    pub(super) async fn record_intent(
        &mut self,
        d: &Decision,
        later: &[Decision],
        now: Duration,
    ) -> Result<(), String> {
        if !matches!(d.kind, DecisionKind::Action(_)) {
            return Ok(());
        }
        let guard = self.guard_now(now, later);
        let Some(store) = self.guard_store.as_mut() else {
            return Ok(());
        };
        if !store.loaded {
            return Err(store.error.clone().map_or_else(
                || "the guard state has not been read from the cluster yet".to_owned(),
                |e| format!("the guard state could not be read: {e}"),
            ));
        }
        let effect = d.plan.as_deref().map_or(Effect::External, |p| p.effect.clone());
        store.doc.intents.push(Intent {
            key: d.id.as_deref().unwrap_or_default().to_owned(),
            rule: d.rule.to_string(),
            target: d.target.to_string(),
            action: d.kind.as_str().to_owned(),
            at: ms(d.at),
            effect,
            outcome: None,
        });
        let result = store.put(guard, now).await;
        if result.is_err() {
            store.doc.intents.pop();
        }
        result
    }

    /// Records what became of an action whose intent was written.
    pub(super) async fn record_outcome(&mut self, d: &Decision, later: &[Decision], now: Duration) {
        let (Some(id), Some(outcome)) = (d.id.as_deref(), d.outcome) else {
            return;
        };
        if !matches!(d.kind, DecisionKind::Action(_)) {
            return;
        }
        let guard = self.guard_now(now, later);
        let Some(store) = self.guard_store.as_mut() else {
            return;
        };
        let Some(intent) = store.doc.intents.iter_mut().rev().find(|i| i.key == id) else {
            return;
        };
        intent.outcome = Some(outcome_name(outcome).to_owned());
        // A failure here leaves the intent open: the next reader reconciles it.
        let _ = store.put(guard, now).await;
    }

    /// Writes the guard state at the end of a tick when it changed since the last write.
    pub(super) async fn save_guard_state(&mut self, now: Duration) {
        let guard = self.engine.durable(now);
        let Some(store) = self.guard_store.as_mut() else {
            return;
        };
        if !store.loaded || store.written.as_ref() == Some(&guard) {
            return;
        }
        let _ = store.put(guard, now).await;
    }
}

/// An `act` of a rule's own action (not a notice or a rollback): what takes guard marks.
fn is_action(d: &Decision) -> bool {
    d.decision == Verdict::Act && matches!(d.kind, DecisionKind::Action(_))
}

fn outcome_name(outcome: WriteOutcome) -> &'static str {
    outcome.as_str()
}

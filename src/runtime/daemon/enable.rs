//! Which of the loaded rules this process runs. The engine gets only the rules whose
//! dependency is configured here; the others are disabled, said once in the log (with the
//! setting that would enable them), shown in `/status` and counted in
//! `automaton_rules_disabled`. Attaching a dependency or reloading the files re-decides.

use std::sync::Arc;

use tracing::info;

use super::Daemon;
use crate::rules;
use crate::signals::Available;

impl Daemon {
    /// What this process has configured, as the rules' needs see it.
    fn available(&self) -> Available {
        Available {
            kafka: self.sources.kafka.is_some(),
            postgres: self.sources.postgres.is_some(),
            kubernetes: self.sources.pods.is_some(),
        }
    }

    /// The pod watches the API server filters for the loaded pod rules' selectors: one for
    /// what they all share, or one per group when they share nothing.
    pub(super) fn pod_watch_plan(&self) -> crate::signals::pods::WatchPlan {
        crate::signals::pods::watch_plan(
            self.loaded
                .rules
                .iter()
                .filter_map(|r| r.spec.signal.pod_selector()),
        )
    }

    /// Hands the engine the runnable part of the loaded set. Cooldowns and progress of
    /// rules that stay carry over (`Engine::replace_rules`).
    pub(super) fn install_rules(&mut self) {
        let (mut enabled, mut disabled) = rules::partition(&self.loaded, &self.available());
        if let Some(k) = &self.kube {
            let outside;
            (enabled, outside) = rules::enable::outside(enabled, self.home(), &k.watched);
            disabled.extend(outside);
        }
        self.metrics.rules_installed(
            enabled
                .rules
                .iter()
                .map(|r| (&*r.name, r.spec.when.threshold, r.spec.action.kind())),
            disabled.len(),
        );
        self.metrics.rule_state.reset();
        self.metrics.quarantined.reset();
        self.engine
            .replace_rules(Arc::new(enabled.in_namespace(self.home())));
        if let Some(pods) = &self.sources.pods {
            pods.narrow(self.pod_watch_plan());
        }
        let now = self.clock.now();
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        status.disabled_rules = disabled;
        status.refresh(&mut self.engine, now);
    }

    /// Logs each rule that became disabled or enabled since the last call: once, not every
    /// tick. Called when the loop starts working, after every dependency is attached.
    pub(super) fn log_disabled(&mut self) {
        let now: std::collections::BTreeMap<String, String> = self
            .status()
            .disabled_rules
            .iter()
            .map(|d| (d.name.clone(), d.reason.clone()))
            .collect();
        if now == self.logged_disabled {
            return;
        }
        for d in self.status().disabled_rules.iter() {
            if self.logged_disabled.get(&d.name) != Some(&d.reason) {
                info!(rule = %d.name, signal = d.signal, file = %d.file, line = d.line,
                    reason = %d.reason, "rule disabled: {}", d.reason);
            }
        }
        for name in self.logged_disabled.keys().filter(|n| !now.contains_key(*n)) {
            info!(rule = %name, "rule enabled: its dependency is configured now");
        }
        self.logged_disabled = now;
    }
}

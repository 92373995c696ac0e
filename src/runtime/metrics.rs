//! Prometheus metrics. The seed's names stay exactly (`healing_actions_total`,
//! `healing_latency_seconds`, `healing_checks_total`); every other one is `automaton_*`, with
//! unit suffixes and `_total` on counters; labels are bounded (rule names,
//! workload targets, fixed enums — never pod UIDs). Metrics are recorded from decisions, the
//! same events that are logged, so the two never disagree.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::decision::{Decision, SkipReason, State, Verdict, WriteOutcome};
use crate::core::verify::VerifyResult;

pub struct Metrics {
    pub registry: Registry,
    pub actions: IntCounterVec,
    pub latency: HistogramVec,
    pub checks: IntCounterVec,
    pub skips: IntCounterVec,
    pub rule_state: IntGaugeVec,
    pub source_up: IntGaugeVec,
    pub reloads: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub leader: prometheus::IntGauge,
    pub kafka_lag: prometheus::GaugeVec,
    pub circuit: IntGaugeVec,
    pub verifications: IntCounterVec,
    pub rollbacks: IntCounterVec,
    pub quarantined: IntGaugeVec,
    pub signal_errors: IntCounterVec,
    pub action_outcomes: IntCounterVec,
    pub rules_disabled: prometheus::IntGauge,
    pub tick_duration: prometheus::Histogram,
    pub signal_value: prometheus::GaugeVec,
    pub threshold: prometheus::GaugeVec,
    pub budget_remaining: prometheus::IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let actions = IntCounterVec::new(
            Opts::new(
                "healing_actions_total",
                "Healing actions by rule, kind, outcome and dry-run",
            ),
            &["rule", "action", "success", "dry_run"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "healing_latency_seconds",
                "From the first sample that met a rule's condition to the action's completion",
            )
            .buckets(vec![
                0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0,
            ]),
            &["action"],
        )?;
        let checks = IntCounterVec::new(
            Opts::new("healing_checks_total", "Evaluations of a rule, per target"),
            &["rule"],
        )?;
        let skips = IntCounterVec::new(
            Opts::new(
                "automaton_skips_total",
                "Due actions that the guard skipped, by reason",
            ),
            &["rule", "reason"],
        )?;
        let rule_state = IntGaugeVec::new(
            Opts::new(
                "automaton_rule_state",
                "1 for the current state of each rule and target, 0 for the others",
            ),
            &["rule", "target", "state"],
        )?;
        let source_up = IntGaugeVec::new(
            Opts::new(
                "automaton_signal_source_up",
                "1 when every collection from the source succeeded in the last tick",
            ),
            &["source"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("automaton_rules_reload_total", "Rule set reloads by result"),
            &["result"],
        )?;
        let leader = prometheus::IntGauge::new(
            "automaton_leader",
            "1 while this replica holds the Lease and may act",
        )?;
        let kafka_lag = prometheus::GaugeVec::new(
            Opts::new(
                "automaton_kafka_consumer_lag",
                "Consumer-group lag per topic at the last collection",
            ),
            &["group", "topic"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("automaton_build_info", "Build information"),
            &["version"],
        )?;
        let circuit = IntGaugeVec::new(
            Opts::new(
                "automaton_circuit_breaker_state",
                "Circuit breaker of each dependency: 0 closed, 1 half-open, 2 open",
            ),
            &["dependency"],
        )?;
        let verifications = IntCounterVec::new(
            Opts::new(
                "automaton_verifications_total",
                "Ended verifications of actions, by result (success, failed, unknown)",
            ),
            &["rule", "result"],
        )?;
        let rollbacks = IntCounterVec::new(
            Opts::new(
                "automaton_rollbacks_total",
                "Rollbacks executed after a failed verification",
            ),
            &["rule"],
        )?;
        let quarantined = IntGaugeVec::new(
            Opts::new(
                "automaton_quarantined",
                "1 while a rule may not act on a target because its last action failed verification",
            ),
            &["rule", "target"],
        )?;
        let signal_errors = IntCounterVec::new(
            Opts::new(
                "automaton_signal_errors_total",
                "Collections that left a signal unknown, by source and error kind",
            ),
            &["source", "kind"],
        )?;
        let action_outcomes = IntCounterVec::new(
            Opts::new(
                "automaton_action_outcomes_total",
                "Actions handed to the writer, by kind and outcome (succeeded, failed, timeout, dropped, refused)",
            ),
            &["action", "outcome"],
        )?;
        let rules_disabled = prometheus::IntGauge::new(
            "automaton_rules_disabled",
            "Valid rules set aside because a dependency they need is not configured here",
        )?;
        let tick_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "automaton_tick_duration_seconds",
                "One evaluation: collection, the engine and the actions it let through",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
        )?;
        let signal_value = prometheus::GaugeVec::new(
            Opts::new(
                "automaton_signal_value",
                "The value a rule last evaluated, per target; absent while it is unknown",
            ),
            &["rule", "target"],
        )?;
        let threshold = prometheus::GaugeVec::new(
            Opts::new(
                "automaton_rule_threshold",
                "The threshold of each enabled rule's `when` condition",
            ),
            &["rule"],
        )?;
        let budget_remaining = prometheus::IntGauge::new(
            "automaton_action_budget_remaining",
            "Actions the global budget (ACTION_BUDGET) still allows in its current window",
        )?;
        for c in [
            Box::new(actions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(checks.clone()),
            Box::new(skips.clone()),
            Box::new(rule_state.clone()),
            Box::new(source_up.clone()),
            Box::new(reloads.clone()),
            Box::new(build_info.clone()),
            Box::new(leader.clone()),
            Box::new(kafka_lag.clone()),
            Box::new(circuit.clone()),
            Box::new(verifications.clone()),
            Box::new(rollbacks.clone()),
            Box::new(quarantined.clone()),
            Box::new(signal_errors.clone()),
            Box::new(action_outcomes.clone()),
            Box::new(rules_disabled.clone()),
            Box::new(tick_duration.clone()),
            Box::new(signal_value.clone()),
            Box::new(threshold.clone()),
            Box::new(budget_remaining.clone()),
        ] {
            registry.register(c)?;
        }
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // From 0, so the first failed reload is an increase an alert sees.
        for result in ["success", "error"] {
            reloads.with_label_values(&[result]);
        }
        Ok(Metrics {
            registry,
            actions,
            latency,
            checks,
            skips,
            rule_state,
            source_up,
            reloads,
            build_info,
            leader,
            kafka_lag,
            circuit,
            verifications,
            rollbacks,
            quarantined,
            signal_errors,
            action_outcomes,
            rules_disabled,
            tick_duration,
            signal_value,
            threshold,
            budget_remaining,
        })
    }

    /// Records an evaluation. An `act` is counted later, by [`Metrics::action_done`].
    pub fn record(&self, d: &Decision) {
        if !d.follows_up() {
            self.checks.with_label_values(&[&d.rule]).inc();
            for state in State::ALL {
                let on = i64::from(state == d.state);
                self.rule_state
                    .with_label_values(&[&d.rule, &d.target, state.as_str()])
                    .set(on);
            }
            self.quarantined
                .with_label_values(&[&d.rule, &d.target])
                .set(i64::from(d.quarantined));
            match d.value {
                Some(v) => self.signal_value.with_label_values(&[&d.rule, &d.target]).set(v),
                // Unknown is no value at all, never a stale or zero one on a dashboard.
                None => {
                    let _ = self.signal_value.remove_label_values(&[&d.rule, &d.target]);
                }
            }
        }
        if let Some(v) = &d.verification {
            self.verifications
                .with_label_values(&[&d.rule, v.result.as_str()])
                .inc();
        }
        if d.decision == Verdict::Skip {
            if let Some(reason) = d.reason {
                self.skips.with_label_values(&[&d.rule, reason.as_str()]).inc();
                if reason == SkipReason::DryRun {
                    self.actions
                        .with_label_values(&[&d.rule, d.kind.as_str(), "true", "true"])
                        .inc();
                }
            }
        }
    }

    /// The thresholds of the rules the engine now runs, and how many are disabled. The
    /// counters the shipped alerts watch start at 0 for every rule and action kind: a series
    /// that first appears at 1 is invisible to `increase()`, and the first failure would
    /// never alert.
    pub fn rules_installed<'a>(
        &self,
        rules: impl IntoIterator<Item = (&'a str, f64, &'static str)>,
        disabled: usize,
    ) {
        self.threshold.reset();
        self.signal_value.reset();
        for (rule, threshold, action) in rules {
            self.threshold.with_label_values(&[rule]).set(threshold);
            self.skips.with_label_values(&[rule, SkipReason::Budget.as_str()]);
            self.rollbacks.with_label_values(&[rule]);
            for result in VerifyResult::ALL {
                self.verifications.with_label_values(&[rule, result.as_str()]);
            }
            for outcome in WriteOutcome::ALL {
                self.action_outcomes
                    .with_label_values(&[action, outcome.as_str()]);
            }
        }
        self.rules_disabled
            .set(i64::try_from(disabled).unwrap_or(i64::MAX));
    }

    /// Records an executed action and its latency.
    pub fn action_done(&self, d: &Decision, success: bool, latency: Option<Duration>) {
        let success = if success { "true" } else { "false" };
        self.actions
            .with_label_values(&[&d.rule, d.kind.as_str(), success, "false"])
            .inc();
        if d.kind == crate::core::decision::DecisionKind::Rollback && success == "true" {
            self.rollbacks.with_label_values(&[&d.rule]).inc();
        }
        if let Some(l) = latency {
            self.latency
                .with_label_values(&[d.kind.as_str()])
                .observe(l.as_secs_f64());
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding error: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

//! `alert`: an alert Alertmanager routes to the automaton (`POST /alertmanager` on the main
//! listener, with the bearer token ALERTMANAGER_TOKEN), so incidents teams already describe
//! as PrometheusRules can be healed without a signal of their own. A matching alert reads 1
//! while firing and 0 once resolved or past its `endsAt`; `target` names its workload from
//! its labels, as `prometheus` does.
//!
//! What is read is what was pushed since the start: after a restart, an alert still firing
//! reads again at Alertmanager's next notification of its group (`group_interval`, or
//! `repeat_interval` when nothing changed).

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{template, RuleContext, Signal, SignalError, Sources};
use crate::core::series::Series;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// The alert's name (its `alertname` label).
    pub name: String,
    /// Labels the alert must carry, with exactly these values (`{namespace: prod}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub matchers: BTreeMap<String, String>,
    /// What each alert is about, from its labels, as `prometheus`' `target`: `owner`,
    /// `deployment/{{deployment}}`, `pod/{{pod}}`, `pvc/{{persistentvolumeclaim}}`…; an
    /// action's `target: owner` acts on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Signal for Alert {
    fn source(&self) -> &'static str {
        "alertmanager"
    }

    fn has_owner(&self) -> bool {
        self.target.is_some()
    }

    fn owner_kind(&self) -> Option<super::OwnerKind> {
        self.target.as_deref().and_then(template::owner_kind)
    }

    /// Alertmanager's webhook pushes: a rule reads a new alert at once.
    fn pushes(&self) -> bool {
        true
    }

    fn needs_secret(&self) -> Option<&'static str> {
        Some("ALERTMANAGER_TOKEN")
    }

    fn validate(&self, _rule: &RuleContext) -> Vec<String> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() {
            errors
                .push("`name` must be an alert name (its `alertname` label), found an empty one".to_owned());
        }
        if self.matchers.contains_key("alertname") {
            errors.push("`matchers` must not name `alertname`: that is `name`".to_owned());
        }
        if let Some(t) = &self.target {
            errors.extend(template::check(t));
        }
        errors
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        Box::pin(async move {
            let now = jiff::Timestamp::now();
            let readings = sources.alerts.matching(&self.name, &self.matchers, now);
            template::attach(sources, self.target.as_deref(), readings).await
        })
    }
}

//! `prometheus`: an instant PromQL query over Prometheus' HTTP API (`/api/v1/query`), so a
//! rule can act on what the monitoring stack already measures: a container's working set
//! against its limit, a volume's used bytes against its capacity, any recording rule.
//!
//! Each series of the result is one reading. `target` names what each series is about from
//! its labels (`deployment/{{deployment}}`, `pvc/{{persistentvolumeclaim}}`, or `owner`: the
//! workload owning its `pod`), see [`super::template`]; the series carries it as `owner`, so
//! an action with `target: owner` acts on it and each has its own state and cooldown.
//! A series that leaves the result reads as not holding, as an alert that stops firing does
//! in Prometheus. An error, a timeout, a range vector, a NaN or an infinity is unknown, with
//! the reason: never a number in its place. The bearer token, when the server wants one, is
//! PROMETHEUS_TOKEN (a Secret), never a rule parameter.

pub mod api;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{template, RuleContext, Signal, SignalError, Sources};
use crate::core::series::Series;
use crate::core::url::{check_url, host_port, redacted};
use crate::core::values::Dur;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prometheus {
    /// The server's base URL (`http://prometheus-operated.monitoring.svc:9090`).
    pub url: String,
    /// An instant PromQL query; each series of its result is one reading.
    pub query: String,
    /// What each series is about, from its labels: `owner` (the workload owning its `pod`,
    /// through the owner chain), `deployment/{{deployment}}`, `statefulset/{{statefulset}}`,
    /// `pod/{{pod}}` or `pvc/{{persistentvolumeclaim}}`; an action's `target: owner` acts on
    /// it, and series of another namespace are dropped. Absent: the action names its own
    /// target, and the deepest series decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// How long the query may take (default: CHECK_INTERVAL, at most 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

impl Signal for Prometheus {
    fn source(&self) -> &'static str {
        "prometheus"
    }

    fn dependency(&self) -> Option<String> {
        Some(format!("http/{}", host_port(&self.url)))
    }

    fn has_owner(&self) -> bool {
        self.target.is_some()
    }

    fn owner_kind(&self) -> Option<super::OwnerKind> {
        self.target.as_deref().and_then(template::owner_kind)
    }

    /// Read at every tick, not at every pod watch event.
    fn pushes(&self) -> bool {
        false
    }

    fn validate(&self, _rule: &RuleContext) -> Vec<String> {
        let mut errors: Vec<String> = check_url("url", &self.url).into_iter().collect();
        if self.query.trim().is_empty() {
            errors.push("`query` must be a PromQL expression, found an empty one".to_owned());
        }
        if let Some(template) = &self.target {
            errors.extend(template::check(template));
        }
        if self.timeout.is_some_and(|t| t.0.is_zero()) {
            errors.push("`timeout` must be more than 0s".to_owned());
        }
        errors
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        Box::pin(async move {
            let timeout = self.timeout.map_or(sources.timeout, |t| t.0);
            let token = sources.prometheus_token.as_deref();
            let samples = api::query(&sources.http, &self.url, &self.query, token, timeout)
                .await
                .map_err(|e| SignalError::Rpc(format!("query {}: {e}", redacted(&self.url))))?;
            let readings = samples.into_iter().map(|s| (s.labels, s.value)).collect();
            template::attach(sources, self.target.as_deref(), readings).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, query: &str, target: Option<&str>) -> Prometheus {
        Prometheus {
            url: url.to_owned(),
            query: query.to_owned(),
            target: target.map(str::to_owned),
            timeout: None,
        }
    }

    #[test]
    fn validation_reports_every_problem() {
        let ctx = RuleContext {
            cooldown: std::time::Duration::from_secs(60),
        };
        let good = spec(
            "http://prometheus:9090",
            "up == 0",
            Some("deployment/{{deployment}}"),
        );
        assert_eq!(good.validate(&ctx), Vec::<String>::new());
        let bad = spec("prometheus:9090", " ", Some("job/{{pod"));
        let errors = bad.validate(&ctx);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("`url`"), "{errors:?}");
        assert!(errors[1].contains("`query`"), "{errors:?}");
        assert!(errors[2].contains("without"), "{errors:?}");
        assert!(errors[3].contains("must be `owner` or name"), "{errors:?}");
        let fixed = spec("http://p:9090", "x", Some("deployment/api"));
        assert!(fixed.validate(&ctx)[0].contains("names no label"));
        let weird = spec("http://p:9090", "x", Some("deployment/{{1x}}"));
        assert!(weird.validate(&ctx)[0].contains("not a label name"));
    }
}

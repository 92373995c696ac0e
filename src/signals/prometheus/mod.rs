//! `prometheus`: an instant PromQL query over Prometheus' HTTP API (`/api/v1/query`), so a
//! rule can act on what the monitoring stack already measures: a container's working set
//! against its limit, a volume's used bytes against its capacity, any recording rule.
//!
//! Each series of the result is one reading. `target` names the workload of each series from
//! its labels (`deployment/{{deployment}}`); the series carries it as `owner`, so a workload
//! action with `target: owner` acts on it and each workload has its own state and cooldown.
//! A series that leaves the result reads as not holding, as an alert that stops firing does
//! in Prometheus. An error, a timeout, a range vector, a NaN or an infinity is unknown, with
//! the reason: never a number in its place. The bearer token, when the server wants one, is
//! PROMETHEUS_TOKEN (a Secret), never a rule parameter.

pub mod api;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{RuleContext, Signal, SignalError, Sources};
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
    /// The workload of each series, from its labels: `deployment/{{deployment}}` or
    /// `statefulset/{{statefulset}}`; an action's `target: owner` acts on it. Absent: the
    /// action names its own target, and the deepest series decides.
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

    fn validate(&self, _rule: &RuleContext) -> Vec<String> {
        let mut errors: Vec<String> = check_url("url", &self.url).into_iter().collect();
        if self.query.trim().is_empty() {
            errors.push("`query` must be a PromQL expression, found an empty one".to_owned());
        }
        if let Some(template) = &self.target {
            errors.extend(check_template(template));
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
            samples
                .into_iter()
                .map(|s| {
                    let mut labels = s.labels;
                    if let Some(template) = &self.target {
                        let owner = render(template, &labels).map_err(SignalError::Parse)?;
                        labels.insert("owner".to_owned(), owner);
                    }
                    Ok(Series {
                        labels,
                        value: s.value,
                    })
                })
                .collect()
        })
    }
}

/// The pieces of a target template: literal text and `{{label}}` names.
enum Piece<'a> {
    Text(&'a str),
    Label(&'a str),
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push(Piece::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("`target`: `{{{{` without `}}}}` in `{template}`"))?;
        let name = after[..close].trim();
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "`target`: `{{{{{name}}}}}` is not a label name in `{template}`"
            ));
        }
        out.push(Piece::Label(name));
        rest = &after[close + 2..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Rule-load checks of a target template.
fn check_template(template: &str) -> Vec<String> {
    let mut errors = Vec::new();
    match pieces(template) {
        Err(e) => errors.push(e),
        Ok(p) if !p.iter().any(|p| matches!(p, Piece::Label(_))) => errors.push(format!(
            "`target`: `{template}` names no label: every series would be one workload; name it in the action instead"
        )),
        Ok(_) => {}
    }
    if !(template.starts_with("deployment/") || template.starts_with("statefulset/")) {
        errors.push(format!(
            "`target` must name a workload, `deployment/{{{{label}}}}` or `statefulset/{{{{label}}}}`, found `{template}`"
        ));
    }
    errors
}

/// The target of a series with these labels. A label the template needs and the series
/// lacks is an error: the query does not give what the rule expects.
fn render(template: &str, labels: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    for piece in pieces(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Label(name) => match labels.get(name).filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(format!(
                        "a series has no label `{name}`, which `target: {template}` needs: keep it in the query's result (`sum by ({name}, …)`)"
                    ))
                }
            },
        }
    }
    Ok(out)
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
        let bad = spec("prometheus:9090", " ", Some("pod/{{pod"));
        let errors = bad.validate(&ctx);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("`url`"), "{errors:?}");
        assert!(errors[1].contains("`query`"), "{errors:?}");
        assert!(errors[2].contains("without"), "{errors:?}");
        assert!(errors[3].contains("must name a workload"), "{errors:?}");
        let fixed = spec("http://p:9090", "x", Some("deployment/api"));
        assert!(fixed.validate(&ctx)[0].contains("names no label"));
        let weird = spec("http://p:9090", "x", Some("deployment/{{1x}}"));
        assert!(weird.validate(&ctx)[0].contains("not a label name"));
    }

    #[test]
    fn targets_come_from_each_series_labels() {
        let labels = BTreeMap::from([
            ("deployment".to_owned(), "api".to_owned()),
            ("namespace".to_owned(), "prod".to_owned()),
        ]);
        assert_eq!(
            render("deployment/{{deployment}}", &labels).unwrap(),
            "deployment/api"
        );
        assert_eq!(
            render("deployment/{{ deployment }}", &labels).unwrap(),
            "deployment/api"
        );
        let err = render("statefulset/{{statefulset}}", &labels).unwrap_err();
        assert!(err.contains("no label `statefulset`"), "{err}");
    }
}

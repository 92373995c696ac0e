//! `notify`: tell a receiver about the decision, in the body it accepts (`format`: generic
//! JSON, a Slack incoming webhook, Alertmanager's v2 API; see `core::notice`). The URL is
//! treated as a secret (chat webhooks embed their token in the path): only its host is ever
//! shown.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, ActionError, ExecCtx};
use crate::clients::http::{answered, Call, HttpClient, HttpError};
use crate::core::decision::Decision;
use crate::core::notice::{Message, NotifyFormat, RuleFacts};
use crate::core::plan::{Effect, Outcome, Plan, PlanCtx, PlanError};
use crate::core::url::check_url;
use crate::signals::SignalSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Webhook URL that receives a JSON POST (for `alertmanager`: Alertmanager's base URL).
    pub webhook: String,
    /// `generic` (default), `slack` or `alertmanager`.
    #[serde(default)]
    pub format: NotifyFormat,
    /// Where a human sees more (Alertmanager's `generatorURL`), e.g. the automaton's
    /// `/status` URL as the receiver's users reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Notify {
    pub fn host(&self) -> String {
        reqwest::Url::parse(&self.webhook)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "invalid".to_owned())
    }

    pub fn target(&self) -> String {
        format!("webhook/{}", self.host())
    }

    pub fn validate(&self) -> Vec<String> {
        let mut problems: Vec<String> = check_url("webhook", &self.webhook).into_iter().collect();
        if let Some(link) = &self.link {
            problems.extend(check_url("link", link));
        }
        problems
    }

    pub fn plan(&self) -> Plan {
        Plan::new(json!({"notify": self.host()}), Effect::External)
    }
}

/// How long an Alertmanager alert of a notification stays active at least: it is an event,
/// nobody resolves it, so it ends by itself (after the rule's cooldown, when longer).
const ALERT_LASTS: Duration = Duration::from_secs(300);

impl Notify {
    /// Posts `decision` in the receiver's format. `rule` adds the threshold, priority and
    /// description (`Rule::facts`); `note` says what a notice outside the decision is about.
    pub async fn send(
        &self,
        http: &HttpClient,
        decision: &Decision,
        rule: Option<RuleFacts<'_>>,
        note: Option<&str>,
    ) -> Result<String, HttpError> {
        let now = std::time::SystemTime::now();
        let lasts = rule.map_or(ALERT_LASTS, |r| r.cooldown.max(ALERT_LASTS));
        let message = Message {
            decision,
            rule,
            time: humantime::format_rfc3339_seconds(now).to_string(),
            ends: humantime::format_rfc3339_seconds(now + lasts).to_string(),
            link: self.link.as_deref(),
            note,
        };
        let body = message.body(self.format);
        let url = self.format.url(&self.webhook);
        let accepts = |status| (200..300).contains(&status);
        let call = Call {
            method: reqwest::Method::POST,
            url: &url,
            shown: format!("webhook/{}", self.host()),
            body: Some(&body),
            timeout: Duration::from_secs(10),
            accepts: &accepts,
            expected: "2xx".to_owned(),
            // A message told twice is harmless (Alertmanager merges it by its labels); one
            // lost to a 502 of a proxy is not.
            retry_5xx: true,
            idempotency_key: decision.id.as_deref(),
        };
        let (status, attempts) = http.send(&call).await?;
        Ok(answered(&call.shown, status, attempts))
    }
}

impl Action for Notify {
    fn dependency(&self) -> String {
        Notify::target(self)
    }

    fn target(&self, _labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        Ok(Notify::target(self))
    }

    fn validate(&self, _signal: &SignalSpec) -> Vec<String> {
        Notify::validate(self)
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        Ok(Notify::plan(self))
    }

    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let sent = self
                .send(&cx.executors.http, cx.decision, Some(cx.rule.facts()), None)
                .await?;
            Ok(Outcome::text(sent))
        })
    }
}

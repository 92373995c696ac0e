//! `notify`: post the decision as JSON to a webhook. The URL is treated as a secret (chat
//! webhooks embed their token in the path): only its host is ever shown.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, ActionError, ExecCtx};
use crate::clients::http::{answered, Call, HttpClient, HttpError};
use crate::core::decision::Decision;
use crate::core::plan::{Effect, Outcome, Plan, PlanCtx, PlanError};
use crate::core::url::check_url;
use crate::signals::SignalSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Webhook URL that receives a JSON POST.
    pub webhook: String,
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
        check_url("webhook", &self.webhook).into_iter().collect()
    }

    pub fn plan(&self) -> Plan {
        Plan::new(json!({"notify": self.host()}), Effect::External)
    }
}

impl Notify {
    /// Posts `decision` to the webhook: its summary for chat, the whole line for machines.
    pub async fn send(&self, http: &HttpClient, decision: &Decision) -> Result<String, HttpError> {
        let body = json!({
            "text": decision.summary(),
            "decision": decision,
        });
        let accepts = |status| (200..300).contains(&status);
        let call = Call {
            method: reqwest::Method::POST,
            url: &self.webhook,
            shown: format!("webhook/{}", self.host()),
            body: Some(&body),
            timeout: Duration::from_secs(10),
            accepts: &accepts,
            expected: "2xx".to_owned(),
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
            let sent = self.send(&cx.executors.http, cx.decision).await?;
            Ok(Outcome::text(sent))
        })
    }
}

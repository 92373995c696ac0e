//! `http`: call an HTTP endpoint, such as a validator's admin API
//! (`POST /admin/cache/reduce`). Success is `expect_status`, or any 2xx without it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, ActionError, ExecCtx};
use crate::clients::http::{answered, Call, HttpClient, HttpError};
use crate::core::plan::{Effect, Outcome, Plan, PlanCtx, PlanError};
use crate::core::url::host_port;
use crate::core::url::{check_url, redacted};
use crate::core::values::Dur;
use crate::signals::SignalSpec;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// HTTP method (default POST).
    #[serde(default = "default_method")]
    pub method: String,
    /// Absolute http(s) URL.
    pub url: String,
    /// JSON body to send, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// The status that means success; any 2xx when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// Give up after this long (default 10s).
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Retry a POST or PATCH on any 5xx too. Off by default: the endpoint may have acted
    /// before failing; only an endpoint whose calls are safe to repeat should opt in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_5xx: bool,
}

fn default_method() -> String {
    "POST".to_owned()
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

impl Http {
    pub fn target(&self) -> String {
        format!("http/{}", redacted(&self.url))
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors: Vec<String> = check_url("url", &self.url).into_iter().collect();
        if reqwest::Method::from_bytes(self.method.as_bytes()).is_err()
            || self.method.chars().any(|c| c.is_lowercase())
        {
            errors.push(format!(
                "`method` must be an upper-case HTTP method, found `{}`",
                self.method
            ));
        }
        if let Some(code) = self.expect_status {
            if !(100..=599).contains(&code) {
                errors.push(format!(
                    "`expect_status` must be an HTTP status (100-599), found {code}"
                ));
            }
        }
        errors
    }

    pub fn plan(&self) -> Plan {
        Plan::new(
            json!({"method": self.method, "url": redacted(&self.url), "expect_status": self.expect_status}),
            Effect::External,
        )
    }

    pub fn accepts(&self, status: u16) -> bool {
        self.expect_status
            .map_or((200..300).contains(&status), |want| want == status)
    }
}

impl Http {
    /// Calls the endpoint with the shared client's retry policy; says what answered.
    pub async fn send(&self, http: &HttpClient) -> Result<String, HttpError> {
        self.send_keyed(http, None).await
    }

    /// [`Http::send`] with an `Idempotency-Key` header (the action id).
    pub async fn send_keyed(&self, http: &HttpClient, key: Option<&str>) -> Result<String, HttpError> {
        let accepts = |status| self.accepts(status);
        let call = Call {
            method: reqwest::Method::from_bytes(self.method.as_bytes()).unwrap_or(reqwest::Method::POST),
            url: &self.url,
            shown: redacted(&self.url),
            body: self.body.as_ref(),
            timeout: self.timeout.0,
            accepts: &accepts,
            expected: self.expect_status.map_or("2xx".to_owned(), |s| s.to_string()),
            retry_5xx: self.retry_5xx,
            idempotency_key: key,
        };
        let (status, attempts) = http.send(&call).await?;
        Ok(answered(&call.shown, status, attempts))
    }
}

impl Action for Http {
    fn dependency(&self) -> String {
        format!("http/{}", host_port(&self.url))
    }

    fn target(&self, _labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        Ok(Http::target(self))
    }

    fn validate(&self, _signal: &SignalSpec) -> Vec<String> {
        Http::validate(self)
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        Ok(Http::plan(self))
    }

    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let key = cx.decision.id.as_deref();
            Ok(Outcome::text(self.send_keyed(&cx.executors.http, key).await?))
        })
    }
}

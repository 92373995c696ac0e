//! `notify`: post the decision as JSON to a webhook. The URL is treated as a secret (chat
//! webhooks embed their token in the path): only its host is ever shown.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::core::plan::{Effect, Plan};
use crate::core::url::check_url;

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

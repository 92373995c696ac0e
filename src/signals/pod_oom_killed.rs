//! `pod_oom_killed`: OOM kills of containers (a last termination `OOMKilled`) first seen
//! within a window, from the pod watch; each kill counts once, ever (see [`super::pods`]).

use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::pods::{selector_error, PodSignals};
use super::{RuleContext, Signal, SignalError, Sources};
use crate::core::series::Series;
use crate::core::values::Dur;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodOomKilled {
    /// Label selector of the pods to watch, e.g. `app=email-service`.
    pub selector: String,
    /// Kills first seen within this window count (default 5m, at most 1h). The rule's
    /// cooldown must be at least this long, so one kill is acted on once.
    #[serde(default = "default_oom_window")]
    pub window: Dur,
}

fn default_oom_window() -> Dur {
    Dur(Duration::from_secs(300))
}

impl PodOomKilled {
    /// The series at `now`, from the pod watch's memory (no request).
    pub fn read(&self, pods: &PodSignals, now: Timestamp) -> Result<Vec<Series>, SignalError> {
        pods.read("pod_oom_killed", self, &self.selector, now, |st, key| {
            st.oom_killed(key, &self.selector, self.window.0, now)
        })
    }
}

impl Signal for PodOomKilled {
    fn source(&self) -> &'static str {
        "kubernetes"
    }

    fn needs(&self) -> super::Need {
        super::Need::Kubernetes
    }

    fn dependency(&self) -> Option<String> {
        Some("kubernetes".to_owned())
    }

    fn has_owner(&self) -> bool {
        true
    }

    fn pod_selector(&self) -> Option<&str> {
        Some(&self.selector)
    }

    fn validate(&self, rule: &RuleContext) -> Vec<String> {
        let mut errors = Vec::new();
        if self.window.0.is_zero() || self.window.0 > super::pods::KILL_LOG_KEEP {
            errors.push(format!(
                "pod_oom_killed `window` must be above 0 and at most 1h, found {}",
                self.window
            ));
        }
        errors.extend(selector_error("pod_oom_killed", &self.selector));
        if rule.cooldown < self.window.0 {
            errors.push(format!(
                "`cooldown` ({}) is shorter than the pod_oom_killed `window` ({}): one kill would be acted on twice",
                Dur(rule.cooldown),
                self.window
            ));
        }
        errors
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        Box::pin(async move { self.read(sources.pods()?, Timestamp::now()) })
    }
}

//! `pod_crash_loop`: 1 per container waiting in `CrashLoopBackOff`, from the pod watch.

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::pods::{selector_error, PodSignals};
use super::{RuleContext, Signal, SignalError, Sources};
use crate::core::series::Series;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodCrashLoop {
    /// Label selector of the pods to watch, e.g. `app=email-service`.
    pub selector: String,
}

impl PodCrashLoop {
    /// The series at `now`, from the pod watch's memory (no request).
    pub fn read(&self, pods: &PodSignals, now: Timestamp) -> Result<Vec<Series>, SignalError> {
        pods.read("pod_crash_loop", self, &self.selector, now, |st, key| {
            st.crash_loop(key, &self.selector, now)
        })
    }
}

impl Signal for PodCrashLoop {
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

    fn validate(&self, _rule: &RuleContext) -> Vec<String> {
        selector_error("pod_crash_loop", &self.selector)
            .into_iter()
            .collect()
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        Box::pin(async move { self.read(sources.pods()?, Timestamp::now()) })
    }
}

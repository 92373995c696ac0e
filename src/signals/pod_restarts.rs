//! `pod_restarts`: container restarts within a sliding window, from the increases of
//! `restartCount` the pod watch observed.

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::pods::{selector_error, PodSignals};
use super::{RuleContext, Signal, SignalError, Sources};
use crate::core::series::Series;
use crate::core::values::Dur;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodRestarts {
    /// Label selector of the pods to watch.
    pub selector: String,
    /// Restarts are counted within this sliding window.
    pub window: Dur,
}

impl PodRestarts {
    /// The series at `now`, from the pod watch's memory (no request).
    pub fn read(&self, pods: &PodSignals, now: Timestamp) -> Result<Vec<Series>, SignalError> {
        pods.read("pod_restarts", self, &self.selector, now, |st, key| {
            st.restarts(key, &self.selector, self.window.0, now)
        })
    }
}

impl Signal for PodRestarts {
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
        selector_error("pod_restarts", &self.selector)
            .into_iter()
            .collect()
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        Box::pin(async move { self.read(sources.pods()?, Timestamp::now()) })
    }
}

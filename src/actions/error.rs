//! Why an action did not do what it planned. The decision says it (`success: false` with
//! this text), `automaton_action_outcomes_total` counts it, and a failure of the dependency
//! itself (unreachable, timed out, 5xx) counts against its circuit breaker, while an answer
//! of "no" (403, 404, a wrong request) does not.

use std::time::Duration;

use thiserror::Error;

use crate::clients::http::HttpError;
use crate::clients::kube::error::ClusterError;
use crate::clients::pg::PgError;

#[derive(Debug, Error)]
pub enum ActionError {
    /// The client the kind needs is not configured in this process.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// An `act` decision without the plan it was guarded on: nothing is guessed.
    #[error("the decision carries no plan to execute")]
    NoPlan,
    #[error(transparent)]
    Kubernetes(#[from] ClusterError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Postgres(#[from] PgError),
}

impl ActionError {
    /// The dependency did not answer properly: counts against its circuit breaker.
    pub fn dependency_down(&self) -> bool {
        match self {
            ActionError::Kubernetes(e) => e.is_transient(),
            ActionError::Http(e) => e.is_transient() || matches!(e, HttpError::Timeout { .. }),
            ActionError::Postgres(e) => matches!(
                e,
                PgError::Connect { .. } | PgError::ConnectTimeout { .. } | PgError::QueryTimeout { .. }
            ),
            ActionError::NotConfigured(_) | ActionError::NoPlan => false,
        }
    }

    /// What was changed anyway (some connections terminated before a refusal).
    pub fn change(&self) -> Option<serde_json::Value> {
        match self {
            ActionError::Postgres(PgError::NotPermitted { terminated, .. }) => {
                serde_json::to_value(terminated).ok()
            }
            _ => None,
        }
    }

    /// Whether the action ran out of time (ACTION_TIMEOUT or a request's own timeout).
    pub fn timed_out(&self) -> Option<Duration> {
        match self {
            ActionError::Http(HttpError::Timeout { after, .. }) => Some(*after),
            ActionError::Kubernetes(ClusterError::Timeout { after, .. }) => Some(*after),
            _ => None,
        }
    }
}

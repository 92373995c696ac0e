//! `terminate_idle_connections`: `pg_terminate_backend` for client backends that have been
//! `idle` longer than `idle_for`. Never active ones, never other backend types, never the
//! automaton's own connection; at most `limit` per action.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, ActionError, ExecCtx};
use crate::core::plan::{Effect, Outcome, Plan, PlanCtx, PlanError};
use crate::core::values::Dur;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminateIdleConnections {
    /// Only connections idle at least this long (default 10m).
    #[serde(default = "default_idle_for")]
    pub idle_for: Dur,
    /// Only connections to this database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Only connections of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only connections with this `application_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// At most this many per action (default 50).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_idle_for() -> Dur {
    Dur(std::time::Duration::from_secs(600))
}

fn default_limit() -> u32 {
    50
}

impl TerminateIdleConnections {
    /// What the PostgreSQL client terminates for this action.
    pub fn filter(&self) -> crate::clients::pg::TerminateFilter {
        crate::clients::pg::TerminateFilter {
            idle_for: self.idle_for.0,
            database: self.database.clone(),
            user: self.user.clone(),
            application_name: self.application_name.clone(),
            limit: self.limit,
        }
    }

    pub fn target(&self) -> String {
        format!("postgres/{}", self.database.as_deref().unwrap_or("*"))
    }

    pub fn plan(&self) -> Plan {
        Plan::new(
            json!({
                "terminate": "idle",
                "idle_for": self.idle_for,
                "database": self.database,
                "user": self.user,
                "application_name": self.application_name,
                "limit": self.limit,
            }),
            Effect::External,
        )
    }
}

impl Action for TerminateIdleConnections {
    fn dependency(&self) -> String {
        "postgres".to_owned()
    }

    fn target(&self, _labels: &BTreeMap<String, String>) -> Result<String, PlanError> {
        Ok(TerminateIdleConnections::target(self))
    }

    fn plan(&self, _ctx: &PlanCtx<'_>) -> Result<Plan, PlanError> {
        Ok(TerminateIdleConnections::plan(self))
    }

    /// The change lists how many connections and which pids, also when the server refused
    /// some of them (then carried by the error).
    fn execute<'a>(&'a self, cx: &'a ExecCtx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let done = cx.postgres()?.terminate_idle(&self.filter()).await?;
            let change = serde_json::to_value(&done).unwrap_or_default();
            Ok(Outcome::done(
                format!("terminated {} idle connection(s)", done.count),
                change,
            ))
        })
    }
}

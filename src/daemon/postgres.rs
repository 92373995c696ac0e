//! The daemon's PostgreSQL side: one shared source for the `postgres` signal and the
//! executor of `terminate_idle_connections`.

use std::sync::Arc;

use tracing::info;

use super::Daemon;
use crate::actions::connections::TerminateIdle;
use crate::clients::pg::{PgError, PgSource};

impl Daemon {
    /// Uses `source` for the `postgres` signal and lets `terminate_idle_connections` execute.
    pub fn attach_postgres(&mut self, source: PgSource) {
        info!(server = %source.settings(), "PostgreSQL attached");
        self.sources.postgres = Some(Arc::new(source));
        self.executors.postgres = true;
        self.engine.set_executable(self.executors.executable());
    }

    /// Terminates idle connections; the change lists how many and which pids, also when
    /// the server refused some of them.
    pub(super) async fn terminate_idle(
        &self,
        spec: &TerminateIdle,
    ) -> Result<(String, serde_json::Value), (String, Option<serde_json::Value>, bool)> {
        let Some(source) = &self.sources.postgres else {
            return Err(("no PostgreSQL configured".to_owned(), None, false));
        };
        match source.terminate_idle(&spec.filter()).await {
            Ok(done) => {
                let change = serde_json::to_value(&done).unwrap_or_default();
                Ok((format!("terminated {} idle connection(s)", done.count), change))
            }
            Err(e) => {
                let change = match &e {
                    PgError::NotPermitted { terminated, .. } => serde_json::to_value(terminated).ok(),
                    _ => None,
                };
                // The server being unreachable counts against its circuit breaker; a refusal
                // (permissions) does not: it answered.
                let down = matches!(
                    e,
                    PgError::Connect { .. } | PgError::ConnectTimeout { .. } | PgError::QueryTimeout { .. }
                );
                Err((e.to_string(), change, down))
            }
        }
    }
}

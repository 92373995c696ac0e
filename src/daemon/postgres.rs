//! The daemon's PostgreSQL side: one shared source for the `postgres` signal and the
//! executor of `terminate_idle_connections`.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::Daemon;
use crate::actions::connections::TerminateIdle;
use crate::clients::pg::{PgError, PgSource};
use crate::core::series::Series;
use crate::signals::Postgres;

impl Daemon {
    /// Uses `source` for the `postgres` signal and lets `terminate_idle_connections` execute.
    pub fn attach_postgres(&mut self, source: PgSource) {
        info!(server = %source.settings(), "PostgreSQL attached");
        self.postgres = Some(Arc::new(source));
        self.executors.postgres = true;
        self.engine.set_executable(self.executors.executable());
    }

    /// The collection of one `postgres` signal, as a task-ready future.
    pub(super) fn collect_postgres(
        &self,
        spec: &Postgres,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Vec<Series>, String>> + Send + 'static {
        let (source, spec) = (self.postgres.clone(), spec.query());
        async move {
            let Some(source) = source else {
                return Err("no PostgreSQL configured: set POSTGRES_HOST or DATABASE_URL".to_owned());
            };
            match tokio::time::timeout(timeout, source.collect(&spec)).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "PostgreSQL did not answer within {}s",
                    timeout.as_secs_f64()
                )),
            }
        }
    }

    /// Terminates idle connections; the change lists how many and which pids, also when
    /// the server refused some of them.
    pub(super) async fn terminate_idle(
        &self,
        spec: &TerminateIdle,
    ) -> Result<(String, serde_json::Value), (String, Option<serde_json::Value>, bool)> {
        let Some(source) = &self.postgres else {
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

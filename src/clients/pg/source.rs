//! One client shared by every rule: connected on first use, reused while it lives, replaced
//! after the connection breaks. Every connection attempt and every query is bounded by
//! `POSTGRES_CONNECT_TIMEOUT`, so a hung server makes the signal unknown instead of stalling
//! the loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Row};
use tracing::Instrument;

use super::{ActivityQuery, PostgresMetric};
use super::{PgError, PgSettings};
use crate::core::series::Series;

/// All three metrics in one pass over `pg_stat_activity` (one snapshot, so they agree).
///
/// Without `pg_read_all_stats` other roles' sessions show `backend_type` and `state` as NULL:
/// `hidden` counts them so the collector can refuse to report a count that would be too low.
/// `reserved_connections` exists from PostgreSQL 16; on 15 it is NULL, hence 0.
const ACTIVITY_SQL: &str = "
SELECT current_database()::text AS database,
       current_user::text AS role,
       current_setting('max_connections')::int8 AS max_connections,
       current_setting('superuser_reserved_connections')::int8 AS superuser_reserved,
       COALESCE(current_setting('reserved_connections', true)::int8, 0) AS reserved,
       count(*) FILTER (WHERE backend_type = 'client backend') AS client_backends,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle'
                          AND pid <> pg_backend_pid()
                          AND ($1::float8 IS NULL OR state_change <= now() - make_interval(secs => $1)))
         AS idle,
       count(*) FILTER (WHERE backend_type = 'client backend'
                          AND state IN ('idle in transaction', 'idle in transaction (aborted)')
                          AND pid <> pg_backend_pid()) AS idle_in_transaction,
       count(*) FILTER (WHERE backend_type IS NULL) AS hidden
FROM pg_stat_activity";

/// The PostgreSQL signal source and action executor. Cheap to share behind an `Arc`; every
/// method takes `&self`.
pub struct PgSource {
    settings: PgSettings,
    client: Mutex<Option<Arc<Client>>>,
}

impl PgSource {
    /// Does no I/O: the connection is made on first use.
    pub fn new(settings: PgSettings) -> Self {
        PgSource {
            settings,
            client: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    /// Reads one metric. `Err` says why it is unknown (server unreachable, query failed,
    /// role not allowed to see every session); it never contains the password.
    pub async fn collect(&self, spec: &ActivityQuery) -> Result<Vec<Series>, PgError> {
        let idle_for = spec.idle_for.map(|d| d.as_secs_f64());
        let row = self
            .with_client("reading pg_stat_activity", true, |client| async move {
                client.query_one(ACTIVITY_SQL, &[&idle_for]).await
            })
            .await?;
        let counts = Activity::from_row(&row)
            .map_err(|source| self.query_error("reading pg_stat_activity", source))?;
        if counts.hidden > 0 {
            return Err(PgError::StatsHidden {
                target: self.settings.target(),
                user: counts.role,
                hidden: counts.hidden,
            });
        }
        let value = match spec.metric {
            PostgresMetric::ConnectionsUsedPercent => {
                // The server refuses to start unless this leaves at least one slot.
                let available = (counts.max_connections - counts.superuser_reserved - counts.reserved).max(1);
                counts.client_backends as f64 / available as f64 * 100.0
            }
            PostgresMetric::IdleConnections => counts.idle as f64,
            PostgresMetric::IdleInTransaction => counts.idle_in_transaction as f64,
        };
        let labels = BTreeMap::from([
            ("database".to_owned(), counts.database),
            ("host".to_owned(), self.settings.host()),
        ]);
        Ok(vec![Series { labels, value }])
    }

    /// Runs `work` on the shared client, bounded by the timeout. A broken connection is
    /// dropped so the next call reconnects; with `retry`, a query that failed only because the
    /// reused connection had died meanwhile (a server restart between ticks) is tried once
    /// more on a fresh one. Never retry writes: the first attempt may have run.
    pub(crate) async fn with_client<T, F, Fut>(
        &self,
        what: &'static str,
        retry: bool,
        work: F,
    ) -> Result<T, PgError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let mut retry = retry;
        loop {
            let (client, fresh) = self.client().await?;
            let result =
                match tokio::time::timeout(self.settings.connect_timeout(), work(client.clone())).await {
                    Ok(Ok(value)) => return Ok(value),
                    Ok(Err(source)) => self.query_error(what, source),
                    Err(_) => PgError::QueryTimeout {
                        target: self.settings.target(),
                        what,
                        after: self.settings.connect_timeout(),
                    },
                };
            if !(result.breaks_connection() || client.is_closed()) {
                return Err(result);
            }
            self.forget(&client).await;
            // A timeout is not retried: a hung server would only double the wait.
            let timed_out = matches!(result, PgError::QueryTimeout { .. });
            if fresh || !retry || timed_out {
                return Err(result);
            }
            tracing::debug!(error = %result, "postgres connection was lost; retrying once on a new one");
            retry = false;
        }
    }

    pub(crate) fn query_error(&self, what: &'static str, source: tokio_postgres::Error) -> PgError {
        PgError::Query {
            target: self.settings.target(),
            what,
            source,
        }
    }

    /// The shared client, connecting when there is none or the last one closed. `true` when
    /// it was connected by this call.
    async fn client(&self) -> Result<(Arc<Client>, bool), PgError> {
        // Held across the connect: concurrent callers wait for one connection, not make many.
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok((client.clone(), false));
        }
        *slot = None;
        let client = Arc::new(self.connect().await?);
        *slot = Some(client.clone());
        Ok((client, true))
    }

    async fn forget(&self, client: &Arc<Client>) {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
            *slot = None;
        }
    }

    async fn connect(&self) -> Result<Client, PgError> {
        let config = self.settings.config();
        let target = self.settings.target();
        // tokio-postgres bounds each host's TCP connect; this bounds the whole handshake.
        let hosts = config.get_hosts().len().max(1) as u32;
        let after = self.settings.connect_timeout() * hosts;
        let span = tracing::info_span!("postgres_connection", target = %target);
        let timed_out = || PgError::ConnectTimeout {
            target: target.clone(),
            after,
        };
        let failed = |source| PgError::Connect {
            target: target.clone(),
            source,
        };
        // The connection task is the same whatever the transport; only its type differs.
        macro_rules! connect_with {
            ($tls:expr) => {{
                let (client, connection) = tokio::time::timeout(after, config.connect($tls))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(failed)?;
                tokio::spawn(
                    async move {
                        match connection.await {
                            Ok(()) => tracing::debug!("postgres connection closed"),
                            Err(e) => tracing::warn!(error = %e, "postgres connection ended"),
                        }
                    }
                    .instrument(span),
                );
                client
            }};
        }
        let tls = self
            .settings
            .tls()
            .connector()
            .map_err(|why| PgError::Settings(vec![why]))?;
        let client = match tls {
            Some(tls) => connect_with!(tls),
            None => connect_with!(NoTls),
        };
        tracing::info!(target = %target, user = self.settings.user(), "connected to postgres");
        Ok(client)
    }
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSource")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

struct Activity {
    database: String,
    role: String,
    max_connections: i64,
    superuser_reserved: i64,
    reserved: i64,
    client_backends: i64,
    idle: i64,
    idle_in_transaction: i64,
    hidden: i64,
}

impl Activity {
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Activity {
            database: row.try_get("database")?,
            role: row.try_get("role")?,
            max_connections: row.try_get("max_connections")?,
            superuser_reserved: row.try_get("superuser_reserved")?,
            reserved: row.try_get("reserved")?,
            client_backends: row.try_get("client_backends")?,
            idle: row.try_get("idle")?,
            idle_in_transaction: row.try_get("idle_in_transaction")?,
            hidden: row.try_get("hidden")?,
        })
    }
}

//! The executor of `terminate_idle_connections`.
//!
//! Selection and termination are one statement. A SELECT followed by `pg_terminate_backend`
//! calls would act on a state at least a round trip old: a connection that started a query
//! in between would be killed mid-query. In one statement the conditions (`client backend`,
//! `idle`, not us, old enough) are those of the snapshot `pg_stat_activity` takes once per
//! transaction, microseconds before the signals are sent; that last gap no SQL can close, as
//! PostgreSQL has no conditional terminate.
//!
//! Permission is checked per backend in the same statement, by the rules of
//! `pg_terminate_backend` (PostgreSQL 15): a superuser may terminate anything; otherwise the
//! target must not be a superuser's, and the role must have the privileges of the target's
//! role or of `pg_signal_backend`. Backends the role may not signal are reported, never
//! attempted, so a missing grant never aborts the statement halfway through its kills. A role
//! that cannot see other roles' sessions (no `pg_read_all_stats`) terminates nothing and gets
//! an error, rather than a misleading "0 terminated".

use serde::Serialize;
use tokio_postgres::error::SqlState;

use super::{PgError, PgSource};

/// Which idle client backends to terminate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminateFilter {
    /// Only connections idle at least this long.
    pub idle_for: std::time::Duration,
    pub database: Option<String>,
    pub user: Option<String>,
    pub application_name: Option<String>,
    /// At most this many.
    pub limit: u32,
}

const TERMINATE_SQL: &str = "
WITH visibility AS MATERIALIZED (
    SELECT count(*) FILTER (WHERE backend_type IS NULL) AS hidden FROM pg_stat_activity
), candidates AS MATERIALIZED (
    SELECT a.pid, a.usesysid, a.state_change
    FROM pg_stat_activity a
    WHERE a.backend_type = 'client backend'
      AND a.state = 'idle'
      AND a.pid <> pg_backend_pid()
      AND a.state_change <= now() - make_interval(secs => $1::float8)
      AND ($2::text IS NULL OR a.datname = $2)
      AND ($3::text IS NULL OR a.usename = $3)
      AND ($4::text IS NULL OR a.application_name = $4)
      AND (SELECT hidden FROM visibility) = 0
    ORDER BY a.state_change, a.pid
    LIMIT $5::int8
), checked AS MATERIALIZED (
    SELECT c.pid, c.state_change,
           COALESCE(r.rolsuper, true) AS superuser_owned,
           (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
             OR (NOT COALESCE(r.rolsuper, true)
                 AND (pg_has_role(c.usesysid, 'USAGE') OR pg_has_role('pg_signal_backend', 'USAGE')))
             AS permitted
    FROM candidates c
    LEFT JOIN pg_roles r ON r.oid = c.usesysid
), terminations AS MATERIALIZED (
    SELECT pid, state_change, superuser_owned, permitted,
           CASE WHEN permitted THEN pg_terminate_backend(pid) ELSE false END AS terminated
    FROM checked
)
SELECT v.hidden, current_user::text AS role, t.pid, t.superuser_owned, t.permitted, t.terminated
FROM visibility v
LEFT JOIN terminations t ON true
ORDER BY t.state_change, t.pid";

/// What `terminate_idle` did: the decision's `change` (`{"count": 2, "pids": [4711, 4712]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Terminated {
    /// How many backends were terminated.
    pub count: usize,
    /// Their process ids, oldest idle first.
    pub pids: Vec<i32>,
}

impl Terminated {
    pub fn new(pids: Vec<i32>) -> Self {
        Terminated {
            count: pids.len(),
            pids,
        }
    }
}

impl PgSource {
    /// Terminates, oldest first and at most `limit`, the client backends that are `idle`
    /// (never `active`, never in a transaction, never another backend type, never this
    /// source's own connection) since at least `idle_for`, optionally only those of one
    /// database, user or `application_name`.
    ///
    /// Not retried on a lost connection: the statement may have run.
    pub async fn terminate_idle(&self, spec: &TerminateFilter) -> Result<Terminated, PgError> {
        let idle_for = spec.idle_for.as_secs_f64();
        let database = spec.database.as_deref();
        let user = spec.user.as_deref();
        let application_name = spec.application_name.as_deref();
        let limit = i64::from(spec.limit);
        let rows = self
            .with_client("terminating idle backends", false, |client| async move {
                client
                    .query(
                        TERMINATE_SQL,
                        &[&idle_for, &database, &user, &application_name, &limit],
                    )
                    .await
            })
            .await
            .map_err(|e| self.privilege_error(e))?;

        let mut terminated = Vec::new();
        let mut denied = Vec::new();
        let mut vanished = Vec::new();
        let mut superuser_owned = false;
        for row in &rows {
            let outcome = Row::from_row(row).map_err(|e| self.query_error("terminating idle backends", e))?;
            if outcome.hidden > 0 {
                // Without pg_read_all_stats other roles' idle sessions are invisible: "0
                // terminated" would be a lie. The statement selected nothing.
                return Err(PgError::StatsHidden {
                    target: self.settings().target(),
                    user: outcome.role,
                    hidden: outcome.hidden,
                });
            }
            let Some(pid) = outcome.pid else { continue };
            match (outcome.permitted, outcome.terminated) {
                (true, true) => terminated.push(pid),
                // Exited between the snapshot and the signal ("not a PostgreSQL backend").
                (true, false) => vanished.push(pid),
                (false, _) => {
                    denied.push(pid);
                    superuser_owned |= outcome.superuser_owned;
                }
            }
        }
        let terminated = Terminated::new(terminated);
        tracing::info!(
            count = terminated.count,
            pids = ?terminated.pids,
            vanished = ?vanished,
            denied = ?denied,
            "terminated idle postgres backends"
        );
        if denied.is_empty() {
            Ok(terminated)
        } else {
            Err(PgError::NotPermitted {
                target: self.settings().target(),
                user: self.settings().user().to_owned(),
                pids: denied,
                superuser_owned,
                terminated,
            })
        }
    }

    /// SQLSTATE 42501 from the server (a version whose rules differ from the check above)
    /// becomes the same clear error, naming `pg_signal_backend`.
    fn privilege_error(&self, e: PgError) -> PgError {
        match e {
            PgError::Query { target, source, .. }
                if source.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                PgError::Denied {
                    target,
                    user: self.settings().user().to_owned(),
                    source,
                }
            }
            other => other,
        }
    }
}

/// One row of the statement: the visibility check, and one candidate when there is one.
struct Row {
    hidden: i64,
    role: String,
    pid: Option<i32>,
    superuser_owned: bool,
    permitted: bool,
    terminated: bool,
}

impl Row {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Row {
            hidden: row.try_get("hidden")?,
            role: row.try_get("role")?,
            pid: row.try_get("pid")?,
            superuser_owned: row
                .try_get::<_, Option<bool>>("superuser_owned")?
                .unwrap_or(false),
            permitted: row.try_get::<_, Option<bool>>("permitted")?.unwrap_or(false),
            terminated: row.try_get::<_, Option<bool>>("terminated")?.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_decisions_change() {
        let t = Terminated::new(vec![4711, 4712]);
        assert_eq!(
            serde_json::to_string(&t).ok().as_deref(),
            Some(r#"{"count":2,"pids":[4711,4712]}"#)
        );
        assert_eq!(Terminated::default().count, 0);
    }
}

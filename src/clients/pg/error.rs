//! The one error of the PostgreSQL layer. No variant ever carries the password: targets are
//! rendered from the settings without it, and server messages never contain it.

use std::time::Duration;

use thiserror::Error;

use super::Terminated;

#[derive(Debug, Error)]
pub enum PgError {
    /// The `POSTGRES_*` / `DATABASE_URL` variables are invalid; one line per problem, each
    /// naming its variable.
    #[error("invalid PostgreSQL settings:\n  {}", .0.join("\n  "))]
    Settings(Vec<String>),

    #[error("cannot connect to PostgreSQL at {target}: {}", one_line(.source))]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("cannot connect to PostgreSQL at {target}: no answer within {}s", .after.as_secs_f64())]
    ConnectTimeout { target: String, after: Duration },

    #[error("PostgreSQL at {target}: {what} failed: {}", one_line(.source))]
    Query {
        target: String,
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("PostgreSQL at {target}: {what}: no answer within {}s", .after.as_secs_f64())]
    QueryTimeout {
        target: String,
        what: &'static str,
        after: Duration,
    },

    /// The role cannot see other roles' sessions: `pg_stat_activity` hides their type and
    /// state, so counts would be too low and idle sessions could not be selected. Reported
    /// instead of a wrong number or a silent "nothing to terminate".
    #[error(
        "PostgreSQL at {target}: role `{user}` cannot see {hidden} backend(s) of other roles in \
         pg_stat_activity (their type and state are hidden from it), so it can neither count nor \
         select idle connections; grant it pg_monitor or pg_read_all_stats (`GRANT pg_monitor TO \"{user}\"`)"
    )]
    StatsHidden {
        target: String,
        user: String,
        hidden: i64,
    },

    /// The role may not terminate some of the selected backends (`pids`; `superuser_owned`
    /// when any of them is a superuser's). `terminated` lists those it could, and did,
    /// terminate in the same statement.
    #[error(
        "PostgreSQL at {target}: role `{user}` may not terminate {} idle backend(s) (pids {pids:?}{}): \
         it needs the privileges of pg_signal_backend (`GRANT pg_signal_backend TO \"{user}\"`){}; \
         terminated {} other(s)",
        .pids.len(),
        if *.superuser_owned { ", some owned by a superuser" } else { "" },
        if *.superuser_owned { ", and only a superuser may terminate a superuser's backend" } else { "" },
        .terminated.count
    )]
    NotPermitted {
        target: String,
        user: String,
        pids: Vec<i32>,
        superuser_owned: bool,
        terminated: Terminated,
    },

    /// The server refused with SQLSTATE 42501 (insufficient_privilege).
    #[error(
        "PostgreSQL at {target}: role `{user}` may not terminate backends ({}): it needs the \
         privileges of pg_signal_backend (`GRANT pg_signal_backend TO \"{user}\"`)",
        one_line(.source)
    )]
    Denied {
        target: String,
        user: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PgError {
    /// A bounded label for metrics (`result` / `error` label values).
    pub fn metric_label(&self) -> &'static str {
        match self {
            PgError::Settings(_) => "settings",
            PgError::Connect { .. } => "connect",
            PgError::ConnectTimeout { .. } | PgError::QueryTimeout { .. } => "timeout",
            PgError::Query { .. } => "query",
            PgError::StatsHidden { .. } | PgError::NotPermitted { .. } | PgError::Denied { .. } => {
                "permission"
            }
        }
    }

    /// Whether the error means the connection itself is unusable (as opposed to the server
    /// answering with an error), so the shared client must be replaced.
    pub(crate) fn breaks_connection(&self) -> bool {
        match self {
            PgError::Query { source, .. } | PgError::Denied { source, .. } => is_connection_error(source),
            PgError::QueryTimeout { .. } | PgError::Connect { .. } | PgError::ConnectTimeout { .. } => true,
            PgError::Settings(_) | PgError::StatsHidden { .. } | PgError::NotPermitted { .. } => false,
        }
    }
}

/// I/O failures, a closed connection, or a FATAL that ends the session (the server shutting
/// down), as opposed to an error answer from a live session.
pub(crate) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    let io = e.source().is_some_and(|s| s.is::<std::io::Error>());
    let fatal = e
        .as_db_error()
        .is_some_and(|db| matches!(db.severity(), "FATAL" | "PANIC"));
    e.is_closed() || io || fatal
}

/// tokio-postgres renders DETAIL and HINT on their own lines; a reason is one line.
fn one_line(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            for extra in [db.detail(), db.hint()].into_iter().flatten() {
                text.push_str(" (");
                text.push_str(extra);
                text.push(')');
            }
            text
        }
        None => e.to_string().replace('\n', " "),
    }
}

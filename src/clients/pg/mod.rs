//! PostgreSQL: the `postgres` signal (connection usage and idle connections read from
//! `pg_stat_activity`) and the `terminate_idle_connections` action, over one shared
//! connection.
//!
//! ```no_run
//! # async fn wire() -> Result<(), automaton::clients::pg::PgError> {
//! use automaton::clients::pg::{PgSettings, PgSource};
//! if let Some(settings) = PgSettings::from_env()? {
//!     let source = PgSource::new(settings); // connects on first use
//!     # let _ = source;
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod redact;
mod settings;
mod source;
mod terminate;
mod tls;

pub use error::PgError;
pub use redact::redact_url;
pub use settings::PgSettings;
pub use source::PgSource;
pub use terminate::{TerminateFilter, Terminated};
pub use tls::{SslMode, Tls};

use serde::{Deserialize, Serialize};

/// Which number of `pg_stat_activity` to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostgresMetric {
    ConnectionsUsedPercent,
    IdleConnections,
    IdleInTransaction,
}

/// What one read of `pg_stat_activity` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityQuery {
    pub metric: PostgresMetric,
    /// With `idle_connections`: count only connections idle at least this long.
    pub idle_for: Option<std::time::Duration>,
}

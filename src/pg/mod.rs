//! PostgreSQL: the `postgres` signal (connection usage and idle connections read from
//! `pg_stat_activity`) and the `terminate_idle_connections` action, over one shared
//! connection.
//!
//! ```no_run
//! # async fn wire() -> Result<(), automaton::pg::PgError> {
//! use automaton::pg::{PgSettings, PgSource};
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

pub use error::PgError;
pub use redact::redact_url;
pub use settings::PgSettings;
pub use source::PgSource;
pub use terminate::Terminated;

//! `postgres`: connection usage and idle connections, read from `pg_stat_activity` over the
//! shared PostgreSQL connection.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Signal, SignalError, Sources};
use crate::clients::pg::ActivityQuery;
pub use crate::clients::pg::PostgresMetric;
use crate::core::series::Series;
use crate::core::values::Dur;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// Which number to read from `pg_stat_activity`.
    pub metric: PostgresMetric,
    /// With `idle_connections`: count only connections idle at least this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_for: Option<Dur>,
}

impl Postgres {
    /// What the PostgreSQL client reads for this signal.
    pub fn query(&self) -> ActivityQuery {
        ActivityQuery {
            metric: self.metric,
            idle_for: self.idle_for.map(|d| d.0),
        }
    }
}

impl Signal for Postgres {
    fn source(&self) -> &'static str {
        "postgres"
    }

    fn needs(&self) -> super::Need {
        super::Need::Postgres
    }

    fn dependency(&self) -> Option<String> {
        Some("postgres".to_owned())
    }

    fn collect<'a>(&'a self, sources: &'a Sources) -> BoxFuture<'a, Result<Vec<Series>, SignalError>> {
        Box::pin(async move {
            let source = sources.postgres.as_ref().ok_or(SignalError::NotConfigured(
                "no PostgreSQL configured: set POSTGRES_HOST or DATABASE_URL",
            ))?;
            let after = sources.timeout;
            match tokio::time::timeout(after, source.collect(&self.query())).await {
                Ok(series) => Ok(series?),
                Err(_) => Err(SignalError::Timeout {
                    who: Some("PostgreSQL"),
                    after,
                }),
            }
        })
    }
}

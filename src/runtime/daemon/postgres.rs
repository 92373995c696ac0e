//! The daemon's PostgreSQL side: one shared source for the `postgres` signal and the
//! executor of `terminate_idle_connections`.

use std::sync::Arc;

use tracing::info;

use super::Daemon;
use crate::clients::pg::PgSource;

impl Daemon {
    /// Uses `source` for the `postgres` signal and lets `terminate_idle_connections` execute.
    pub fn attach_postgres(&mut self, source: PgSource) {
        info!(server = %source.settings(), "PostgreSQL attached");
        let source = Arc::new(source);
        self.sources.postgres = Some(source.clone());
        self.writer.executors.postgres = Some(source);
        self.engine.set_executable(self.writer.executors.executable());
        self.install_rules();
    }
}

//! The connection pool.

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// Connection settings.
#[derive(Clone)]
pub struct PostgresConfig {
    /// A `postgres://` URL.
    pub url: String,
    /// The most connections the pool opens.
    pub max_connections: usize,
    /// How long a caller waits for a connection (or for one to open) before `Unavailable`.
    pub acquire_timeout: Duration,
    /// The server-side limit of any one statement.
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresConfig")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a pool; connections open lazily, so this does not touch the server.
///
/// # Errors
/// When the URL cannot be parsed.
pub fn connect(config: &PostgresConfig) -> anyhow::Result<Pool> {
    let mut pg: tokio_postgres::Config = config
        .url
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    if pg.get_application_name().is_none() {
        pg.application_name("pg-analytics");
    }
    pg.connect_timeout(config.acquire_timeout);
    // Dates and buckets are UTC whatever the server's zone; the SQL says so explicitly too.
    let statement_ms = config.statement_timeout.as_millis();
    pg.options(format!(
        "-c TimeZone=UTC -c statement_timeout={statement_ms}"
    ));
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.max_connections)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.acquire_timeout))
        .create_timeout(Some(config.acquire_timeout))
        .recycle_timeout(Some(config.acquire_timeout))
        .build()
        .context("building the PostgreSQL pool")
}

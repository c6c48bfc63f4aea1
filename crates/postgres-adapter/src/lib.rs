//! PostgreSQL adapters of pg-analytics: the report catalog, events, snapshots (with the rebuild
//! in SQL), recompute runs, the durable run queue, the audit log and the health probe, plus the
//! refinery migrations of the top-level `migrations/` folder and the server-side demo seed.
//!
//! Every query is a parameterized constant next to the code that runs it. Driver errors are
//! translated into the ports' error variants here: an unreachable server or an exhausted pool
//! becomes `Unavailable`, a unique violation a conflict, anything else `Unexpected` with context.

mod audit;
mod catalog;
mod definitions;
mod error;
mod events;
mod health;
mod ingest;
mod paged;
mod pool;
mod queue;
mod rollups;
mod runs;
mod tenancy;
#[cfg(feature = "test-support")]
pub mod testing;

use std::sync::Arc;

use application::ports::Clock;

pub use audit::PostgresAuditLog;
pub use catalog::PostgresCatalog;
pub use deadpool_postgres::Pool;
pub use definitions::PostgresRollupDefinitions;
pub use events::PostgresEventStore;
pub use health::PostgresHealthProbe;
pub use pool::{PostgresConfig, connect};
pub use queue::{PostgresRunQueue, QueueSettings};
pub use rollups::{PostgresRollupStore, read_statement as rollup_read_sql};
pub use runs::PostgresRunStore;
pub use tenancy::PostgresTenancy;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// The advisory lock key that serializes migrations across processes ("pga_migr").
const MIGRATION_LOCK: i64 = 0x7067_615f_6d69_6772;

/// Applies every pending migration and returns how many were applied.
///
/// # Errors
/// When the database cannot be reached or a migration fails (it is then rolled back).
pub async fn migrate(pool: &Pool) -> anyhow::Result<usize> {
    migrate_to(pool, None).await
}

/// Applies the pending migrations up to `version` included (all of them with `None`).
async fn migrate_to(pool: &Pool, version: Option<i32>) -> anyhow::Result<usize> {
    use anyhow::Context;
    let mut client = pool
        .get()
        .await
        .context("connecting to PostgreSQL to migrate")?;
    // Processes starting together take turns: the first applies, the others find nothing to do.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("waiting for the migration lock")?;
    let target = version.map_or(refinery::Target::Latest, refinery::Target::Version);
    let report = embedded::migrations::runner()
        .set_grouped(false)
        .set_target(target)
        .run_async(&mut **client)
        .await;
    // The built-in reports' catalog entries come from their seed files, not from migrations.
    let installed = match (&report, version) {
        (Ok(_), None) => catalog::install_reference(&mut client).await,
        _ => Ok(()),
    };
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .context("releasing the migration lock")?;
    let report = report.context("applying migrations")?;
    installed.context("installing the built-in reports' catalog entries")?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "migration applied"
        );
    }
    Ok(report.applied_migrations().len())
}

/// Every PostgreSQL adapter over one pool.
#[derive(Debug, Clone)]
pub struct PostgresAdapters {
    pub pool: Pool,
    pub catalog: Arc<PostgresCatalog>,
    pub events: Arc<PostgresEventStore>,
    pub rollups: Arc<PostgresRollupStore>,
    pub definitions: Arc<PostgresRollupDefinitions>,
    pub runs: Arc<PostgresRunStore>,
    pub queue: Arc<PostgresRunQueue>,
    pub audit: Arc<PostgresAuditLog>,
    pub health: Arc<PostgresHealthProbe>,
    pub tenancy: Arc<PostgresTenancy>,
}

impl PostgresAdapters {
    /// The adapters over `pool`; the queue uses `queue` settings and stamps claims with `clock`.
    pub fn new(pool: Pool, queue: QueueSettings, clock: Arc<dyn Clock>) -> Self {
        let runs = Arc::new(PostgresRunStore::new(pool.clone(), queue.lease));
        Self {
            catalog: Arc::new(PostgresCatalog::new(pool.clone())),
            events: Arc::new(PostgresEventStore::new(pool.clone())),
            rollups: Arc::new(PostgresRollupStore::new(pool.clone())),
            definitions: Arc::new(PostgresRollupDefinitions::new(pool.clone())),
            queue: Arc::new(PostgresRunQueue::new(pool.clone(), queue, clock)),
            audit: Arc::new(PostgresAuditLog::new(pool.clone())),
            health: Arc::new(PostgresHealthProbe::new(pool.clone())),
            tenancy: Arc::new(PostgresTenancy::new(pool.clone())),
            runs,
            pool,
        }
    }

    /// The same adapters, the event store writing up to `writers` gathered ingestion
    /// transactions at once (see [`PostgresEventStore::with_writers`]).
    #[must_use]
    pub fn with_ingest_writers(mut self, writers: usize) -> Self {
        self.events = Arc::new(PostgresEventStore::with_writers(self.pool.clone(), writers));
        self
    }
}

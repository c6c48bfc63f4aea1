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
mod freshness;
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
pub use ingest::{
    BATCH_EVENTS as INGEST_BATCH_EVENTS, describe_metrics as describe_ingest_metrics,
};
pub use pool::{PostgresConfig, connect};
pub use queue::{PostgresRunQueue, QueueSettings};
pub use rollups::{PostgresRollupStore, read_statement as rollup_read_sql};
pub use runs::PostgresRunStore;
pub use tenancy::PostgresTenancy;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_forbidden_extension_says_what_to_do() {
        let missing = "db error: ERROR: could not open extension control file \
                       \"/usr/share/postgresql/15/extension/hll.control\": No such file";
        assert_eq!(extension_hint(missing), Some(EXTENSION_MISSING));
        let forbidden = "db error: ERROR: permission denied to create extension \"hll\"";
        assert_eq!(extension_hint(forbidden), Some(EXTENSION_FORBIDDEN));
        assert_eq!(
            extension_hint("db error: ERROR: relation does not exist"),
            None
        );
    }
}

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// The version of the newest migration this build carries.
pub fn latest_migration() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|migration| i64::from(migration.version()))
        .max()
        .unwrap_or_default()
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
    let report = report.map_err(|err| {
        let hint = extension_hint(&err.to_string());
        anyhow::Error::new(err).context(hint.unwrap_or("applying migrations"))
    })?;
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

/// The extension distinct measures need, and what to do when a server lacks it.
const EXTENSION: &str = "hll";
const EXTENSION_MISSING: &str = "the PostgreSQL server lacks the hll extension, which distinct \
    measures need: install it on the server (Debian and Ubuntu: the package \
    postgresql-<major version>-hll) and migrate again";
const EXTENSION_FORBIDDEN: &str = "the hll extension may be created by a superuser only: run \
    `CREATE EXTENSION hll;` in this database as one, then migrate again";
const EXTENSION_NOT_CREATED: &str = "the database lacks the hll extension, which distinct \
    measures need: run `pg-analytics migrate` (it creates it; the server needs the package \
    postgresql-<major version>-hll)";

/// What to tell an operator when a migration failed for want of the extension.
fn extension_hint(error: &str) -> Option<&'static str> {
    if !error.contains(EXTENSION) {
        return None;
    }
    if error.contains("permission denied") || error.contains("must be superuser") {
        Some(EXTENSION_FORBIDDEN)
    } else if error.contains("control file") || error.contains("is not available") {
        Some(EXTENSION_MISSING)
    } else {
        None
    }
}

/// Checks that the database has what the service needs beyond its own tables: the hll
/// extension. Run at start, after migrating when the process migrates. A database that cannot
/// be reached is not an error here (the process starts, degraded, as without this check): it
/// is logged, and checked by the health probe and by every use.
///
/// # Errors
/// When the database answers and lacks the extension (saying what to do).
pub async fn check_extensions(pool: &Pool) -> anyhow::Result<()> {
    use anyhow::Context;
    let client = match pool.get().await {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(error = %err, "could not check the database's extensions: PostgreSQL does not answer");
            return Ok(());
        }
    };
    let installed = client
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = $1",
            &[&EXTENSION],
        )
        .await
        .context("checking the hll extension")?;
    anyhow::ensure!(installed.is_some(), EXTENSION_NOT_CREATED);
    Ok(())
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

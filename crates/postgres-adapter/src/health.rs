//! Whether PostgreSQL answers.

use std::time::Duration;

use application::ports::{DependencyStatus, HealthProbe};
use async_trait::async_trait;
use deadpool_postgres::Pool;

/// How long a health check may take before PostgreSQL counts as unavailable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `SELECT 1` on a pooled connection.
#[derive(Debug, Clone)]
pub struct PostgresHealthProbe {
    pool: Pool,
}

impl PostgresHealthProbe {
    /// A probe over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl HealthProbe for PostgresHealthProbe {
    async fn check(&self) -> DependencyStatus {
        let probe = async {
            let client = self.pool.get().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        };
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Some(_)) => DependencyStatus::Ok,
            _ => DependencyStatus::Unavailable,
        }
    }

    async fn ready(&self) -> Result<(), String> {
        let needed = crate::latest_migration();
        let probe = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|_| "does not answer".to_owned())?;
            let applied: i64 = client
                .query_one(APPLIED_MIGRATION, &[])
                .await
                .map_err(|err| {
                    if err.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
                        format!("no migration is applied; this build needs V{needed} (run `pg-analytics migrate`)")
                    } else {
                        "does not answer".to_owned()
                    }
                })?
                .get(0);
            if applied < needed {
                Err(format!(
                    "the schema is at V{applied}, this build needs V{needed} (run `pg-analytics migrate`)"
                ))
            } else {
                Ok(())
            }
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                ))
            })
    }
}

/// The newest migration applied to the database.
const APPLIED_MIGRATION: &str =
    "SELECT coalesce(max(version), 0)::bigint FROM refinery_schema_history";

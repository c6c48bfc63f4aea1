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
}

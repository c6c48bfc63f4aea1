//! Dependency-aware health.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::ports::{Clock, DependencyStatus, HealthProbe};

/// The overall health: `ok` when every configured dependency answers, else `degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverallStatus {
    Ok,
    Degraded,
}

/// A health report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub status: OverallStatus,
    pub version: String,
    pub timestamp: OffsetDateTime,
    pub postgres: DependencyStatus,
    pub redis: DependencyStatus,
}

/// The probes a [`HealthService`] asks; `None` means not configured.
#[derive(Clone)]
pub struct HealthPorts {
    pub postgres: Option<Arc<dyn HealthProbe>>,
    pub redis: Option<Arc<dyn HealthProbe>>,
    pub clock: Arc<dyn Clock>,
}

/// Checks the dependencies the process was configured with.
#[derive(Clone)]
pub struct HealthService {
    postgres: Option<Arc<dyn HealthProbe>>,
    redis: Option<Arc<dyn HealthProbe>>,
    clock: Arc<dyn Clock>,
    version: String,
}

impl std::fmt::Debug for HealthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthService")
            .field("postgres", &self.postgres.is_some())
            .field("redis", &self.redis.is_some())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl HealthService {
    /// A service probing the dependencies of `ports`, reporting `version`.
    pub fn new(ports: HealthPorts, version: impl Into<String>) -> Self {
        Self {
            postgres: ports.postgres,
            redis: ports.redis,
            clock: ports.clock,
            version: version.into(),
        }
    }

    /// Probes every configured dependency (concurrently-safe, each within its own timeout).
    pub async fn check(&self) -> HealthReport {
        let postgres = probe(self.postgres.as_deref()).await;
        let redis = probe(self.redis.as_deref()).await;
        let status = if [postgres, redis].contains(&DependencyStatus::Unavailable) {
            OverallStatus::Degraded
        } else {
            OverallStatus::Ok
        };
        HealthReport {
            status,
            version: self.version.clone(),
            timestamp: self.clock.now(),
            postgres,
            redis,
        }
    }
}

/// Whether the process may be sent traffic, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// What stops it, if anything: PostgreSQL unreachable or not migrated. A cache that does
    /// not answer only slows reads down, so it never makes the process unready.
    pub blocker: Option<String>,
    /// Whether Redis, when configured, answers; `false` is a degraded but ready process.
    pub redis: DependencyStatus,
}

impl HealthService {
    /// Whether PostgreSQL (when configured) answers with every migration applied; Redis is
    /// reported but does not decide.
    pub async fn readiness(&self) -> Readiness {
        let blocker = match &self.postgres {
            Some(postgres) => postgres
                .ready()
                .await
                .err()
                .map(|why| format!("PostgreSQL: {why}")),
            None => None,
        };
        Readiness {
            blocker,
            redis: probe(self.redis.as_deref()).await,
        }
    }
}

async fn probe(probe: Option<&dyn HealthProbe>) -> DependencyStatus {
    match probe {
        Some(probe) => probe.check().await,
        None => DependencyStatus::NotConfigured,
    }
}

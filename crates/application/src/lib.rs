//! The application layer of pg-analytics: the ports (traits the adapters implement) and the use
//! cases built on them.
//!
//! It depends on `domain` only, never on a database driver, Redis, actix-web or an async
//! runtime; the binary wires concrete adapters in as `Arc<dyn Port>`.

pub mod access;
pub mod audit;
pub mod catalog_cache;
pub mod clock;
#[cfg(feature = "contract-tests")]
pub mod contract;
pub mod digest;
pub mod expiring;
pub mod health;
pub mod ingest;
pub mod ports;
pub mod read_cache;
pub mod recompute;
pub mod reports;
pub mod rollups;
pub mod scheduler;
pub mod seed;
pub mod services;
pub mod standard;
pub mod stats;
pub mod stream;
pub mod telemetry;
pub mod tenancy;
pub mod worker;

pub use access::{Access, AccessError, AccessPolicy, Credentials, ManagementKey};
pub use audit::{AuditError, AuditService};
pub use catalog_cache::CachedCatalog;
pub use clock::SystemClock;
pub use expiring::ExpiringCache;
pub use health::{HealthReport, HealthService, OverallStatus, Readiness};
pub use ingest::{IngestError, IngestService};
pub use ports::Recovered;
pub use read_cache::{CachedPage, CachedReads, HIT_BASIS_LIFETIME, HitBasis, ReadPorts, Served};
pub use recompute::{
    RecomputePorts, RecomputeRequest, RecomputeService, RunLookupError, TriggerError,
    TriggerRequest,
};
pub use reports::{
    CatalogEntry, ReportError, ReportResult, ReportService, RunReportParams, elapsed_ms,
};
pub use rollups::{
    DEFAULT_MAX_REPORTS_PER_TENANT, RollupChange, RollupError, RollupPorts, RollupResult,
    RollupService,
};
pub use scheduler::{Scheduler, SchedulerPorts, SchedulerSettings};
pub use seed::{SeedError, SeedOutcome, SeedService};
pub use services::{Ports, Services, Settings};
pub use stream::{Disposition, StreamIngestion, StreamMessage};
pub use tenancy::{IssuedKey, KeyCacheSettings, Principal, TenancyService, TenancyServiceError};
pub use worker::{RecomputeWorker, WorkerPorts};

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the values guarded in
/// this crate stay valid whatever a panic interrupted.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

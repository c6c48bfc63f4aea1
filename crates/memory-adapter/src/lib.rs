//! In-memory implementations of every pg-analytics port.
//!
//! They are the embedded default (the whole product runs without any server) and the fakes of
//! the application tests. They follow the same contracts as the PostgreSQL and Redis adapters,
//! which the shared contract suite checks, including the snapshot aggregation semantics. Each
//! can be told to fail, for tests of the failure paths. Nothing here is persisted.
//!
//! This crate depends on `application` and `domain` only, plus `tokio::sync` for the queue.

mod audit;
pub mod cache;
mod catalog;
mod clock;
mod events;
mod fail;
mod lock;
mod queue;
mod rollups;
mod runs;
mod tenancy;

use std::sync::Arc;

pub use audit::InMemoryAuditLog;
pub use cache::{InMemoryCacheVersions, InMemoryResponseCache};
pub use catalog::InMemoryCatalog;
pub use clock::ManualClock;
pub use events::InMemoryEventStore;
pub use fail::FailSwitch;
pub use lock::InMemoryScopeLock;
pub use queue::InMemoryRunQueue;
pub use rollups::{InMemoryRollupDefinitions, InMemoryRollupStore};
pub use runs::InMemoryRunStore;
pub use tenancy::{InMemoryApiKeyStore, InMemorySourceStore, InMemoryTenantStore};

use application::ports::Clock;

/// Every in-memory adapter, wired to share state where the real ones share a database.
#[derive(Debug, Clone)]
pub struct InMemoryAdapters {
    pub catalog: Arc<InMemoryCatalog>,
    pub events: Arc<InMemoryEventStore>,
    pub rollups: Arc<InMemoryRollupStore>,
    pub definitions: Arc<InMemoryRollupDefinitions>,
    pub runs: Arc<InMemoryRunStore>,
    pub queue: Arc<InMemoryRunQueue>,
    pub audit: Arc<InMemoryAuditLog>,
    pub cache: Arc<InMemoryResponseCache>,
    pub versions: Arc<InMemoryCacheVersions>,
    pub locks: Arc<InMemoryScopeLock>,
    pub tenants: Arc<InMemoryTenantStore>,
    pub sources: Arc<InMemorySourceStore>,
    pub keys: Arc<InMemoryApiKeyStore>,
}

impl InMemoryAdapters {
    /// These adapters as the application's ports, with `clock`, and no dependency to probe.
    pub fn ports(&self, clock: Arc<dyn Clock>) -> application::Ports {
        application::Ports {
            catalog: self.catalog.clone(),
            events: self.events.clone(),
            rollups: self.rollups.clone(),
            definitions: self.definitions.clone(),
            runs: self.runs.clone(),
            queue: self.queue.clone(),
            audit: self.audit.clone(),
            cache: self.cache.clone(),
            versions: self.versions.clone(),
            locks: self.locks.clone(),
            tenants: self.tenants.clone(),
            sources: self.sources.clone(),
            keys: self.keys.clone(),
            clock,
            postgres_health: None,
            redis_health: None,
        }
    }

    /// A fresh set with the reference catalog, stamping times with `clock`, whose run queue
    /// holds at most `queue_capacity` runs.
    pub fn new(clock: Arc<dyn Clock>, queue_capacity: usize) -> Self {
        let events = Arc::new(InMemoryEventStore::new());
        let runs = Arc::new(InMemoryRunStore::new());
        let sources = Arc::new(InMemorySourceStore::new(clock.now()));
        Self {
            catalog: Arc::new(InMemoryCatalog::reference(clock.now())),
            tenants: Arc::new(InMemoryTenantStore::new(clock.now(), Arc::clone(&sources))),
            sources,
            keys: Arc::new(InMemoryApiKeyStore::new()),
            rollups: Arc::new(InMemoryRollupStore::new(Arc::clone(&events))),
            definitions: Arc::new(InMemoryRollupDefinitions::new(Arc::clone(&events))),
            queue: Arc::new(InMemoryRunQueue::new(
                Arc::clone(&runs),
                queue_capacity,
                clock.clone(),
            )),
            audit: Arc::new(InMemoryAuditLog::new(clock)),
            cache: Arc::new(InMemoryResponseCache::new()),
            versions: Arc::new(InMemoryCacheVersions::new()),
            locks: Arc::new(InMemoryScopeLock::new()),
            events,
            runs,
        }
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the data consistent before it can panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Read-locks an `RwLock`, recovering from poisoning as [`lock`] does.
pub(crate) fn read<T>(rw: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    rw.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Write-locks an `RwLock`, recovering from poisoning as [`lock`] does.
pub(crate) fn write<T>(rw: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    rw.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! Building the services from the configured adapters.

use std::sync::Arc;

use application::{
    AuditService, HealthService, RecomputePorts, RecomputeService, RecomputeWorker, ReportService,
    SeedService, SystemClock, WorkerPorts,
    ports::{Clock, RunQueue},
};
use http_api::{AppState, ManagementKey};
use memory_adapter::InMemoryAdapters;

use crate::config::Config;

/// The name `/health` reports.
pub const SERVICE_NAME: &str = "pg-analytics";

/// Everything a running process holds.
pub struct Services {
    pub state: AppState,
    pub worker: RecomputeWorker,
    pub seeder: SeedService,
    pub queue: Arc<dyn RunQueue>,
}

/// The real clock, pausing on the tokio timer.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new(tokio::time::sleep))
}

/// Wires the embedded default: every port in memory.
pub fn embedded(config: &Config, clock: Arc<dyn Clock>) -> Services {
    let memory = InMemoryAdapters::new(clock.clone(), config.recompute.queue_size);
    let reports = ReportService::new(
        memory.catalog.clone(),
        memory.snapshots.clone(),
        memory.cache.clone(),
        memory.versions.clone(),
        clock.clone(),
        config.recompute.max_range_days,
    );
    let recompute = RecomputeService::new(
        RecomputePorts {
            catalog: memory.catalog.clone(),
            runs: memory.runs.clone(),
            queue: memory.queue.clone(),
            audit: memory.audit.clone(),
            locks: memory.locks.clone(),
            clock: clock.clone(),
        },
        config.recompute.max_range_days,
        config.recompute.lock_ttl,
    );
    let worker = RecomputeWorker::new(WorkerPorts {
        runs: memory.runs.clone(),
        queue: memory.queue.clone(),
        snapshots: memory.snapshots.clone(),
        versions: memory.versions.clone(),
        audit: memory.audit.clone(),
        locks: memory.locks.clone(),
        clock: clock.clone(),
    });
    let seeder = SeedService::new(
        memory.events.clone(),
        memory.snapshots.clone(),
        memory.runs.clone(),
        clock.clone(),
        recompute.clone(),
        worker.clone(),
    );
    let state = AppState {
        reports,
        recompute,
        audit: AuditService::new(memory.audit.clone()),
        health: HealthService::new(None, None, clock, config.version.clone()),
        management_key: ManagementKey::new(config.management_key.expose()),
        service_name: SERVICE_NAME.to_owned(),
    };
    Services {
        state,
        worker,
        seeder,
        queue: memory.queue,
    }
}

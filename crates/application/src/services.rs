//! The composition root: every use case, built once over one set of ports.
//!
//! The binary (with the memory, PostgreSQL and Redis adapters it is configured with) and every
//! test harness (with the memory adapters, some of them swapped for fakes) call
//! [`Services::assemble`], so what is tested is wired exactly as what is served.

use std::{sync::Arc, time::Duration};

use crate::{
    AccessPolicy, AuditService, CachedCatalog, HealthService, IngestService, KeyCacheSettings,
    ManagementKey, RecomputePorts, RecomputeService, RecomputeWorker, ReportService, RollupPorts,
    RollupService, Scheduler, SchedulerPorts, SchedulerSettings, SeedService, TenancyService,
    WorkerPorts,
    health::HealthPorts,
    ingest::IngestPorts,
    ports::{
        ApiKeyStore, AuditLog, CacheVersions, Clock, EventStore, HealthProbe, ReportCatalog,
        ResponseCache, RollupDefinitions, RollupStore, RunQueue, RunStore, ScopeLock, SourceStore,
        TenantStore,
    },
    read_cache::{CachedReads, ReadPorts},
    reports::ReportPorts,
    seed::SeedPorts,
    standard::WithStandardRollups,
    stats::{StatsPorts, StatsService},
    stream::StreamIngestion,
    tenancy::TenancyPorts,
};

/// One adapter per port.
#[derive(Clone)]
pub struct Ports {
    pub catalog: Arc<dyn ReportCatalog>,
    pub events: Arc<dyn EventStore>,
    /// The snapshot rows of every report.
    pub rollups: Arc<dyn RollupStore>,
    /// Tenants' rollup definitions.
    pub definitions: Arc<dyn RollupDefinitions>,
    pub runs: Arc<dyn RunStore>,
    pub queue: Arc<dyn RunQueue>,
    pub audit: Arc<dyn AuditLog>,
    pub cache: Arc<dyn ResponseCache>,
    pub versions: Arc<dyn CacheVersions>,
    pub locks: Arc<dyn ScopeLock>,
    pub tenants: Arc<dyn TenantStore>,
    pub sources: Arc<dyn SourceStore>,
    pub keys: Arc<dyn ApiKeyStore>,
    pub clock: Arc<dyn Clock>,
    /// PostgreSQL's probe, when the process uses it.
    pub postgres_health: Option<Arc<dyn HealthProbe>>,
    /// Redis' probe, when the process uses it.
    pub redis_health: Option<Arc<dyn HealthProbe>>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// How the use cases behave; the binary fills it from its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The operator's key; `None` in a process that does not serve (the one-shot commands),
    /// where no management key is accepted.
    pub management_key: Option<ManagementKey>,
    /// The longest range a report read or a recompute accepts, in days.
    pub max_range_days: u32,
    /// The lifetime of a scope lock.
    pub lock_ttl: Duration,
    /// The lease of a claimed run (see [`RecomputeWorker::with_lease`]).
    pub lease: Duration,
    /// How long report definitions and listings are read from memory.
    pub catalog_ttl: Duration,
    /// What the process remembers of API keys.
    pub key_cache: KeyCacheSettings,
    /// The version `GET /health` reports.
    pub version: String,
    /// How many reports a tenant may define.
    pub max_reports_per_tenant: u32,
    /// Bytes of decoded report results held in this process, in front of the shared response
    /// cache; 0 holds none.
    pub near_cache_bytes: usize,
    /// How the freshness scheduler paces refreshes and retention.
    pub scheduler: SchedulerSettings,
}

impl Default for Settings {
    /// The defaults of the configuration.
    fn default() -> Self {
        Self {
            management_key: None,
            max_range_days: 366,
            lock_ttl: Duration::from_secs(900),
            lease: Duration::from_secs(60),
            catalog_ttl: Duration::from_secs(60),
            key_cache: KeyCacheSettings::default(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            max_reports_per_tenant: crate::DEFAULT_MAX_REPORTS_PER_TENANT,
            near_cache_bytes: 0,
            scheduler: SchedulerSettings::default(),
        }
    }
}

/// Every use case of the service.
#[derive(Clone)]
pub struct Services {
    pub access: AccessPolicy,
    pub reports: ReportService,
    pub recompute: RecomputeService,
    pub rollups: RollupService,
    /// Web analytics' first answers, from the standard rollups.
    pub stats: StatsService,
    pub worker: RecomputeWorker,
    pub scheduler: Scheduler,
    pub seeder: SeedService,
    pub tenancy: TenancyService,
    pub audit: AuditService,
    pub health: HealthService,
    pub ingest: IngestService,
    /// Ingestion of a stream's messages, through `ingest`.
    pub stream: StreamIngestion,
    /// The ports they were built over, for what the process does beside them (closing the
    /// queue at shutdown, say).
    pub ports: Ports,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl Services {
    /// Builds every use case over `ports`, as `settings` say.
    pub fn assemble(ports: Ports, settings: &Settings) -> Self {
        let clock = ports.clock.clone();
        // Report reads look their definition up on every request; definitions change only
        // with deployments, so reading them from memory for a minute is plenty fresh.
        let read_catalog: Arc<dyn ReportCatalog> = Arc::new(CachedCatalog::new(
            ports.catalog.clone(),
            clock.clone(),
            settings.catalog_ttl,
        ));
        let reads = CachedReads::new(
            ReadPorts {
                store: ports.rollups.clone(),
                shared: ports.cache.clone(),
                versions: ports.versions.clone(),
                clock: clock.clone(),
            },
            settings.near_cache_bytes,
        );
        let reports = ReportService::new(
            ReportPorts {
                catalog: read_catalog,
                reads: reads.clone(),
                clock: clock.clone(),
            },
            settings.max_range_days,
        );
        // Every tenant's rollups include the standard ones, wherever definitions are read.
        let definitions: Arc<dyn RollupDefinitions> =
            Arc::new(WithStandardRollups::new(ports.definitions.clone()));
        let worker = RecomputeWorker::new(WorkerPorts {
            runs: ports.runs.clone(),
            queue: ports.queue.clone(),
            rollups: ports.rollups.clone(),
            definitions: definitions.clone(),
            versions: ports.versions.clone(),
            audit: ports.audit.clone(),
            locks: ports.locks.clone(),
            clock: clock.clone(),
        })
        .with_lock_ttl(settings.lock_ttl)
        .with_lease(settings.lease);
        let recompute = RecomputeService::new(
            RecomputePorts {
                catalog: ports.catalog.clone(),
                definitions: definitions.clone(),
                runs: ports.runs.clone(),
                queue: ports.queue.clone(),
                audit: ports.audit.clone(),
                locks: ports.locks.clone(),
                clock: clock.clone(),
            },
            worker.clone(),
            settings.max_range_days,
            settings.lock_ttl,
        );
        let scheduler = Scheduler::new(
            SchedulerPorts {
                rollups: ports.rollups.clone(),
                definitions: definitions.clone(),
                tenants: ports.tenants.clone(),
                events: ports.events.clone(),
                audit: ports.audit.clone(),
                clock: clock.clone(),
            },
            recompute.clone(),
            settings.scheduler,
        );
        let stats = StatsService::new(
            StatsPorts {
                reads: reads.clone(),
                rollups: ports.rollups.clone(),
                clock: clock.clone(),
            },
            settings.max_range_days,
        );
        let rollups = RollupService::new(
            RollupPorts {
                definitions: definitions.clone(),
                rollups: ports.rollups.clone(),
                reads,
                versions: ports.versions.clone(),
                audit: ports.audit.clone(),
                clock: clock.clone(),
            },
            recompute.clone(),
            settings.max_reports_per_tenant,
            settings.max_range_days,
        );
        let seeder = SeedService::new(
            SeedPorts {
                events: ports.events.clone(),
                snapshots: ports.rollups.clone(),
                clock: clock.clone(),
            },
            recompute.clone(),
        );
        let tenancy = TenancyService::new(
            TenancyPorts {
                tenants: ports.tenants.clone(),
                sources: ports.sources.clone(),
                keys: ports.keys.clone(),
                audit: ports.audit.clone(),
                clock: clock.clone(),
            },
            settings.key_cache,
        );
        let health = HealthService::new(
            HealthPorts {
                postgres: ports.postgres_health.clone(),
                redis: ports.redis_health.clone(),
                clock: clock.clone(),
            },
            settings.version.clone(),
        );
        let ingest = IngestService::new(IngestPorts {
            events: ports.events.clone(),
            sources: ports.sources.clone(),
            clock,
        });
        Self {
            stream: StreamIngestion::new(ingest.clone(), tenancy.clone()),
            access: AccessPolicy::new(settings.management_key.clone(), tenancy.clone()),
            reports,
            recompute,
            rollups,
            stats,
            worker,
            scheduler,
            seeder,
            tenancy,
            audit: AuditService::new(ports.audit.clone()),
            health,
            ingest,
            ports,
        }
    }
}

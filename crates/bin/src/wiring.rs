//! Building the services from the configured adapters: the only place that knows them all.

use std::sync::Arc;

use anyhow::Context;
use application::{
    AuditService, CachedCatalog, HealthService, IngestService, RecomputePorts, RecomputeService,
    RecomputeWorker, ReportService, SeedService, SystemClock, TenancyService, WorkerPorts,
    ports::{
        ApiKeyStore, AuditLog, CacheVersions, Clock, EventStore, HealthProbe, ReportCatalog,
        ResponseCache, RunQueue, RunStore, ScopeLock, SnapshotStore, SourceStore, TenantStore,
    },
};
use http_api::{AppState, HitReplays, ManagementKey, RateLimit};
use memory_adapter::{
    InMemoryAdapters, InMemoryCacheVersions, InMemoryResponseCache, InMemoryScopeLock,
};
use postgres_adapter::{PostgresAdapters, PostgresConfig, QueueSettings};
use redis_adapter::{
    NearCache, RedisCacheVersions, RedisClient, RedisConfig, RedisHealthProbe, RedisResponseCache,
    RedisScopeLock, VERSION_CHANNEL,
};
use tracing::info;

use crate::config::Config;

/// The name `/health` reports.
pub const SERVICE_NAME: &str = "pg-analytics";

/// One adapter per port.
#[derive(Clone)]
pub struct Ports {
    pub catalog: Arc<dyn ReportCatalog>,
    pub events: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub runs: Arc<dyn RunStore>,
    pub queue: Arc<dyn RunQueue>,
    pub audit: Arc<dyn AuditLog>,
    pub cache: Arc<dyn ResponseCache>,
    pub versions: Arc<dyn CacheVersions>,
    pub locks: Arc<dyn ScopeLock>,
    pub tenants: Arc<dyn TenantStore>,
    pub sources: Arc<dyn SourceStore>,
    pub keys: Arc<dyn ApiKeyStore>,
    pub postgres_health: Option<Arc<dyn HealthProbe>>,
    pub redis_health: Option<Arc<dyn HealthProbe>>,
}

/// Everything a running process holds.
pub struct Services {
    pub state: AppState,
    pub tenancy: TenancyService,
    pub worker: RecomputeWorker,
    pub seeder: SeedService,
    pub ports: Ports,
    pub clock: Arc<dyn Clock>,
    /// The pool, when the process runs on PostgreSQL.
    pub pool: Option<postgres_adapter::Pool>,
}

/// The real clock, pausing on the tokio timer.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new(tokio::time::sleep))
}

/// Every port in memory: the embedded default.
pub fn memory_ports(config: &Config, clock: Arc<dyn Clock>) -> Ports {
    let memory = InMemoryAdapters::new(clock, config.recompute.queue_size);
    Ports {
        catalog: memory.catalog,
        events: memory.events,
        snapshots: memory.snapshots,
        runs: memory.runs,
        queue: memory.queue,
        audit: memory.audit,
        cache: Arc::new(InMemoryResponseCache::with_capacity(
            config.http.response_cache_bytes,
        )),
        versions: memory.versions,
        locks: memory.locks,
        tenants: memory.tenants,
        sources: memory.sources,
        keys: memory.keys,
        postgres_health: None,
        redis_health: None,
    }
}

/// The PostgreSQL pool of `config` (connections open lazily).
///
/// # Errors
/// When `DATABASE_URL` is missing or malformed.
pub fn postgres_pool(config: &Config) -> anyhow::Result<postgres_adapter::Pool> {
    let url = config
        .database_url
        .as_ref()
        .context("DATABASE_URL is not set")?;
    postgres_adapter::connect(&PostgresConfig {
        url: url.expose().to_owned(),
        max_connections: config.database.max_connections,
        acquire_timeout: config.database.acquire_timeout,
        statement_timeout: config.database.statement_timeout,
    })
}

/// PostgreSQL for storage; the response cache, its versions and the scope locks are in-process
/// until [`with_redis`] replaces them (the database's one-active-run-per-scope index keeps
/// triggers safe across processes either way).
pub fn postgres_ports(
    config: &Config,
    pool: postgres_adapter::Pool,
    clock: Arc<dyn Clock>,
) -> Ports {
    let settings = QueueSettings {
        capacity: config.recompute.queue_size,
        lease: config.recompute.lease,
        poll_interval: config.recompute.poll_interval,
        ..QueueSettings::default()
    };
    let pg = PostgresAdapters::new(pool, settings, clock)
        .with_ingest_writers(config.database.ingest_writers);
    Ports {
        catalog: pg.catalog,
        events: pg.events,
        snapshots: pg.snapshots,
        runs: pg.runs,
        queue: pg.queue,
        audit: pg.audit,
        cache: Arc::new(InMemoryResponseCache::with_capacity(
            config.http.response_cache_bytes,
        )),
        versions: Arc::new(InMemoryCacheVersions::new()),
        locks: Arc::new(InMemoryScopeLock::new()),
        tenants: pg.tenancy.clone(),
        sources: pg.tenancy.clone(),
        keys: pg.tenancy,
        postgres_health: Some(pg.health),
        redis_health: None,
    }
}

/// Puts the response cache, its versions and the scope locks in Redis.
///
/// # Errors
/// When `REDIS_URL` is malformed.
pub fn with_redis(mut ports: Ports, config: &Config) -> anyhow::Result<Ports> {
    let Some(url) = &config.redis_url else {
        return Ok(ports);
    };
    let client = RedisClient::new(&RedisConfig {
        url: url.expose().to_owned(),
        key_prefix: config.redis.key_prefix.clone(),
        command_timeout: config.redis.command_timeout,
        retry_after: config.redis.retry_after,
        max_connections: config.redis.max_connections,
    })?;
    let near = NearCache::new(config.redis.local_cache_bytes);
    near.listen(
        url.expose(),
        client.key(VERSION_CHANNEL),
        config.redis.retry_after,
        config.redis.command_timeout,
    )?;
    ports.cache = Arc::new(RedisResponseCache::with_near(client.clone(), near.clone()));
    ports.versions = Arc::new(RedisCacheVersions::with_near(client.clone(), near));
    ports.locks = Arc::new(RedisScopeLock::new(client.clone()));
    ports.redis_health = Some(Arc::new(RedisHealthProbe::new(client)));
    Ok(ports)
}

/// The services of the configured storage: PostgreSQL when `DATABASE_URL` is set (migrated
/// first when `APP_AUTO_MIGRATE`), memory otherwise; Redis when `REDIS_URL` is set.
///
/// # Errors
/// When a URL is malformed or the migrations fail.
pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Services> {
    if config.is_embedded() {
        let ports = with_redis(memory_ports(config, clock.clone()), config)?;
        return Ok(assemble(config, ports, clock, None));
    }
    let pool = postgres_pool(config)?;
    if config.auto_migrate {
        let applied = postgres_adapter::migrate(&pool)
            .await
            .context("APP_AUTO_MIGRATE: migrating the database")?;
        info!(applied, "database schema is up to date");
    }
    let ports = with_redis(postgres_ports(config, pool.clone(), clock.clone()), config)?;
    Ok(assemble(config, ports, clock, Some(pool)))
}

/// Wires the use cases over `ports`.
pub fn assemble(
    config: &Config,
    ports: Ports,
    clock: Arc<dyn Clock>,
    pool: Option<postgres_adapter::Pool>,
) -> Services {
    // Report reads look their definition up on every request; the definitions change only
    // with deployments, so a minute in process is plenty fresh.
    let read_catalog: Arc<dyn ReportCatalog> = Arc::new(CachedCatalog::new(
        ports.catalog.clone(),
        clock.clone(),
        std::time::Duration::from_secs(60),
    ));
    let reports = ReportService::new(
        read_catalog,
        ports.snapshots.clone(),
        ports.cache.clone(),
        ports.versions.clone(),
        clock.clone(),
        config.recompute.max_range_days,
    )
    .with_freshness(ports.events.clone());
    let recompute = RecomputeService::new(
        RecomputePorts {
            catalog: ports.catalog.clone(),
            runs: ports.runs.clone(),
            queue: ports.queue.clone(),
            audit: ports.audit.clone(),
            locks: ports.locks.clone(),
            clock: clock.clone(),
        },
        config.recompute.max_range_days,
        config.recompute.lock_ttl,
    );
    let worker = RecomputeWorker::new(WorkerPorts {
        runs: ports.runs.clone(),
        queue: ports.queue.clone(),
        snapshots: ports.snapshots.clone(),
        versions: ports.versions.clone(),
        audit: ports.audit.clone(),
        locks: ports.locks.clone(),
        clock: clock.clone(),
    })
    .with_lock_ttl(config.recompute.lock_ttl)
    .with_lease(config.recompute.lease);
    let seeder = SeedService::new(
        ports.events.clone(),
        ports.snapshots.clone(),
        ports.runs.clone(),
        clock.clone(),
        recompute.clone(),
        worker.clone(),
    );
    let tenancy = TenancyService::new(
        ports.tenants.clone(),
        ports.sources.clone(),
        ports.keys.clone(),
        clock.clone(),
    )
    .with_audit(ports.audit.clone())
    .with_key_cache(config.api_keys);
    let state = AppState {
        reports,
        replays: HitReplays::new(config.http.replay_bytes),
        recompute,
        audit: AuditService::new(ports.audit.clone()),
        health: HealthService::new(
            ports.postgres_health.clone(),
            ports.redis_health.clone(),
            clock.clone(),
            config.version.clone(),
        ),
        management_key: ManagementKey::new(config.management_key.expose()),
        service_name: SERVICE_NAME.to_owned(),
        body_timeout: config.http.body_timeout,
        ingest: IngestService::new(ports.events.clone(), ports.sources.clone(), clock.clone()),
        tenancy: tenancy.clone(),
        rate_limit: match config.rate_limit.per_second {
            Some(per_second) => RateLimit::new(per_second, config.rate_limit.burst),
            None => RateLimit::disabled(),
        },
    };
    Services {
        state,
        tenancy,
        worker,
        seeder,
        ports,
        clock,
        pool,
    }
}

//! Building the services from the configured adapters: the only place that knows them all.

use std::sync::Arc;

use anyhow::Context;
use application::{ManagementKey, Ports, Services, Settings, SystemClock, ports::Clock};
use http_api::{AppState, HttpSettings, RateLimit};
use memory_adapter::{
    InMemoryAdapters, InMemoryCacheVersions, InMemoryResponseCache, InMemoryScopeLock,
};
use postgres_adapter::{PostgresAdapters, PostgresConfig, QueueSettings};
use redis_adapter::{
    NearCache, RedisCacheVersions, RedisClient, RedisConfig, RedisHealthProbe, RedisResponseCache,
    RedisScopeLock, VERSION_CHANNEL,
};
use secrecy::ExposeSecret;
use tracing::info;

use crate::config::Config;

/// The name `/health` reports.
pub const SERVICE_NAME: &str = "pg-analytics";

/// The services of a process, and the pool beside them when it runs on PostgreSQL.
pub struct Wired {
    pub services: Services,
    /// The pool, when the process runs on PostgreSQL.
    pub pool: Option<postgres_adapter::Pool>,
}

/// The real clock, pausing on the tokio timer.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new(tokio::time::sleep))
}

/// Every port in memory: the embedded default.
pub fn memory_ports(config: &Config, clock: Arc<dyn Clock>) -> Ports {
    let memory = InMemoryAdapters::new(clock.clone(), config.recompute.recompute_queue_size);
    Ports {
        clock,
        catalog: memory.catalog,
        events: memory.events,
        rollups: memory.rollups,
        definitions: memory.definitions,
        runs: memory.runs,
        queue: memory.queue,
        audit: memory.audit,
        cache: Arc::new(InMemoryResponseCache::with_capacity(
            config.cache.response_cache_mb,
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
        .database
        .database_url
        .as_ref()
        .context("DATABASE_URL is not set")?;
    postgres_adapter::connect(&PostgresConfig {
        url: url.expose_secret().to_owned(),
        max_connections: config.database.database_max_connections,
        acquire_timeout: config.database.database_acquire_timeout_secs,
        statement_timeout: config.database.database_statement_timeout_secs,
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
        capacity: config.recompute.recompute_queue_size,
        lease: config.recompute.recompute_lease_secs,
        poll_interval: config.recompute.recompute_poll_interval_ms,
        ..QueueSettings::default()
    };
    let pg = PostgresAdapters::new(pool, settings, clock.clone())
        .with_ingest_writers(config.database.ingest_writers);
    Ports {
        clock,
        catalog: pg.catalog,
        events: pg.events,
        rollups: pg.rollups,
        definitions: pg.definitions,
        runs: pg.runs,
        queue: pg.queue,
        audit: pg.audit,
        cache: Arc::new(InMemoryResponseCache::with_capacity(
            config.cache.response_cache_mb,
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
    let Some(url) = &config.cache.redis_url else {
        return Ok(ports);
    };
    let client = RedisClient::new(&RedisConfig {
        url: url.expose_secret().to_owned(),
        key_prefix: config.cache.redis_key_prefix.clone(),
        command_timeout: config.cache.redis_command_timeout_ms,
        retry_after: config.cache.redis_retry_after_ms,
        max_connections: config.cache.redis_max_connections,
    })?;
    // Without a local cache every hit asks Redis, its version included.
    let near = if config.cache.redis_local_cache_mb > 0 {
        NearCache::new()
    } else {
        NearCache::disabled()
    };
    near.listen(
        url.expose_secret(),
        client.key(VERSION_CHANNEL),
        config.cache.redis_retry_after_ms,
        config.cache.redis_command_timeout_ms,
    )?;
    ports.cache = Arc::new(RedisResponseCache::new(client.clone()));
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
pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Wired> {
    let settings = settings(config);
    if config.is_embedded() {
        let ports = with_redis(memory_ports(config, clock), config)?;
        return Ok(Wired {
            services: Services::assemble(ports, &settings),
            pool: None,
        });
    }
    let pool = postgres_pool(config)?;
    if config.database.app_auto_migrate {
        let applied = postgres_adapter::migrate(&pool)
            .await
            .context("APP_AUTO_MIGRATE: migrating the database")?;
        info!(applied, "database schema is up to date");
    } else {
        // Migrating creates the extensions, or fails saying why; otherwise check them.
        postgres_adapter::check_extensions(&pool).await?;
    }
    let ports = with_redis(postgres_ports(config, pool.clone(), clock), config)?;
    Ok(Wired {
        services: Services::assemble(ports, &settings),
        pool: Some(pool),
    })
}

/// How the use cases behave, from the configuration.
pub fn settings(config: &Config) -> Settings {
    Settings {
        // A process without a management key (a one-shot command on a database) accepts none.
        management_key: config
            .management_key()
            .ok()
            .map(|key| ManagementKey::new(key.expose_secret())),
        max_range_days: config.recompute.max_report_range_days,
        max_reports_per_tenant: config.recompute.max_reports_per_tenant,
        lock_ttl: config.recompute.recompute_lock_ttl_secs,
        lease: config.recompute.recompute_lease_secs,
        key_cache: config.key_cache(),
        version: config.app_version.clone(),
        // With Redis, decoded results are held in front of it; without, the response cache is
        // this process's memory already.
        near_cache_bytes: if config.cache.redis_url.is_some() {
            config.cache.redis_local_cache_mb
        } else {
            0
        },
        scheduler: application::SchedulerSettings {
            interval_override: config.recompute.refresh_interval_override_secs,
            freshness_target: config.recompute.freshness_target_secs,
            event_retention_days: config.recompute.event_retention_days,
            ..application::SchedulerSettings::default()
        },
        ..Settings::default()
    }
}

/// The state the HTTP API serves `services` with: the configured rate limit, replay budget
/// and body timeout, and the `/metrics` endpoint when the API's address serves it.
pub fn app_state(
    config: &Config,
    services: &Services,
    metrics: Option<http_api::MetricsEndpoint>,
) -> AppState {
    AppState::new(
        services,
        HttpSettings {
            rate_limit: match config.http.rate_limit() {
                Some(per_second) => RateLimit::new(per_second, config.http.rate_limit_burst),
                None => RateLimit::disabled(),
            },
            replay_bytes: config.http.report_replay_mb,
            body_timeout: config.http.http_body_timeout_secs,
            service_name: SERVICE_NAME.to_owned(),
            metrics,
        },
    )
}

//! The response cache and the per-report versions that retire its entries.

use std::time::Duration;

use application::ports::{CacheError, CacheKey, CacheVersions, ResponseCache, SourceSystem};
use async_trait::async_trait;
use deadpool_redis::redis::{AsyncCommands, Script, SetExpiry, SetOptions};
use domain::{ReportSlug, TenantId};

use crate::{NearCache, RedisClient, near::report_id};

/// The channel on which bumps are announced, under the key prefix.
pub const VERSION_CHANNEL: &str = "report:version:changes";

/// Moves the version up and announces it in one step, so notices arrive in bump order. The new
/// version is Redis's clock in microseconds, or one more than the counter if that is higher
/// (bumps within a microsecond). So a bump never gives a version given before, even after Redis
/// lost its data (the counter is gone) or rolled it back (a restored snapshot, a failover to a
/// replica behind): the clock has moved past every version given. Needs Redis 5 or later,
/// which replicates a script's effects rather than the script, so it may read the clock.
const BUMP: &str = "local now = redis.call('TIME') \
                    local clock = tonumber(now[1] .. string.format('%06d', tonumber(now[2]))) \
                    local counter = tonumber(redis.call('GET', KEYS[1]) or '0') or 0 \
                    local version = math.max(counter + 1, clock) \
                    local text = string.format('%d', version) \
                    redis.call('SET', KEYS[1], text) \
                    redis.call('PUBLISH', ARGV[1], ARGV[2] .. ':' .. text) \
                    return version";

/// Report results under `report:{tenant}:{slug}:v{version}:{hash}`, expiring with the report's
/// TTL. Entries of an old version are never read again and simply expire; nothing is scanned.
#[derive(Debug, Clone)]
pub struct RedisResponseCache {
    client: RedisClient,
}

impl RedisResponseCache {
    /// The cache over `client`.
    pub fn new(client: RedisClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl ResponseCache for RedisResponseCache {
    fn system(&self) -> SourceSystem {
        SourceSystem::Redis
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        let key = self.client.key(key.as_str());
        self.client
            .run("GET report", |mut c| async move {
                c.get::<_, Option<Vec<u8>>>(key).await
            })
            .await
    }

    async fn put(&self, key: &CacheKey, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        let key = self.client.key(key.as_str());
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let options = SetOptions::default().with_expiration(SetExpiry::PX(ttl_ms));
        self.client
            .run("SET report", |mut c| async move {
                c.set_options::<_, _, ()>(key, value, options).await
            })
            .await
    }
}

/// One counter per tenant and report under `report:version:{tenant}:{slug}`, bumped with `INCR`
/// and announced on `report:version:changes` as `{tenant}:{slug}:{version}`. While the
/// [`NearCache`] follows the announcements, the current version is read from memory.
#[derive(Debug, Clone)]
pub struct RedisCacheVersions {
    client: RedisClient,
    near: NearCache,
}

impl RedisCacheVersions {
    /// The versions over `client`, asking Redis on every read.
    pub fn new(client: RedisClient) -> Self {
        Self::with_near(client, NearCache::disabled())
    }

    /// The versions over `client`, remembered in `near` while it follows the announcements.
    pub fn with_near(client: RedisClient, near: NearCache) -> Self {
        Self { client, near }
    }

    fn key(&self, tenant: TenantId, slug: &ReportSlug) -> String {
        self.client.key(&format!("report:version:{tenant}:{slug}"))
    }
}

#[async_trait]
impl CacheVersions for RedisCacheVersions {
    async fn current(&self, tenant: TenantId, slug: &ReportSlug) -> Result<u64, CacheError> {
        let report = report_id(tenant, slug);
        if let Some(version) = self.near.version(&report) {
            return Ok(version);
        }
        let generation = self.near.generation();
        let key = self.key(tenant, slug);
        let version: Option<u64> = self
            .client
            .run("GET version", |mut c| async move { c.get(key).await })
            .await?;
        let version = version.unwrap_or(0);
        self.near.remember_version(&report, version, generation);
        Ok(version)
    }

    async fn bump(&self, tenant: TenantId, slug: &ReportSlug) -> Result<u64, CacheError> {
        let report = report_id(tenant, slug);
        let key = self.key(tenant, slug);
        let channel = self.client.key(VERSION_CHANNEL);
        let notice = report.clone();
        let version = self
            .client
            .run("INCR version", |mut c| async move {
                Script::new(BUMP)
                    .key(key)
                    .arg(channel)
                    .arg(notice)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        // Whatever happened, the notice (or a read of Redis) tells the new version.
        self.near.forget_version(&report);
        version
    }
}

//! The response cache and the per-report versions that retire its entries.

use std::time::Duration;

use application::ports::{CacheError, CacheKey, CacheVersions, ResponseCache, SourceSystem};
use async_trait::async_trait;
use deadpool_redis::redis::{AsyncCommands, SetExpiry, SetOptions};
use domain::{ReportSlug, TenantId};

use crate::RedisClient;

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

/// One counter per tenant and report under `report:version:{tenant}:{slug}`, bumped with `INCR`.
#[derive(Debug, Clone)]
pub struct RedisCacheVersions {
    client: RedisClient,
}

impl RedisCacheVersions {
    /// The versions over `client`.
    pub fn new(client: RedisClient) -> Self {
        Self { client }
    }

    fn key(&self, tenant: TenantId, slug: &ReportSlug) -> String {
        self.client.key(&format!("report:version:{tenant}:{slug}"))
    }
}

#[async_trait]
impl CacheVersions for RedisCacheVersions {
    async fn current(&self, tenant: TenantId, slug: &ReportSlug) -> Result<u64, CacheError> {
        let key = self.key(tenant, slug);
        let version: Option<u64> = self
            .client
            .run("GET version", |mut c| async move { c.get(key).await })
            .await?;
        Ok(version.unwrap_or(0))
    }

    async fn bump(&self, tenant: TenantId, slug: &ReportSlug) -> Result<u64, CacheError> {
        let key = self.key(tenant, slug);
        self.client
            .run(
                "INCR version",
                |mut c| async move { c.incr(key, 1u64).await },
            )
            .await
    }
}

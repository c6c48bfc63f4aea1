//! The response cache and its version counters in memory.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use application::{
    ExpiringCache,
    ports::{CacheError, CacheKey, CacheVersions, ResponseCache, SourceSystem},
};
use async_trait::async_trait;
use domain::{ReportSlug, TenantId};

use crate::{FailSwitch, lock};

/// The budget of a cache made with [`InMemoryResponseCache::new`]: `RESPONSE_CACHE_MB`'s
/// default.
pub const DEFAULT_CAPACITY: usize = 32 << 20;

/// What an entry costs beyond its value and key bytes (the cache's slot and record), roughly.
const ENTRY_OVERHEAD: usize = 160;

/// Cached responses with expiry, within a byte budget ([`ExpiringCache`]): entries read least
/// go first when a new one would not fit, so memory is bounded whatever the number of distinct
/// reads.
#[derive(Debug)]
pub struct InMemoryResponseCache {
    entries: ExpiringCache<String, Vec<u8>>,
    failure: FailSwitch,
}

impl Default for InMemoryResponseCache {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryResponseCache {
    /// An empty cache of [`DEFAULT_CAPACITY`] bytes.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// An empty cache holding at most `capacity` bytes of entries (keys, values and their
    /// bookkeeping); an entry over an eighth of it is not held, so 0 holds nothing.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: ExpiringCache::new(capacity as u64, 4_096),
            failure: FailSwitch::default(),
        }
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }

    /// How many entries are stored, expired or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes the entries are charged, within the capacity.
    pub fn bytes(&self) -> usize {
        usize::try_from(self.entries.cost()).unwrap_or(usize::MAX)
    }
}

#[async_trait]
impl ResponseCache for InMemoryResponseCache {
    fn system(&self) -> SourceSystem {
        SourceSystem::Memory
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        self.failure.check("response cache").map_err(CacheError)?;
        Ok(self.entries.fresh(key.as_str(), Instant::now()))
    }

    async fn put(&self, key: &CacheKey, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        self.failure.check("response cache").map_err(CacheError)?;
        let key = key.as_str();
        let cost = value.len() + key.len() + ENTRY_OVERHEAD;
        let expires = Instant::now() + ttl.max(Duration::from_millis(1));
        self.entries
            .insert(key.to_owned(), value, expires, cost as u64);
        Ok(())
    }
}

/// Per-report version counters.
#[derive(Debug, Default)]
pub struct InMemoryCacheVersions {
    versions: Mutex<HashMap<(TenantId, ReportSlug), u64>>,
    failure: FailSwitch,
}

impl InMemoryCacheVersions {
    /// Every version at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }
}

impl InMemoryCacheVersions {
    fn read(&self, tenant: TenantId, slug: &ReportSlug) -> u64 {
        lock(&self.versions)
            .get(&(tenant, slug.clone()))
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl CacheVersions for InMemoryCacheVersions {
    async fn current(&self, tenant: TenantId, slug: &ReportSlug) -> Result<u64, CacheError> {
        self.failure.check("cache versions").map_err(CacheError)?;
        Ok(self.read(tenant, slug))
    }

    async fn bump(&self, tenant: TenantId, slug: &ReportSlug) -> Result<u64, CacheError> {
        self.failure.check("cache versions").map_err(CacheError)?;
        let mut versions = lock(&self.versions);
        let version = versions.entry((tenant, slug.clone())).or_insert(0);
        *version += 1;
        Ok(*version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> CacheKey {
        CacheKey::report(
            TenantId::DEFAULT,
            &ReportSlug::parse("status-counts").unwrap_or_else(|_| unreachable!()),
            1,
            &format!("{n:064}"),
        )
    }

    #[tokio::test]
    async fn distinct_entries_never_take_more_than_the_budget() {
        let cache = InMemoryResponseCache::with_capacity(100_000);
        let ttl = Duration::from_secs(60);
        for n in 0..1_000 {
            cache
                .put(&key(n), vec![0; 1_000], ttl)
                .await
                .unwrap_or_else(|_| unreachable!());
            assert!(
                cache.bytes() <= 100_000,
                "{} bytes after {n}",
                cache.bytes()
            );
        }
        assert!(
            cache.get(&key(999)).await.ok().flatten().is_some(),
            "the newest is held"
        );
        assert!(cache.len() < 100, "{} entries", cache.len());
    }

    #[tokio::test]
    async fn an_entry_over_an_eighth_of_the_budget_is_not_held() {
        let cache = InMemoryResponseCache::with_capacity(8_000);
        let _ = cache
            .put(&key(1), vec![0; 1_500], Duration::from_secs(60))
            .await;
        assert!(cache.is_empty());
        let none = InMemoryResponseCache::with_capacity(0);
        let _ = none.put(&key(1), vec![0; 1], Duration::from_secs(60)).await;
        assert!(none.is_empty(), "a budget of 0 holds nothing");
    }
}

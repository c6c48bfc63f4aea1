//! The response cache and its version counters in memory.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use application::ports::{CacheError, CacheKey, CacheVersions, ResponseCache, SourceSystem};
use async_trait::async_trait;
use domain::{ReportSlug, TenantId};

use crate::{FailSwitch, lock};

/// Past this many entries a write first drops the expired ones, bounding memory the way
/// expiry bounds Redis.
const SWEEP_THRESHOLD: usize = 4_096;

/// Cached responses with expiry.
#[derive(Debug, Default)]
pub struct InMemoryResponseCache {
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    failure: FailSwitch,
}

impl InMemoryResponseCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }

    /// How many entries are stored, expired or not.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ResponseCache for InMemoryResponseCache {
    fn system(&self) -> SourceSystem {
        SourceSystem::Memory
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        self.failure.check("response cache").map_err(CacheError)?;
        let mut entries = lock(&self.entries);
        match entries.get(key.as_str()) {
            Some((value, expires)) if *expires > Instant::now() => Ok(Some(value.clone())),
            Some(_) => {
                entries.remove(key.as_str());
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(&self, key: &CacheKey, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        self.failure.check("response cache").map_err(CacheError)?;
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        if entries.len() >= SWEEP_THRESHOLD {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        entries.insert(
            key.as_str().to_owned(),
            (value, now + ttl.max(Duration::from_millis(1))),
        );
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

    fn known(&self, tenant: TenantId, slug: &ReportSlug) -> Option<u64> {
        self.failure
            .check("cache versions")
            .ok()
            .map(|()| self.read(tenant, slug))
    }

    async fn bump(&self, tenant: TenantId, slug: &ReportSlug) -> Result<u64, CacheError> {
        self.failure.check("cache versions").map_err(CacheError)?;
        let mut versions = lock(&self.versions);
        let version = versions.entry((tenant, slug.clone())).or_insert(0);
        *version += 1;
        Ok(*version)
    }
}

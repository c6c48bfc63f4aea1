//! The response cache and its version counters in memory.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use application::ports::{CacheError, CacheKey, CacheVersions, ResponseCache, SourceSystem};
use async_trait::async_trait;
use domain::{ReportSlug, TenantId};

use crate::{FailSwitch, lock};

/// The budget of a cache made with [`InMemoryResponseCache::new`]: `RESPONSE_CACHE_MB`'s
/// default.
pub const DEFAULT_CAPACITY: usize = 32 << 20;

/// What an entry costs beyond its value and key bytes (map slot, record, age listing),
/// roughly.
const ENTRY_OVERHEAD: usize = 160;

/// Cached responses with expiry, within a byte budget: the oldest entries go first when a new
/// one would not fit, so memory is bounded whatever the number of distinct reads.
#[derive(Debug)]
pub struct InMemoryResponseCache {
    capacity: usize,
    state: Mutex<Entries>,
    failure: FailSwitch,
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<String, Entry>,
    /// Keys by age with the sequence number they were stored under; a listing whose number
    /// no longer matches its entry is stale and skipped.
    order: VecDeque<(String, u64)>,
    next: u64,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Instant,
    seq: u64,
    cost: usize,
}

impl Entries {
    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.by_key.remove(key) {
            self.bytes -= entry.cost;
        }
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.by_key.get(&key).is_some_and(|entry| entry.seq == seq) {
                self.remove(&key);
                return true;
            }
        }
        false
    }
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
            capacity,
            state: Mutex::default(),
            failure: FailSwitch::default(),
        }
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }

    /// How many entries are stored, expired or not.
    pub fn len(&self) -> usize {
        lock(&self.state).by_key.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the entries are charged, within the capacity.
    pub fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }
}

#[async_trait]
impl ResponseCache for InMemoryResponseCache {
    fn system(&self) -> SourceSystem {
        SourceSystem::Memory
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        self.failure.check("response cache").map_err(CacheError)?;
        let mut state = lock(&self.state);
        match state.by_key.get(key.as_str()) {
            Some(entry) if entry.expires > Instant::now() => Ok(Some(entry.value.clone())),
            Some(_) => {
                state.remove(key.as_str());
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(&self, key: &CacheKey, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        self.failure.check("response cache").map_err(CacheError)?;
        let key = key.as_str();
        let cost = value.len() + 2 * key.len() + ENTRY_OVERHEAD;
        let mut state = lock(&self.state);
        state.remove(key);
        if cost > self.capacity / 8 {
            return Ok(());
        }
        while state.bytes + cost > self.capacity && state.evict_oldest() {}
        let seq = state.next;
        state.next += 1;
        state.by_key.insert(
            key.to_owned(),
            Entry {
                value,
                expires: Instant::now() + ttl.max(Duration::from_millis(1)),
                seq,
                cost,
            },
        );
        state.order.push_back((key.to_owned(), seq));
        state.bytes += cost;
        if state.order.len() > 2 * state.by_key.len() + 16 {
            let Entries { by_key, order, .. } = &mut *state;
            order.retain(|(key, seq)| by_key.get(key).is_some_and(|entry| entry.seq == *seq));
        }
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
    async fn distinct_entries_never_take_more_than_the_budget_and_the_oldest_go_first() {
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
        assert!(
            cache.get(&key(0)).await.ok().flatten().is_none(),
            "the oldest went first"
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

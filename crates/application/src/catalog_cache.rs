//! An in-process cache in front of the report catalog.

use std::{hash::Hash, sync::Arc, time::Duration};

use async_trait::async_trait;
use domain::{CatalogQuery, Page, ReportDefinition, ReportSlug};
use time::OffsetDateTime;

use crate::{
    expiring::ExpiringCache,
    ports::{Clock, ReportCatalog, StoreError},
};

/// The most definitions remembered at once (slugs asked for, known or not).
const MAX_DEFINITIONS: usize = 1_024;

/// The most listings remembered at once: one per distinct query, so the bound keeps a client
/// that varies its search from growing the map without limit.
const MAX_LISTINGS: usize = 256;

/// Keeps each definition read by slug, and each listing, for `ttl`, so a report read does not
/// cost a catalog query: definitions change only with migrations and deployments, and a change
/// is seen by every process within `ttl`.
///
/// When the catalog cannot be reached, what was read before is served however old it is, so
/// the catalog and the cached reports stay readable through a database outage; a query never
/// read before fails as the catalog does.
pub struct CachedCatalog {
    inner: Arc<dyn ReportCatalog>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    definitions: Remembered<ReportSlug, Option<ReportDefinition>>,
    listings: Remembered<CatalogQuery, Page<ReportDefinition>>,
}

impl std::fmt::Debug for CachedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedCatalog")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl CachedCatalog {
    /// A cache of `inner`'s definitions, each kept for `ttl`.
    pub fn new(inner: Arc<dyn ReportCatalog>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            inner,
            clock,
            ttl,
            definitions: Remembered::new(MAX_DEFINITIONS),
            listings: Remembered::new(MAX_LISTINGS),
        }
    }
}

/// Values read from the catalog, with the time each expires, at most `max` of them (those
/// read least go first).
struct Remembered<K, V> {
    entries: ExpiringCache<K, V, OffsetDateTime>,
}

impl<K: Eq + Hash + Clone, V: Clone> Remembered<K, V> {
    fn new(max: usize) -> Self {
        Self {
            entries: ExpiringCache::new(max as u64, 1),
        }
    }

    /// The fresh value under `key`, else `read`'s, remembered; when `read` finds the catalog
    /// unavailable, the value remembered before, however old.
    async fn fetch<R, F>(
        &self,
        key: &K,
        now: OffsetDateTime,
        ttl: Duration,
        read: R,
    ) -> Result<V, StoreError>
    where
        R: FnOnce() -> F,
        F: Future<Output = Result<V, StoreError>>,
    {
        let remembered = self.entries.any_age(key, now);
        if let Some((value, true)) = remembered {
            return Ok(value);
        }
        match read().await {
            Ok(value) => {
                self.entries
                    .insert(key.clone(), value.clone(), now + ttl, 1);
                Ok(value)
            }
            Err(StoreError::Unavailable(err)) => match remembered {
                Some((value, _)) => {
                    tracing::debug!(error = %err, "catalog unavailable; serving what was read before");
                    Ok(value)
                }
                None => Err(StoreError::Unavailable(err)),
            },
            Err(other) => Err(other),
        }
    }
}

#[async_trait]
impl ReportCatalog for CachedCatalog {
    async fn list_public(
        &self,
        query: &CatalogQuery,
    ) -> Result<Page<ReportDefinition>, StoreError> {
        let now = self.clock.now();
        self.listings
            .fetch(query, now, self.ttl, || self.inner.list_public(query))
            .await
    }

    async fn get(&self, slug: &ReportSlug) -> Result<Option<ReportDefinition>, StoreError> {
        // Unknown slugs are remembered too, so probing for reports costs no queries either.
        let now = self.clock.now();
        self.definitions
            .fetch(slug, now, self.ttl, || self.inner.get(slug))
            .await
    }
}

//! An in-process cache in front of the report catalog.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use domain::{CatalogQuery, Page, ReportDefinition, ReportSlug};
use time::OffsetDateTime;

use crate::ports::{Clock, ReportCatalog, StoreError};

/// Keeps each definition read by slug for `ttl`, so a report read does not cost a catalog
/// query: definitions change only with migrations and deployments, and a change is seen by
/// every process within `ttl`. Listings are not cached.
pub struct CachedCatalog {
    inner: Arc<dyn ReportCatalog>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    entries: Mutex<HashMap<ReportSlug, (Option<ReportDefinition>, OffsetDateTime)>>,
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
            entries: Mutex::default(),
        }
    }
}

#[async_trait]
impl ReportCatalog for CachedCatalog {
    async fn list_public(
        &self,
        query: &CatalogQuery,
    ) -> Result<Page<ReportDefinition>, StoreError> {
        self.inner.list_public(query).await
    }

    async fn get(&self, slug: &ReportSlug) -> Result<Option<ReportDefinition>, StoreError> {
        let now = self.clock.now();
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((definition, expires)) = entries.get(slug)
                && *expires > now
            {
                return Ok(definition.clone());
            }
        }
        let definition = self.inner.get(slug).await?;
        // Unknown slugs are remembered too, so probing for reports costs no queries either;
        // the map holds at most one entry per distinct slug asked for within a TTL.
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() > 10_000 {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        entries.insert(slug.clone(), (definition.clone(), now + self.ttl));
        Ok(definition)
    }
}

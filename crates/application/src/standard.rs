//! The rollups every tenant has (`seeds/rollups/`), beside the ones it defines: a decorator of
//! the definitions store that answers for them from the definitions built into the binary.
//!
//! Nothing is stored per tenant, so every tenant, existing or created later, has them at once,
//! and a new version of the binary changes them for everyone. Their runs, rows, locks, cache
//! entries and audit are each tenant's own, as for any rollup; a tenant cannot change or
//! delete them, nor define a report of the same slug, and they do not count against its
//! limit of reports.

use std::sync::Arc;

use async_trait::async_trait;
use domain::{ReportSlug, RollupDefinition, TenantId, rollup::standard_rollup};
use time::OffsetDateTime;

use crate::ports::{DefinitionError, RollupDefinitions, StoreError, StoredRollup};

/// When the standard rollups first shipped: their `created_at` and `updated_at`.
const SINCE: OffsetDateTime = time::macros::datetime!(2026-12-02 00:00 UTC);

/// A tenant's rollup definitions: the standard ones, then those `inner` stores.
pub struct WithStandardRollups {
    inner: Arc<dyn RollupDefinitions>,
}

impl WithStandardRollups {
    /// The definitions of `inner`, with the standard rollups beside them.
    pub fn new(inner: Arc<dyn RollupDefinitions>) -> Self {
        Self { inner }
    }
}

/// The standard rollups, as `tenant`'s.
pub fn standard_for(tenant: TenantId) -> Vec<StoredRollup> {
    domain::rollup::standard_rollups()
        .iter()
        .map(|definition| stored(tenant, definition))
        .collect()
}

/// The standard rollup `definition` as `tenant`'s.
fn stored(tenant: TenantId, definition: &RollupDefinition) -> StoredRollup {
    StoredRollup {
        tenant,
        definition: definition.clone(),
        created_at: SINCE,
        updated_at: SINCE,
    }
}

#[async_trait]
impl RollupDefinitions for WithStandardRollups {
    async fn create(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        limit: u32,
        at: OffsetDateTime,
    ) -> Result<StoredRollup, DefinitionError> {
        if standard_rollup(&definition.slug).is_some() {
            return Err(DefinitionError::SlugTaken(definition.slug.to_string()));
        }
        self.inner.create(tenant, definition, limit, at).await
    }

    async fn replace(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        at: OffsetDateTime,
    ) -> Result<StoredRollup, DefinitionError> {
        if standard_rollup(&definition.slug).is_some() {
            return Err(DefinitionError::NotFound(definition.slug.to_string()));
        }
        self.inner.replace(tenant, definition, at).await
    }

    async fn delete(&self, tenant: TenantId, slug: &ReportSlug) -> Result<bool, StoreError> {
        if standard_rollup(slug).is_some() {
            return Ok(false);
        }
        self.inner.delete(tenant, slug).await
    }

    async fn get(
        &self,
        tenant: TenantId,
        slug: &ReportSlug,
    ) -> Result<Option<StoredRollup>, StoreError> {
        match standard_rollup(slug) {
            Some(definition) => Ok(Some(stored(tenant, definition))),
            None => self.inner.get(tenant, slug).await,
        }
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<StoredRollup>, StoreError> {
        let mut all = standard_for(tenant);
        all.extend(self.inner.list(tenant).await?);
        all.sort_by(|a, b| a.definition.slug.cmp(&b.definition.slug));
        Ok(all)
    }
}

//! Tenants, their sources and their API keys in memory.

use std::sync::{Arc, Mutex};

use application::ports::{ApiKeyStore, NewApiKey, SourceStore, TenancyError, TenantStore};
use async_trait::async_trait;
use domain::{
    ApiKey, Description, DisplayName, EventSource, KeyHash, KeyPrefix, SourceSlug, Tenant,
    TenantId, TenantSlug, demo,
};
use time::OffsetDateTime;

use crate::{FailSwitch, lock};

/// Tenants, starting with `default` (id 1), as the first migration creates it.
#[derive(Debug)]
pub struct InMemoryTenantStore {
    tenants: Mutex<Vec<Tenant>>,
    /// Where a new tenant's default source is added.
    sources: Arc<InMemorySourceStore>,
    failure: FailSwitch,
}

impl InMemoryTenantStore {
    /// The `default` tenant only, created at `at`; tenants created later get their default
    /// source in `sources`.
    pub fn new(at: OffsetDateTime, sources: Arc<InMemorySourceStore>) -> Self {
        Self {
            sources,
            tenants: Mutex::new(vec![Tenant {
                id: TenantId::DEFAULT,
                slug: TenantSlug::default_tenant(),
                name: "Default tenant".to_owned(),
                created_at: at,
            }]),
            failure: FailSwitch::default(),
        }
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }
}

#[async_trait]
impl TenantStore for InMemoryTenantStore {
    async fn create(&self, slug: &TenantSlug, name: &DisplayName) -> Result<Tenant, TenancyError> {
        self.failure
            .check("tenant store")
            .map_err(TenancyError::Unavailable)?;
        let mut tenants = lock(&self.tenants);
        if tenants.iter().any(|t| &t.slug == slug) {
            return Err(TenancyError::AlreadyExists(format!("tenant {slug}")));
        }
        let next = tenants.iter().map(|t| t.id.get()).max().unwrap_or(0) + 1;
        let tenant = Tenant {
            id: TenantId::new(next),
            slug: slug.clone(),
            name: name.to_string(),
            created_at: tenants
                .first()
                .map_or(OffsetDateTime::UNIX_EPOCH, |t| t.created_at),
        };
        tenants.push(tenant.clone());
        lock(&self.sources.sources).push(default_source(tenant.id, tenant.created_at));
        Ok(tenant)
    }

    async fn find(&self, slug: &TenantSlug) -> Result<Option<Tenant>, TenancyError> {
        self.failure
            .check("tenant store")
            .map_err(TenancyError::Unavailable)?;
        Ok(lock(&self.tenants)
            .iter()
            .find(|t| &t.slug == slug)
            .cloned())
    }

    async fn list(&self) -> Result<Vec<Tenant>, TenancyError> {
        self.failure
            .check("tenant store")
            .map_err(TenancyError::Unavailable)?;
        Ok(lock(&self.tenants).clone())
    }
}

/// Sources per tenant, starting with the demo sources of `default`.
#[derive(Debug)]
pub struct InMemorySourceStore {
    sources: Mutex<Vec<EventSource>>,
    failure: FailSwitch,
}

impl InMemorySourceStore {
    /// The default source and the reference sources of `default`, created at `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        let sources = std::iter::once(default_source(TenantId::DEFAULT, at))
            .chain(demo::data().sources.iter().map(|source| EventSource {
                tenant: TenantId::DEFAULT,
                slug: source.slug.clone(),
                provider_name: source.name.clone(),
                description: String::new(),
                is_active: true,
                created_at: at,
            }))
            .collect();
        Self {
            sources: Mutex::new(sources),
            failure: FailSwitch::default(),
        }
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }
}

/// The source every tenant has, for events that name none.
fn default_source(tenant: TenantId, at: OffsetDateTime) -> EventSource {
    EventSource {
        tenant,
        slug: SourceSlug::default_source(),
        provider_name: SourceSlug::DEFAULT_PROVIDER_NAME.to_owned(),
        description: SourceSlug::DEFAULT_DESCRIPTION.to_owned(),
        is_active: true,
        created_at: at,
    }
}

#[async_trait]
impl SourceStore for InMemorySourceStore {
    async fn list(&self, tenant: TenantId) -> Result<Vec<EventSource>, TenancyError> {
        self.failure
            .check("source store")
            .map_err(TenancyError::Unavailable)?;
        let mut sources: Vec<EventSource> = lock(&self.sources)
            .iter()
            .filter(|s| s.tenant == tenant)
            .cloned()
            .collect();
        sources.sort_by(|a, b| a.slug.cmp(&b.slug));
        Ok(sources)
    }

    async fn create(
        &self,
        tenant: TenantId,
        slug: &SourceSlug,
        provider_name: &DisplayName,
        description: &Description,
    ) -> Result<EventSource, TenancyError> {
        self.failure
            .check("source store")
            .map_err(TenancyError::Unavailable)?;
        let mut sources = lock(&self.sources);
        if sources
            .iter()
            .any(|s| s.tenant == tenant && &s.slug == slug)
        {
            return Err(TenancyError::AlreadyExists(format!("source {slug}")));
        }
        let source = EventSource {
            tenant,
            slug: slug.clone(),
            provider_name: provider_name.to_string(),
            description: description.to_string(),
            is_active: true,
            created_at: OffsetDateTime::now_utc(),
        };
        sources.push(source.clone());
        Ok(source)
    }
}

/// API keys by hash.
#[derive(Debug, Default)]
pub struct InMemoryApiKeyStore {
    keys: Mutex<Vec<(KeyHash, ApiKey)>>,
    failure: FailSwitch,
}

impl InMemoryApiKeyStore {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }
}

#[async_trait]
impl ApiKeyStore for InMemoryApiKeyStore {
    async fn create(&self, key: &NewApiKey) -> Result<ApiKey, TenancyError> {
        self.failure
            .check("api key store")
            .map_err(TenancyError::Unavailable)?;
        let mut keys = lock(&self.keys);
        if keys.iter().any(|(hash, _)| *hash == key.key_hash) {
            return Err(TenancyError::AlreadyExists("api key".to_owned()));
        }
        let stored = ApiKey {
            id: keys.len() as i64 + 1,
            tenant: key.tenant,
            prefix: key.prefix.to_string(),
            scopes: key.scopes.clone(),
            name: key.name.to_string(),
            created_at: key.created_at,
            revoked_at: None,
        };
        keys.push((key.key_hash.clone(), stored.clone()));
        Ok(stored)
    }

    async fn find_by_hash(&self, key_hash: &KeyHash) -> Result<Option<ApiKey>, TenancyError> {
        self.failure
            .check("api key store")
            .map_err(TenancyError::Unavailable)?;
        Ok(lock(&self.keys)
            .iter()
            .find(|(hash, _)| hash == key_hash)
            .map(|(_, key)| key.clone()))
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<ApiKey>, TenancyError> {
        self.failure
            .check("api key store")
            .map_err(TenancyError::Unavailable)?;
        Ok(lock(&self.keys)
            .iter()
            .filter(|(_, k)| k.tenant == tenant)
            .map(|(_, k)| k.clone())
            .collect())
    }

    async fn revoke(
        &self,
        tenant: TenantId,
        prefix: &KeyPrefix,
        at: OffsetDateTime,
    ) -> Result<Option<ApiKey>, TenancyError> {
        self.failure
            .check("api key store")
            .map_err(TenancyError::Unavailable)?;
        let mut keys = lock(&self.keys);
        Ok(keys
            .iter_mut()
            .find(|(_, k)| k.tenant == tenant && k.prefix == prefix.as_str())
            .map(|(_, key)| {
                key.revoked_at.get_or_insert(at);
                key.clone()
            }))
    }
}

//! Tenants, event sources and API keys in PostgreSQL.

use application::ports::{ApiKeyStore, NewApiKey, SourceStore, TenancyError, TenantStore};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::{
    ApiKey, Description, DisplayName, EventSource, KeyHash, KeyPrefix, Scope, SourceSlug, Tenant,
    TenantId, TenantSlug,
};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::error::{Failure, PgResultExt, corrupt};

impl From<Failure> for TenancyError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(e) => TenancyError::Unavailable(e),
            Failure::UniqueViolation(e) => TenancyError::AlreadyExists(format!("{e:#}")),
            Failure::Unexpected(e) => TenancyError::Unexpected(e),
        }
    }
}

/// Tenants, sources and keys over one pool.
#[derive(Debug, Clone)]
pub struct PostgresTenancy {
    pool: Pool,
}

impl PostgresTenancy {
    /// The stores over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn tenant(row: &Row) -> Result<Tenant, Failure> {
    let get = |e: tokio_postgres::Error| corrupt("tenant", e);
    let slug: String = row.try_get("slug").map_err(get)?;
    Ok(Tenant {
        id: TenantId::new(row.try_get("id").map_err(get)?),
        slug: TenantSlug::parse("tenant", &slug).map_err(|e| corrupt("tenant slug", e))?,
        name: row.try_get("name").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

fn source(row: &Row) -> Result<EventSource, Failure> {
    let get = |e: tokio_postgres::Error| corrupt("event source", e);
    let slug: String = row.try_get("slug").map_err(get)?;
    Ok(EventSource {
        tenant: TenantId::new(row.try_get("tenant_id").map_err(get)?),
        slug: SourceSlug::parse("source", &slug).map_err(|e| corrupt("source slug", e))?,
        provider_name: row.try_get("provider_name").map_err(get)?,
        description: row.try_get("description").map_err(get)?,
        is_active: row.try_get("is_active").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

fn api_key(row: &Row) -> Result<ApiKey, Failure> {
    let get = |e: tokio_postgres::Error| corrupt("api key", e);
    let scopes: Vec<String> = row.try_get("scopes").map_err(get)?;
    Ok(ApiKey {
        id: row.try_get("id").map_err(get)?,
        tenant: TenantId::new(row.try_get("tenant_id").map_err(get)?),
        prefix: row.try_get("prefix").map_err(get)?,
        scopes: scopes
            .iter()
            .map(|s| s.parse::<Scope>())
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt("scope", e))?,
        name: row.try_get("name").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        revoked_at: row.try_get("revoked_at").map_err(get)?,
    })
}

const TENANT_COLUMNS: &str = "id, slug, name, created_at";
const SOURCE_COLUMNS: &str = "tenant_id, slug, provider_name, description, is_active, created_at";
const KEY_COLUMNS: &str = "id, tenant_id, prefix, scopes, name, created_at, revoked_at";

#[async_trait]
impl TenantStore for PostgresTenancy {
    async fn create(&self, slug: &TenantSlug, name: &DisplayName) -> Result<Tenant, TenancyError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to create a tenant")?;
        // The tenant and its default source in one statement, so neither exists without the
        // other.
        let sql = format!(
            "WITH tenant AS (INSERT INTO tenants (slug, name) VALUES ($1, $2) RETURNING {TENANT_COLUMNS}),
                  source AS (INSERT INTO event_sources (tenant_id, slug, provider_name, description)
                             SELECT id, $3, $4, $5 FROM tenant)
             SELECT {TENANT_COLUMNS} FROM tenant"
        );
        let row = client
            .query_one(
                &sql,
                &[
                    &slug.as_str(),
                    &name.as_str(),
                    &SourceSlug::DEFAULT,
                    &SourceSlug::DEFAULT_PROVIDER_NAME,
                    &SourceSlug::DEFAULT_DESCRIPTION,
                ],
            )
            .await
            .classify("creating a tenant")
            .map_err(|failure| match failure {
                Failure::UniqueViolation(_) => {
                    TenancyError::AlreadyExists(format!("tenant {slug}"))
                }
                other => other.into(),
            })?;
        Ok(tenant(&row)?)
    }

    async fn find(&self, slug: &TenantSlug) -> Result<Option<Tenant>, TenancyError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to find a tenant")?;
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1");
        let row = client
            .query_opt(&sql, &[&slug.as_str()])
            .await
            .classify("finding a tenant")?;
        Ok(row.as_ref().map(tenant).transpose()?)
    }

    async fn list(&self) -> Result<Vec<Tenant>, TenancyError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to list tenants")?;
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id");
        let rows = client.query(&sql, &[]).await.classify("listing tenants")?;
        Ok(rows.iter().map(tenant).collect::<Result<_, _>>()?)
    }
}

#[async_trait]
impl SourceStore for PostgresTenancy {
    async fn list(&self, tenant: TenantId) -> Result<Vec<EventSource>, TenancyError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to list sources")?;
        let sql = format!(
            "SELECT {SOURCE_COLUMNS} FROM event_sources WHERE tenant_id = $1 ORDER BY slug COLLATE \"C\""
        );
        let rows = client
            .query(&sql, &[&tenant.get()])
            .await
            .classify("listing sources")?;
        Ok(rows.iter().map(source).collect::<Result<_, _>>()?)
    }

    async fn create(
        &self,
        tenant: TenantId,
        slug: &SourceSlug,
        provider_name: &DisplayName,
        description: &Description,
    ) -> Result<EventSource, TenancyError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to create a source")?;
        let sql = format!(
            "INSERT INTO event_sources (tenant_id, slug, provider_name, description) VALUES ($1, $2, $3, $4)
             RETURNING {SOURCE_COLUMNS}"
        );
        let row = client
            .query_one(
                &sql,
                &[
                    &tenant.get(),
                    &slug.as_str(),
                    &provider_name.as_str(),
                    &description.as_str(),
                ],
            )
            .await
            .classify("creating a source")
            .map_err(|failure| match failure {
                Failure::UniqueViolation(_) => {
                    TenancyError::AlreadyExists(format!("source {slug}"))
                }
                other => other.into(),
            })?;
        Ok(source(&row)?)
    }
}

#[async_trait]
impl ApiKeyStore for PostgresTenancy {
    async fn create(&self, key: &NewApiKey) -> Result<ApiKey, TenancyError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to store a key")?;
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        let sql = format!(
            "INSERT INTO api_keys (tenant_id, prefix, key_hash, scopes, name, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING {KEY_COLUMNS}"
        );
        let row = client
            .query_one(
                &sql,
                &[
                    &key.tenant.get(),
                    &key.prefix.as_str(),
                    &key.key_hash.as_str(),
                    &scopes,
                    &key.name.as_str(),
                    &key.created_at,
                ],
            )
            .await
            .classify("storing a key")
            .map_err(|failure| match failure {
                Failure::UniqueViolation(_) => TenancyError::AlreadyExists("api key".to_owned()),
                other => other.into(),
            })?;
        Ok(api_key(&row)?)
    }

    async fn find_by_hash(&self, key_hash: &KeyHash) -> Result<Option<ApiKey>, TenancyError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to check a key")?;
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
        let row = client
            .query_opt(&sql, &[&key_hash.as_str()])
            .await
            .classify("checking a key")?;
        Ok(row.as_ref().map(api_key).transpose()?)
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<ApiKey>, TenancyError> {
        let client = self.pool.get().await.classify("connecting to list keys")?;
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY id");
        let rows = client
            .query(&sql, &[&tenant.get()])
            .await
            .classify("listing keys")?;
        Ok(rows.iter().map(api_key).collect::<Result<_, _>>()?)
    }

    async fn revoke(
        &self,
        tenant: TenantId,
        prefix: &KeyPrefix,
        at: OffsetDateTime,
    ) -> Result<Option<ApiKey>, TenancyError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to revoke a key")?;
        let sql = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE tenant_id = $1 AND prefix = $2
             RETURNING {KEY_COLUMNS}"
        );
        let row = client
            .query_opt(&sql, &[&tenant.get(), &prefix.as_str(), &at])
            .await
            .classify("revoking a key")?;
        Ok(row.as_ref().map(api_key).transpose()?)
    }
}

//! Tenants' rollup definitions in `rollup_definitions`, stored as the domain writes them out
//! and parsed back by the same rules.

use application::ports::{DefinitionError, RollupDefinitions, StoreError, StoredRollup};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::{ReportSlug, RollupDefinition, TenantId};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::{
    error::{Failure, PgResultExt, corrupt},
    freshness::{DROP_WATERMARKS_OF, LOCK_DEFINITIONS, mark_definition},
};

/// Rollup definitions in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresRollupDefinitions {
    pool: Pool,
}

impl PostgresRollupDefinitions {
    /// The store over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

const COLUMNS: &str = "tenant_id, definition, created_at, updated_at";

fn stored(row: &Row) -> Result<StoredRollup, Failure> {
    let get = |e: tokio_postgres::Error| corrupt("rollup definition", e);
    let tenant: i64 = row.try_get("tenant_id").map_err(get)?;
    let value: serde_json::Value = row.try_get("definition").map_err(get)?;
    let definition = RollupDefinition::parse(&value).map_err(|errors| {
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        corrupt("rollup definition", first)
    })?;
    Ok(StoredRollup {
        tenant: TenantId::new(tenant),
        definition,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

#[async_trait]
impl RollupDefinitions for PostgresRollupDefinitions {
    async fn create(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        limit: u32,
        at: OffsetDateTime,
    ) -> Result<StoredRollup, DefinitionError> {
        let mut client = self
            .pool
            .get()
            .await
            .classify("connecting to store a rollup definition")
            .map_err(StoreError::from)?;
        let tx = client
            .transaction()
            .await
            .classify("starting to store a rollup definition")
            .map_err(StoreError::from)?;
        // Creates of one tenant take turns, so the count below holds until the insert commits.
        // NO KEY UPDATE leaves the tenant's rows free to be referenced meanwhile.
        tx.execute(
            "SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE",
            &[&tenant.get()],
        )
        .await
        .classify("locking the tenant's definitions")
        .map_err(StoreError::from)?;
        // Ingestion waits, so every event is either marked by this change or sees it.
        tx.execute(LOCK_DEFINITIONS, &[&tenant.get()])
            .await
            .classify("locking the tenant's definitions")
            .map_err(StoreError::from)?;
        let slug = definition.slug.as_str();
        let held = tx
            .query_one(
                "SELECT count(*), coalesce(bool_or(slug = $2), false)
                 FROM rollup_definitions WHERE tenant_id = $1",
                &[&tenant.get(), &slug],
            )
            .await
            .classify("counting the tenant's definitions")
            .map_err(StoreError::from)?;
        let count: i64 = held
            .try_get(0)
            .map_err(|e| StoreError::from(corrupt("count", e)))?;
        let taken: bool = held
            .try_get(1)
            .map_err(|e| StoreError::from(corrupt("slug taken", e)))?;
        if taken {
            return Err(DefinitionError::SlugTaken(slug.to_owned()));
        }
        if count >= i64::from(limit) {
            return Err(DefinitionError::LimitReached(limit));
        }
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO rollup_definitions (tenant_id, slug, definition, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $4)
                     RETURNING {COLUMNS}"
                ),
                &[&tenant.get(), &slug, &definition.to_json(), &at],
            )
            .await
            .classify("storing a rollup definition")
            .map_err(StoreError::from)?;
        let created = stored(&row).map_err(StoreError::from)?;
        mark_definition(&*tx, tenant, definition, at)
            .await
            .map_err(StoreError::from)?;
        tx.commit()
            .await
            .classify("committing a rollup definition")
            .map_err(StoreError::from)?;
        Ok(created)
    }

    async fn replace(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        at: OffsetDateTime,
    ) -> Result<StoredRollup, DefinitionError> {
        let mut client = self
            .pool
            .get()
            .await
            .classify("connecting to replace a rollup definition")
            .map_err(StoreError::from)?;
        let tx = client
            .transaction()
            .await
            .classify("starting to replace a rollup definition")
            .map_err(StoreError::from)?;
        tx.execute(LOCK_DEFINITIONS, &[&tenant.get()])
            .await
            .classify("locking the tenant's definitions")
            .map_err(StoreError::from)?;
        let slug = definition.slug.as_str();
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE rollup_definitions
                     SET definition = $3, updated_at = greatest($4, created_at)
                     WHERE tenant_id = $1 AND slug = $2
                     RETURNING {COLUMNS}"
                ),
                &[&tenant.get(), &slug, &definition.to_json(), &at],
            )
            .await
            .classify("replacing a rollup definition")
            .map_err(StoreError::from)?;
        let Some(row) = row else {
            return Err(DefinitionError::NotFound(slug.to_owned()));
        };
        let replaced = stored(&row).map_err(StoreError::from)?;
        mark_definition(&*tx, tenant, definition, at)
            .await
            .map_err(StoreError::from)?;
        tx.commit()
            .await
            .classify("committing a rollup definition")
            .map_err(StoreError::from)?;
        Ok(replaced)
    }

    async fn delete(&self, tenant: TenantId, slug: &ReportSlug) -> Result<bool, StoreError> {
        let mut client = self
            .pool
            .get()
            .await
            .classify("connecting to delete a rollup definition")?;
        let tx = client
            .transaction()
            .await
            .classify("starting to delete a rollup definition")?;
        // No ingestion marks the definition's buckets after its marks are gone.
        tx.execute(LOCK_DEFINITIONS, &[&tenant.get()])
            .await
            .classify("locking the tenant's definitions")?;
        let deleted = tx
            .execute(
                "DELETE FROM rollup_definitions WHERE tenant_id = $1 AND slug = $2",
                &[&tenant.get(), &slug.as_str()],
            )
            .await
            .classify("deleting a rollup definition")?;
        tx.execute(
            "DELETE FROM dirty_buckets WHERE tenant_id = $1 AND report_slug = $2",
            &[&tenant.get(), &slug.as_str()],
        )
        .await
        .classify("deleting a rollup definition's marks")?;
        tx.execute(DROP_WATERMARKS_OF, &[&tenant.get(), &slug.as_str()])
            .await
            .classify("deleting a rollup definition's watermarks")?;
        tx.commit()
            .await
            .classify("committing a rollup definition's deletion")?;
        Ok(deleted > 0)
    }

    async fn get(
        &self,
        tenant: TenantId,
        slug: &ReportSlug,
    ) -> Result<Option<StoredRollup>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to read a rollup definition")?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM rollup_definitions WHERE tenant_id = $1 AND slug = $2"
                ),
                &[&tenant.get(), &slug.as_str()],
            )
            .await
            .classify("reading a rollup definition")?;
        Ok(row.as_ref().map(stored).transpose()?)
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<StoredRollup>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to list rollup definitions")?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM rollup_definitions WHERE tenant_id = $1 ORDER BY slug"
                ),
                &[&tenant.get()],
            )
            .await
            .classify("listing rollup definitions")?;
        Ok(rows.iter().map(stored).collect::<Result<_, _>>()?)
    }
}

//! The audit trail in `audit_entries`.

use application::ports::{AuditLog, StoreError};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::{
    Actor, AuditAction, AuditEntry, AuditFilter, NewAuditEntry, Page, PageRequest, TenantId,
};
use tokio_postgres::Row;

use crate::error::{Failure, PgResultExt, corrupt};

/// The audit log in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresAuditLog {
    pool: Pool,
}

impl PostgresAuditLog {
    /// The log over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

const COLUMNS: &str =
    "id, tenant_id, actor, action, resource_type, resource_id, metadata, created_at";

const INSERT: &str = "
    INSERT INTO audit_entries (tenant_id, actor, action, resource_type, resource_id, metadata)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING id, tenant_id, actor, action, resource_type, resource_id, metadata, created_at";

const MATCHING: &str = "WHERE tenant_id = $1 AND ($2::text IS NULL OR action = $2) AND ($3::text IS NULL OR actor = $3)";

fn entry(row: &Row) -> Result<AuditEntry, Failure> {
    let get = |e: tokio_postgres::Error| corrupt("audit entry", e);
    let actor: String = row.try_get("actor").map_err(get)?;
    let action: String = row.try_get("action").map_err(get)?;
    Ok(AuditEntry {
        id: row.try_get("id").map_err(get)?,
        tenant: TenantId::new(row.try_get("tenant_id").map_err(get)?),
        actor: Actor::parse(&actor).map_err(|e| corrupt("actor", e))?,
        action: action
            .parse::<AuditAction>()
            .map_err(|e| corrupt("action", e))?,
        resource_type: row.try_get("resource_type").map_err(get)?,
        resource_id: row.try_get("resource_id").map_err(get)?,
        metadata: row.try_get("metadata").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

#[async_trait]
impl AuditLog for PostgresAuditLog {
    #[tracing::instrument(skip_all, fields(action = %new.action), err)]
    async fn record(&self, new: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let client = self.pool.get().await.classify("connecting to audit")?;
        let row = client
            .query_one(
                INSERT,
                &[
                    &new.tenant.get(),
                    &new.actor.as_str(),
                    &new.action.as_str(),
                    &new.resource_type,
                    &new.resource_id,
                    &new.metadata,
                ],
            )
            .await
            .classify("writing an audit entry")?;
        Ok(entry(&row)?)
    }

    #[tracing::instrument(skip_all, err)]
    async fn list(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to list audit entries")?;
        let action = filter.action.map(AuditAction::as_str);
        let actor = filter.actor.as_ref().map(Actor::as_str);
        let limit = i64::from(page.limit());
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_entries {MATCHING} ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
        );
        let rows = client
            .query(&sql, &[&tenant.get(), &action, &actor, &limit, &offset])
            .await
            .classify("listing audit entries")?;
        let total: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM audit_entries {MATCHING}"),
                &[&tenant.get(), &action, &actor],
            )
            .await
            .classify("counting audit entries")?
            .get(0);
        let items = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::new(items, u64::try_from(total).unwrap_or(0), page))
    }
}

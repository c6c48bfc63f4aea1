//! Recompute runs in `recompute_runs`.

use std::time::Duration;

use application::ports::{RunStore, RunStoreError};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::{
    Actor, DateRange, LockToken, Page, PageRequest, RecomputeRun, ReportSlug, RunFilter, RunId,
    RunMode, RunStatus, RunSummary, TenantId, TransitionError, Window,
};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::error::{Failure, PgResultExt, corrupt};

/// Runs in PostgreSQL. A running run carries a lease; see [`crate::PostgresRunQueue`].
#[derive(Debug, Clone)]
pub struct PostgresRunStore {
    pool: Pool,
    lease: Duration,
}

impl PostgresRunStore {
    /// The store over `pool`; runs it starts hold a lease of `lease`.
    pub fn new(pool: Pool, lease: Duration) -> Self {
        Self { pool, lease }
    }
}

pub(crate) const RUN_COLUMNS: &str = "id, tenant_id, report_slug, window_name, date_from, date_to, requested_by, \
     status, requested_at, started_at, finished_at, error_message, summary, lock_token, mode";

const INSERT: &str = "
    INSERT INTO recompute_runs (id, tenant_id, report_slug, window_name, date_from, date_to, scope_from, scope_to,
                                requested_by, status, requested_at, lock_token, mode)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12)";

/// Reads a run as stored.
pub(crate) fn run_from_row(row: &Row) -> Result<RecomputeRun, Failure> {
    let get = |e: tokio_postgres::Error| corrupt("recompute run", e);
    let slug: String = row.try_get("report_slug").map_err(get)?;
    let window: String = row.try_get("window_name").map_err(get)?;
    let status: String = row.try_get("status").map_err(get)?;
    let actor: String = row.try_get("requested_by").map_err(get)?;
    let summary: Option<serde_json::Value> = row.try_get("summary").map_err(get)?;
    let token: Option<String> = row.try_get("lock_token").map_err(get)?;
    let mode: String = row.try_get("mode").map_err(get)?;
    Ok(RecomputeRun {
        id: RunId::from_uuid(row.try_get("id").map_err(get)?),
        tenant: TenantId::new(row.try_get("tenant_id").map_err(get)?),
        report_slug: ReportSlug::parse(&slug).map_err(|e| corrupt("report slug", e))?,
        window: window.parse::<Window>().map_err(|e| corrupt("window", e))?,
        range: DateRange::new(
            row.try_get("date_from").map_err(get)?,
            row.try_get("date_to").map_err(get)?,
        )
        .map_err(|e| corrupt("run range", e))?,
        mode: mode
            .parse::<RunMode>()
            .map_err(|e| corrupt("run mode", e))?,
        requested_by: Actor::parse(&actor).map_err(|e| corrupt("requested_by", e))?,
        status: status
            .parse::<RunStatus>()
            .map_err(|e| corrupt("run status", e))?,
        requested_at: row.try_get("requested_at").map_err(get)?,
        started_at: row.try_get("started_at").map_err(get)?,
        finished_at: row.try_get("finished_at").map_err(get)?,
        error_message: row.try_get("error_message").map_err(get)?,
        summary: summary
            .map(serde_json::from_value::<RunSummary>)
            .transpose()
            .map_err(|e| corrupt("run summary", e))?,
        lock_token: token.map(LockToken::from_stored),
    })
}

/// Reads run `id` of `tenant` with a row lock, for a transition.
async fn locked(
    client: &deadpool_postgres::Transaction<'_>,
    tenant: TenantId,
    id: RunId,
) -> Result<RecomputeRun, RunStoreError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM recompute_runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE"
    );
    let row = client
        .query_opt(&sql, &[&id.as_uuid(), &tenant.get()])
        .await
        .classify("reading a run to change it")?
        .ok_or(RunStoreError::NotFound(id))?;
    Ok(run_from_row(&row)?)
}

const RENEW_LEASE: &str = "
    UPDATE recompute_runs SET lease_expires_at = now() + make_interval(secs => $3)
    WHERE id = $1 AND tenant_id = $2 AND status = 'running'";

const SAVE: &str = "
    UPDATE recompute_runs
    SET status = $2, started_at = $3, finished_at = $4, error_message = $5, summary = $6,
        lease_expires_at = CASE WHEN $2 = 'running' THEN now() + make_interval(secs => $7) END,
        attempts = attempts + CASE WHEN $2 = 'running' THEN 1 ELSE 0 END
    WHERE id = $1";

impl PostgresRunStore {
    /// Applies `change` to the run in one transaction, checking the lifecycle under a row lock.
    async fn transition(
        &self,
        tenant: TenantId,
        id: RunId,
        change: impl FnOnce(&mut RecomputeRun) -> Result<(), TransitionError> + Send,
    ) -> Result<RecomputeRun, RunStoreError> {
        let mut client = self
            .pool
            .get()
            .await
            .classify("connecting to change a run")?;
        let tx = client
            .transaction()
            .await
            .classify("starting a run change")?;
        let mut run = locked(&tx, tenant, id).await?;
        change(&mut run)?;
        let summary = run
            .summary
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| RunStoreError::Unexpected(e.into()))?;
        tx.execute(
            SAVE,
            &[
                &id.as_uuid(),
                &run.status.as_str(),
                &run.started_at,
                &run.finished_at,
                &run.error_message,
                &summary,
                &self.lease.as_secs_f64(),
            ],
        )
        .await
        .classify("saving a run change")?;
        tx.commit().await.classify("committing a run change")?;
        Ok(run)
    }
}

#[async_trait]
impl RunStore for PostgresRunStore {
    #[tracing::instrument(skip_all, fields(run_id = %run.id), err)]
    async fn create(&self, run: &RecomputeRun) -> Result<(), RunStoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to store a run")?;
        let scope = run.scope();
        client
            .execute(
                INSERT,
                &[
                    &run.id.as_uuid(),
                    &run.tenant.get(),
                    &run.report_slug.as_str(),
                    &run.window.as_str(),
                    &run.range.from(),
                    &run.range.to(),
                    &scope.range.from(),
                    &scope.range.to(),
                    &run.requested_by.as_str(),
                    &run.requested_at,
                    &run.lock_token.as_ref().map(LockToken::as_str),
                    &run.mode.as_str(),
                ],
            )
            .await
            .classify("storing a run")?;
        Ok(())
    }

    async fn get(
        &self,
        tenant: TenantId,
        id: RunId,
    ) -> Result<Option<RecomputeRun>, RunStoreError> {
        let client = self.pool.get().await.classify("connecting to read a run")?;
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM recompute_runs WHERE id = $1 AND tenant_id = $2");
        let row = client
            .query_opt(&sql, &[&id.as_uuid(), &tenant.get()])
            .await
            .classify("reading a run")?;
        Ok(row.as_ref().map(run_from_row).transpose()?)
    }

    #[tracing::instrument(skip_all, err)]
    async fn list(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        page: PageRequest,
    ) -> Result<Page<RecomputeRun>, RunStoreError> {
        let client = self.pool.get().await.classify("connecting to list runs")?;
        let matching = "WHERE tenant_id = $1 AND ($2::text IS NULL OR report_slug = $2) AND ($3::text IS NULL OR status = $3)";
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM recompute_runs {matching} ORDER BY requested_at DESC, id DESC LIMIT $4 OFFSET $5"
        );
        let slug = filter.report_slug.as_ref().map(ReportSlug::as_str);
        let status = filter.status.map(RunStatus::as_str);
        let limit = i64::from(page.limit());
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        let rows = client
            .query(&sql, &[&tenant.get(), &slug, &status, &limit, &offset])
            .await
            .classify("listing runs")?;
        let total: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM recompute_runs {matching}"),
                &[&tenant.get(), &slug, &status],
            )
            .await
            .classify("counting runs")?
            .get(0);
        let items = rows
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::new(items, u64::try_from(total).unwrap_or(0), page))
    }

    async fn start(
        &self,
        tenant: TenantId,
        id: RunId,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        self.transition(tenant, id, |run| run.start(at)).await
    }

    async fn renew_lease(&self, tenant: TenantId, id: RunId) -> Result<bool, RunStoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to renew a run lease")?;
        let renewed = client
            .execute(
                RENEW_LEASE,
                &[&id.as_uuid(), &tenant.get(), &self.lease.as_secs_f64()],
            )
            .await
            .classify("renewing a run lease")?;
        Ok(renewed > 0)
    }

    async fn complete(
        &self,
        tenant: TenantId,
        id: RunId,
        summary: RunSummary,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        self.transition(tenant, id, |run| run.complete(summary, at))
            .await
    }

    async fn fail(
        &self,
        tenant: TenantId,
        id: RunId,
        error: &str,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        let error = error.to_owned();
        self.transition(tenant, id, move |run| run.fail(error, at))
            .await
    }

    async fn abandon(
        &self,
        tenant: TenantId,
        id: RunId,
        error: &str,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        let error = error.to_owned();
        self.transition(tenant, id, move |run| run.abandon(error, at))
            .await
    }
}

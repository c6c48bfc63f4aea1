//! The durable run queue: pending rows of `recompute_runs`, claimed with `FOR UPDATE SKIP LOCKED`.
//!
//! Nothing is held in memory: a pending run survives any restart, and every process sharing the
//! database shares the work. A claimed run holds a lease that its worker renews while it
//! executes the run ([`RunStore::renew_lease`](application::ports::RunStore::renew_lease)); a
//! run whose lease expired lost its worker and is handed back to the queue, or failed (and
//! audited by the worker) after `max_attempts` claims ([`RunQueue::recover`]).

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use application::ports::{Backlog, Clock, EnqueueError, Recovered, RunQueue, StoreError};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::RecomputeRun;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::{debug, info};

use crate::{
    error::{Failure, PgResultExt, corrupt},
    runs::{RUN_COLUMNS, run_from_row},
};

/// How the queue behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// The most pending runs (over all tenants) before a trigger is refused.
    pub capacity: usize,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How often an idle worker looks for work queued by other processes.
    pub poll_interval: Duration,
    /// Claims after which a run that keeps losing its worker is failed.
    pub max_attempts: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            capacity: 64,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            max_attempts: 3,
        }
    }
}

/// The queue in PostgreSQL.
pub struct PostgresRunQueue {
    pool: Pool,
    clock: Arc<dyn Clock>,
    settings: QueueSettings,
    closed: AtomicBool,
    wake: Notify,
}

const COUNT_PENDING: &str = "SELECT count(*) FROM recompute_runs WHERE status = 'pending'";

/// The pending runs summed up; the partial index of pending runs answers it.
const BACKLOG: &str =
    "SELECT count(*), min(requested_at) FROM recompute_runs WHERE status = 'pending'";

/// Hands runs whose lease expired back to the queue, or fails them after too many attempts,
/// in one statement, and returns each run as it now is with what became of it.
fn recover_expired_sql() -> String {
    format!(
        "
    WITH expired AS (
        SELECT id FROM recompute_runs
        WHERE status = 'running' AND lease_expires_at < now()
        FOR UPDATE SKIP LOCKED
    ), retried AS (
        UPDATE recompute_runs r
        SET status = 'pending', started_at = NULL, lease_expires_at = NULL
        FROM expired WHERE r.id = expired.id AND r.attempts < $1
        RETURNING r.*
    ), failed AS (
        UPDATE recompute_runs r
        SET status = 'failed', finished_at = now(), lease_expires_at = NULL,
            error_message = 'the worker running it stopped responding (' || r.attempts || ' attempts)'
        FROM expired WHERE r.id = expired.id AND r.attempts >= $1
        RETURNING r.*
    )
    SELECT false AS failed, {RUN_COLUMNS} FROM retried
    UNION ALL
    SELECT true, {RUN_COLUMNS} FROM failed"
    )
}

impl std::fmt::Debug for PostgresRunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRunQueue")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PostgresRunQueue {
    /// A queue over `pool`, stamping claims with `clock`.
    pub fn new(pool: Pool, settings: QueueSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            pool,
            clock,
            settings,
            closed: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    async fn try_claim(
        &self,
        started_at: OffsetDateTime,
    ) -> Result<Option<RecomputeRun>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to claim a run")?;
        let sql = format!(
            "UPDATE recompute_runs
             SET status = 'running', started_at = $1, attempts = attempts + 1,
                 lease_expires_at = now() + make_interval(secs => $2)
             WHERE id = (SELECT id FROM recompute_runs WHERE status = 'pending'
                         ORDER BY requested_at, id FOR UPDATE SKIP LOCKED LIMIT 1)
             RETURNING {RUN_COLUMNS}"
        );
        let row = client
            .query_opt(&sql, &[&started_at, &self.settings.lease.as_secs_f64()])
            .await
            .classify("claiming a run")?;
        row.as_ref()
            .map(run_from_row)
            .transpose()
            .map_err(StoreError::from)
    }
}

#[async_trait]
impl RunQueue for PostgresRunQueue {
    async fn enqueue(&self, run: &RecomputeRun) -> Result<(), EnqueueError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(EnqueueError::Closed);
        }
        // The run row is already pending: the table is the queue. Refuse when it overflows.
        let client = self.pool.get().await.classify("connecting to the queue")?;
        let pending: i64 = client
            .query_one(COUNT_PENDING, &[])
            .await
            .classify("counting pending runs")?
            .get(0);
        if usize::try_from(pending).unwrap_or(usize::MAX) > self.settings.capacity {
            return Err(EnqueueError::Full);
        }
        debug!(run_id = %run.id, pending, "run queued");
        self.wake.notify_one();
        Ok(())
    }

    async fn claim_next(&self) -> Result<Option<RecomputeRun>, StoreError> {
        loop {
            let mut woken = pin!(self.wake.notified());
            woken.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if let Some(run) = self.try_claim(self.clock.now()).await? {
                info!(run_id = %run.id, report = %run.report_slug, "claimed a recompute run");
                return Ok(Some(run));
            }
            // Runs queued by this process wake us at once; other processes' runs are found by
            // polling.
            let _ = tokio::time::timeout(self.settings.poll_interval, woken).await;
        }
    }

    async fn claim_companions(&self, run: &RecomputeRun) -> Result<Vec<RecomputeRun>, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await.classify("connecting to claim runs")?;
        let sql = format!(
            "WITH candidates AS (
                 SELECT id AS candidate, window_name AS candidate_window, requested_at AS candidate_at
                 FROM recompute_runs
                 WHERE status = 'pending' AND tenant_id = $3 AND report_slug = $4 AND window_name <> $5
                   AND scope_from <= $7::date + 1 AND scope_to >= $6::date - 1
                 FOR UPDATE SKIP LOCKED
             ), chosen AS (
                 SELECT DISTINCT ON (candidate_window) candidate
                 FROM candidates
                 ORDER BY candidate_window, candidate_at, candidate
             )
             UPDATE recompute_runs
             SET status = 'running', started_at = $1, attempts = attempts + 1,
                 lease_expires_at = now() + make_interval(secs => $2)
             FROM chosen
             WHERE id = chosen.candidate
             RETURNING {RUN_COLUMNS}"
        );
        let scope = run.scope().range;
        let rows = client
            .query(
                &sql,
                &[
                    &self.clock.now(),
                    &self.settings.lease.as_secs_f64(),
                    &run.tenant.get(),
                    &run.report_slug.as_str(),
                    &run.window.as_str(),
                    &scope.from(),
                    &scope.to(),
                ],
            )
            .await
            .classify("claiming runs of the same report")?;
        let claimed = rows
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::from)?;
        for companion in &claimed {
            info!(run_id = %companion.id, with = %run.id, report = %companion.report_slug, window = %companion.window, "claimed a recompute run with another of its report");
        }
        Ok(claimed)
    }

    async fn recover(&self) -> Result<Recovered, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to recover runs")?;
        let attempts = i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX);
        let rows = client
            .query(&recover_expired_sql(), &[&attempts])
            .await
            .classify("recovering runs")?;
        let mut recovered = Recovered::default();
        for row in &rows {
            let run = run_from_row(row)?;
            if row
                .try_get::<_, bool>("failed")
                .map_err(|e| corrupt("recovered run", e))?
            {
                recovered.failed.push(run);
            } else {
                recovered.retried.push(run);
            }
        }
        Ok(recovered)
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let client = self.pool.get().await.classify("connecting to the queue")?;
        let row = client
            .query_one(BACKLOG, &[])
            .await
            .classify("summing up pending runs")?;
        Ok(Backlog {
            pending: u64::try_from(row.get::<_, i64>(0)).unwrap_or_default(),
            oldest_requested_at: row.get(1),
        })
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }
}

impl From<Failure> for EnqueueError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(e) => EnqueueError::Unavailable(e),
            Failure::UniqueViolation(e) | Failure::Unexpected(e) => EnqueueError::Unexpected(e),
        }
    }
}

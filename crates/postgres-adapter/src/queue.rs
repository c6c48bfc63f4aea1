//! The durable run queue: pending rows of `recompute_runs`, claimed with `FOR UPDATE SKIP LOCKED`.
//!
//! Nothing is held in memory: a pending run survives any restart, and every process sharing the
//! database shares the work. A claimed run holds a lease that a background heartbeat renews
//! while its worker lives; a run whose lease expired lost its worker and is handed back to the
//! queue, or failed (and audited) after `max_attempts` claims.

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use application::ports::{Clock, EnqueueError, RunQueue, StoreError};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::{RecomputeRun, RunId};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::{
    error::{Failure, PgResultExt},
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

/// Hands runs whose lease expired back to the queue, or fails and audits them after too many
/// attempts, in one statement.
const RECOVER_EXPIRED: &str = "
    WITH expired AS (
        SELECT id FROM recompute_runs
        WHERE status = 'running' AND lease_expires_at < now()
        FOR UPDATE SKIP LOCKED
    ), retried AS (
        UPDATE recompute_runs r
        SET status = 'pending', started_at = NULL, lease_expires_at = NULL
        FROM expired WHERE r.id = expired.id AND r.attempts < $1
        RETURNING r.id
    ), failed AS (
        UPDATE recompute_runs r
        SET status = 'failed', finished_at = now(), lease_expires_at = NULL,
            error_message = 'the worker running it stopped responding (' || r.attempts || ' attempts)'
        FROM expired WHERE r.id = expired.id AND r.attempts >= $1
        RETURNING r.id, r.tenant_id, r.report_slug, r.window_name, r.error_message
    ), audited AS (
        INSERT INTO audit_entries (tenant_id, actor, action, resource_type, resource_id, metadata)
        SELECT tenant_id, 'recompute-worker', 'recompute.failed', 'recompute_run', id::text,
               jsonb_build_object('report_slug', report_slug, 'window', window_name, 'error', error_message)
        FROM failed
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM retried) AS retried, (SELECT count(*) FROM audited) AS failed";

const HEARTBEAT: &str = "
    UPDATE recompute_runs SET lease_expires_at = now() + make_interval(secs => $2)
    WHERE id = $1 AND status = 'running'";

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

    /// Recovers runs whose worker died; returns (retried, failed).
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn recover_expired(&self) -> Result<(u64, u64), StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to recover runs")?;
        let attempts = i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX);
        let row = client
            .query_one(RECOVER_EXPIRED, &[&attempts])
            .await
            .classify("recovering runs")?;
        let (retried, failed): (i64, i64) = (row.get("retried"), row.get("failed"));
        if retried > 0 || failed > 0 {
            warn!(
                retried,
                failed, "recovered recompute runs whose worker stopped responding"
            );
        }
        Ok((
            u64::try_from(retried).unwrap_or(0),
            u64::try_from(failed).unwrap_or(0),
        ))
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

/// Renews the lease of `id` until it stops running; the renewals end with the process, which
/// is how a dead worker's run becomes recoverable. Every claim starts one, whether through the
/// queue or through `RunStore::start` (seed and the `recompute` command).
pub(crate) fn keep_alive(pool: Pool, id: RunId, lease: Duration) {
    tokio::spawn(async move {
        let every = lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let renewed = match pool.get().await {
                Ok(client) => {
                    client
                        .execute(HEARTBEAT, &[&id.as_uuid(), &lease.as_secs_f64()])
                        .await
                }
                Err(err) => {
                    warn!(run_id = %id, error = %err, "could not renew a run lease; retrying");
                    continue;
                }
            };
            match renewed {
                Ok(0) => return,
                Ok(_) => debug!(run_id = %id, "run lease renewed"),
                Err(err) => {
                    warn!(run_id = %id, error = %err, "could not renew a run lease; retrying")
                }
            }
        }
    });
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
            self.recover_expired().await?;
            if let Some(run) = self.try_claim(self.clock.now()).await? {
                info!(run_id = %run.id, report = %run.report_slug, "claimed a recompute run");
                keep_alive(self.pool.clone(), run.id, self.settings.lease);
                return Ok(Some(run));
            }
            // Runs queued by this process wake us at once; other processes' runs are found by
            // polling.
            let _ = tokio::time::timeout(self.settings.poll_interval, woken).await;
        }
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

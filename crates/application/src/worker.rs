//! The recompute worker: claims queued runs and carries each through its lifecycle.

use std::{future::Future, pin::pin, sync::Arc, task::Poll, time::Duration};

use domain::{
    Actor, AuditAction, NewAuditEntry, RecomputeRun, ReportKind, RunSummary,
    audit::RESOURCE_RECOMPUTE_RUN, dates::format_date,
};
use serde_json::json;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::ports::{
    AuditLog, CacheVersions, Clock, RebuildRequest, RunQueue, RunStore, ScopeLock, SnapshotStore,
};

/// How long the worker waits before asking an unavailable queue again.
const CLAIM_BACKOFF: Duration = Duration::from_secs(1);

/// The scope lock's lifetime unless configured: `RECOMPUTE_LOCK_TTL_SECS`' default.
const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(900);

/// The ports a [`RecomputeWorker`] works with.
#[derive(Clone)]
pub struct WorkerPorts {
    pub runs: Arc<dyn RunStore>,
    pub queue: Arc<dyn RunQueue>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub versions: Arc<dyn CacheVersions>,
    pub audit: Arc<dyn AuditLog>,
    pub locks: Arc<dyn ScopeLock>,
    pub clock: Arc<dyn Clock>,
}

/// Rebuilds snapshots for claimed runs: running → completed (summary, cache version bump,
/// `recompute.completed`) or failed (error, `recompute.failed`), releasing the scope lock
/// either way.
#[derive(Clone)]
pub struct RecomputeWorker {
    ports: WorkerPorts,
    lock_ttl: Duration,
}

impl std::fmt::Debug for RecomputeWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecomputeWorker").finish_non_exhaustive()
    }
}

impl RecomputeWorker {
    /// A worker over `ports`, keeping scope locks for 900 s at a time.
    pub fn new(ports: WorkerPorts) -> Self {
        Self {
            ports,
            lock_ttl: DEFAULT_LOCK_TTL,
        }
    }

    /// The lifetime of the scope locks this worker holds; while a rebuild runs the worker
    /// extends its lock every third of it, so a rebuild may outlast the lifetime.
    #[must_use]
    pub fn with_lock_ttl(mut self, lock_ttl: Duration) -> Self {
        self.lock_ttl = lock_ttl;
        self
    }

    /// Extends the lock of `scope` every third of its lifetime, forever: run it alongside the
    /// work the lock protects.
    async fn keep_lock(&self, scope: &domain::RecomputeScope, token: Option<&domain::LockToken>) {
        let Some(token) = token else {
            return std::future::pending().await;
        };
        loop {
            self.ports.clock.pause(self.lock_ttl / 3).await;
            match self.ports.locks.extend(scope, token, self.lock_ttl).await {
                Ok(true) => debug!("scope lock extended"),
                // The database still allows one active run per scope; the lock only speeds up
                // refusals, so losing it is worth a warning, not a failed run.
                Ok(false) => warn!("the scope lock expired or was taken during the rebuild"),
                Err(err) => warn!(error = %err, "could not extend the scope lock"),
            }
        }
    }

    /// Claims and executes runs until the queue is closed. A run in progress when the queue
    /// closes is finished first.
    pub async fn run(&self) {
        loop {
            match self.ports.queue.claim_next().await {
                Ok(Some(run)) => {
                    self.execute(run).await;
                }
                Ok(None) => {
                    info!("recompute queue closed; worker stopping");
                    return;
                }
                Err(err) => {
                    warn!(error = %err, "could not claim a recompute run; retrying");
                    self.ports.clock.pause(CLAIM_BACKOFF).await;
                }
            }
        }
    }

    /// Executes a run already claimed (running): rebuilds the snapshots of its scope and
    /// finishes it. Returns the run as finally stored (or as known, if the store failed).
    pub async fn execute(&self, run: RecomputeRun) -> RecomputeRun {
        let span = info_span!("recompute", run_id = %run.id, report = %run.report_slug, window = %run.window);
        self.execute_inner(run).instrument(span).await
    }

    async fn execute_inner(&self, run: RecomputeRun) -> RecomputeRun {
        let p = &self.ports;
        let scope = run.scope();
        let outcome = match ReportKind::from_slug(&run.report_slug) {
            None => Err(format!(
                "report {} has no snapshot builder",
                run.report_slug
            )),
            Some(kind) => {
                let request = RebuildRequest {
                    tenant: run.tenant,
                    kind,
                    window: run.window,
                    range: scope.range,
                    run_id: run.id,
                    computed_at: p.clock.now(),
                };
                alongside(
                    p.snapshots.rebuild(&request),
                    self.keep_lock(&scope, run.lock_token.as_ref()),
                )
                .await
                .map_err(|err| {
                    let message = format!("snapshot rebuild failed: {err}");
                    error!(error = ?anyhow::Error::from(err), "snapshot rebuild failed");
                    message
                })
            }
        };

        let finished = match outcome {
            Ok(rebuilt) => {
                // The new rows are committed: retire the cached results before the run is
                // seen as completed, so whoever waits for completion reads the new rows.
                if let Err(err) = p.versions.bump(run.tenant, &run.report_slug).await {
                    // Entries of the old version then live until their TTL ends.
                    warn!(error = %err, "could not bump the cache version");
                }
                let summary = RunSummary {
                    rows_deleted: rebuilt.rows_deleted,
                    rows_inserted: rebuilt.rows_inserted,
                    bucket_count: run.window.bucket_count(scope.range),
                    effective_date_from: scope.range.from(),
                    effective_date_to: scope.range.to(),
                };
                match p
                    .runs
                    .complete(run.tenant, run.id, summary, p.clock.now())
                    .await
                {
                    Ok(completed) => {
                        self.audit(
                            &completed,
                            AuditAction::RecomputeCompleted,
                            json!({
                                "report_slug": completed.report_slug.as_str(),
                                "window": completed.window.as_str(),
                                "rows_deleted": summary.rows_deleted,
                                "rows_inserted": summary.rows_inserted,
                                "bucket_count": summary.bucket_count,
                                "effective_date_from": format_date(summary.effective_date_from),
                                "effective_date_to": format_date(summary.effective_date_to),
                            }),
                        )
                        .await;
                        info!(
                            rows_inserted = summary.rows_inserted,
                            rows_deleted = summary.rows_deleted,
                            "recompute completed"
                        );
                        completed
                    }
                    Err(err) => {
                        error!(error = ?anyhow::Error::from(err), "could not mark the run completed");
                        self.fail(run.clone(), "the run could not be marked completed")
                            .await
                    }
                }
            }
            Err(message) => self.fail(run.clone(), &message).await,
        };

        if let Some(token) = &run.lock_token
            && let Err(err) = p.locks.release(&scope, token).await
        {
            warn!(error = %err, "could not release the scope lock; it will expire on its own");
        }
        finished
    }

    async fn fail(&self, run: RecomputeRun, message: &str) -> RecomputeRun {
        let p = &self.ports;
        let failed = match p
            .runs
            .fail(run.tenant, run.id, message, p.clock.now())
            .await
        {
            Ok(failed) => failed,
            Err(err) => {
                error!(error = ?anyhow::Error::from(err), "could not mark the run failed");
                run
            }
        };
        self.audit(
            &failed,
            AuditAction::RecomputeFailed,
            json!({
                "report_slug": failed.report_slug.as_str(),
                "window": failed.window.as_str(),
                "error": message,
            }),
        )
        .await;
        warn!(error = message, "recompute failed");
        failed
    }

    async fn audit(&self, run: &RecomputeRun, action: AuditAction, metadata: serde_json::Value) {
        let entry = NewAuditEntry {
            tenant: run.tenant,
            actor: Actor::builtin(Actor::RECOMPUTE_WORKER),
            action,
            resource_type: RESOURCE_RECOMPUTE_RUN.to_owned(),
            resource_id: run.id.to_string(),
            metadata,
        };
        if let Err(err) = self.ports.audit.record(entry).await {
            error!(error = ?anyhow::Error::from(err), action = %action, "could not write the audit entry");
        }
    }
}

/// Runs `main` to completion while polling `background` alongside it, then drops `background`.
async fn alongside<T>(main: impl Future<Output = T>, background: impl Future<Output = ()>) -> T {
    let mut main = pin!(main);
    let mut background = pin!(background);
    let mut background_done = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(value) = main.as_mut().poll(cx) {
            return Poll::Ready(value);
        }
        if !background_done {
            background_done = background.as_mut().poll(cx).is_ready();
        }
        Poll::Pending
    })
    .await
}

//! The recompute worker: claims queued runs and carries each through its lifecycle.

use std::{
    future::Future,
    pin::pin,
    sync::{Arc, Mutex},
    task::Poll,
    time::Duration,
};

use domain::{
    Actor, AuditAction, NewAuditEntry, RecomputeRun, ReportKind, RunSummary,
    audit::RESOURCE_RECOMPUTE_RUN, dates::format_date,
};
use serde_json::json;
use time::OffsetDateTime;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::ports::{
    AuditLog, CacheVersions, Clock, RebuildRequest, RollupDefinitions, RollupRebuild,
    RollupRebuildOutcome, RollupStore, RunQueue, RunStore, RunStoreError, ScopeLock, SnapshotStore,
};

/// How long the worker waits before asking an unavailable queue again.
const CLAIM_BACKOFF: Duration = Duration::from_secs(1);

/// The scope lock's lifetime unless configured: `RECOMPUTE_LOCK_TTL_SECS`' default.
const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(900);

/// The run lease unless configured: `RECOMPUTE_LEASE_SECS`' default.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The first pause before a run's outcome is written again after the store failed; each retry
/// doubles it, up to [`MAX_RECORD_BACKOFF`].
const FIRST_RECORD_BACKOFF: Duration = Duration::from_millis(250);

/// The longest pause between two attempts to write a run's outcome.
const MAX_RECORD_BACKOFF: Duration = Duration::from_secs(5);

/// The most attempts to write a run's outcome, whatever the lease leaves.
const MAX_RECORD_ATTEMPTS: u32 = 12;

/// The ports a [`RecomputeWorker`] works with.
#[derive(Clone)]
pub struct WorkerPorts {
    pub runs: Arc<dyn RunStore>,
    pub queue: Arc<dyn RunQueue>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub rollups: Arc<dyn RollupStore>,
    pub definitions: Arc<dyn RollupDefinitions>,
    pub versions: Arc<dyn CacheVersions>,
    pub audit: Arc<dyn AuditLog>,
    pub locks: Arc<dyn ScopeLock>,
    pub clock: Arc<dyn Clock>,
}

/// Rebuilds snapshots for claimed runs: running → completed (summary, cache version bump,
/// `recompute.completed`) or failed (error, `recompute.failed`), releasing the scope lock
/// either way.
///
/// While it executes a run it renews the run's lease (every third of it), and only then: once
/// the worker is done with a run, whatever became of it, nothing keeps the run claimed, so a
/// run the worker could not finish (its store was unreachable for longer than it could wait)
/// is recovered by the queue when the lease ends, never left running.
#[derive(Clone)]
pub struct RecomputeWorker {
    ports: WorkerPorts,
    lock_ttl: Duration,
    lease: Duration,
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
            lease: DEFAULT_LEASE,
        }
    }

    /// The run lease of the store the worker claims from (`RECOMPUTE_LEASE_SECS`): the worker
    /// renews it every third of it, looks for runs whose worker went silent every sixth, and
    /// gives up writing a run's outcome before half of it has passed without a renewal.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
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

    /// Renews the lease of `run` every third of it while polled; records each renewal in
    /// `renewed`, and stops renewing once the store says the run no longer runs.
    async fn keep_lease(&self, run: &RecomputeRun, renewed: &Mutex<OffsetDateTime>) {
        let p = &self.ports;
        loop {
            p.clock.pause(self.lease / 3).await;
            match p.runs.renew_lease(run.tenant, run.id).await {
                Ok(true) => {
                    *crate::lock(renewed) = p.clock.now();
                    debug!("run lease renewed");
                }
                Ok(false) => {
                    warn!("the run no longer runs; its lease is not renewed");
                    return std::future::pending().await;
                }
                Err(err) => warn!(error = %err, "could not renew the run lease; retrying"),
            }
        }
    }

    /// Claims and executes runs until the queue is closed, and meanwhile recovers the runs of
    /// workers that went silent. A run in progress when the queue closes is finished first.
    pub async fn run(&self) {
        alongside(self.claim_loop(), self.recovery_loop()).await;
    }

    /// Recovers silent workers' runs every sixth of a lease, forever.
    async fn recovery_loop(&self) {
        loop {
            self.recover().await;
            self.ports.clock.pause(self.lease / 6).await;
        }
    }

    /// Hands the runs of silent workers back to the queue, or fails them (see
    /// [`RunQueue::recover`]), and releases the scope locks of those failed, so their scopes
    /// can be recomputed at once rather than when the locks expire.
    pub async fn recover(&self) {
        let p = &self.ports;
        let recovered = match p.queue.recover().await {
            Ok(recovered) => recovered,
            Err(err) => {
                debug!(error = %err, "could not look for runs of silent workers");
                return;
            }
        };
        for run in &recovered.retried {
            warn!(run_id = %run.id, report = %run.report_slug, "the worker of a run stopped responding; the run is queued again");
        }
        for run in &recovered.failed {
            warn!(run_id = %run.id, report = %run.report_slug, "the worker of a run stopped responding too often; the run failed");
            self.audit_failure(run, run.error_message.as_deref().unwrap_or_default())
                .await;
            if let Some(token) = &run.lock_token
                && let Err(err) = p.locks.release(&run.scope(), token).await
            {
                warn!(run_id = %run.id, error = %err, "could not release the scope lock of a recovered run; it will expire on its own");
            }
        }
    }

    async fn claim_loop(&self) {
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
        let renewed = Mutex::new(self.ports.clock.now());
        let finished = alongside(
            self.carry_out(&run, &renewed),
            self.keep_lease(&run, &renewed),
        )
        .await;
        // The lease is no longer renewed from here on.
        if let Some(token) = &run.lock_token
            && let Err(err) = self.ports.locks.release(&run.scope(), token).await
        {
            warn!(error = %err, "could not release the scope lock; it will expire on its own");
        }
        finished
    }

    /// Rebuilds the run's snapshots and writes its outcome; returns the run as finally stored
    /// (or as claimed, if its outcome could not be written).
    async fn carry_out(&self, run: &RecomputeRun, renewed: &Mutex<OffsetDateTime>) -> RecomputeRun {
        let p = &self.ports;
        let scope = run.scope();
        let outcome = alongside(
            self.rebuild(run, p.clock.now()),
            self.keep_lock(&scope, run.lock_token.as_ref()),
        )
        .await;

        match outcome {
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
                    values_skipped: rebuilt.values_skipped,
                };
                let completed = self
                    .record("mark the run completed", renewed, || {
                        p.runs.complete(run.tenant, run.id, summary, p.clock.now())
                    })
                    .await;
                match completed {
                    Some(completed) => {
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
                                "values_skipped": summary.values_skipped,
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
                    // The rows are committed and point to this run: it must not be failed.
                    // Left running, it is recovered when its lease ends and rebuilt again.
                    None => run.clone(),
                }
            }
            Err(message) => self.fail(run, &message, renewed).await,
        }
    }

    /// Rebuilds the snapshots of the run's scope, stamped `computed_at`: the built-in report's
    /// rows, or the rows of the tenant's rollup of that slug as it is defined now. The error
    /// is the message the run fails with.
    async fn rebuild(
        &self,
        run: &RecomputeRun,
        computed_at: OffsetDateTime,
    ) -> Result<RollupRebuildOutcome, String> {
        let p = &self.ports;
        let range = run.scope().range;
        if let Some(kind) = ReportKind::from_slug(&run.report_slug) {
            let request = RebuildRequest {
                tenant: run.tenant,
                kind,
                window: run.window,
                range,
                run_id: run.id,
                computed_at,
            };
            return p
                .snapshots
                .rebuild(&request)
                .await
                .map(|rebuilt| RollupRebuildOutcome {
                    rows_deleted: rebuilt.rows_deleted,
                    rows_inserted: rebuilt.rows_inserted,
                    values_skipped: 0,
                })
                .map_err(|err| {
                    let message = format!("snapshot rebuild failed: {err}");
                    error!(error = ?anyhow::Error::from(err), "snapshot rebuild failed");
                    message
                });
        }
        let stored = match p.definitions.get(run.tenant, &run.report_slug).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return Err(format!("report {} has no definition", run.report_slug)),
            Err(err) => {
                let message = format!(
                    "reading the definition of {} failed: {err}",
                    run.report_slug
                );
                error!(error = ?anyhow::Error::from(err), "reading a rollup definition failed");
                return Err(message);
            }
        };
        let definition = stored.definition;
        if definition.check_window(run.window).is_err() {
            return Err(format!(
                "report {} is no longer built by {}",
                run.report_slug, run.window
            ));
        }
        let request = RollupRebuild {
            tenant: run.tenant,
            report: run.report_slug.clone(),
            rollup: definition.rollup,
            window: run.window,
            range,
            run_id: run.id,
            computed_at,
        };
        p.rollups.rebuild(&request).await.map_err(|err| {
            let message = format!("rollup rebuild failed: {err}");
            error!(error = ?anyhow::Error::from(err), "rollup rebuild failed");
            message
        })
    }

    /// Writes a run's outcome with `write`, again and again while the store cannot be reached,
    /// as long as the run's lease is sure to hold: a run is never finished by this worker after
    /// the queue may have handed it to another. Returns the run as stored, or `None` when the
    /// outcome could not be written (the lease then ends and the queue recovers the run).
    async fn record<F, Fut>(
        &self,
        what: &'static str,
        renewed: &Mutex<OffsetDateTime>,
        write: F,
    ) -> Option<RecomputeRun>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<RecomputeRun, RunStoreError>>,
    {
        let clock = &self.ports.clock;
        let mut backoff = FIRST_RECORD_BACKOFF;
        let mut attempt = 1;
        loop {
            let err = match write().await {
                Ok(run) => return Some(run),
                Err(err @ (RunStoreError::Unavailable(_) | RunStoreError::Unexpected(_))) => err,
                Err(err) => {
                    error!(error = %err, "could not {what}");
                    return None;
                }
            };
            let silent = clock.now() - *crate::lock(renewed);
            let budget = self.lease / 2;
            if attempt >= MAX_RECORD_ATTEMPTS || silent + backoff >= budget {
                error!(
                    error = ?anyhow::Error::from(err),
                    attempts = attempt,
                    "could not {what}; the run is left to lease recovery"
                );
                return None;
            }
            warn!(error = %err, attempt, "could not {what}; retrying");
            clock.pause(backoff).await;
            backoff = (backoff * 2).min(MAX_RECORD_BACKOFF);
            attempt += 1;
        }
    }

    /// Marks the run failed with `message` and audits it. When the failure cannot be written,
    /// nothing is audited and the run is returned as it was: its lease ends and the queue
    /// recovers it.
    async fn fail(
        &self,
        run: &RecomputeRun,
        message: &str,
        renewed: &Mutex<OffsetDateTime>,
    ) -> RecomputeRun {
        let p = &self.ports;
        let Some(failed) = self
            .record("mark the run failed", renewed, || {
                p.runs.fail(run.tenant, run.id, message, p.clock.now())
            })
            .await
        else {
            return run.clone();
        };
        self.audit_failure(&failed, message).await;
        warn!(error = message, "recompute failed");
        failed
    }

    /// Audits that `run` failed with `message`, as `recompute-worker`: the one place a failed
    /// run is audited, whether its worker failed it or lease recovery did.
    async fn audit_failure(&self, run: &RecomputeRun, message: &str) {
        self.audit(
            run,
            AuditAction::RecomputeFailed,
            json!({
                "report_slug": run.report_slug.as_str(),
                "window": run.window.as_str(),
                "error": message,
            }),
        )
        .await;
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

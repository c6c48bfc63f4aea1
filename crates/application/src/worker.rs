//! The recompute worker: claims queued runs and carries each through its lifecycle.

use std::{
    future::Future,
    pin::pin,
    sync::{Arc, Mutex},
    task::Poll,
    time::Duration,
};

use domain::{
    Actor, AuditAction, NewAuditEntry, RecomputeRun, ReportKind, RunMode, RunSummary,
    audit::RESOURCE_RECOMPUTE_RUN, dates::format_date, freshness::MAX_LISTED_BUCKETS,
};
use serde_json::json;
use time::OffsetDateTime;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::ports::{
    AuditLog, CacheVersions, Clock, RollupDefinitions, RollupRebuild, RollupRebuildOutcome,
    RollupStore, RunQueue, RunStore, RunStoreError, ScopeLock, WindowRebuild,
};
use crate::telemetry;

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

    /// Extends the scope locks of `runs` every third of their lifetime, forever: run it
    /// alongside the work the locks protect.
    async fn keep_locks(&self, runs: &[RecomputeRun]) {
        let held: Vec<_> = runs
            .iter()
            .filter_map(|run| run.lock_token.as_ref().map(|token| (run.scope(), token)))
            .collect();
        if held.is_empty() {
            return std::future::pending().await;
        }
        loop {
            self.ports.clock.pause(self.lock_ttl / 3).await;
            for (scope, token) in &held {
                match self.ports.locks.extend(scope, token, self.lock_ttl).await {
                    Ok(true) => debug!(window = %scope.window, "scope lock extended"),
                    // The database still allows one active run per scope; the lock only speeds
                    // up refusals, so losing it is worth a warning, not a failed run.
                    Ok(false) => {
                        warn!(window = %scope.window, "the scope lock expired or was taken during the rebuild")
                    }
                    Err(err) => {
                        warn!(window = %scope.window, error = %err, "could not extend the scope lock")
                    }
                }
            }
        }
    }

    /// Renews the leases of `runs` every third of a lease while polled; records in `renewed`
    /// each round in which every renewal was answered, and stops renewing a run once the store
    /// says it no longer runs.
    async fn keep_leases(&self, runs: &[RecomputeRun], renewed: &Mutex<OffsetDateTime>) {
        let p = &self.ports;
        let mut running: Vec<&RecomputeRun> = runs.iter().collect();
        loop {
            p.clock.pause(self.lease / 3).await;
            let mut answered = true;
            let mut still = Vec::with_capacity(running.len());
            for run in running {
                match p.runs.renew_lease(run.tenant, run.id).await {
                    Ok(true) => {
                        debug!(run_id = %run.id, "run lease renewed");
                        still.push(run);
                    }
                    Ok(false) => {
                        warn!(run_id = %run.id, "the run no longer runs; its lease is not renewed");
                    }
                    Err(err) => {
                        warn!(run_id = %run.id, error = %err, "could not renew the run lease; retrying");
                        answered = false;
                        still.push(run);
                    }
                }
            }
            if answered {
                *crate::lock(renewed) = p.clock.now();
            }
            running = still;
            if running.is_empty() {
                return std::future::pending().await;
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
                    self.execute_with_companions(run).await;
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

    /// `run` and the pending runs of the same report's other windows, claimed with it so one
    /// pass over the events rebuilds them all (see [`RunQueue::claim_companions`]). A failure
    /// to claim them only loses the saving.
    async fn with_companions(&self, run: RecomputeRun) -> Vec<RecomputeRun> {
        let companions = match self.ports.queue.claim_companions(&run).await {
            Ok(companions) => companions,
            Err(err) => {
                debug!(run_id = %run.id, error = %err, "could not claim the runs of the rollup's other windows");
                Vec::new()
            }
        };
        let mut runs = vec![run];
        runs.extend(companions);
        runs
    }

    /// Executes a run already claimed (running) as the worker loop does: with the pending runs
    /// of its rollup's other windows, claimed now and rebuilt in the same pass over the events.
    /// Returns the runs as finally stored, the given one first.
    pub async fn execute_with_companions(&self, run: RecomputeRun) -> Vec<RecomputeRun> {
        let runs = self.with_companions(run).await;
        self.execute_together(runs).await
    }

    /// Executes a run already claimed (running): rebuilds the snapshots of its scope and
    /// finishes it. Returns the run as finally stored (or as known, if the store failed).
    pub async fn execute(&self, run: RecomputeRun) -> RecomputeRun {
        let id = run.id;
        let mut finished = self.execute_together(vec![run]).await;
        match finished.pop() {
            Some(run) => run,
            None => unreachable!("run {id} was executed, so it has an outcome"),
        }
    }

    /// Executes claimed runs of one tenant's report, one per window, in one rebuild, and
    /// finishes each. Returns the runs as finally stored, in order.
    async fn execute_together(&self, runs: Vec<RecomputeRun>) -> Vec<RecomputeRun> {
        let Some(first) = runs.first() else {
            return Vec::new();
        };
        let span = info_span!("recompute", run_id = %first.id, report = %first.report_slug, window = %first.window, together = runs.len());
        async {
            let started = std::time::Instant::now();
            let renewed = Mutex::new(self.ports.clock.now());
            let finished = alongside(
                self.carry_out(&runs, &renewed),
                self.keep_leases(&runs, &renewed),
            )
            .await;
            let seconds = started.elapsed().as_secs_f64();
            for run in &finished {
                telemetry::run_finished(run, seconds);
            }
            // The leases are no longer renewed from here on.
            for run in &runs {
                if let Some(token) = &run.lock_token
                    && let Err(err) = self.ports.locks.release(&run.scope(), token).await
                {
                    warn!(run_id = %run.id, error = %err, "could not release the scope lock; it will expire on its own");
                }
            }
            finished
        }
        .instrument(span)
        .await
    }

    /// Rebuilds the runs' snapshots and writes each one's outcome; returns the runs as finally
    /// stored (or as claimed, where an outcome could not be written).
    async fn carry_out(
        &self,
        runs: &[RecomputeRun],
        renewed: &Mutex<OffsetDateTime>,
    ) -> Vec<RecomputeRun> {
        let p = &self.ports;
        let outcomes = alongside(self.rebuild(runs, p.clock.now()), self.keep_locks(runs)).await;
        if outcomes.iter().any(Result::is_ok)
            && let Some(first) = runs.first()
        {
            // The new rows are committed: retire the cached results before a run is seen as
            // completed, so whoever waits for completion reads the new rows.
            if let Err(err) = p.versions.bump(first.tenant, &first.report_slug).await {
                // Entries of the old version then live until their TTL ends.
                warn!(error = %err, "could not bump the cache version");
            }
        }
        let mut finished = Vec::with_capacity(runs.len());
        for (run, outcome) in runs.iter().zip(outcomes) {
            finished.push(match outcome {
                Ok(rebuilt) => self.complete(run, rebuilt, renewed).await,
                Err(message) => self.fail(run, &message, renewed).await,
            });
        }
        finished
    }

    /// Marks `run` completed with what its rebuild did and audits it.
    async fn complete(
        &self,
        run: &RecomputeRun,
        rebuilt: RollupRebuildOutcome,
        renewed: &Mutex<OffsetDateTime>,
    ) -> RecomputeRun {
        let p = &self.ports;
        let scope = run.scope();
        let mut listed = match run.mode {
            RunMode::Full => Vec::new(),
            RunMode::Incremental => rebuilt.dirty,
        };
        listed.truncate(MAX_LISTED_BUCKETS);
        let summary = RunSummary {
            rows_deleted: rebuilt.rows_deleted,
            rows_inserted: rebuilt.rows_inserted,
            bucket_count: rebuilt.bucket_count,
            effective_date_from: scope.range.from(),
            effective_date_to: scope.range.to(),
            values_skipped: rebuilt.values_skipped,
            rebuilt: listed,
        };
        let completed = self
            .record("mark the run completed", renewed, || {
                p.runs
                    .complete(run.tenant, run.id, summary.clone(), p.clock.now())
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
                        "mode": completed.mode.as_str(),
                        "rows_deleted": summary.rows_deleted,
                        "rows_inserted": summary.rows_inserted,
                        "bucket_count": summary.bucket_count,
                        "effective_date_from": format_date(summary.effective_date_from),
                        "effective_date_to": format_date(summary.effective_date_to),
                        "values_skipped": summary.values_skipped,
                        "rebuilt": summary.rebuilt.iter().map(|b| json!({
                            "bucket_start": format_date(b.bucket_start),
                            "reason": b.reason.as_str(),
                        })).collect::<Vec<_>>(),
                    }),
                )
                .await;
                info!(
                    run_id = %run.id,
                    window = %run.window,
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

    /// Rebuilds the snapshots of the runs' scopes, stamped `computed_at`: the rows of the
    /// rollup the report is (a built-in's seed definition, or the tenant's definition of that
    /// slug as it is now), every window in one rebuild. Returns each run's outcome, in order; an
    /// error is the message the run fails with.
    async fn rebuild(
        &self,
        runs: &[RecomputeRun],
        computed_at: OffsetDateTime,
    ) -> Vec<Result<RollupRebuildOutcome, String>> {
        let p = &self.ports;
        let Some(first) = runs.first() else {
            return Vec::new();
        };
        let failed = |message: String| runs.iter().map(|_| Err(message.clone())).collect();
        let definition = if let Some(kind) = ReportKind::from_slug(&first.report_slug) {
            // A built-in report is the rollup its seed file defines, for every tenant.
            domain::rollup::builtin(kind).clone()
        } else {
            match p.definitions.get(first.tenant, &first.report_slug).await {
                Ok(Some(stored)) => stored.definition,
                Ok(None) => {
                    return failed(format!("report {} has no definition", first.report_slug));
                }
                Err(err) => {
                    let message = format!(
                        "reading the definition of {} failed: {err}",
                        first.report_slug
                    );
                    error!(error = ?anyhow::Error::from(err), "reading a rollup definition failed");
                    return failed(message);
                }
            }
        };
        // A run of a window the definition no longer has fails alone; the others rebuild.
        let refused: Vec<Option<String>> = runs
            .iter()
            .map(|run| {
                definition.check_window(run.window).err().map(|_| {
                    format!(
                        "report {} is no longer built by {}",
                        run.report_slug, run.window
                    )
                })
            })
            .collect();
        let windows: Vec<WindowRebuild> = runs
            .iter()
            .zip(&refused)
            .filter(|(_, refused)| refused.is_none())
            .map(|(run, _)| WindowRebuild {
                window: run.window,
                range: run.scope().range,
                mode: run.mode,
                run_id: run.id,
            })
            .collect();
        let count = windows.len();
        let rebuilt: Vec<Result<RollupRebuildOutcome, String>> = if count == 0 {
            Vec::new()
        } else {
            let request = RollupRebuild {
                tenant: first.tenant,
                report: first.report_slug.clone(),
                rollup: definition.rollup,
                windows,
                computed_at,
            };
            match p.rollups.rebuild(&request).await {
                Ok(each) if each.len() == count => each.into_iter().map(Ok).collect(),
                Ok(each) => vec![
                    Err(format!(
                        "rollup rebuild failed: the store answered for {} of {count} windows",
                        each.len()
                    ));
                    count
                ],
                Err(err) => {
                    let message = format!("rollup rebuild failed: {err}");
                    error!(error = ?anyhow::Error::from(err), "rollup rebuild failed");
                    vec![Err(message); count]
                }
            }
        };
        // The rebuilt windows answer in the order of the runs they came from.
        let mut rebuilt = rebuilt.into_iter();
        refused
            .into_iter()
            .map(|refused| match refused {
                Some(message) => Err(message),
                None => rebuilt
                    .next()
                    .unwrap_or_else(|| Err("rollup rebuild failed: no outcome".to_owned())),
            })
            .collect()
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

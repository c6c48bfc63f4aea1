//! Recompute triggers and run lookups: the management side of the write path.

use std::{sync::Arc, time::Duration};

use domain::{
    Actor, AuditAction, DateRange, LockToken, NewAuditEntry, Page, PageRequest, RecomputeRun,
    RecomputeScope, ReportSlug, RunFilter, RunId, RunMode, TenantId, ValidationError, Window,
    audit::RESOURCE_RECOMPUTE_RUN,
    dates::{format_date, parse_date},
};
use serde_json::json;
use tracing::{info, warn};

use crate::telemetry;
use crate::{
    RecomputeWorker,
    ports::{
        AuditLog, CacheError, Clock, EnqueueError, ReportCatalog, RollupDefinitions, RunQueue,
        RunStore, RunStoreError, ScopeLock, StoreError,
    },
};

/// The failure of a recompute trigger.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// A field of the request broke a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No report has this slug.
    #[error("report {0:?} not found")]
    ReportNotFound(String),
    /// A recompute of the same scope holds the lock or is still active.
    #[error(
        "{} of {report_slug} ({window}, {date_from} to {date_to}) is already in progress",
        if *mode == RunMode::Incremental { "an incremental refresh" } else { "a recompute" }
    )]
    ScopeBusy {
        report_slug: String,
        window: Window,
        mode: RunMode,
        date_from: String,
        date_to: String,
    },
    /// The queue is full; the run was marked failed.
    #[error("the recompute queue is full; run {0} was marked failed, try again later")]
    QueueFull(RunId),
    /// The process is shutting down and queues nothing more; the run was marked failed.
    #[error("the service is shutting down; run {0} was marked failed, try again")]
    ShuttingDown(RunId),
    /// A dependency needed to admit the run is unreachable.
    #[error("a dependency needed to trigger a recompute is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<StoreError> for TriggerError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(e) => TriggerError::Unavailable(e),
            StoreError::Unexpected(e) => TriggerError::Unexpected(e),
        }
    }
}

/// The failure of a run lookup or listing.
#[derive(Debug, thiserror::Error)]
pub enum RunLookupError {
    #[error("recompute run {0:?} not found")]
    NotFound(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("run storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<RunStoreError> for RunLookupError {
    fn from(err: RunStoreError) -> Self {
        match err {
            RunStoreError::Unavailable(e) => RunLookupError::Unavailable(e),
            other => RunLookupError::Unexpected(other.into()),
        }
    }
}

/// A trigger request as it arrives; the service parses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerRequest {
    pub report_slug: Option<String>,
    pub window: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    /// `full` (the default) or `incremental`.
    pub mode: Option<String>,
    /// The `requested_by` field of the body: who asked, when the caller names someone.
    pub requested_by: Option<String>,
    /// Who triggers otherwise: the caller (its API key, the management API), or whom it acts
    /// for (`X-Actor`); `None` is the management API.
    pub on_behalf_of: Option<Actor>,
}

/// A validated recompute request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecomputeRequest {
    pub tenant: TenantId,
    pub report_slug: ReportSlug,
    pub window: Window,
    pub range: DateRange,
    pub mode: RunMode,
    pub requested_by: Actor,
}

/// Admits recompute runs (validation, lock, run record, audit) and queues them, or runs them
/// at once in the calling process.
#[derive(Clone)]
pub struct RecomputeService {
    catalog: Arc<dyn ReportCatalog>,
    definitions: Arc<dyn RollupDefinitions>,
    runs: Arc<dyn RunStore>,
    queue: Arc<dyn RunQueue>,
    audit: Arc<dyn AuditLog>,
    locks: Arc<dyn ScopeLock>,
    clock: Arc<dyn Clock>,
    /// Executes the runs [`RecomputeService::run_now`] admits.
    worker: RecomputeWorker,
    max_range_days: u32,
    lock_ttl: Duration,
}

impl std::fmt::Debug for RecomputeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecomputeService")
            .field("max_range_days", &self.max_range_days)
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}

/// The ports a [`RecomputeService`] works with.
#[derive(Clone)]
pub struct RecomputePorts {
    pub catalog: Arc<dyn ReportCatalog>,
    /// Tenants' rollups, which may be rebuilt as the built-in reports are.
    pub definitions: Arc<dyn RollupDefinitions>,
    pub runs: Arc<dyn RunStore>,
    pub queue: Arc<dyn RunQueue>,
    pub audit: Arc<dyn AuditLog>,
    pub locks: Arc<dyn ScopeLock>,
    pub clock: Arc<dyn Clock>,
}

impl RecomputeService {
    /// A service refusing ranges longer than `max_range_days` and taking scope locks for
    /// `lock_ttl`; runs it executes at once go through `worker`.
    pub fn new(
        ports: RecomputePorts,
        worker: RecomputeWorker,
        max_range_days: u32,
        lock_ttl: Duration,
    ) -> Self {
        Self {
            catalog: ports.catalog,
            definitions: ports.definitions,
            runs: ports.runs,
            queue: ports.queue,
            audit: ports.audit,
            locks: ports.locks,
            clock: ports.clock,
            worker,
            max_range_days,
            lock_ttl,
        }
    }

    /// Admits `request` as a trigger would (same checks, lock and audit), then executes the run
    /// in the calling process rather than queueing it: for seeding and for the `recompute`
    /// command, which need no worker. Returns the run as finished, completed or failed.
    ///
    /// # Errors
    /// See [`RecomputeService::admit`]; [`TriggerError::Unavailable`] or
    /// [`TriggerError::Unexpected`] when the admitted run cannot be started (it is then
    /// failed, audited and its scope freed).
    #[tracing::instrument(skip_all, fields(report = %request.report_slug, window = %request.window), err(level = "info"))]
    pub async fn run_now(&self, request: &RecomputeRequest) -> Result<RecomputeRun, TriggerError> {
        let admitted = self.admit(request).await?;
        match self
            .runs
            .start(admitted.tenant, admitted.id, self.clock.now())
            .await
        {
            Ok(running) => {
                info!(run_id = %running.id, "recompute running in this process");
                Ok(self.worker.execute(running).await)
            }
            Err(err) => {
                // Given up unless a worker of a shared queue claimed it meanwhile (the queue
                // on PostgreSQL is the run table), which `abandon` leaves alone.
                self.abandon(&admitted, "the run could not be started")
                    .await;
                Err(match err {
                    RunStoreError::Unavailable(e) => TriggerError::Unavailable(e),
                    other => TriggerError::Unexpected(other.into()),
                })
            }
        }
    }

    /// Parses a trigger request in the order the API promises: window, date order, range limit,
    /// then the report's existence.
    ///
    /// # Errors
    /// [`TriggerError::Invalid`] for a bad field and [`TriggerError::ReportNotFound`] for an
    /// unknown report.
    pub async fn parse(
        &self,
        tenant: TenantId,
        request: &TriggerRequest,
    ) -> Result<RecomputeRequest, TriggerError> {
        let slug_raw = request
            .report_slug
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ValidationError::new("report_slug", "is required"))?;
        let window = match request.window.as_deref() {
            Some(raw) => raw.parse::<Window>()?,
            None => Window::Day,
        };
        let from = request
            .date_from
            .as_deref()
            .map(|raw| parse_date("date_from", raw))
            .transpose()?;
        let to = request
            .date_to
            .as_deref()
            .map(|raw| parse_date("date_to", raw))
            .transpose()?;
        let range = DateRange::resolve(from, to, self.clock.now().date())?
            .within_limit(self.max_range_days)?;
        let mode = match request.mode.as_deref() {
            Some(raw) => raw.parse::<RunMode>()?,
            None => RunMode::Full,
        };
        let requested_by = match (&request.requested_by, &request.on_behalf_of) {
            (Some(body), _) => Actor::parse(body)?,
            (None, Some(actor)) => actor.clone(),
            (None, None) => Actor::builtin(Actor::MANAGEMENT_API),
        };

        let not_found = || TriggerError::ReportNotFound(slug_raw.to_owned());
        let slug = ReportSlug::parse(slug_raw).map_err(|_| not_found())?;
        // A built-in report, else one of the tenant's rollups.
        match self.catalog.get(&slug).await? {
            Some(report) => report.check_window(window)?,
            None => self
                .definitions
                .get(tenant, &slug)
                .await?
                .ok_or_else(not_found)?
                .definition
                .check_window(window)?,
        };
        Ok(RecomputeRequest {
            tenant,
            report_slug: slug,
            window,
            range,
            mode,
            requested_by,
        })
    }

    /// Handles a management trigger: parses it, admits the run and queues it. The returned run
    /// is pending.
    ///
    /// # Errors
    /// See [`RecomputeService::parse`] and [`RecomputeService::admit`];
    /// [`TriggerError::QueueFull`] when the queue is at capacity, after the run was marked
    /// failed, audited and its lock released.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub async fn trigger(
        &self,
        tenant: TenantId,
        request: &TriggerRequest,
    ) -> Result<RecomputeRun, TriggerError> {
        let request = self.parse(tenant, request).await?;
        self.queue_run(&request).await
    }

    /// Admits a request already parsed and queues its run (for runs the service starts
    /// itself, such as a new rollup's backfill). The returned run is pending.
    ///
    /// # Errors
    /// As [`RecomputeService::trigger`], but for the parsing.
    pub async fn queue_run(
        &self,
        request: &RecomputeRequest,
    ) -> Result<RecomputeRun, TriggerError> {
        let run = self.admit(request).await?;
        self.enqueue(run).await
    }

    /// Admits every request, then queues each admitted run: a worker that claims one of them
    /// finds the others of the same report already pending, queued yet or not, and rebuilds
    /// them together (see [`RunQueue::claim_companions`](crate::ports::RunQueue::claim_companions)). One result
    /// per request, in order; a request that fails does not stop the others.
    pub async fn queue_runs(
        &self,
        requests: &[RecomputeRequest],
    ) -> Vec<Result<RecomputeRun, TriggerError>> {
        let mut admitted = Vec::with_capacity(requests.len());
        for request in requests {
            admitted.push(self.admit(request).await);
        }
        let mut queued = Vec::with_capacity(requests.len());
        for run in admitted {
            queued.push(match run {
                Ok(run) => self.enqueue(run).await,
                Err(err) => Err(err),
            });
        }
        queued
    }

    /// Queues an admitted run; one the queue refuses is failed and its lock released.
    async fn enqueue(&self, run: RecomputeRun) -> Result<RecomputeRun, TriggerError> {
        match self.queue.enqueue(&run).await {
            Ok(()) => {
                info!(run_id = %run.id, report = %run.report_slug, window = %run.window, "recompute queued");
                Ok(run)
            }
            Err(err) => {
                let reason = err.to_string();
                if !self.abandon(&run, &reason).await {
                    // A worker of a shared queue claimed it meanwhile: it is under way.
                    info!(run_id = %run.id, error = %err, "the queue refused a run a worker had already claimed");
                    return Ok(run);
                }
                match err {
                    EnqueueError::Full => Err(TriggerError::QueueFull(run.id)),
                    EnqueueError::Closed => Err(TriggerError::ShuttingDown(run.id)),
                    EnqueueError::Unavailable(e) => Err(TriggerError::Unavailable(e)),
                    EnqueueError::Unexpected(e) => Err(TriggerError::Unexpected(e)),
                }
            }
        }
    }

    /// Admits a validated request: takes the scope lock, stores the pending run and audits
    /// `recompute.triggered`. The caller then queues or executes the run.
    ///
    /// # Errors
    /// [`TriggerError::ScopeBusy`] when the scope is locked or has an active run (nothing is
    /// stored); [`TriggerError::Unavailable`] or [`TriggerError::Unexpected`] when a store fails,
    /// in which case the lock is released and no run is left pending.
    #[tracing::instrument(skip_all, fields(report = %request.report_slug, window = %request.window), err(level = "info"))]
    pub async fn admit(&self, request: &RecomputeRequest) -> Result<RecomputeRun, TriggerError> {
        let scope = RecomputeScope::new(
            request.tenant,
            request.report_slug.clone(),
            request.window,
            request.range,
        )
        .with_mode(request.mode);
        let busy = || {
            telemetry::lock_conflict();
            TriggerError::ScopeBusy {
                report_slug: scope.report_slug.to_string(),
                window: scope.window,
                mode: scope.mode,
                date_from: format_date(scope.range.from()),
                date_to: format_date(scope.range.to()),
            }
        };
        let token = LockToken::generate();
        match self.locks.acquire(&scope, &token, self.lock_ttl).await {
            Ok(true) => {}
            Ok(false) => return Err(busy()),
            // Without the lock store the run store's one-active-run-per-scope rule still
            // prevents duplicates, so a trigger degrades rather than fails.
            Err(CacheError(err)) => {
                warn!(error = %err, "scope lock unavailable; relying on the run store")
            }
        }

        let run = RecomputeRun::pending(
            request.tenant,
            request.report_slug.clone(),
            request.window,
            request.range,
            request.requested_by.clone(),
            self.clock.now(),
            Some(token.clone()),
        )
        .with_mode(request.mode);
        if let Err(err) = self.runs.create(&run).await {
            self.release(&scope, &token).await;
            return Err(match err {
                RunStoreError::ActiveScope => busy(),
                RunStoreError::Unavailable(e) => TriggerError::Unavailable(e),
                other => TriggerError::Unexpected(other.into()),
            });
        }

        let entry = NewAuditEntry {
            tenant: run.tenant,
            actor: run.requested_by.clone(),
            action: AuditAction::RecomputeTriggered,
            resource_type: RESOURCE_RECOMPUTE_RUN.to_owned(),
            resource_id: run.id.to_string(),
            metadata: json!({
                "report_slug": run.report_slug.as_str(),
                "window": run.window.as_str(),
                "mode": run.mode.as_str(),
                "date_from": format_date(run.range.from()),
                "date_to": format_date(run.range.to()),
            }),
        };
        if let Err(err) = self.audit.record(entry).await {
            // An unaudited run must not go ahead: fail it and free the scope.
            let reason = "the trigger could not be audited";
            if let Err(fail_err) = self
                .runs
                .fail(run.tenant, run.id, reason, self.clock.now())
                .await
            {
                warn!(run_id = %run.id, error = %fail_err, "could not mark an unaudited run failed");
            }
            self.release(&scope, &token).await;
            return Err(err.into());
        }
        Ok(run)
    }

    /// Marks an admitted run failed because it could not be queued, audits that and releases
    /// its lock; unless a worker claimed it meanwhile (a queue that is its run table hands out
    /// runs as soon as they are stored), which leaves it alone. Whether it was given up.
    async fn abandon(&self, run: &RecomputeRun, reason: &str) -> bool {
        let now = self.clock.now();
        match self.runs.abandon(run.tenant, run.id, reason, now).await {
            Ok(_) => {}
            Err(RunStoreError::Transition(_)) => return false,
            Err(err) => {
                warn!(run_id = %run.id, error = %err, "could not mark an unqueued run failed");
            }
        }
        let entry = NewAuditEntry {
            tenant: run.tenant,
            actor: run.requested_by.clone(),
            action: AuditAction::RecomputeFailed,
            resource_type: RESOURCE_RECOMPUTE_RUN.to_owned(),
            resource_id: run.id.to_string(),
            metadata: json!({
                "report_slug": run.report_slug.as_str(),
                "window": run.window.as_str(),
                "error": reason,
            }),
        };
        if let Err(err) = self.audit.record(entry).await {
            warn!(run_id = %run.id, error = %err, "could not audit an unqueued run");
        }
        if let Some(token) = &run.lock_token {
            self.release(&run.scope(), token).await;
        }
        true
    }

    async fn release(&self, scope: &RecomputeScope, token: &LockToken) {
        if let Err(err) = self.locks.release(scope, token).await {
            warn!(error = %err, "could not release a scope lock; it will expire on its own");
        }
    }

    /// The run `id` of `tenant`.
    ///
    /// # Errors
    /// [`RunLookupError::NotFound`] for an unknown or malformed id.
    #[tracing::instrument(skip_all, fields(run_id = %id), err(level = "info"))]
    pub async fn get(&self, tenant: TenantId, id: &str) -> Result<RecomputeRun, RunLookupError> {
        let not_found = || RunLookupError::NotFound(id.to_owned());
        let run_id = RunId::parse(id).ok_or_else(not_found)?;
        self.runs.get(tenant, run_id).await?.ok_or_else(not_found)
    }

    /// The runs of `tenant` passing `filter`, newest first.
    ///
    /// # Errors
    /// [`RunLookupError::Unavailable`] or [`RunLookupError::Unexpected`].
    #[tracing::instrument(skip_all, err)]
    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        page: PageRequest,
    ) -> Result<Page<RecomputeRun>, RunLookupError> {
        Ok(self.runs.list(tenant, filter, page).await?)
    }
}

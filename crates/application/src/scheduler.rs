//! The freshness scheduler: every process with workers runs one. It queues an incremental
//! refresh of each tenant's rollup window whose dirty buckets have waited long enough, and
//! applies retention: snapshot buckets past their window's retention, and raw events past the
//! longest of them when a purge is configured.
//!
//! Refreshes go through the durable queue like any run, with the same lock, audit and
//! lineage; since one incremental run per tenant, rollup and window may be active at a time,
//! schedulers of several processes that find the same scope due queue it once.

use std::{sync::Arc, time::Duration};

use domain::{
    Actor, AuditAction, DirtyScope, NewAuditEntry, ReportKind, RollupDefinition, RunId, RunMode,
    TenantId, WindowDefinition,
    audit::{RESOURCE_EVENTS, RESOURCE_REPORT},
    dates::format_date,
};
use serde_json::json;
use time::{Date, OffsetDateTime};
use tracing::{debug, info, warn};

use crate::{
    RecomputeRequest, RecomputeService, TriggerError,
    ports::{AuditLog, Clock, EventAdmin, RollupDefinitions, RollupStore, TenantStore},
};

/// The first day any dirty bucket may start on: events are dated from 1970 on.
const EPOCH: Date = time::macros::date!(1970 - 01 - 01);

/// How the scheduler paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// How often it looks for due refreshes.
    pub tick: Duration,
    /// Replaces every window's `refresh_interval_minutes` (demos and tests); `None` keeps them.
    pub interval_override: Option<Duration>,
    /// When set, the dirty buckets holding the current day are refreshed at most about this
    /// long after their first uncounted change, whatever the interval: the refresh is queued
    /// once the change has waited half of it, leaving the other half to the queue and the
    /// rebuild.
    pub freshness_target: Option<Duration>,
    /// How often retention runs.
    pub retention_every: Duration,
    /// Raw events older than this many days (and than every retention of the tenant's
    /// rollups) are deleted; `None` keeps them.
    pub event_retention_days: Option<u32>,
    /// The most snapshot rows, or events, one retention statement deletes.
    pub retention_batch: u32,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(30),
            interval_override: None,
            freshness_target: None,
            retention_every: Duration::from_secs(3600),
            event_retention_days: None,
            retention_batch: 10_000,
        }
    }
}

impl SchedulerSettings {
    /// The settings with the tick shortened to keep up with the override and the target.
    #[must_use]
    pub fn paced(mut self) -> Self {
        let floor = Duration::from_millis(250);
        for bound in [
            self.interval_override.map(|d| d / 2),
            self.freshness_target.map(|d| d / 4),
        ]
        .into_iter()
        .flatten()
        {
            self.tick = self.tick.min(bound.max(floor));
        }
        self
    }
}

/// The ports the scheduler uses.
#[derive(Clone)]
pub struct SchedulerPorts {
    pub rollups: Arc<dyn RollupStore>,
    /// With the standard rollups (see [`crate::standard::WithStandardRollups`]).
    pub definitions: Arc<dyn RollupDefinitions>,
    pub tenants: Arc<dyn TenantStore>,
    pub events: Arc<dyn EventAdmin>,
    pub audit: Arc<dyn AuditLog>,
    pub clock: Arc<dyn Clock>,
}

/// What one look found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Refreshes queued by this scheduler.
    pub queued: Vec<RunId>,
    /// Due scopes another run was already refreshing (or another scheduler queued first).
    pub busy: usize,
    /// Dirty scopes not due yet.
    pub waiting: usize,
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub snapshot_rows: u64,
    pub events: u64,
}

/// Queues due refreshes and applies retention; see the module documentation.
#[derive(Clone)]
pub struct Scheduler {
    ports: SchedulerPorts,
    recompute: RecomputeService,
    settings: SchedulerSettings,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The actor of the runs and audit entries the scheduler makes.
pub fn scheduler_actor() -> Actor {
    Actor::builtin(Actor::SCHEDULER)
}

impl Scheduler {
    pub fn new(
        ports: SchedulerPorts,
        recompute: RecomputeService,
        settings: SchedulerSettings,
    ) -> Self {
        Self {
            ports,
            recompute,
            settings: settings.paced(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> SchedulerSettings {
        self.settings
    }

    /// Looks for due refreshes every tick and applies retention every `retention_every`, for
    /// as long as the process serves.
    pub async fn run(&self) {
        let clock = &self.ports.clock;
        let mut retained_at: Option<OffsetDateTime> = None;
        loop {
            let now = clock.now();
            if retained_at.is_none_or(|at| now - at >= self.settings.retention_every) {
                retained_at = Some(now);
                self.expire().await;
            }
            self.tick().await;
            clock.pause(self.settings.tick).await;
        }
    }

    /// The definition `tenant` has under `report` (a built-in report, a standard rollup, or
    /// its own), if any.
    async fn definition(
        &self,
        tenant: TenantId,
        report: &domain::ReportSlug,
    ) -> Option<RollupDefinition> {
        if let Some(kind) = ReportKind::from_slug(report) {
            return Some(domain::rollup::builtin(kind).clone());
        }
        match self.ports.definitions.get(tenant, report).await {
            Ok(stored) => stored.map(|s| s.definition),
            Err(err) => {
                debug!(error = %err, report = %report, "could not read a definition to schedule");
                None
            }
        }
    }

    /// How long the dirty buckets of `window` may wait before their refresh is queued.
    fn interval(&self, window: &WindowDefinition) -> Duration {
        self.settings
            .interval_override
            .unwrap_or_else(|| Duration::from_secs(u64::from(window.refresh_interval_minutes) * 60))
    }

    /// Whether `scope` is due at `now`.
    fn due(&self, scope: &DirtyScope, window: &WindowDefinition, now: OffsetDateTime) -> bool {
        let waited = |since: OffsetDateTime| (now - since).max(time::Duration::ZERO);
        if waited(scope.oldest) >= self.interval(window) {
            return true;
        }
        match (self.settings.freshness_target, scope.oldest_current) {
            (Some(target), Some(current)) => waited(current) >= target / 2,
            _ => false,
        }
    }

    /// Queues an incremental refresh of every due scope: each tenant's rollup window whose
    /// oldest uncounted change has waited the window's refresh interval (or, with a
    /// freshness target, whose current bucket has waited half the target).
    pub async fn tick(&self) -> Tick {
        let p = &self.ports;
        let now = p.clock.now();
        let today = now.date();
        let mut tick = Tick::default();
        let scopes = match p.rollups.dirty_scopes(EPOCH, today).await {
            Ok(scopes) => scopes,
            Err(err) => {
                warn!(error = %err, "could not look for dirty buckets; trying again next tick");
                return tick;
            }
        };
        for scope in scopes {
            let Some(definition) = self.definition(scope.tenant, &scope.report).await else {
                continue;
            };
            let Some(window) = definition.windows.iter().find(|w| w.window == scope.window) else {
                continue;
            };
            if !self.due(&scope, window, now) {
                tick.waiting += 1;
                continue;
            }
            let request = RecomputeRequest {
                tenant: scope.tenant,
                report_slug: scope.report.clone(),
                window: scope.window,
                range: window.kept(today),
                mode: RunMode::Incremental,
                requested_by: scheduler_actor(),
            };
            match self.recompute.queue_run(&request).await {
                Ok(run) => {
                    debug!(run_id = %run.id, report = %scope.report, window = %scope.window, buckets = scope.buckets, "refresh queued");
                    tick.queued.push(run.id);
                }
                Err(TriggerError::ScopeBusy { .. }) => tick.busy += 1,
                // The queue holds as much as it may: what is due now is queued on a later
                // tick, once workers have drained it, rather than failed scope after scope.
                Err(err @ (TriggerError::QueueFull(_) | TriggerError::ShuttingDown(_))) => {
                    warn!(error = %err, "the queue is full; the other due refreshes wait for the next tick");
                    break;
                }
                Err(err) => {
                    warn!(report = %scope.report, window = %scope.window, error = %err, "could not queue a refresh");
                }
            }
        }
        if !tick.queued.is_empty() {
            info!(
                queued = tick.queued.len(),
                busy = tick.busy,
                waiting = tick.waiting,
                "refreshes queued"
            );
        }
        tick
    }

    /// Deletes, for every tenant, the snapshot buckets of each rollup window that are past its
    /// retention (with their dirty marks), and, when a purge is configured, its raw events
    /// older than that and than every retention of its rollups; audits what it deleted.
    pub async fn expire(&self) -> Expired {
        let p = &self.ports;
        let today = p.clock.now().date();
        let mut total = Expired::default();
        let tenants = match p.tenants.list().await {
            Ok(tenants) => tenants,
            Err(err) => {
                warn!(error = %err, "could not list tenants for retention");
                return total;
            }
        };
        for tenant in tenants {
            let mut rollups: Vec<RollupDefinition> = ReportKind::ALL
                .into_iter()
                .map(|kind| domain::rollup::builtin(kind).clone())
                .collect();
            match p.definitions.list(tenant.id).await {
                Ok(stored) => rollups.extend(stored.into_iter().map(|s| s.definition)),
                Err(err) => {
                    warn!(tenant = %tenant.slug, error = %err, "could not list rollups for retention");
                    continue;
                }
            }
            let mut longest = 0;
            for definition in &rollups {
                for window in &definition.windows {
                    longest = longest.max(window.retention_days);
                    let kept_from = window.kept(today).from();
                    match p
                        .rollups
                        .expire(
                            tenant.id,
                            &definition.slug,
                            window.window,
                            kept_from,
                            self.settings.retention_batch,
                        )
                        .await
                    {
                        Ok(0) => {}
                        Ok(rows) => {
                            total.snapshot_rows += rows;
                            self.audit_expiry(
                                tenant.id,
                                &definition.slug,
                                json!({
                                    "report_slug": definition.slug.as_str(),
                                    "window": window.window.as_str(),
                                    "retention_days": window.retention_days,
                                    "before": format_date(kept_from),
                                    "rows_deleted": rows,
                                }),
                            )
                            .await;
                        }
                        Err(err) => {
                            warn!(report = %definition.slug, window = %window.window, error = %err, "could not expire snapshot buckets");
                        }
                    }
                }
            }
            if let Some(days) = self.settings.event_retention_days {
                let kept = days.max(longest).max(1);
                let before = today
                    .checked_sub(time::Duration::days(i64::from(kept) - 1))
                    .unwrap_or(EPOCH);
                match p
                    .events
                    .purge(tenant.id, before, self.settings.retention_batch)
                    .await
                {
                    Ok(0) => {}
                    Ok(events) => {
                        total.events += events;
                        self.audit(
                            tenant.id,
                            AuditAction::EventsPurged,
                            (RESOURCE_EVENTS, tenant.slug.as_str()),
                            json!({
                                "event_retention_days": kept,
                                "before": format_date(before),
                                "events_deleted": events,
                            }),
                        )
                        .await;
                    }
                    Err(err) => {
                        warn!(tenant = %tenant.slug, error = %err, "could not purge old events");
                    }
                }
            }
        }
        if total != Expired::default() {
            info!(
                snapshot_rows = total.snapshot_rows,
                events = total.events,
                "retention applied"
            );
        }
        total
    }

    async fn audit_expiry(
        &self,
        tenant: TenantId,
        report: &domain::ReportSlug,
        metadata: serde_json::Value,
    ) {
        self.audit(
            tenant,
            AuditAction::SnapshotsExpired,
            (RESOURCE_REPORT, report.as_str()),
            metadata,
        )
        .await;
    }

    async fn audit(
        &self,
        tenant: TenantId,
        action: AuditAction,
        (resource_type, resource_id): (&str, &str),
        metadata: serde_json::Value,
    ) {
        let entry = NewAuditEntry {
            tenant,
            actor: scheduler_actor(),
            action,
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.to_owned(),
            metadata,
        };
        if let Err(err) = self.ports.audit.record(entry).await {
            warn!(error = %err, action = action.as_str(), "could not audit retention");
        }
    }
}

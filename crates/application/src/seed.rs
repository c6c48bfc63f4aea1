//! Seeding the deterministic demo data set and precomputing its snapshots.

use std::sync::Arc;

use domain::{
    Actor, DateRange, RecomputeRun, ReportDefinition, ReportKind, ReportSlug, RunMode, RunStatus,
    TenantId, Window, demo,
};
use tracing::info;

use crate::{
    ports::{Clock, EventAdmin, RollupStore, StoreError},
    recompute::{RecomputeRequest, RecomputeService, TriggerError},
};

/// The failure of a seed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("could not write the demo data")]
    Store(#[from] StoreError),
    #[error("could not run a seed recompute")]
    Trigger(#[from] TriggerError),
    /// A seed recompute finished failed; its error is in the run record.
    #[error("the seed recompute of {report} ({window}) failed: {error}")]
    RecomputeFailed {
        report: String,
        window: Window,
        error: String,
    },
}

/// What a seed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedOutcome {
    pub events_removed: u64,
    pub events_inserted: u64,
    pub snapshot_rows_removed: u64,
    /// The completed runs that precomputed the snapshots, one per report and window.
    pub runs: Vec<RecomputeRun>,
}

/// The ports a [`SeedService`] works with.
#[derive(Clone)]
pub struct SeedPorts {
    pub events: Arc<dyn EventAdmin>,
    pub snapshots: Arc<dyn RollupStore>,
    pub clock: Arc<dyn Clock>,
}

/// Writes the demo data and precomputes the snapshots of every built-in report and of every
/// rollup all tenants have, in each of their windows, through completed runs requested by
/// `seed`, executed inline (no worker needed).
#[derive(Clone)]
pub struct SeedService {
    events: Arc<dyn EventAdmin>,
    snapshots: Arc<dyn RollupStore>,
    clock: Arc<dyn Clock>,
    recompute: RecomputeService,
}

impl std::fmt::Debug for SeedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedService").finish_non_exhaustive()
    }
}

impl SeedService {
    /// A seeder writing through `ports`, precomputing through `recompute`.
    pub fn new(ports: SeedPorts, recompute: RecomputeService) -> Self {
        Self {
            events: ports.events,
            snapshots: ports.snapshots,
            clock: ports.clock,
            recompute,
        }
    }

    /// Seeds `count` demo events into `tenant` (after deleting its events and snapshots when
    /// `reset`), then precomputes their snapshots.
    ///
    /// # Errors
    /// [`SeedError`] when a store fails or a precompute run does not complete.
    #[tracing::instrument(skip(self), err)]
    pub async fn seed(
        &self,
        tenant: TenantId,
        count: u64,
        reset: bool,
    ) -> Result<SeedOutcome, SeedError> {
        let (events_removed, snapshot_rows_removed) = if reset {
            (
                self.events.clear(tenant).await?,
                self.snapshots.clear(tenant).await?,
            )
        } else {
            (0, 0)
        };
        let now = self.clock.now();
        let events_inserted = self.events.load_demo(tenant, count, now).await?;
        info!(events_inserted, "demo events written");

        let range = demo::date_range(now);
        // The built-in reports in their windows, then the rollups every tenant has in theirs,
        // each over the data set's range cut to the window's retention.
        let mut scopes: Vec<(ReportSlug, Window, DateRange)> = Vec::new();
        for kind in ReportKind::ALL {
            for window in ReportDefinition::reference(kind, now).windows {
                scopes.push((kind.report_slug(), window.window, range));
            }
        }
        for rollup in domain::rollup::standard_rollups() {
            for window in &rollup.windows {
                let kept = range.last_days(window.retention_days);
                scopes.push((rollup.slug.clone(), window.window, kept));
            }
        }
        let mut runs = Vec::new();
        for (report_slug, window, range) in scopes {
            let request = RecomputeRequest {
                tenant,
                report_slug,
                window,
                range,
                mode: RunMode::Full,
                requested_by: Actor::builtin(Actor::SEED),
            };
            let finished = self.recompute.run_now(&request).await?;
            if finished.status != RunStatus::Completed {
                return Err(SeedError::RecomputeFailed {
                    report: request.report_slug.to_string(),
                    window,
                    error: finished.error_message.unwrap_or_default(),
                });
            }
            runs.push(finished);
        }
        Ok(SeedOutcome {
            events_removed,
            events_inserted,
            snapshot_rows_removed,
            runs,
        })
    }

    /// Seeds only when `tenant` has no events yet; `Ok(None)` when it already had some.
    ///
    /// # Errors
    /// As [`SeedService::seed`].
    pub async fn seed_if_empty(
        &self,
        tenant: TenantId,
        count: u64,
    ) -> Result<Option<SeedOutcome>, SeedError> {
        if self.events.count(tenant).await? > 0 {
            return Ok(None);
        }
        self.seed(tenant, count, false).await.map(Some)
    }
}

//! The use cases on the in-memory fakes, including their failure paths.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use application::{
    AuditService, Ports, RecomputeService, RecomputeWorker, Recovered, ReportService,
    RunReportParams, SeedService, Services, Settings, TriggerError, TriggerRequest, WorkerPorts,
    ports::{
        CacheVersions, MockRollupStore, MockRunQueue, RollupStore, RunQueue, RunStore,
        SnapshotRows, SourceSystem,
    },
};
use domain::{
    AuditAction, AuditFilter, PageRequest, RecomputeScope, ReportRow, ReportSlug, RunFilter,
    RunStatus, TenantId, Window, demo,
};
use memory_adapter::{InMemoryAdapters, ManualClock};
use secrecy::ExposeSecret;
use time::{
    OffsetDateTime,
    macros::{date, datetime},
};

const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
const TENANT: TenantId = TenantId::DEFAULT;

struct Harness {
    adapters: InMemoryAdapters,
    clock: Arc<ManualClock>,
    services: Services,
    reports: ReportService,
    recompute: RecomputeService,
    worker: RecomputeWorker,
    audit: AuditService,
}

impl Harness {
    fn new(queue_capacity: usize) -> Self {
        Self::with_ports(queue_capacity, |_| {})
    }

    fn with_snapshots(queue_capacity: usize, snapshots: Option<Arc<dyn RollupStore>>) -> Self {
        Self::with_ports(queue_capacity, |ports| {
            if let Some(snapshots) = snapshots {
                ports.rollups = snapshots;
            }
        })
    }

    /// The services as the binary assembles them, over the memory adapters with `swap`
    /// replacing some of them.
    fn with_ports(queue_capacity: usize, swap: impl FnOnce(&mut Ports)) -> Self {
        Self::assembled(queue_capacity, swap, &Settings::default())
    }

    /// As [`Harness::new`], with `settings`.
    fn with_settings(queue_capacity: usize, settings: &Settings) -> Self {
        Self::assembled(queue_capacity, |_| {}, settings)
    }

    fn assembled(
        queue_capacity: usize,
        swap: impl FnOnce(&mut Ports),
        settings: &Settings,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let adapters = InMemoryAdapters::new(clock.clone(), queue_capacity);
        let mut ports = adapters.ports(clock.clone());
        swap(&mut ports);
        let services = Services::assemble(ports, settings);
        Self {
            adapters,
            clock,
            reports: services.reports.clone(),
            recompute: services.recompute.clone(),
            worker: services.worker.clone(),
            audit: services.audit.clone(),
            services,
        }
    }

    /// The ports of this harness's worker.
    fn worker_ports(&self) -> WorkerPorts {
        WorkerPorts {
            runs: self.adapters.runs.clone(),
            queue: self.adapters.queue.clone(),
            rollups: self.adapters.rollups.clone(),
            definitions: self.adapters.definitions.clone(),
            versions: self.adapters.versions.clone(),
            audit: self.adapters.audit.clone(),
            locks: self.adapters.locks.clone(),
            clock: self.clock.clone(),
        }
    }

    fn seeder(&self) -> SeedService {
        self.services.seeder.clone()
    }

    /// Claims the next queued run and executes it, as a worker loop would.
    async fn work_one(&self) -> Result<domain::RecomputeRun> {
        let run = self
            .adapters
            .queue
            .claim_next()
            .await?
            .context("a queued run")?;
        Ok(self.worker.execute(run).await)
    }

    async fn audit_actions(&self) -> Result<Vec<(AuditAction, String)>> {
        let page = self
            .audit
            .list(TENANT, &AuditFilter::default(), PageRequest::new(100, 0))
            .await?;
        Ok(page
            .items
            .into_iter()
            .rev()
            .map(|e| (e.action, e.actor.to_string()))
            .collect())
    }
}

fn trigger(slug: &str, window: &str, from: &str, to: &str) -> TriggerRequest {
    TriggerRequest {
        report_slug: Some(slug.to_owned()),
        window: Some(window.to_owned()),
        date_from: Some(from.to_owned()),
        date_to: Some(to.to_owned()),
        mode: None,
        requested_by: Some("ops".to_owned()),
        on_behalf_of: None,
    }
}

fn params(from: &str, to: &str) -> RunReportParams {
    RunReportParams {
        date_from: Some(from.to_owned()),
        date_to: Some(to.to_owned()),
        ..RunReportParams::default()
    }
}

#[tokio::test]
async fn seeded_demo_data_reports_exact_status_counts() -> Result<()> {
    let h = Harness::new(8);
    let outcome = h
        .seeder()
        .seed(TENANT, demo::data().default_event_count, false)
        .await?;
    ensure!(outcome.events_inserted == 25_000, "all demo events written");
    // Two windows of each built-in report; three, three and four of the standard rollups.
    ensure!(
        outcome.runs.len() == 6 + 10,
        "one run per report and window: {}",
        outcome.runs.len()
    );
    ensure!(
        outcome
            .runs
            .iter()
            .all(|r| r.status == RunStatus::Completed && r.requested_by.as_str() == "seed"),
        "seed runs complete"
    );

    let range = demo::date_range(NOW);
    let mut p = params(&range.from().to_string(), &range.to().to_string());
    let result = h.reports.run(TENANT, "status-counts", &p).await?;
    // failed: multiples of 17; pending: multiples of 11 that are not multiples of 17 (or 187).
    let failed = 25_000 / 17;
    let pending = 25_000 / 11 - 25_000 / 187;
    let success = 25_000 - failed - pending;
    let expected = vec![
        ReportRow::Status {
            status: "success".into(),
            event_count: success,
        },
        ReportRow::Status {
            status: "pending".into(),
            event_count: pending,
        },
        ReportRow::Status {
            status: "failed".into(),
            event_count: failed,
        },
    ];
    ensure!(
        result.rows == expected,
        "exact counts over the demo data: {:?}",
        result.rows
    );

    // Weeks are read when their Monday lies in the range: start at the first seeded Monday.
    p.window = Some("week".into());
    p.date_from = Some(Window::Week.bucket_start(range.from()).to_string());
    let weekly = h.reports.run(TENANT, "status-counts", &p).await?;
    ensure!(
        weekly.rows == expected,
        "week snapshots hold the same totals when whole weeks are read"
    );

    let mut top = params(&range.from().to_string(), &range.to().to_string());
    top.limit = Some("100".into());
    let entities = h.reports.run(TENANT, "top-entities", &top).await?;
    ensure!(
        entities.read.total_rows == 240,
        "240 demo entities, got {}",
        entities.read.total_rows
    );
    let sum: i64 = entities
        .rows
        .iter()
        .map(|r| match r {
            ReportRow::Entity { event_count, .. } => *event_count,
            _ => 0,
        })
        .sum();
    ensure!(
        entities.rows.len() == 100 && sum > 0,
        "a page of 100 ranked entities"
    );
    Ok(())
}

#[tokio::test]
async fn a_second_read_is_a_cache_hit_with_the_same_rows() -> Result<()> {
    let h = Harness::new(8);
    h.seeder().seed(TENANT, 2_000, false).await?;
    let p = params("2026-11-01", "2026-11-21");

    let first = h.reports.run(TENANT, "volume-by-period", &p).await?;
    ensure!(
        !first.read.cache_hit && first.read.source_system == SourceSystem::Memory,
        "the first read comes from the snapshots"
    );
    let second = h.reports.run(TENANT, "volume-by-period", &p).await?;
    ensure!(second.read.cache_hit, "the second read is a hit");
    ensure!(
        second.rows == first.rows && second.read.generated_at == first.read.generated_at,
        "a hit serves the stored result"
    );
    ensure!(
        second.read.snapshot_version == Some(2),
        "the day and week seed runs bumped the version: {:?}",
        second.read.snapshot_version
    );
    Ok(())
}

/// Results held in this process are hits while the shared cache fails, until a finished run
/// bumps the report's version or their TTL, counted from when they were read, ends.
#[tokio::test]
async fn results_held_in_process_are_hits_until_a_bump_or_their_ttl() -> Result<()> {
    let settings = Settings {
        near_cache_bytes: 1 << 20,
        ..Settings::default()
    };
    let h = Harness::with_settings(8, &settings);
    h.seeder().seed(TENANT, 2_000, false).await?;
    let p = params("2026-11-01", "2026-11-21");
    let first = h.reports.run(TENANT, "volume-by-period", &p).await?;
    ensure!(!first.read.cache_hit, "the first read is a miss");

    h.adapters.cache.set_failing(true);
    let held = h.reports.run(TENANT, "volume-by-period", &p).await?;
    ensure!(
        held.read.cache_hit
            && held.rows == first.rows
            && held.read.generated_at == first.read.generated_at
            && held.read.source_system == SourceSystem::Memory,
        "held in process, the result is a hit though the shared cache fails"
    );

    h.recompute
        .trigger(
            TENANT,
            &trigger("volume-by-period", "day", "2026-11-01", "2026-11-21"),
        )
        .await?;
    h.work_one().await?;
    ensure!(
        !h.reports
            .run(TENANT, "volume-by-period", &p)
            .await?
            .read
            .cache_hit,
        "a finished run retires what is held"
    );

    h.adapters.cache.set_failing(false);
    h.reports.run(TENANT, "volume-by-period", &p).await?;
    h.adapters.cache.set_failing(true);
    let ttl = h.reports.get("volume-by-period").await?.cache_ttl_seconds;
    h.clock.advance(time::Duration::seconds(i64::from(ttl) - 1));
    ensure!(
        h.reports
            .run(TENANT, "volume-by-period", &p)
            .await?
            .read
            .cache_hit,
        "held within its TTL"
    );
    h.clock.advance(time::Duration::seconds(1));
    ensure!(
        !h.reports
            .run(TENANT, "volume-by-period", &p)
            .await?
            .read
            .cache_hit,
        "not held past its TTL"
    );
    Ok(())
}

#[tokio::test]
async fn a_cache_hit_does_not_touch_the_snapshot_store() -> Result<()> {
    let mut snapshots = MockRollupStore::new();
    snapshots.expect_system().return_const(SourceSystem::Memory);
    snapshots.expect_read().times(1).returning(|_| {
        Ok(domain::RollupPage {
            rows: vec![],
            total_rows: 0,
            last_refreshed_at: None,
            uncounted_since: None,
        })
    });
    let h = Harness::with_snapshots(8, Some(Arc::new(snapshots)));
    let p = params("2026-11-01", "2026-11-21");
    h.reports.run(TENANT, "status-counts", &p).await?;
    let hit = h.reports.run(TENANT, "status-counts", &p).await?;
    ensure!(
        hit.read.cache_hit,
        "second read hits; the mock fails the test if the store is queried twice"
    );
    Ok(())
}

#[tokio::test]
async fn equivalent_requests_share_one_cache_entry() -> Result<()> {
    let h = Harness::new(8);
    let explicit = RunReportParams {
        window: Some("DAY".into()),
        breakdown: Some("period".into()),
        limit: Some("50".into()),
        offset: Some("0".into()),
        ..params("2026-10-23", "2026-11-21")
    };
    h.reports
        .run(TENANT, "volume-by-period", &RunReportParams::default())
        .await?;
    let hit = h.reports.run(TENANT, "volume-by-period", &explicit).await?;
    ensure!(
        hit.read.cache_hit,
        "defaults and their explicit values normalize to one key"
    );
    Ok(())
}

#[tokio::test]
async fn a_completed_recompute_bumps_the_version_and_retires_cached_results() -> Result<()> {
    let h = Harness::new(8);
    h.seeder().seed(TENANT, 2_000, false).await?;
    let p = params("2026-11-01", "2026-11-21");
    h.reports.run(TENANT, "top-entities", &p).await?;
    let cached = h.reports.run(TENANT, "top-entities", &p).await?;
    ensure!(cached.read.cache_hit, "primed");
    let slug = ReportSlug::parse("top-entities")?;
    let before = h.adapters.versions.current(TENANT, &slug).await?;

    h.recompute
        .trigger(
            TENANT,
            &trigger("top-entities", "day", "2026-11-01", "2026-11-21"),
        )
        .await?;
    let run = h.work_one().await?;
    ensure!(run.status == RunStatus::Completed, "run completed: {run:?}");
    ensure!(
        h.adapters.versions.current(TENANT, &slug).await? == before + 1,
        "the version was bumped once"
    );

    let after = h.reports.run(TENANT, "top-entities", &p).await?;
    ensure!(!after.read.cache_hit, "the old entry is no longer read");
    ensure!(
        after.read.snapshot_version == Some(before + 1),
        "the result carries the new version"
    );
    Ok(())
}

/// Primes `volume-by-period` (TTL 120 s) for `p` and returns the basis of its hit.
async fn hit_basis(h: &Harness, p: &RunReportParams) -> Result<application::HitBasis> {
    let miss = h.reports.run(TENANT, "volume-by-period", p).await?;
    ensure!(miss.read.basis.is_none(), "a miss rests on nothing cached");
    let hit = h.reports.run(TENANT, "volume-by-period", p).await?;
    ensure!(hit.read.cache_hit, "primed");
    hit.read.basis.context("a hit carries its basis")
}

#[tokio::test]
async fn a_hit_holds_for_a_second_at_most_and_never_past_its_ttl() -> Result<()> {
    let h = Harness::new(8);
    let p = params("2026-11-01", "2026-11-21");
    let basis = hit_basis(&h, &p).await?;
    ensure!(h.reports.still_holds(&basis).await, "nothing changed");
    h.clock.advance(time::Duration::milliseconds(999));
    ensure!(h.reports.still_holds(&basis).await, "within the second");
    h.clock.advance(time::Duration::milliseconds(1));
    ensure!(
        !h.reports.still_holds(&basis).await,
        "a second after the hit"
    );

    // A hit half a second before its entry's TTL (120 s) is up holds only that long.
    h.clock.advance(time::Duration::milliseconds(118_500));
    let late = h.reports.run(TENANT, "volume-by-period", &p).await?;
    ensure!(late.read.cache_hit, "the entry is still served");
    let late = late.read.basis.context("a hit's basis")?;
    h.clock.advance(time::Duration::milliseconds(499));
    ensure!(h.reports.still_holds(&late).await, "within the TTL");
    h.clock.advance(time::Duration::milliseconds(1));
    ensure!(!h.reports.still_holds(&late).await, "the TTL is up");
    Ok(())
}

#[tokio::test]
async fn a_hit_no_longer_holds_once_the_version_moves() -> Result<()> {
    let h = Harness::new(8);
    let basis = hit_basis(&h, &params("2026-11-01", "2026-11-21")).await?;
    let slug = ReportSlug::parse("volume-by-period")?;
    h.adapters.versions.bump(TENANT, &slug).await?;
    ensure!(!h.reports.still_holds(&basis).await, "bumped");
    // Another tenant's bump is not this tenant's.
    let other = hit_basis(&h, &params("2026-11-01", "2026-11-21")).await?;
    h.adapters.versions.bump(TenantId::new(2), &slug).await?;
    ensure!(
        h.reports.still_holds(&other).await,
        "not this tenant's version"
    );
    h.adapters.versions.set_failing(true);
    ensure!(
        !h.reports.still_holds(&other).await,
        "an unreadable version is not the same version"
    );
    Ok(())
}

#[tokio::test]
async fn a_hit_no_longer_holds_on_another_day() -> Result<()> {
    let h = Harness::new(8);
    h.clock.set(datetime!(2026-11-21 23:59:59.5 UTC));
    // Without dates the range ends today: tomorrow the same request means another range.
    let basis = hit_basis(&h, &RunReportParams::default()).await?;
    h.clock.advance(time::Duration::milliseconds(499));
    ensure!(h.reports.still_holds(&basis).await, "still the same day");
    h.clock.advance(time::Duration::milliseconds(1));
    ensure!(
        !h.reports.still_holds(&basis).await,
        "a new UTC day, within the second and the TTL"
    );
    Ok(())
}

#[tokio::test]
async fn reads_survive_an_unavailable_cache() -> Result<()> {
    let h = Harness::new(8);
    h.seeder().seed(TENANT, 1_000, false).await?;
    h.adapters.cache.set_failing(true);
    let p = params("2026-11-01", "2026-11-21");
    let first = h.reports.run(TENANT, "status-counts", &p).await?;
    let second = h.reports.run(TENANT, "status-counts", &p).await?;
    ensure!(
        !first.read.cache_hit && !second.read.cache_hit,
        "no hits without a cache"
    );
    ensure!(
        second.rows == first.rows && !first.rows.is_empty(),
        "rows still come from the snapshots"
    );

    h.adapters.versions.set_failing(true);
    let third = h.reports.run(TENANT, "status-counts", &p).await?;
    ensure!(
        third.read.snapshot_version.is_none() && third.rows == first.rows,
        "no version, same rows"
    );
    Ok(())
}

#[tokio::test]
async fn a_duplicate_trigger_is_a_conflict_and_leaves_no_second_run() -> Result<()> {
    let h = Harness::new(8);
    let request = trigger("volume-by-period", "day", "2026-11-01", "2026-11-10");
    let first = h.recompute.trigger(TENANT, &request).await?;
    ensure!(
        first.status == RunStatus::Pending,
        "the first trigger queues a pending run"
    );

    let second = h.recompute.trigger(TENANT, &request).await;
    ensure!(
        matches!(second, Err(TriggerError::ScopeBusy { .. })),
        "the same scope is busy: {second:?}"
    );
    let runs = h
        .recompute
        .list(TENANT, &RunFilter::default(), PageRequest::new(20, 0))
        .await?;
    ensure!(runs.total == 1, "no run was stored for the refused trigger");
    ensure!(
        h.audit_actions().await? == vec![(AuditAction::RecomputeTriggered, "ops".into())],
        "only one trigger audited"
    );
    Ok(())
}

#[tokio::test]
async fn the_run_store_still_refuses_duplicates_when_the_lock_store_is_down() -> Result<()> {
    let h = Harness::new(8);
    h.adapters.locks.set_failing(true);
    let request = trigger("volume-by-period", "day", "2026-11-01", "2026-11-10");
    h.recompute.trigger(TENANT, &request).await?;
    let second = h.recompute.trigger(TENANT, &request).await;
    ensure!(
        matches!(second, Err(TriggerError::ScopeBusy { .. })),
        "one active run per scope: {second:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_full_queue_fails_the_run_and_releases_the_lock() -> Result<()> {
    let h = Harness::new(1);
    h.recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "day", "2026-11-01", "2026-11-02"),
        )
        .await?;
    let overflow = trigger("status-counts", "day", "2026-11-05", "2026-11-06");

    let err = h
        .recompute
        .trigger(TENANT, &overflow)
        .await
        .err()
        .context("the second trigger must fail")?;
    let TriggerError::QueueFull(run_id) = err else {
        anyhow::bail!("expected QueueFull, got {err:?}")
    };
    let run = h.recompute.get(TENANT, &run_id.to_string()).await?;
    ensure!(
        run.status == RunStatus::Failed,
        "the unqueued run is failed"
    );
    ensure!(
        run.error_message.as_deref() == Some("the recompute queue is full"),
        "with the reason: {run:?}"
    );
    ensure!(
        !h.adapters.locks.is_held(&run.scope()),
        "its lock is released"
    );
    let actions = h.audit_actions().await?;
    ensure!(
        actions.last() == Some(&(AuditAction::RecomputeFailed, "ops".into())),
        "the failure is audited: {actions:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_run_failed_by_lease_recovery_is_audited_and_frees_its_scope_lock() -> Result<()> {
    let h = Harness::new(8);
    let request = trigger("status-counts", "day", "2026-11-01", "2026-11-02");
    let run = h.recompute.trigger(TENANT, &request).await?;
    // The run's worker died three times; the queue fails it for good.
    let failed = h
        .adapters
        .runs
        .fail(
            TENANT,
            run.id,
            "the worker running it stopped responding",
            NOW,
        )
        .await?;
    let mut queue = MockRunQueue::new();
    queue.expect_recover().times(1).returning(move || {
        Ok(Recovered {
            retried: Vec::new(),
            failed: vec![failed.clone()],
        })
    });
    let worker = RecomputeWorker::new(WorkerPorts {
        queue: Arc::new(queue),
        ..h.worker_ports()
    });
    ensure!(
        h.adapters.locks.is_held(&run.scope()),
        "before recovery the dead worker's lock is still held"
    );

    worker.recover().await;

    ensure!(
        !h.adapters.locks.is_held(&run.scope()),
        "recovery releases the failed run's scope lock"
    );
    let actions = h.audit_actions().await?;
    ensure!(
        actions.last() == Some(&(AuditAction::RecomputeFailed, "recompute-worker".into())),
        "and the worker audits the failure: {actions:?}"
    );
    h.recompute
        .trigger(TENANT, &request)
        .await
        .context("the scope can be recomputed at once")?;
    Ok(())
}

#[tokio::test]
async fn a_failure_that_cannot_be_written_leaves_the_run_to_lease_recovery() -> Result<()> {
    let h = Harness::new(8);
    let run = h
        .recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "day", "2026-11-02", "2026-11-03"),
        )
        .await?;
    let claimed = h.adapters.queue.claim_next().await?.context("queued")?;
    h.adapters.rollups.set_failing(true);
    h.adapters.runs.set_failing(true);

    let returned = h.worker.execute(claimed).await;

    h.adapters.runs.set_failing(false);
    let stored = h.recompute.get(TENANT, &run.id.to_string()).await?;
    ensure!(
        returned.status == RunStatus::Running && stored.status == RunStatus::Running,
        "nothing pretends the run ended: {returned:?} {stored:?}"
    );
    let actions = h.audit_actions().await?;
    ensure!(
        actions == vec![(AuditAction::RecomputeTriggered, "ops".into())],
        "no failure is audited that was not recorded: {actions:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_failure_is_written_once_the_run_store_is_back() -> Result<()> {
    let h = Harness::new(8);
    let run = h
        .recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "day", "2026-11-04", "2026-11-05"),
        )
        .await?;
    let claimed = h.adapters.queue.claim_next().await?.context("queued")?;
    h.adapters.rollups.set_failing(true);
    // A short outage: the first attempts to write the failure are refused.
    h.adapters.runs.fail_next_calls(3);

    let finished = h.worker.execute(claimed).await;

    ensure!(
        finished.status == RunStatus::Failed,
        "the failure is written once the store answers: {finished:?}"
    );
    ensure!(
        !h.adapters.locks.is_held(&run.scope()),
        "and the scope is free"
    );
    let actions = h.audit_actions().await?;
    ensure!(
        actions.last() == Some(&(AuditAction::RecomputeFailed, "recompute-worker".into())),
        "and audited: {actions:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_rebuild_fails_the_run_audits_it_and_releases_the_lock() -> Result<()> {
    let h = Harness::new(8);
    let run = h
        .recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "week", "2026-11-02", "2026-11-15"),
        )
        .await?;
    h.adapters.rollups.set_failing(true);
    let finished = h.work_one().await?;
    ensure!(
        finished.status == RunStatus::Failed && finished.finished_at == Some(NOW),
        "the run failed: {finished:?}"
    );
    ensure!(
        finished
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("rebuild failed")),
        "with an error message: {:?}",
        finished.error_message
    );
    ensure!(
        !h.adapters.locks.is_held(&run.scope()),
        "the lock is released"
    );
    let actions = h.audit_actions().await?;
    ensure!(
        actions
            == vec![
                (AuditAction::RecomputeTriggered, "ops".into()),
                (AuditAction::RecomputeFailed, "recompute-worker".into())
            ],
        "triggered then failed: {actions:?}"
    );
    let slug = ReportSlug::parse("status-counts")?;
    ensure!(
        h.adapters.versions.current(TENANT, &slug).await? == 0,
        "a failed run bumps no version"
    );
    Ok(())
}

#[tokio::test]
async fn a_completed_run_has_a_summary_lineage_an_audit_entry_and_a_free_scope() -> Result<()> {
    let h = Harness::new(8);
    h.seeder().seed(TENANT, 3_000, false).await?;
    let run = h
        .recompute
        .trigger(
            TENANT,
            &trigger("volume-by-period", "day", "2026-11-10", "2026-11-12"),
        )
        .await?;
    let done = h.work_one().await?;
    ensure!(
        done.id == run.id && done.status == RunStatus::Completed,
        "completed: {done:?}"
    );
    let summary = done.summary.context("a summary")?;
    ensure!(
        summary.bucket_count == 3 && summary.effective_date_from == date!(2026 - 11 - 10),
        "summary: {summary:?}"
    );
    let rows = SnapshotRows::rows(
        h.adapters.rollups.as_ref(),
        TENANT,
        &domain::ReportKind::VolumeByPeriod.report_slug(),
        1,
        Window::Day,
        domain::DateRange::new(date!(2026 - 11 - 10), date!(2026 - 11 - 12))?,
    )
    .await?;
    ensure!(
        !rows.is_empty() && rows.len() as u64 == summary.rows_inserted,
        "rows_inserted counts the stored rows"
    );
    ensure!(
        summary.rows_deleted == summary.rows_inserted,
        "the seed's rows of the same buckets were replaced: {summary:?}"
    );
    ensure!(
        rows.iter().all(|r| r.run_id == run.id),
        "every rebuilt row points to the run"
    );
    ensure!(
        !h.adapters.locks.is_held(&run.scope()),
        "the lock is released"
    );
    let page = h
        .audit
        .list(
            TENANT,
            &AuditFilter {
                action: Some(AuditAction::RecomputeCompleted),
                actor: None,
            },
            PageRequest::new(1, 0),
        )
        .await?;
    let entry = page.items.first().context("a completed entry")?;
    ensure!(
        entry.resource_id == run.id.to_string()
            && entry.metadata["rows_inserted"] == summary.rows_inserted,
        "audited with the summary: {entry:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_week_recompute_widens_to_whole_weeks() -> Result<()> {
    let h = Harness::new(8);
    // Wednesday 2026-11-04 to Thursday 2026-11-12 spans two ISO weeks.
    let run = h
        .recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "week", "2026-11-04", "2026-11-12"),
        )
        .await?;
    ensure!(
        run.range.from() == date!(2026 - 11 - 04),
        "the run keeps the requested range"
    );
    let done = h.work_one().await?;
    let summary = done.summary.context("a summary")?;
    ensure!(
        summary.effective_date_from == date!(2026 - 11 - 02),
        "from widens to Monday: {summary:?}"
    );
    ensure!(
        summary.effective_date_to == date!(2026 - 11 - 15),
        "to widens to Sunday: {summary:?}"
    );
    ensure!(summary.bucket_count == 2, "two whole weeks");
    let scope = RecomputeScope::new(
        TENANT,
        ReportSlug::parse("status-counts")?,
        Window::Week,
        run.range,
    );
    ensure!(
        scope.lock_key().ends_with(":week:2026-11-02:2026-11-15"),
        "the lock covers the widened scope"
    );
    Ok(())
}

#[tokio::test]
async fn overlapping_week_requests_share_one_widened_scope() -> Result<()> {
    let h = Harness::new(8);
    h.recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "week", "2026-11-04", "2026-11-05"),
        )
        .await?;
    let same_week = h
        .recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "week", "2026-11-02", "2026-11-08"),
        )
        .await;
    ensure!(
        matches!(same_week, Err(TriggerError::ScopeBusy { .. })),
        "both rebuild the same week: {same_week:?}"
    );
    Ok(())
}

#[tokio::test]
async fn trigger_checks_run_in_the_documented_order() -> Result<()> {
    let h = Harness::new(8);
    let bad = |field: &str, err: Result<domain::RecomputeRun, TriggerError>| match err {
        Err(TriggerError::Invalid(e)) => e.field() == field,
        _ => false,
    };
    // Every request below also names an unknown report: each rule wins over the 404.
    ensure!(
        bad(
            "window",
            h.recompute
                .trigger(TENANT, &trigger("nope", "year", "2026-11-02", "2026-11-01"))
                .await
        ),
        "window first"
    );
    ensure!(
        bad(
            "date_from",
            h.recompute
                .trigger(TENANT, &trigger("nope", "day", "2026-11-02", "2026-11-01"))
                .await
        ),
        "then date order"
    );
    ensure!(
        bad(
            "date_to",
            h.recompute
                .trigger(TENANT, &trigger("nope", "day", "2024-01-01", "2026-11-01"))
                .await
        ),
        "then the range limit"
    );
    let unknown = h
        .recompute
        .trigger(TENANT, &trigger("nope", "day", "2026-11-01", "2026-11-02"))
        .await;
    ensure!(
        matches!(unknown, Err(TriggerError::ReportNotFound(_))),
        "then the report: {unknown:?}"
    );
    let missing = TriggerRequest {
        report_slug: None,
        ..trigger("x", "day", "2026-11-01", "2026-11-02")
    };
    ensure!(
        bad("report_slug", h.recompute.trigger(TENANT, &missing).await),
        "the slug is required"
    );
    ensure!(
        h.audit_actions().await?.is_empty(),
        "a refused trigger leaves no audit entry"
    );
    Ok(())
}

#[tokio::test]
async fn trigger_defaults_to_a_day_window_over_the_last_thirty_days_by_the_management_api()
-> Result<()> {
    let h = Harness::new(8);
    let request = TriggerRequest {
        report_slug: Some("top-entities".into()),
        ..TriggerRequest::default()
    };
    let run = h.recompute.trigger(TENANT, &request).await?;
    ensure!(run.window == Window::Day, "day by default");
    ensure!(
        run.range.to() == NOW.date() && run.range.days() == 30,
        "the last 30 days: {:?}",
        run.range
    );
    ensure!(
        run.requested_by.as_str() == "management-api",
        "default actor"
    );

    let with_header = TriggerRequest {
        report_slug: Some("status-counts".into()),
        on_behalf_of: Some(domain::Actor::parse("nightly-job")?),
        ..TriggerRequest::default()
    };
    let run = h.recompute.trigger(TENANT, &with_header).await?;
    ensure!(
        run.requested_by.as_str() == "nightly-job",
        "X-Actor is used when the body names no one"
    );
    Ok(())
}

#[tokio::test]
async fn an_unaudited_trigger_is_failed_and_frees_its_scope() -> Result<()> {
    let h = Harness::new(8);
    h.adapters.audit.set_failing(true);
    let request = trigger("status-counts", "day", "2026-11-01", "2026-11-02");
    let err = h.recompute.trigger(TENANT, &request).await;
    ensure!(
        matches!(err, Err(TriggerError::Unavailable(_))),
        "the trigger fails: {err:?}"
    );
    ensure!(h.adapters.queue.is_empty(), "nothing was queued");
    let runs = h
        .adapters
        .runs
        .list(TENANT, &RunFilter::default(), PageRequest::new(10, 0))
        .await?;
    ensure!(
        runs.items.iter().all(|r| r.status == RunStatus::Failed),
        "no run is left pending"
    );
    h.adapters.audit.set_failing(false);
    h.recompute
        .trigger(TENANT, &request)
        .await
        .context("the scope is free again")?;
    Ok(())
}

#[tokio::test]
async fn report_parameters_are_validated_against_the_report() -> Result<()> {
    let h = Harness::new(8);
    let field = |r: Result<application::ReportResult, application::ReportError>| match r {
        Err(application::ReportError::Invalid(e)) => Some(e.field().to_owned()),
        _ => None,
    };
    let with = |f: fn(&mut RunReportParams)| {
        let mut p = RunReportParams::default();
        f(&mut p);
        p
    };
    let cases: Vec<(&str, RunReportParams, &str)> = vec![
        (
            "volume-by-period",
            with(|p| p.window = Some("hour".into())),
            "window",
        ),
        (
            "volume-by-period",
            with(|p| p.date_from = Some("2026-13-01".into())),
            "date_from",
        ),
        (
            "volume-by-period",
            with(|p| {
                p.date_from = Some("2026-11-10".into());
                p.date_to = Some("2026-11-01".into());
            }),
            "date_from",
        ),
        (
            "volume-by-period",
            with(|p| p.date_from = Some("2020-01-01".into())),
            "date_to",
        ),
        (
            "volume-by-period",
            with(|p| p.breakdown = Some("status".into())),
            "breakdown",
        ),
        (
            "status-counts",
            with(|p| p.status = Some("lost".into())),
            "status",
        ),
        (
            "status-counts",
            with(|p| p.source = Some("stripe".into())),
            "source",
        ),
        (
            "top-entities",
            with(|p| p.limit = Some("0".into())),
            "limit",
        ),
        (
            "top-entities",
            with(|p| p.offset = Some("-1".into())),
            "offset",
        ),
    ];
    for (slug, p, expected) in cases {
        let got = field(h.reports.run(TENANT, slug, &p).await);
        ensure!(
            got.as_deref() == Some(expected),
            "{slug} {p:?}: expected an error on {expected}, got {got:?}"
        );
    }
    let unknown = h
        .reports
        .run(TENANT, "no-such-report", &RunReportParams::default())
        .await;
    ensure!(
        matches!(unknown, Err(application::ReportError::NotFound(_))),
        "unknown report"
    );
    Ok(())
}

#[tokio::test]
async fn the_worker_loop_drains_the_queue_and_stops_when_it_closes() -> Result<()> {
    let h = Harness::new(8);
    h.seeder().seed(TENANT, 500, false).await?;
    h.recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "day", "2026-11-01", "2026-11-02"),
        )
        .await?;
    h.recompute
        .trigger(
            TENANT,
            &trigger("top-entities", "day", "2026-11-01", "2026-11-02"),
        )
        .await?;
    let worker = h.worker.clone();
    let handle = tokio::spawn(async move { worker.run().await });
    for _ in 0..200 {
        if h.adapters.queue.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.adapters.queue.close().await;
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .context("the worker stops after close")??;
    let completed = RunFilter {
        report_slug: None,
        status: Some(RunStatus::Completed),
    };
    let runs = h
        .recompute
        .list(TENANT, &completed, PageRequest::new(20, 0))
        .await?;
    ensure!(
        runs.total == 16 + 2,
        "both queued runs completed: {}",
        runs.total
    );
    Ok(())
}

#[tokio::test]
async fn a_trigger_during_shutdown_fails_its_run_and_says_why() -> Result<()> {
    let h = Harness::new(8);
    h.adapters.queue.close().await;
    let err = h
        .recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "day", "2026-11-01", "2026-11-02"),
        )
        .await
        .err()
        .context("a closed queue refuses the trigger")?;
    let TriggerError::ShuttingDown(run_id) = err else {
        anyhow::bail!("expected ShuttingDown, got {err:?}")
    };
    let run = h.recompute.get(TENANT, &run_id.to_string()).await?;
    ensure!(
        run.status == RunStatus::Failed,
        "the run is not left pending: {run:?}"
    );
    ensure!(
        !h.adapters.locks.is_held(&run.scope()),
        "its lock is released"
    );
    let failed = h
        .audit
        .list(
            TENANT,
            &AuditFilter {
                action: Some(AuditAction::RecomputeFailed),
                actor: None,
            },
            PageRequest::new(1, 0),
        )
        .await?;
    let entry = failed.items.first().context("the failure is audited")?;
    ensure!(
        entry.metadata["report_slug"] == "status-counts" && entry.metadata["window"] == "day",
        "with the run's report and window: {:?}",
        entry.metadata
    );
    Ok(())
}

/// A snapshot store whose rebuilds take a while, as they do on a large data set.
struct SlowRebuilds(Arc<dyn RollupStore>, Duration);

#[async_trait::async_trait]
impl RollupStore for SlowRebuilds {
    fn system(&self) -> SourceSystem {
        self.0.system()
    }
    async fn rebuild(
        &self,
        request: &application::ports::RollupRebuild,
    ) -> Result<Vec<application::ports::RollupRebuildOutcome>, application::ports::StoreError> {
        tokio::time::sleep(self.1).await;
        self.0.rebuild(request).await
    }
    async fn read(
        &self,
        query: &domain::RollupQuery,
    ) -> Result<domain::RollupPage, application::ports::StoreError> {
        self.0.read(query).await
    }
    async fn read_merged(
        &self,
        query: &domain::RollupQuery,
    ) -> Result<domain::rollup::MergedPage, application::ports::StoreError> {
        self.0.read_merged(query).await
    }
    async fn aggregate_span(
        &self,
        span: &domain::rollup::SpanQuery,
    ) -> Result<Vec<domain::rollup::MeasureValue>, application::ports::StoreError> {
        self.0.aggregate_span(span).await
    }
    async fn remove(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
    ) -> Result<u64, application::ports::StoreError> {
        self.0.remove(tenant, report).await
    }
    async fn clear(&self, tenant: TenantId) -> Result<u64, application::ports::StoreError> {
        self.0.clear(tenant).await
    }
    async fn expire(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        window: Window,
        before: time::Date,
        batch: u32,
    ) -> Result<u64, application::ports::StoreError> {
        self.0.expire(tenant, report, window, before, batch).await
    }
    async fn dirty(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        window: Window,
        range: domain::DateRange,
    ) -> Result<Vec<domain::DirtyBucket>, application::ports::StoreError> {
        self.0.dirty(tenant, report, window, range).await
    }
    async fn dirty_scopes(
        &self,
        since: time::Date,
        today: time::Date,
    ) -> Result<Vec<domain::DirtyScope>, application::ports::StoreError> {
        self.0.dirty_scopes(since, today).await
    }
}

#[tokio::test]
async fn a_worker_keeps_its_scope_locked_through_a_rebuild_longer_than_the_lock() -> Result<()> {
    let h = Harness::new(8);
    let slow: Arc<dyn RollupStore> = Arc::new(SlowRebuilds(
        h.adapters.rollups.clone(),
        Duration::from_millis(1_200),
    ));
    let worker = RecomputeWorker::new(WorkerPorts {
        runs: h.adapters.runs.clone(),
        queue: h.adapters.queue.clone(),
        rollups: slow,
        definitions: h.adapters.definitions.clone(),
        versions: h.adapters.versions.clone(),
        audit: h.adapters.audit.clone(),
        locks: h.adapters.locks.clone(),
        clock: h.clock.clone(),
    })
    .with_lock_ttl(Duration::from_millis(300));
    let run = h
        .recompute
        .trigger(
            TENANT,
            &trigger("status-counts", "day", "2026-11-01", "2026-11-02"),
        )
        .await?;
    let claimed = h.adapters.queue.claim_next().await?.context("queued")?;
    let scope = run.scope();
    let working = tokio::spawn(async move { worker.execute(claimed).await });

    // Well past the 300 ms lifetime, the lock is still held: the worker extended it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    ensure!(
        h.adapters.locks.is_held(&scope),
        "the lock outlives its TTL while the rebuild runs"
    );
    let done = working.await?;
    ensure!(
        done.status == RunStatus::Completed,
        "the run completes: {done:?}"
    );
    ensure!(!h.adapters.locks.is_held(&scope), "and releases the lock");
    Ok(())
}

fn ingest_service(h: &Harness) -> application::IngestService {
    h.services.ingest.clone()
}

fn event_body(id: Option<&str>, amount: i64) -> serde_json::Value {
    let mut body = serde_json::json!({
        "source": "stripe", "entity_id": "cus_1", "status": "success",
        "occurred_at": "2026-11-20T10:00:00Z", "amount_cents": amount, "payload": {"b": 1, "a": 2}
    });
    if let Some(id) = id {
        body["event_id"] = serde_json::Value::String(id.to_owned());
    }
    body
}

#[tokio::test]
async fn a_retried_event_is_a_duplicate_and_changed_content_a_conflict() -> Result<()> {
    use domain::IngestStatus::{Conflict, Created, Duplicate};
    let h = Harness::new(8);
    let ingest = ingest_service(&h);
    let first = ingest
        .ingest_one(TENANT, &event_body(Some("order-1"), 100), None)
        .await?;
    ensure!(
        first.status == Created && first.event_id == "order-1",
        "{first:?}"
    );
    let retry = ingest
        .ingest_one(TENANT, &event_body(Some("order-1"), 100), None)
        .await?;
    ensure!(
        retry.status == Duplicate,
        "a retry is a duplicate: {retry:?}"
    );
    let changed = ingest
        .ingest_one(TENANT, &event_body(Some("order-1"), 999), None)
        .await?;
    ensure!(
        changed.status == Conflict,
        "changed content under the key is a conflict: {changed:?}"
    );
    let by_header = ingest
        .ingest_one(TENANT, &event_body(None, 5), Some("hdr-1"))
        .await?;
    ensure!(
        by_header.event_id == "hdr-1" && by_header.status == Created,
        "the header is the key: {by_header:?}"
    );
    let assigned = ingest
        .ingest_one(TENANT, &event_body(None, 5), None)
        .await?;
    ensure!(
        assigned.event_id.starts_with("evt_") && assigned.status == Created,
        "a key is assigned: {assigned:?}"
    );
    let mismatch = ingest
        .ingest_one(TENANT, &event_body(Some("a"), 5), Some("b"))
        .await;
    ensure!(
        matches!(mismatch, Err(application::IngestError::Invalid(_))),
        "header and event_id must agree"
    );
    ensure!(
        application::ports::EventAdmin::count(h.adapters.events.as_ref(), TENANT).await? == 3,
        "three events stored"
    );
    Ok(())
}

#[tokio::test]
async fn a_bulk_request_with_one_bad_event_stores_nothing_and_names_it() -> Result<()> {
    let h = Harness::new(8);
    let ingest = ingest_service(&h);
    let mut bad = event_body(Some("b-2"), 1);
    bad["source"] = serde_json::json!("unknown-psp");
    let body = serde_json::json!({"events": [event_body(Some("b-1"), 1), bad, {"status": "lost"}]});
    let Err(application::IngestError::Invalid(errors)) = ingest.ingest_bulk(TENANT, body).await
    else {
        anyhow::bail!("the bulk request must be refused")
    };
    let fields: Vec<&str> = errors.iter().map(domain::ValidationError::field).collect();
    ensure!(
        fields.contains(&"events[1].source"),
        "the unknown source is named: {fields:?}"
    );
    ensure!(
        fields.contains(&"events[2].status") && fields.contains(&"events[2].occurred_at"),
        "a bad status and a missing time are both named: {fields:?}"
    );
    ensure!(
        application::ports::EventAdmin::count(h.adapters.events.as_ref(), TENANT).await? == 0,
        "nothing was stored"
    );

    let ok = serde_json::json!({"events": [event_body(Some("b-1"), 1), event_body(Some("b-1"), 1), event_body(Some("b-1"), 2)]});
    let outcomes = ingest.ingest_bulk(TENANT, ok).await?;
    let statuses: Vec<_> = outcomes.iter().map(|o| o.status).collect();
    use domain::IngestStatus::{Conflict, Created, Duplicate};
    ensure!(
        statuses == [Created, Duplicate, Conflict],
        "decided in order: {statuses:?}"
    );
    Ok(())
}

#[tokio::test]
async fn events_ingested_after_a_recompute_make_its_report_stale_until_the_next() -> Result<()> {
    let h = Harness::new(8);
    let reports = h.reports.clone();
    h.recompute
        .trigger(
            TENANT,
            &trigger("volume-by-period", "day", "2026-11-19", "2026-11-21"),
        )
        .await?;
    h.work_one().await?;
    let p = params("2026-11-19", "2026-11-21");
    ensure!(
        !reports
            .run(TENANT, "volume-by-period", &p)
            .await?
            .read
            .stale,
        "fresh after the recompute"
    );

    h.clock.advance(time::Duration::minutes(1));
    ingest_service(&h)
        .ingest_one(TENANT, &event_body(Some("late"), 1), None)
        .await?;
    let p2 = RunReportParams {
        limit: Some("10".into()),
        ..p.clone()
    };
    ensure!(
        reports
            .run(TENANT, "volume-by-period", &p2)
            .await?
            .read
            .stale,
        "stale once events arrived"
    );

    h.clock.advance(time::Duration::minutes(1));
    h.recompute
        .trigger(
            TENANT,
            &trigger("volume-by-period", "day", "2026-11-19", "2026-11-21"),
        )
        .await?;
    h.work_one().await?;
    let after = reports.run(TENANT, "volume-by-period", &p2).await?;
    ensure!(
        !after.read.stale
            && after
                .rows
                .iter()
                .any(|r| matches!(r, ReportRow::Period { event_count: 1, .. })),
        "{after:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_cached_catalog_asks_once_per_slug_until_its_entries_expire() -> Result<()> {
    let clock = Arc::new(ManualClock::new(NOW));
    let mut inner = application::ports::MockReportCatalog::new();
    inner.expect_get().times(2).returning(|slug| {
        Ok(domain::ReportKind::from_slug(slug)
            .map(|kind| domain::ReportDefinition::reference(kind, NOW)))
    });
    let cached =
        application::CachedCatalog::new(Arc::new(inner), clock.clone(), Duration::from_secs(60));
    let slug = ReportSlug::parse("status-counts")?;
    for _ in 0..5 {
        ensure!(
            application::ports::ReportCatalog::get(&cached, &slug)
                .await?
                .is_some(),
            "found"
        );
    }
    clock.advance(time::Duration::seconds(61));
    ensure!(
        application::ports::ReportCatalog::get(&cached, &slug)
            .await?
            .is_some(),
        "asked again after the TTL"
    );
    Ok(())
}

#[tokio::test]
async fn the_cached_catalog_serves_what_it_read_before_while_the_catalog_is_unavailable()
-> Result<()> {
    let clock = Arc::new(ManualClock::new(NOW));
    let adapters = InMemoryAdapters::new(clock.clone(), 8);
    let cached = application::CachedCatalog::new(
        adapters.catalog.clone(),
        clock.clone(),
        Duration::from_secs(60),
    );
    let catalog: &dyn application::ports::ReportCatalog = &cached;
    let slug = ReportSlug::parse("status-counts")?;
    let listing = domain::CatalogQuery::new(
        None,
        domain::CatalogSort::default(),
        domain::SortOrder::default(),
        PageRequest::new(20, 0),
    )?;
    let listed = catalog.list_public(&listing).await?;
    catalog.get(&slug).await?.context("found")?;

    adapters.catalog.set_failing(true);
    clock.advance(time::Duration::hours(1));

    ensure!(
        catalog.list_public(&listing).await? == listed,
        "a listing read before is served through the outage, however old"
    );
    ensure!(
        catalog.get(&slug).await?.is_some(),
        "and so is a definition"
    );
    let unseen = domain::CatalogQuery::new(
        Some("volume"),
        domain::CatalogSort::default(),
        domain::SortOrder::default(),
        PageRequest::new(20, 0),
    )?;
    ensure!(
        matches!(
            catalog.list_public(&unseen).await,
            Err(application::ports::StoreError::Unavailable(_))
        ),
        "a listing never read fails as the catalog does"
    );
    Ok(())
}

/// The tenancy service of a process of its own (with its own key cache) over `adapters`.
fn tenancy(adapters: &InMemoryAdapters, clock: Arc<ManualClock>) -> application::TenancyService {
    Services::assemble(adapters.ports(clock), &Settings::default()).tenancy
}

/// A new key of the default tenant with `read`, once verified by `service`.
async fn verified_key(service: &application::TenancyService) -> Result<application::IssuedKey> {
    let issued = service
        .issue_key(TENANT, &[domain::Scope::Read], "reader")
        .await?;
    service
        .authenticate(issued.secret.expose_secret())
        .await?
        .context("verified")?;
    Ok(issued)
}

#[tokio::test]
async fn a_verified_key_is_accepted_while_the_key_store_is_unavailable() -> Result<()> {
    let h = Harness::new(8);
    let service = tenancy(&h.adapters, h.clock.clone());
    let issued = verified_key(&service).await?;

    h.adapters.keys.set_failing(true);
    h.clock.advance(time::Duration::minutes(10));

    ensure!(
        service
            .authenticate(issued.secret.expose_secret())
            .await?
            .is_some(),
        "a key verified ten minutes before the store failed is still accepted"
    );
    ensure!(
        service.authenticate("pga_never-seen").await.is_err(),
        "a key never verified cannot be vouched for"
    );
    h.clock.advance(time::Duration::minutes(6));
    ensure!(
        service
            .authenticate(issued.secret.expose_secret())
            .await
            .is_err(),
        "past the outage grace, the key store must answer again"
    );
    Ok(())
}

#[tokio::test]
async fn a_revocation_elsewhere_takes_effect_within_the_key_cache_ttl() -> Result<()> {
    let h = Harness::new(8);
    // Two processes: one serving requests, one running `api-keys revoke`.
    let serving = tenancy(&h.adapters, h.clock.clone());
    let command = tenancy(&h.adapters, h.clock.clone());
    let issued = verified_key(&serving).await?;

    command.revoke_key(TENANT, &issued.key.prefix).await?;

    ensure!(
        serving
            .authenticate(issued.secret.expose_secret())
            .await?
            .is_some(),
        "within the TTL the serving process has not looked again"
    );
    h.clock.advance(time::Duration::try_from(
        application::tenancy::DEFAULT_KEY_CACHE_TTL,
    )?);
    ensure!(
        serving
            .authenticate(issued.secret.expose_secret())
            .await?
            .is_none(),
        "once the TTL has passed the revocation is seen"
    );
    Ok(())
}

#[tokio::test]
async fn a_revocation_in_the_same_process_takes_effect_at_once() -> Result<()> {
    let h = Harness::new(8);
    let service = tenancy(&h.adapters, h.clock.clone());
    let issued = verified_key(&service).await?;

    service.revoke_key(TENANT, &issued.key.prefix).await?;

    ensure!(
        service
            .authenticate(issued.secret.expose_secret())
            .await?
            .is_none(),
        "revoked at once"
    );
    Ok(())
}

#[tokio::test]
async fn key_names_and_prefixes_are_checked_before_the_store_sees_them() -> Result<()> {
    let h = Harness::new(8);
    let service = tenancy(&h.adapters, h.clock.clone());
    let named = |result: Result<_, application::tenancy::TenancyServiceError>, field: &str| matches!(result, Err(application::tenancy::TenancyServiceError::Invalid(err)) if err.field() == field);
    ensure!(
        named(
            service
                .issue_key(TENANT, &[domain::Scope::Read], "a\u{0}b")
                .await
                .map(|_| ()),
            "name"
        ),
        "a key name with U+0000 is refused"
    );
    ensure!(
        named(
            service
                .revoke_key(TENANT, "pga_1234 5678")
                .await
                .map(|_| ()),
            "prefix"
        ),
        "a prefix with a space is refused"
    );
    ensure!(
        matches!(
            service.revoke_key(TENANT, " pga_00000000 ").await,
            Err(application::tenancy::TenancyServiceError::NotFound(what)) if what == "api key pga_00000000"
        ),
        "an unknown prefix is not found, named without its white space"
    );
    Ok(())
}

/// A tenant's rollup: events and amounts by event name, by day and by month.
fn rollup_by_name() -> Result<domain::RollupDefinition> {
    domain::RollupDefinition::parse(&serde_json::json!({
        "slug": "by-name",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "qty", "kind": "sum", "field": "properties.qty"}],
        "dimensions": [{"field": "event_name"}],
        "windows": [{"window": "day"}, {"window": "month"}]
    }))
    .map_err(|errors| anyhow::anyhow!("{errors:?}"))
}

/// Stores the seed-style events of a small product: three purchases and a sign-up.
async fn product_events(h: &Harness) -> Result<()> {
    let ingest = ingest_service(h);
    for (i, (name, qty)) in [
        ("purchase", serde_json::json!(2)),
        ("purchase", serde_json::json!(3)),
        ("purchase", serde_json::json!("many")),
        ("signup", serde_json::Value::Null),
    ]
    .into_iter()
    .enumerate()
    {
        ingest
            .ingest_one(
                TENANT,
                &serde_json::json!({
                    "event_id": format!("p{i}"), "event_name": name, "user_id": "u-1",
                    "timestamp": "2026-11-20T10:00:00Z", "channel": "web",
                    "metadata": {"qty": qty}
                }),
                None,
            )
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_tenants_rollup_is_rebuilt_by_a_run_as_a_builtin_report_is() -> Result<()> {
    use application::ports::RollupDefinitions;
    let h = Harness::new(8);
    product_events(&h).await?;
    let definition = rollup_by_name()?;
    h.adapters
        .definitions
        .create(TENANT, &definition, 20, NOW)
        .await?;
    let run = h
        .recompute
        .trigger(
            TENANT,
            &trigger("by-name", "month", "2026-11-01", "2026-11-21"),
        )
        .await?;
    ensure!(
        run.scope().range.to() == date!(2026 - 11 - 30),
        "widened to the whole month: {run:?}"
    );
    let done = h.work_one().await?;
    let summary = done
        .summary
        .clone()
        .context("a completed run has a summary")?;
    ensure!(
        done.status == RunStatus::Completed
            && summary.rows_inserted == 2
            && summary.values_skipped == 1,
        "one row per name; the qty \"many\" is skipped: {done:?}"
    );
    let page = RollupStore::read(
        h.adapters.rollups.as_ref(),
        &domain::RollupQuery {
            tenant: TENANT,
            report: definition.slug.clone(),
            window: Window::Month,
            range: domain::DateRange::new(date!(2026 - 11 - 01), date!(2026 - 11 - 30))?,
            measures: vec![domain::Combine::Sum; 2],
            by_period: false,
            dimensions: vec![0],
            filters: vec![],
            order: domain::RollupOrder::MeasureDescending(0),
            page: PageRequest::new(10, 0),
            coarser: Vec::new(),
        },
    )
    .await?;
    let rows: Vec<(Option<String>, Vec<i64>)> = page
        .rows
        .into_iter()
        .map(|r| (r.dimensions[0].clone(), r.measures))
        .collect();
    ensure!(
        rows == [
            (Some("purchase".to_owned()), vec![3, 5]),
            (Some("signup".to_owned()), vec![1, 0])
        ],
        "{rows:?}"
    );
    let completed = h.audit_actions().await?;
    ensure!(
        completed.last().map(|(a, _)| *a) == Some(AuditAction::RecomputeCompleted),
        "{completed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_rollup_run_checks_the_rollups_windows_and_another_tenant_cannot_see_it() -> Result<()> {
    use application::ports::RollupDefinitions;
    let h = Harness::new(8);
    h.adapters
        .definitions
        .create(TENANT, &rollup_by_name()?, 20, NOW)
        .await?;
    let week = h
        .recompute
        .trigger(
            TENANT,
            &trigger("by-name", "week", "2026-11-01", "2026-11-21"),
        )
        .await;
    ensure!(
        matches!(&week, Err(TriggerError::Invalid(e))
            if e.field() == "window" && e.message() == "must be one of: day, month (the windows of by-name)"),
        "{week:?}"
    );
    let other = h
        .recompute
        .trigger(
            TenantId::new(2),
            &trigger("by-name", "day", "2026-11-01", "2026-11-21"),
        )
        .await;
    ensure!(
        matches!(other, Err(TriggerError::ReportNotFound(_))),
        "{other:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_run_of_a_rollup_deleted_meanwhile_fails_and_says_why() -> Result<()> {
    use application::ports::RollupDefinitions;
    let h = Harness::new(8);
    let definition = rollup_by_name()?;
    h.adapters
        .definitions
        .create(TENANT, &definition, 20, NOW)
        .await?;
    h.recompute
        .trigger(
            TENANT,
            &trigger("by-name", "day", "2026-11-01", "2026-11-21"),
        )
        .await?;
    h.adapters
        .definitions
        .delete(TENANT, &definition.slug)
        .await?;
    let failed = h.work_one().await?;
    ensure!(
        failed.status == RunStatus::Failed
            && failed.error_message.as_deref() == Some("report by-name has no definition"),
        "{failed:?}"
    );
    Ok(())
}

fn by_name_body() -> serde_json::Value {
    serde_json::json!({
        "slug": "by-name",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "qty", "kind": "sum", "field": "properties.qty"}],
        "dimensions": [{"field": "event_name"}],
        "windows": [{"window": "day"}, {"window": "month"}]
    })
}

fn ops() -> Result<domain::Actor> {
    Ok(domain::Actor::parse("ops")?)
}

#[tokio::test]
async fn the_backfill_of_every_window_is_claimed_and_rebuilt_together() -> Result<()> {
    let h = Harness::new(8);
    product_events(&h).await?;
    let change = h
        .services
        .rollups
        .create(TENANT, &by_name_body(), &ops()?)
        .await?;
    ensure!(change.runs.len() == 2, "{:?}", change.runs);
    let claimed = h
        .adapters
        .queue
        .claim_next()
        .await?
        .context("a queued run")?;
    let finished = h.worker.execute_with_companions(claimed).await;
    let ids: Vec<_> = finished.iter().map(|run| run.id).collect();
    let queued: Vec<_> = change.runs.iter().map(|run| run.id).collect();
    ensure!(
        ids == queued,
        "both backfill runs in one execution: {finished:?}"
    );
    for run in &finished {
        ensure!(run.status == RunStatus::Completed, "{run:?}");
        ensure!(
            run.summary.as_ref().is_some_and(|s| s.rows_inserted > 0),
            "each window wrote its own rows: {run:?}"
        );
    }
    let completed = h
        .audit_actions()
        .await?
        .into_iter()
        .filter(|(action, _)| *action == AuditAction::RecomputeCompleted)
        .count();
    ensure!(completed == 2, "each run audited as completed: {completed}");
    ensure!(h.adapters.queue.is_empty(), "nothing left to claim");
    Ok(())
}

#[tokio::test]
async fn a_new_report_is_stored_audited_and_backfilled_in_each_window() -> Result<()> {
    let h = Harness::new(8);
    product_events(&h).await?;
    let change = h
        .services
        .rollups
        .create(TENANT, &by_name_body(), &ops()?)
        .await?;
    let windows: Vec<(Window, domain::DateRange)> =
        change.runs.iter().map(|r| (r.window, r.range)).collect();
    ensure!(
        windows
            == [
                (
                    Window::Day,
                    domain::DateRange::new(date!(2025 - 11 - 22), date!(2026 - 11 - 21))?
                ),
                (
                    Window::Month,
                    domain::DateRange::new(date!(2025 - 11 - 21), date!(2026 - 11 - 21))?
                ),
            ],
        "a run per window over its retention, at most the longest range: {windows:?}"
    );
    for _ in 0..2 {
        let done = h.work_one().await?;
        ensure!(done.status == RunStatus::Completed, "{done:?}");
    }
    let actions = h.audit_actions().await?;
    ensure!(
        actions.first() == Some(&(AuditAction::ReportCreated, "ops".to_owned())),
        "{actions:?}"
    );
    let again = h
        .services
        .rollups
        .create(TENANT, &by_name_body(), &ops()?)
        .await;
    ensure!(
        matches!(again, Err(application::RollupError::SlugTaken(_))),
        "{again:?}"
    );
    let builtin = h
        .services
        .rollups
        .create(
            TENANT,
            &serde_json::json!({"slug": "status-counts", "measures": [{"name": "n", "kind": "count"}]}),
            &ops()?,
        )
        .await;
    ensure!(
        matches!(builtin, Err(application::RollupError::SlugTaken(_))),
        "{builtin:?}"
    );
    let invalid = h
        .services
        .rollups
        .create(
            TENANT,
            &serde_json::json!({"slug": "x", "measures": []}),
            &ops()?,
        )
        .await;
    ensure!(
        matches!(&invalid, Err(application::RollupError::Invalid(e)) if e[0].field() == "measures"),
        "{invalid:?}"
    );
    ensure!(
        h.services
            .rollups
            .get(TenantId::new(2), "by-name")
            .await
            .is_err(),
        "another tenant sees the report"
    );
    Ok(())
}

#[tokio::test]
async fn a_tenant_may_define_only_so_many_reports() -> Result<()> {
    let h = Harness::new(64);
    for n in 0..application::DEFAULT_MAX_REPORTS_PER_TENANT {
        let mut body = by_name_body();
        body["slug"] = serde_json::json!(format!("r-{n}"));
        body["windows"] = serde_json::json!([{"window": "day", "retention_days": 1}]);
        h.services.rollups.create(TENANT, &body, &ops()?).await?;
    }
    let over = h
        .services
        .rollups
        .create(TENANT, &by_name_body(), &ops()?)
        .await;
    ensure!(
        matches!(&over, Err(application::RollupError::Invalid(e))
            if e[0].field() == "slug" && e[0].message().contains("already has 20 reports")),
        "{over:?}"
    );
    Ok(())
}

#[tokio::test]
async fn changing_what_a_report_computes_rebuilds_it_and_renaming_it_does_not() -> Result<()> {
    use application::ports::RollupStore;
    let h = Harness::new(8);
    product_events(&h).await?;
    h.services
        .rollups
        .create(TENANT, &by_name_body(), &ops()?)
        .await?;
    h.work_one().await?;
    h.work_one().await?;
    let rows = |h: &Harness| {
        let rollups = h.adapters.rollups.clone();
        async move {
            let page = rollups
                .read(&domain::RollupQuery {
                    tenant: TENANT,
                    report: ReportSlug::parse("by-name")?,
                    window: Window::Day,
                    range: domain::DateRange::new(date!(2026 - 11 - 01), date!(2026 - 11 - 21))?,
                    measures: vec![domain::Combine::Sum; 2],
                    by_period: false,
                    dimensions: vec![],
                    filters: vec![],
                    order: domain::RollupOrder::Period,
                    page: PageRequest::new(10, 0),
                    coarser: Vec::new(),
                })
                .await?;
            anyhow::Ok(page.rows.len())
        }
    };
    ensure!(rows(&h).await? == 1, "built before the change");

    let mut renamed = by_name_body();
    renamed["name"] = serde_json::json!("Events by name");
    let change = h
        .services
        .rollups
        .replace(TENANT, "by-name", &renamed, &ops()?)
        .await?;
    ensure!(
        change.runs.is_empty() && change.stored.definition.name.as_str() == "Events by name",
        "a new name rebuilds nothing: {change:?}"
    );
    ensure!(rows(&h).await? == 1, "a new name keeps the snapshots");

    let mut regrouped = by_name_body();
    regrouped["dimensions"] = serde_json::json!([{"field": "user_id"}]);
    regrouped.as_object_mut().map(|o| o.remove("slug"));
    let change = h
        .services
        .rollups
        .replace(TENANT, "by-name", &regrouped, &ops()?)
        .await?;
    ensure!(
        change.runs.len() == 2,
        "a new dimension rebuilds: {change:?}"
    );
    ensure!(rows(&h).await? == 0, "the old snapshots are gone at once");

    let wrong = h
        .services
        .rollups
        .replace(
            TENANT,
            "by-name",
            &serde_json::json!({"slug": "other", "measures": [{"name": "n", "kind": "count"}]}),
            &ops()?,
        )
        .await;
    ensure!(
        matches!(&wrong, Err(application::RollupError::Invalid(e)) if e[0].field() == "slug"),
        "{wrong:?}"
    );
    let builtin = h
        .services
        .rollups
        .delete(TENANT, "top-entities", &ops()?)
        .await;
    ensure!(
        matches!(builtin, Err(application::RollupError::BuiltIn(_))),
        "{builtin:?}"
    );
    h.work_one().await?;
    h.work_one().await?;
    h.services
        .rollups
        .delete(TENANT, "by-name", &ops()?)
        .await?;
    ensure!(rows(&h).await? == 0, "a deleted report has no snapshots");
    let gone = h.services.rollups.get(TENANT, "by-name").await;
    ensure!(
        matches!(gone, Err(application::RollupError::NotFound(_))),
        "{gone:?}"
    );
    let actions: Vec<AuditAction> = h
        .audit_actions()
        .await?
        .into_iter()
        .map(|(a, _)| a)
        .filter(|a| a.as_str().starts_with("report."))
        .collect();
    ensure!(
        actions
            == [
                AuditAction::ReportCreated,
                AuditAction::ReportUpdated,
                AuditAction::ReportUpdated,
                AuditAction::ReportDeleted
            ],
        "{actions:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Ingestion from a stream
// ---------------------------------------------------------------------------------------------

fn message(
    sequence: u64,
    message_id: Option<&str>,
    body: &serde_json::Value,
) -> application::StreamMessage {
    application::StreamMessage {
        tenant: "default".to_owned(),
        source: None,
        message_id: message_id.map(str::to_owned),
        stream: "EVENTS".to_owned(),
        sequence,
        body: body.to_string().into_bytes(),
    }
}

fn stored(created: usize, duplicates: usize) -> application::Disposition {
    application::Disposition::Stored {
        created,
        duplicates,
    }
}

#[tokio::test]
async fn a_redelivered_message_stores_nothing_new_whatever_keys_its_events_have() -> Result<()> {
    let h = Harness::new(8);
    let stream = h.services.stream.clone();
    let bulk = serde_json::json!({"events": [event_body(Some("order-1"), 100), event_body(None, 200), event_body(None, 300)]});
    let single = event_body(None, 400);

    // A bulk without a message id: events without an id are keyed by the stream sequence.
    ensure!(stream.handle(&message(7, None, &bulk)).await == stored(3, 0));
    ensure!(
        stream.handle(&message(7, None, &bulk)).await == stored(0, 3),
        "redelivered"
    );
    // The same body at another sequence is another message: its keyless events are new.
    ensure!(stream.handle(&message(8, None, &bulk)).await == stored(2, 1));
    // A single event keyed by the message id, whatever its sequence.
    ensure!(stream.handle(&message(9, Some("msg-1"), &single)).await == stored(1, 0));
    ensure!(stream.handle(&message(10, Some("msg-1"), &single)).await == stored(0, 1));

    let ids: std::collections::BTreeSet<String> = h
        .adapters
        .events
        .stored(TENANT)
        .into_iter()
        .map(|event| event.event_id)
        .collect();
    for id in [
        "order-1",
        "EVENTS:7:1",
        "EVENTS:7:2",
        "EVENTS:8:1",
        "EVENTS:8:2",
        "msg-1",
    ] {
        ensure!(ids.contains(id), "{id} in {ids:?}");
    }
    ensure!(ids.len() == 6, "{ids:?}");
    Ok(())
}

#[tokio::test]
async fn a_message_that_can_never_be_stored_is_rejected_with_its_reason() -> Result<()> {
    use application::Disposition;
    let h = Harness::new(8);
    let stream = h.services.stream.clone();
    let reason = |disposition: Disposition| match disposition {
        Disposition::Reject { reason } => Some(reason),
        _ => None,
    };

    let mut unknown = message(1, None, &event_body(Some("a"), 1));
    unknown.tenant = "nobody".to_owned();
    let malformed = application::StreamMessage {
        body: b"{not json".to_vec(),
        ..message(2, None, &serde_json::Value::Null)
    };
    let mut no_source = event_body(Some("b"), 1);
    no_source["source"] = serde_json::json!("no-such-source");
    ensure!(reason(stream.handle(&unknown).await).is_some_and(|r| r.contains("nobody")));
    ensure!(reason(stream.handle(&malformed).await).is_some_and(|r| r.contains("JSON")));
    ensure!(
        reason(stream.handle(&message(3, None, &no_source)).await)
            .is_some_and(|r| r.contains("source")),
        "an unknown source"
    );

    // An id reused with another body: the rest of the bulk is stored, the message rejected.
    ensure!(
        stream
            .handle(&message(4, None, &event_body(Some("c"), 1)))
            .await
            == stored(1, 0)
    );
    let reused =
        serde_json::json!({"events": [event_body(Some("c"), 2), event_body(Some("d"), 1)]});
    let rejected = reason(stream.handle(&message(5, None, &reused)).await)
        .context("a conflict is rejected")?;
    ensure!(
        rejected.contains('c') && !rejected.contains("d,"),
        "{rejected}"
    );
    ensure!(
        h.adapters
            .events
            .stored(TENANT)
            .iter()
            .any(|e| e.event_id == "d"),
        "the rest stored"
    );
    Ok(())
}

#[tokio::test]
async fn a_message_waits_while_the_events_cannot_be_stored_and_lands_after() -> Result<()> {
    let h = Harness::new(8);
    let stream = h.services.stream.clone();
    let body = event_body(Some("late-1"), 1);
    h.adapters.events.set_failing(true);
    ensure!(matches!(
        stream.handle(&message(1, None, &body)).await,
        application::Disposition::Retry { .. }
    ));
    h.adapters.events.set_failing(false);
    ensure!(stream.handle(&message(1, None, &body)).await == stored(1, 0));
    Ok(())
}

#[tokio::test]
async fn the_subject_s_source_is_given_to_events_that_name_none() -> Result<()> {
    let h = Harness::new(8);
    let stream = h.services.stream.clone();
    let mut body = event_body(Some("s-1"), 1);
    body.as_object_mut().context("an object")?.remove("source");
    let mut sourced = message(1, None, &body);
    sourced.source = Some("stripe".to_owned());
    ensure!(stream.handle(&sourced).await == stored(1, 0));
    ensure!(
        h.adapters
            .events
            .stored(TENANT)
            .iter()
            .any(|e| e.event_id == "s-1" && e.source.as_str() == "stripe")
    );
    Ok(())
}

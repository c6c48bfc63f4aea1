//! The freshness scheduler over the memory adapters, with time driven by a manual clock:
//! refreshes queued when a window's interval (or the freshness target) has passed, once
//! whatever the number of schedulers, carried out by the workers with nobody calling anything;
//! retention of snapshot buckets and raw events.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use application::{
    Services, Settings,
    ports::{EventIngestion, IngestEvent, RollupRebuild, RollupStore, SnapshotRows, WindowRebuild},
    scheduler::{SchedulerSettings, Tick},
};
use domain::{
    AuditAction, AuditFilter, DateRange, NewEvent, PageRequest, ReportKind, ReportSlug, RunFilter,
    RunId, RunMode, RunStatus, TenantId, Window,
};
use memory_adapter::{InMemoryAdapters, ManualClock};
use time::{OffsetDateTime, macros::datetime};

const TENANT: TenantId = TenantId::DEFAULT;
const NOW: OffsetDateTime = datetime!(2026-11-20 12:00 UTC);

/// One process: the services as the binary assembles them over `adapters`.
fn process(
    adapters: &InMemoryAdapters,
    clock: &Arc<ManualClock>,
    scheduler: SchedulerSettings,
) -> Services {
    Services::assemble(
        adapters.ports(clock.clone()),
        &Settings {
            scheduler,
            ..Settings::default()
        },
    )
}

fn fresh() -> (InMemoryAdapters, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    (InMemoryAdapters::new(clock.clone(), 256), clock)
}

fn event(id: &str, at: OffsetDateTime) -> NewEvent {
    let mut event = domain::demo::event(1, NOW);
    event.event_id = id.to_owned();
    event.occurred_at = at;
    event
}

async fn ingest(
    adapters: &InMemoryAdapters,
    events: &[NewEvent],
    at: OffsetDateTime,
) -> Result<()> {
    let items = events
        .iter()
        .map(|event| IngestEvent {
            fingerprint: application::ingest::fingerprint(event),
            event: event.clone(),
        })
        .collect();
    adapters.events.ingest(TENANT, items, at).await?;
    Ok(())
}

/// The (report, window) of every run the tenant has, by report and window.
async fn runs_of(services: &Services) -> Result<Vec<domain::RecomputeRun>> {
    Ok(services
        .recompute
        .list(TENANT, &RunFilter::default(), PageRequest::new(500, 0))
        .await?
        .items)
}

fn scopes(runs: &[domain::RecomputeRun]) -> BTreeSet<(String, Window)> {
    runs.iter()
        .map(|r| (r.report_slug.to_string(), r.window))
        .collect()
}

/// Claims and executes every queued run, as the workers would.
async fn work_off(services: &Services, adapters: &InMemoryAdapters) -> Result<usize> {
    use application::ports::RunQueue;
    let mut done = 0;
    loop {
        let claimed =
            tokio::time::timeout(Duration::from_millis(50), adapters.queue.claim_next()).await;
        let Ok(Ok(Some(run))) = claimed else {
            return Ok(done);
        };
        for finished in services.worker.execute_with_companions(run).await {
            ensure!(
                finished.status == RunStatus::Completed,
                "a refresh failed: {finished:?}"
            );
            done += 1;
        }
    }
}

fn volume() -> ReportSlug {
    domain::rollup::builtin(ReportKind::VolumeByPeriod)
        .slug
        .clone()
}

/// The events the tenant's volume counts on `day`.
async fn volume_on(adapters: &InMemoryAdapters, day: time::Date) -> Result<i64> {
    let rows = adapters
        .rollups
        .rows(TENANT, &volume(), 1, Window::Day, DateRange::new(day, day)?)
        .await?;
    Ok(rows.iter().map(|r| r.measure_values[0]).sum())
}

#[tokio::test]
async fn a_dirty_window_is_refreshed_once_its_interval_has_passed() -> Result<()> {
    let (adapters, clock) = fresh();
    let services = process(&adapters, &clock, SchedulerSettings::default());
    let late_day = time::macros::date!(2026 - 11 - 18);
    ingest(
        &adapters,
        &[event("late", datetime!(2026-11-18 09:00 UTC))],
        NOW,
    )
    .await?;

    let first: Tick = services.scheduler.tick().await;
    ensure!(
        first.queued.is_empty() && first.waiting > 0,
        "nothing is due at once: {first:?}"
    );
    // Hour windows refresh every 15 minutes, days every hour, weeks every 4 hours.
    clock.advance(time::Duration::minutes(15));
    services.scheduler.tick().await;
    let queued = scopes(&runs_of(&services).await?);
    ensure!(
        queued.iter().all(|(_, w)| *w == Window::Hour) && !queued.is_empty(),
        "after 15 minutes, the hour windows: {queued:?}"
    );
    clock.advance(time::Duration::minutes(45));
    services.scheduler.tick().await;
    let runs = runs_of(&services).await?;
    let queued = scopes(&runs);
    ensure!(
        queued.contains(&(volume().to_string(), Window::Day))
            && !queued
                .iter()
                .any(|(_, w)| *w == Window::Week || *w == Window::Month),
        "after an hour, the day windows too, not the weeks: {queued:?}"
    );
    ensure!(
        runs.iter().all(|r| r.mode == RunMode::Incremental
            && r.requested_by.as_str() == "scheduler"
            && r.status == RunStatus::Pending),
        "incremental runs requested by the scheduler: {runs:?}"
    );
    let audited = services
        .audit
        .list(TENANT, &AuditFilter::default(), PageRequest::new(500, 0))
        .await?;
    ensure!(
        audited
            .items
            .iter()
            .filter(
                |e| e.action == AuditAction::RecomputeTriggered && e.actor.as_str() == "scheduler"
            )
            .count()
            == runs.len(),
        "every refresh is audited as the scheduler's"
    );

    let done = work_off(&services, &adapters).await?;
    ensure!(
        done == runs.len(),
        "every refresh ran: {done} of {}",
        runs.len()
    );
    ensure!(
        volume_on(&adapters, late_day).await? == 1,
        "the late event is counted"
    );
    let after = services.scheduler.tick().await;
    ensure!(
        after.queued.is_empty(),
        "refreshed windows are clean, the others not due yet: {after:?}"
    );
    let left = adapters
        .rollups
        .dirty(
            TENANT,
            &volume(),
            Window::Day,
            DateRange::new(late_day, late_day)?,
        )
        .await?;
    ensure!(left.is_empty(), "the refresh cleared the day: {left:?}");
    Ok(())
}

#[tokio::test]
async fn two_schedulers_over_one_store_queue_each_due_refresh_once() -> Result<()> {
    let (adapters, clock) = fresh();
    let first = process(&adapters, &clock, SchedulerSettings::default());
    let second = process(&adapters, &clock, SchedulerSettings::default());
    ingest(
        &adapters,
        &[event("late", datetime!(2026-11-18 09:00 UTC))],
        NOW,
    )
    .await?;
    clock.advance(time::Duration::days(2));
    let (a, b) = tokio::join!(first.scheduler.tick(), second.scheduler.tick());
    let runs = runs_of(&first).await?;
    ensure!(
        a.queued.len() + b.queued.len() == runs.len() && !runs.is_empty(),
        "every queued run is stored once: {a:?} {b:?}"
    );
    ensure!(
        scopes(&runs).len() == runs.len(),
        "one refresh per report and window: {:?}",
        scopes(&runs)
    );
    // Ticking again while they wait queues nothing more.
    let (a, b) = tokio::join!(first.scheduler.tick(), second.scheduler.tick());
    ensure!(
        a.queued.is_empty() && b.queued.is_empty() && a.busy == runs.len() && b.busy == runs.len(),
        "due scopes already queued are busy: {a:?} {b:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_freshness_target_refreshes_the_current_day_within_half_the_target() -> Result<()> {
    let (adapters, clock) = fresh();
    let services = process(
        &adapters,
        &clock,
        SchedulerSettings {
            freshness_target: Some(Duration::from_secs(10)),
            ..SchedulerSettings::default()
        },
    );
    ensure!(
        services.scheduler.settings().tick <= Duration::from_millis(2_500),
        "the tick keeps up with the target"
    );
    ingest(
        &adapters,
        &[event("today", NOW - time::Duration::minutes(5))],
        NOW,
    )
    .await?;
    clock.advance(time::Duration::seconds(4));
    let early = services.scheduler.tick().await;
    ensure!(
        early.queued.is_empty(),
        "not yet half the target: {early:?}"
    );
    clock.advance(time::Duration::seconds(1));
    services.scheduler.tick().await;
    let queued = scopes(&runs_of(&services).await?);
    ensure!(
        queued.contains(&(volume().to_string(), Window::Day))
            && queued.contains(&(volume().to_string(), Window::Week)),
        "the buckets holding today, whatever their interval: {queued:?}"
    );
    work_off(&services, &adapters).await?;
    ensure!(volume_on(&adapters, NOW.date()).await? == 1, "counted");

    // A late event of another day waits for its interval.
    ingest(
        &adapters,
        &[event("late", datetime!(2026-11-10 09:00 UTC))],
        clock_now(&clock),
    )
    .await?;
    clock.advance(time::Duration::seconds(30));
    services.scheduler.tick().await;
    let pending: Vec<_> = runs_of(&services)
        .await?
        .into_iter()
        .filter(|r| r.status == RunStatus::Pending)
        .collect();
    ensure!(
        !pending
            .iter()
            .any(|r| r.report_slug == volume() && r.window == Window::Day),
        "a past day's bucket is not held to the target: {pending:?}"
    );
    Ok(())
}

fn clock_now(clock: &ManualClock) -> OffsetDateTime {
    application::ports::Clock::now(clock)
}

#[tokio::test]
async fn an_ingested_event_reaches_its_report_with_no_management_call() -> Result<()> {
    let (adapters, clock) = fresh();
    let services = process(
        &adapters,
        &clock,
        SchedulerSettings {
            interval_override: Some(Duration::from_secs(2)),
            ..SchedulerSettings::default()
        },
    );
    let scheduler = services.scheduler.clone();
    let worker = services.worker.clone();
    let scheduling = tokio::spawn(async move { scheduler.run().await });
    let working = tokio::spawn(async move { worker.run().await });
    ingest(
        &adapters,
        &[event("new", NOW - time::Duration::hours(1))],
        NOW,
    )
    .await?;
    clock.advance(time::Duration::seconds(3));
    // The manual clock's pauses are short: the loops go round until the event is counted.
    let mut counted = 0;
    for _ in 0..2_000 {
        counted = volume_on(&adapters, NOW.date()).await?;
        if counted == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    scheduling.abort();
    working.abort();
    ensure!(
        counted == 1,
        "the scheduler and the worker counted the event"
    );
    Ok(())
}

#[tokio::test]
async fn retention_deletes_only_expired_buckets_and_events_and_audits_it() -> Result<()> {
    let (adapters, clock) = fresh();
    let services = process(
        &adapters,
        &clock,
        SchedulerSettings {
            event_retention_days: Some(30),
            ..SchedulerSettings::default()
        },
    );
    let today = NOW.date();
    let longest = domain::freshness::shared_rollups()
        .flat_map(|d| d.windows.iter().map(|w| w.retention_days))
        .max()
        .context("retention")?;
    let days_ago = |n: i64| NOW - time::Duration::days(n);
    ingest(
        &adapters,
        &[
            event("recent", days_ago(10)),
            event("old", days_ago(400)),
            event("ancient", days_ago(i64::from(longest) + 5)),
        ],
        NOW,
    )
    .await?;
    // The volume's day buckets (365 days kept) and week buckets (730) over all of it.
    let definition = domain::rollup::builtin(ReportKind::VolumeByPeriod);
    let everything = DateRange::new(days_ago(i64::from(longest) + 10).date(), today)?;
    adapters
        .rollups
        .rebuild(&RollupRebuild {
            tenant: TENANT,
            report: volume(),
            rollup: definition.rollup.clone(),
            windows: [Window::Day, Window::Week]
                .into_iter()
                .map(|window| WindowRebuild {
                    window,
                    range: window.widen(everything),
                    mode: RunMode::Full,
                    run_id: RunId::generate(),
                })
                .collect(),
            computed_at: NOW,
        })
        .await?;
    let expired = services.scheduler.expire().await;
    ensure!(expired.snapshot_rows > 0, "expired rows: {expired:?}");
    let days = adapters
        .rollups
        .rows(TENANT, &volume(), 1, Window::Day, everything)
        .await?;
    let kept: BTreeSet<time::Date> = days.iter().map(|r| r.bucket_start).collect();
    ensure!(
        kept == BTreeSet::from([days_ago(10).date()]),
        "only the day within 365 days is kept: {kept:?}"
    );
    let weeks = adapters
        .rollups
        .rows(
            TENANT,
            &volume(),
            1,
            Window::Week,
            Window::Week.widen(everything),
        )
        .await?;
    ensure!(
        weeks.len() == 2,
        "the weeks within 730 days are kept, the older one expired: {weeks:?}"
    );
    // Events past every retention go; the others stay.
    ensure!(
        expired.events == 1,
        "the ancient event is purged: {expired:?}"
    );
    ensure!(
        application::ports::EventAdmin::count(adapters.events.as_ref(), TENANT).await? == 2,
        "the other events stay"
    );
    let audited = services
        .audit
        .list(TENANT, &AuditFilter::default(), PageRequest::new(100, 0))
        .await?;
    ensure!(
        audited
            .items
            .iter()
            .any(|e| e.action == AuditAction::SnapshotsExpired && e.actor.as_str() == "scheduler")
            && audited
                .items
                .iter()
                .any(|e| e.action == AuditAction::EventsPurged),
        "retention is audited: {:?}",
        audited.items
    );
    // Nothing is left to expire.
    ensure!(
        services.scheduler.expire().await == application::scheduler::Expired::default(),
        "a second pass deletes nothing"
    );
    Ok(())
}

#[tokio::test]
async fn a_full_queue_stops_the_tick_rather_than_failing_every_due_refresh() -> Result<()> {
    let clock = Arc::new(ManualClock::new(NOW));
    let adapters = InMemoryAdapters::new(clock.clone(), 2);
    let services = process(&adapters, &clock, SchedulerSettings::default());
    ingest(
        &adapters,
        &[event("late", datetime!(2026-11-18 09:00 UTC))],
        NOW,
    )
    .await?;
    clock.advance(time::Duration::days(2));
    let tick = services.scheduler.tick().await;
    let runs = runs_of(&services).await?;
    let failed = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .count();
    ensure!(
        tick.queued.len() == 2 && failed == 1,
        "two queued, the third refused, the rest left for later: {tick:?}, {failed} failed"
    );
    work_off(&services, &adapters).await?;
    let next = services.scheduler.tick().await;
    ensure!(!next.queued.is_empty(), "the next tick goes on: {next:?}");
    Ok(())
}

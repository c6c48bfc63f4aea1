//! The shared contract suite: generic checks every adapter of a port must pass.
//!
//! Each function exercises one port through its trait object and fails with a message naming
//! the broken promise. The memory adapter runs them in its tests; the PostgreSQL and Redis
//! adapters run the same functions against real servers. Each expects a fresh store (nothing
//! written for the tenants it is given) and whole-second timestamps are used throughout so
//! that databases with microsecond precision compare equal.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use domain::{
    Actor, AuditAction, AuditFilter, Breakdown, CatalogQuery, CatalogSort, DateRange,
    DimensionFilter, EventStatus, IngestStatus, LockToken, NewAuditEntry, NewEvent, PageRequest,
    RecomputeRun, RecomputeScope, ReportDefinition, ReportKind, ReportQuery, ReportRow, ReportSlug,
    RunFilter, RunId, RunStatus, RunSummary, SortOrder, SourceSlug, TenantId, Window,
};
use serde_json::json;
use time::{
    Date, OffsetDateTime,
    macros::{date, datetime},
};

use crate::ports::{
    AuditLog, CacheKey, CacheVersions, EnqueueError, EventStore, IngestEvent, RebuildRequest,
    Recovered, ReportCatalog, ResponseCache, RunQueue, RunStore, RunStoreError, ScopeLock,
    SnapshotRows,
};

fn range(from: Date, to: Date) -> Result<DateRange> {
    DateRange::new(from, to).context("test range")
}

fn name(raw: &str) -> Result<domain::DisplayName> {
    Ok(domain::DisplayName::parse("name", raw)?)
}

fn text(raw: &str) -> Result<domain::Description> {
    Ok(domain::Description::parse("description", raw)?)
}

fn slug(raw: &str) -> Result<ReportSlug> {
    ReportSlug::parse(raw).context("test slug")
}

/// The catalog holds the three reference reports and lists them with search, sort and pages.
///
/// # Errors
/// The first broken promise.
pub async fn report_catalog(catalog: &dyn ReportCatalog) -> Result<()> {
    let page = PageRequest::new(20, 0);
    let all = catalog
        .list_public(&CatalogQuery::new(
            None,
            CatalogSort::Slug,
            SortOrder::Asc,
            page,
        )?)
        .await?;
    let slugs: Vec<&str> = all.items.iter().map(|r| r.slug.as_str()).collect();
    ensure!(
        slugs == ["status-counts", "top-entities", "volume-by-period"],
        "reference reports by slug, got {slugs:?}"
    );
    ensure!(
        all.total == 3,
        "total counts every match, got {}",
        all.total
    );

    let by_ttl = catalog
        .list_public(&CatalogQuery::new(
            None,
            CatalogSort::CacheTtlSeconds,
            SortOrder::Desc,
            page,
        )?)
        .await?;
    let ttls: Vec<u32> = by_ttl.items.iter().map(|r| r.cache_ttl_seconds).collect();
    ensure!(
        ttls == [120, 90, 45],
        "sorted by cache TTL descending, got {ttls:?}"
    );

    let search = catalog
        .list_public(&CatalogQuery::new(
            Some("ENTIT"),
            CatalogSort::Name,
            SortOrder::Asc,
            page,
        )?)
        .await?;
    ensure!(
        search.total == 1 && search.items[0].slug.as_str() == "top-entities",
        "search is a case-insensitive substring"
    );
    let by_name = catalog
        .list_public(&CatalogQuery::new(
            Some("counts"),
            CatalogSort::Name,
            SortOrder::Asc,
            page,
        )?)
        .await?;
    ensure!(by_name.total == 1, "search matches names too");

    let second = catalog
        .list_public(&CatalogQuery::new(
            None,
            CatalogSort::Slug,
            SortOrder::Asc,
            PageRequest::new(1, 1),
        )?)
        .await?;
    ensure!(second.total == 3, "a page still reports the full total");
    ensure!(
        second.items.len() == 1 && second.items[0].slug.as_str() == "top-entities",
        "limit 1 offset 1 is the second report"
    );

    for kind in ReportKind::ALL {
        let stored = catalog
            .get(&kind.report_slug())
            .await?
            .context("every reference report exists")?;
        let mut reference = ReportDefinition::reference(kind, stored.updated_at);
        reference.updated_at = stored.updated_at;
        ensure!(
            stored == reference,
            "{} matches the reference definition: {stored:?}",
            kind.slug()
        );
    }

    let volume = catalog
        .get(&slug("volume-by-period")?)
        .await?
        .context("volume-by-period exists")?;
    ensure!(
        volume.kind == ReportKind::VolumeByPeriod && volume.default_window == Window::Day,
        "reference definition"
    );
    ensure!(
        volume.allows(Window::Day) && volume.allows(Window::Week),
        "both windows allowed"
    );
    let week = volume
        .windows
        .iter()
        .find(|w| w.window == Window::Week)
        .context("week window")?;
    ensure!(
        week.retention_days == 730 && week.refresh_interval_minutes == 240,
        "week window settings"
    );
    ensure!(
        catalog.get(&slug("no-such-report")?).await?.is_none(),
        "an unknown slug is None"
    );
    Ok(())
}

fn event(
    id: &str,
    source: &str,
    entity: &str,
    status: EventStatus,
    at: OffsetDateTime,
) -> Result<NewEvent> {
    Ok(NewEvent {
        event_id: id.to_owned(),
        source: SourceSlug::parse("source", source)?,
        entity_id: entity.to_owned(),
        status,
        processing_ms: 120,
        amount_cents: 1_500,
        occurred_at: at,
        payload: json!({ "region": "eu-west" }),
    })
}

/// The events of the snapshot contract, around the week starting Monday 2026-03-02.
fn fixture_events() -> Result<Vec<NewEvent>> {
    use EventStatus::{Failed, Pending, Success};
    Ok(vec![
        event(
            "e1",
            "stripe",
            "entity-a",
            Success,
            datetime!(2026-03-02 10:00 UTC),
        )?,
        event(
            "e2",
            "stripe",
            "entity-b",
            Failed,
            datetime!(2026-03-02 23:59:59 UTC),
        )?,
        event(
            "e3",
            "adyen",
            "entity-a",
            Success,
            datetime!(2026-03-03 00:00 UTC),
        )?,
        event(
            "e4",
            "paypal",
            "entity-a",
            Pending,
            datetime!(2026-03-08 12:00 UTC),
        )?,
        event(
            "e5",
            "adyen",
            "entity-c",
            Success,
            datetime!(2026-03-09 08:00 UTC),
        )?,
        // 22:00 at UTC-5 is 03:00 UTC the next day: buckets follow the UTC date.
        event(
            "e6",
            "stripe",
            "entity-b",
            Success,
            datetime!(2026-03-01 22:00 -5),
        )?,
        event(
            "e7",
            "stripe",
            "entity-c",
            Failed,
            datetime!(2026-02-28 12:00 UTC),
        )?,
        event(
            "e8",
            "adyen",
            "entity-a",
            Success,
            datetime!(2026-03-02 12:00 UTC),
        )?,
    ])
}

/// Stores `list` for `tenant` the way production writes events, through ingestion; how many
/// were new.
async fn store(events: &dyn EventStore, tenant: TenantId, list: &[NewEvent]) -> Result<u64> {
    let items = list
        .iter()
        .map(|event| IngestEvent {
            fingerprint: crate::ingest::fingerprint(event),
            event: event.clone(),
        })
        .collect();
    let outcomes = events
        .ingest(tenant, items, datetime!(2026-03-10 00:00 UTC))
        .await?;
    Ok(outcomes
        .iter()
        .filter(|outcome| outcome.status == IngestStatus::Created)
        .count() as u64)
}

/// Events are stored once per id and tenant, counted and cleared per tenant.
///
/// # Errors
/// The first broken promise.
pub async fn event_store(events: &dyn EventStore, tenant: TenantId, other: TenantId) -> Result<()> {
    let fixture = fixture_events()?;
    ensure!(
        store(events, tenant, &fixture).await? == 8,
        "every new event is stored"
    );
    ensure!(
        store(events, tenant, &fixture[..2]).await? == 0,
        "a known event id is not stored twice"
    );
    ensure!(events.count(tenant).await? == 8, "count after a replay");
    ensure!(
        store(events, other, &fixture[..1]).await? == 1,
        "event ids are unique per tenant, not globally"
    );
    ensure!(events.count(other).await? == 1, "tenants are counted apart");

    let now = datetime!(2026-11-21 17:42 UTC);
    ensure!(
        events.load_demo(other, 50, now).await? == 50,
        "demo events are new"
    );
    ensure!(
        events.load_demo(other, 60, now).await? == 10,
        "demo seeding skips the ids it already wrote"
    );
    ensure!(
        events.clear(other).await? == 61,
        "clear reports what it removed"
    );
    ensure!(events.count(other).await? == 0, "clear empties the tenant");
    ensure!(
        events.count(tenant).await? == 8,
        "clear leaves other tenants alone"
    );
    Ok(())
}

fn query(
    tenant: TenantId,
    kind: ReportKind,
    window: Window,
    range: DateRange,
    breakdown: Breakdown,
) -> ReportQuery {
    ReportQuery {
        tenant,
        kind,
        window,
        range,
        breakdown,
        filter: None,
        page: PageRequest::new(100, 0),
    }
}

fn period(day: Date, count: i64) -> ReportRow {
    ReportRow::Period {
        bucket_date: day,
        event_count: count,
    }
}

/// Rebuilds replace exactly the buckets of their range, atomically, with lineage; queries group,
/// filter, order and paginate as the reports define.
///
/// # Errors
/// The first broken promise.
pub async fn snapshot_store(
    events: &dyn EventStore,
    snapshots: &dyn SnapshotRows,
    runs: &dyn RunStore,
    tenant: TenantId,
    other: TenantId,
) -> Result<()> {
    // Snapshot rows point to real runs (a foreign key, in SQL): one stored run per rebuild.
    let mut day = 0;
    let mut new_run = |owner: TenantId| {
        day += 1;
        let run = run_of(
            owner,
            "volume-by-period",
            Window::Day,
            date!(2025 - 01 - 01) + time::Duration::days(day),
            datetime!(2026-03-10 05:00 UTC),
        );
        async move {
            let run = run?;
            runs.create(&run).await?;
            Ok::<RunId, anyhow::Error>(run.id)
        }
    };
    use ReportKind::{StatusCounts, TopEntities, VolumeByPeriod};
    store(events, tenant, &fixture_events()?).await?;
    let week_of_march_2 = range(date!(2026 - 03 - 02), date!(2026 - 03 - 08))?;
    let computed_at = datetime!(2026-03-10 06:00 UTC);
    let rebuild = |kind, window, range, run_id| RebuildRequest {
        tenant,
        kind,
        window,
        range,
        run_id,
        computed_at,
    };

    // Before any rebuild, nothing.
    let empty = snapshots
        .query(&query(
            tenant,
            VolumeByPeriod,
            Window::Day,
            week_of_march_2,
            Breakdown::Period,
        ))
        .await?;
    ensure!(
        empty.rows.is_empty() && empty.total_rows == 0 && empty.last_refreshed_at.is_none(),
        "no rows before a rebuild"
    );

    // A neighbouring bucket rebuilt first must survive the later rebuild untouched.
    let before_run = new_run(tenant).await?;
    let before = range(date!(2026 - 02 - 23), date!(2026 - 03 - 01))?;
    let outcome = snapshots
        .rebuild(&rebuild(VolumeByPeriod, Window::Day, before, before_run))
        .await?;
    ensure!(
        outcome.rows_inserted == 1 && outcome.rows_deleted == 0,
        "one row for e7, got {outcome:?}"
    );

    let run = new_run(tenant).await?;
    let outcome = snapshots
        .rebuild(&rebuild(VolumeByPeriod, Window::Day, week_of_march_2, run))
        .await?;
    ensure!(
        outcome.rows_inserted == 4 && outcome.rows_deleted == 0,
        "day rows per (bucket, source), got {outcome:?}"
    );

    let totals = snapshots
        .query(&query(
            tenant,
            VolumeByPeriod,
            Window::Day,
            week_of_march_2,
            Breakdown::Period,
        ))
        .await?;
    let expected = vec![
        period(date!(2026 - 03 - 02), 4),
        period(date!(2026 - 03 - 03), 1),
        period(date!(2026 - 03 - 08), 1),
    ];
    ensure!(
        totals.rows == expected,
        "volume per day, by UTC date: {:?}",
        totals.rows
    );
    ensure!(totals.total_rows == 3, "total rows");
    ensure!(
        totals.last_refreshed_at == Some(computed_at),
        "last_refreshed_at is the newest computed_at"
    );

    let by_source = snapshots
        .query(&query(
            tenant,
            VolumeByPeriod,
            Window::Day,
            week_of_march_2,
            Breakdown::Source,
        ))
        .await?;
    let rows: Vec<(Date, String, i64)> = by_source
        .rows
        .iter()
        .filter_map(|row| match row {
            ReportRow::PeriodSource {
                bucket_date,
                source,
                event_count,
            } => Some((*bucket_date, source.clone(), *event_count)),
            _ => None,
        })
        .collect();
    let expected = vec![
        (date!(2026 - 03 - 02), "adyen".to_owned(), 1),
        (date!(2026 - 03 - 02), "stripe".to_owned(), 3),
        (date!(2026 - 03 - 03), "adyen".to_owned(), 1),
        (date!(2026 - 03 - 08), "paypal".to_owned(), 1),
    ];
    ensure!(
        rows == expected && by_source.rows.len() == 4,
        "by date then source: {:?}",
        by_source.rows
    );

    let mut stripe_only = query(
        tenant,
        VolumeByPeriod,
        Window::Day,
        week_of_march_2,
        Breakdown::Period,
    );
    stripe_only.filter = Some(DimensionFilter::Source(SourceSlug::parse(
        "source", "stripe",
    )?));
    let stripe = snapshots.query(&stripe_only).await?;
    ensure!(
        stripe.rows == vec![period(date!(2026 - 03 - 02), 3)],
        "source filter: {:?}",
        stripe.rows
    );

    let lineage = snapshots
        .rows(
            tenant,
            VolumeByPeriod,
            Window::Day,
            range(date!(2026 - 02 - 01), date!(2026 - 03 - 31))?,
        )
        .await?;
    ensure!(
        lineage.len() == 5,
        "five stored rows, got {}",
        lineage.len()
    );
    let old = lineage
        .iter()
        .find(|r| r.bucket_start == date!(2026 - 02 - 28))
        .context("the 02-28 row survives")?;
    ensure!(
        old.run_id == Some(before_run),
        "a bucket outside the range keeps its run"
    );
    ensure!(
        lineage
            .iter()
            .filter(|r| r.bucket_start >= date!(2026 - 03 - 02))
            .all(|r| r.run_id == Some(run)
                && r.dimension_key == "source"
                && r.metric_name == "event_count"),
        "every rebuilt row points to its run: {lineage:?}"
    );

    // A second rebuild replaces the rows of its buckets.
    store(
        events,
        tenant,
        &[event(
            "e9",
            "stripe",
            "entity-d",
            EventStatus::Success,
            datetime!(2026-03-03 09:30 UTC),
        )?],
    )
    .await?;
    let rerun = new_run(tenant).await?;
    let outcome = snapshots
        .rebuild(&rebuild(
            VolumeByPeriod,
            Window::Day,
            week_of_march_2,
            rerun,
        ))
        .await?;
    ensure!(
        outcome.rows_deleted == 4 && outcome.rows_inserted == 5,
        "rebuild replaces its buckets, got {outcome:?}"
    );

    // Statuses.
    snapshots
        .rebuild(&rebuild(StatusCounts, Window::Day, week_of_march_2, run))
        .await?;
    let statuses = snapshots
        .query(&query(
            tenant,
            StatusCounts,
            Window::Day,
            week_of_march_2,
            Breakdown::Status,
        ))
        .await?;
    let status = |s: &str, n| ReportRow::Status {
        status: s.to_owned(),
        event_count: n,
    };
    ensure!(
        statuses.rows
            == vec![
                status("success", 5),
                status("failed", 1),
                status("pending", 1)
            ],
        "by count desc then status: {:?}",
        statuses.rows
    );
    let per_day = snapshots
        .query(&query(
            tenant,
            StatusCounts,
            Window::Day,
            week_of_march_2,
            Breakdown::Period,
        ))
        .await?;
    let per = |d, s: &str, n| ReportRow::PeriodStatus {
        bucket_date: d,
        status: s.to_owned(),
        event_count: n,
    };
    ensure!(
        per_day.rows
            == vec![
                per(date!(2026 - 03 - 02), "failed", 1),
                per(date!(2026 - 03 - 02), "success", 3),
                per(date!(2026 - 03 - 03), "success", 2),
                per(date!(2026 - 03 - 08), "pending", 1),
            ],
        "by date then status: {:?}",
        per_day.rows
    );
    let mut failed_only = query(
        tenant,
        StatusCounts,
        Window::Day,
        week_of_march_2,
        Breakdown::Status,
    );
    failed_only.filter = Some(DimensionFilter::Status(EventStatus::Failed));
    ensure!(
        snapshots.query(&failed_only).await?.rows == vec![status("failed", 1)],
        "status filter"
    );

    // Entities, ranked and paginated.
    snapshots
        .rebuild(&rebuild(TopEntities, Window::Day, week_of_march_2, run))
        .await?;
    let mut top = query(
        tenant,
        TopEntities,
        Window::Day,
        week_of_march_2,
        Breakdown::EntityId,
    );
    let entity = |e: &str, n| ReportRow::Entity {
        entity_id: e.to_owned(),
        event_count: n,
    };
    let ranked = snapshots.query(&top).await?;
    ensure!(
        ranked.rows
            == vec![
                entity("entity-a", 4),
                entity("entity-b", 2),
                entity("entity-d", 1)
            ],
        "by count desc then entity: {:?}",
        ranked.rows
    );
    top.page = PageRequest::new(1, 1);
    let second = snapshots.query(&top).await?;
    ensure!(
        second.rows == vec![entity("entity-b", 2)] && second.total_rows == 3,
        "limit/offset over ranked rows"
    );

    // Weeks: a bucket is read when its Monday lies in the range.
    let two_weeks = range(date!(2026 - 03 - 02), date!(2026 - 03 - 15))?;
    let outcome = snapshots
        .rebuild(&rebuild(VolumeByPeriod, Window::Week, two_weeks, run))
        .await?;
    ensure!(
        outcome.rows_inserted == 4,
        "week rows per (week, source), got {outcome:?}"
    );
    let weeks = snapshots
        .query(&query(
            tenant,
            VolumeByPeriod,
            Window::Week,
            two_weeks,
            Breakdown::Period,
        ))
        .await?;
    ensure!(
        weeks.rows
            == vec![
                period(date!(2026 - 03 - 02), 7),
                period(date!(2026 - 03 - 09), 1)
            ],
        "weekly totals: {:?}",
        weeks.rows
    );
    let from_tuesday = range(date!(2026 - 03 - 03), date!(2026 - 03 - 15))?;
    let later = snapshots
        .query(&query(
            tenant,
            VolumeByPeriod,
            Window::Week,
            from_tuesday,
            Breakdown::Period,
        ))
        .await?;
    ensure!(
        later.rows == vec![period(date!(2026 - 03 - 09), 1)],
        "a week whose Monday is before the range is left out"
    );
    let days = snapshots
        .query(&query(
            tenant,
            VolumeByPeriod,
            Window::Day,
            two_weeks,
            Breakdown::Period,
        ))
        .await?;
    ensure!(
        days.rows.len() == 3,
        "day and week snapshots are kept apart"
    );

    // Tenants.
    let foreign = snapshots
        .query(&query(
            other,
            VolumeByPeriod,
            Window::Day,
            week_of_march_2,
            Breakdown::Period,
        ))
        .await?;
    ensure!(
        foreign.rows.is_empty(),
        "another tenant sees none of these rows"
    );
    let foreign_run = new_run(other).await?;
    let foreign_rebuild = RebuildRequest {
        tenant: other,
        kind: VolumeByPeriod,
        window: Window::Day,
        range: week_of_march_2,
        run_id: foreign_run,
        computed_at,
    };
    ensure!(
        snapshots.rebuild(&foreign_rebuild).await?.rows_inserted == 0,
        "another tenant's rebuild reads only its events"
    );
    let mine = snapshots
        .query(&query(
            tenant,
            VolumeByPeriod,
            Window::Day,
            week_of_march_2,
            Breakdown::Period,
        ))
        .await?;
    ensure!(
        mine.total_rows == 3,
        "another tenant's rebuild leaves these rows alone"
    );

    let cleared = snapshots.clear(tenant).await?;
    ensure!(
        cleared == 1 + 5 + 4 + 5 + 4,
        "clear removes every row of the tenant, got {cleared}"
    );
    Ok(())
}

fn run_of(
    tenant: TenantId,
    report: &str,
    window: Window,
    from: Date,
    at: OffsetDateTime,
) -> Result<RecomputeRun> {
    Ok(RecomputeRun::pending(
        tenant,
        slug(report)?,
        window,
        range(from, from)?,
        Actor::parse("contract")?,
        at,
        Some(LockToken::generate()),
    ))
}

/// Runs are stored, looked up per tenant, listed newest first and moved only through legal
/// transitions; at most one run per scope is active.
///
/// # Errors
/// The first broken promise.
pub async fn run_store(runs: &dyn RunStore, tenant: TenantId, other: TenantId) -> Result<()> {
    let t0 = datetime!(2026-11-21 10:00 UTC);
    let minute = time::Duration::minutes(1);
    let first = run_of(
        tenant,
        "volume-by-period",
        Window::Day,
        date!(2026 - 11 - 01),
        t0,
    )?;
    runs.create(&first).await?;
    ensure!(
        runs.get(tenant, first.id).await?.as_ref() == Some(&first),
        "a created run reads back unchanged"
    );
    ensure!(
        runs.get(other, first.id).await?.is_none(),
        "another tenant cannot see the run"
    );
    ensure!(
        runs.get(tenant, RunId::generate()).await?.is_none(),
        "an unknown id is None"
    );

    let duplicate = run_of(
        tenant,
        "volume-by-period",
        Window::Day,
        date!(2026 - 11 - 01),
        t0 + minute,
    )?;
    ensure!(
        matches!(
            runs.create(&duplicate).await,
            Err(RunStoreError::ActiveScope)
        ),
        "a second active run of one scope is refused"
    );
    ensure!(
        runs.get(tenant, duplicate.id).await?.is_none(),
        "a refused run is not stored"
    );
    // A week run of the same days is a different scope, and so is another tenant's.
    let weekly = run_of(
        tenant,
        "volume-by-period",
        Window::Week,
        date!(2026 - 11 - 01),
        t0 + minute,
    )?;
    runs.create(&weekly).await?;
    let foreign = run_of(
        other,
        "volume-by-period",
        Window::Day,
        date!(2026 - 11 - 01),
        t0 + minute,
    )?;
    runs.create(&foreign).await?;

    let started_at = t0 + minute * 2;
    let started = runs.start(tenant, first.id, started_at).await?;
    ensure!(
        started.status == RunStatus::Running && started.started_at == Some(started_at),
        "start claims the run"
    );
    ensure!(
        matches!(
            runs.start(tenant, first.id, started_at).await,
            Err(RunStoreError::Transition(_))
        ),
        "a running run cannot be claimed twice"
    );
    ensure!(
        matches!(
            runs.start(other, first.id, started_at).await,
            Err(RunStoreError::NotFound(_))
        ),
        "another tenant cannot claim the run"
    );
    ensure!(
        runs.renew_lease(tenant, first.id).await?,
        "a running run's lease is renewed"
    );
    ensure!(
        !runs.renew_lease(other, first.id).await?,
        "another tenant cannot renew the run"
    );
    ensure!(
        !runs.renew_lease(tenant, weekly.id).await?,
        "a pending run has no lease to renew"
    );
    let summary = RunSummary {
        rows_deleted: 3,
        rows_inserted: 4,
        bucket_count: 1,
        effective_date_from: date!(2026 - 11 - 01),
        effective_date_to: date!(2026 - 11 - 01),
    };
    let finished_at = t0 + minute * 3;
    let completed = runs
        .complete(tenant, first.id, summary, finished_at)
        .await?;
    ensure!(
        completed.status == RunStatus::Completed
            && completed.summary == Some(summary)
            && completed.finished_at == Some(finished_at),
        "complete stores the summary: {completed:?}"
    );
    ensure!(
        runs.get(tenant, first.id).await?.as_ref() == Some(&completed),
        "the completed run reads back"
    );
    ensure!(
        !runs.renew_lease(tenant, first.id).await?,
        "a finished run is not renewed"
    );
    ensure!(
        matches!(
            runs.fail(tenant, first.id, "late", finished_at).await,
            Err(RunStoreError::Transition(_))
        ),
        "completed is final"
    );
    runs.create(&duplicate)
        .await
        .context("a finished scope accepts a new run")?;

    let failed = runs
        .fail(tenant, duplicate.id, "queue full", finished_at)
        .await?;
    ensure!(
        failed.status == RunStatus::Failed && failed.error_message.as_deref() == Some("queue full"),
        "a pending run can fail with its error"
    );
    ensure!(
        matches!(
            runs.complete(tenant, weekly.id, summary, finished_at).await,
            Err(RunStoreError::Transition(_))
        ),
        "a pending run cannot complete"
    );
    ensure!(
        matches!(
            runs.start(tenant, RunId::generate(), started_at).await,
            Err(RunStoreError::NotFound(_))
        ),
        "unknown ids are NotFound"
    );

    let all = runs
        .list(tenant, &RunFilter::default(), PageRequest::new(20, 0))
        .await?;
    let ids: Vec<RunId> = all.items.iter().map(|r| r.id).collect();
    ensure!(
        all.total == 3,
        "three runs of this tenant, got {}",
        all.total
    );
    ensure!(ids[2] == first.id, "newest request first: {ids:?}");
    let completed_only = RunFilter {
        report_slug: None,
        status: Some(RunStatus::Completed),
    };
    let page = runs
        .list(tenant, &completed_only, PageRequest::new(20, 0))
        .await?;
    ensure!(
        page.total == 1 && page.items[0].id == first.id,
        "status filter"
    );
    let other_report = RunFilter {
        report_slug: Some(slug("status-counts")?),
        status: None,
    };
    ensure!(
        runs.list(tenant, &other_report, PageRequest::new(20, 0))
            .await?
            .total
            == 0,
        "report filter"
    );
    let second = runs
        .list(tenant, &RunFilter::default(), PageRequest::new(1, 1))
        .await?;
    ensure!(
        second.items.len() == 1 && second.total == 3,
        "pagination keeps the total"
    );
    Ok(())
}

/// The queue hands out runs first in, first out, claims them (stamping `started_at`, the time
/// the queue's clock reads), refuses work past its capacity and stops after close.
///
/// # Errors
/// The first broken promise.
pub async fn run_queue(
    queue: &dyn RunQueue,
    runs: &dyn RunStore,
    tenant: TenantId,
    capacity: usize,
    started_at: OffsetDateTime,
) -> Result<()> {
    let t0 = datetime!(2026-11-21 10:00 UTC);
    let mut queued = Vec::new();
    for n in 0..capacity {
        let day = date!(2026 - 01 - 01) + time::Duration::days(n as i64);
        let run = run_of(
            tenant,
            "status-counts",
            Window::Day,
            day,
            t0 + time::Duration::seconds(n as i64),
        )?;
        runs.create(&run).await?;
        queue
            .enqueue(&run)
            .await
            .with_context(|| format!("run {n} fits the queue"))?;
        queued.push(run);
    }
    let overflow = run_of(
        tenant,
        "status-counts",
        Window::Week,
        date!(2026 - 06 - 01),
        t0 + time::Duration::hours(1),
    )?;
    runs.create(&overflow).await?;
    ensure!(
        matches!(queue.enqueue(&overflow).await, Err(EnqueueError::Full)),
        "a full queue refuses the run"
    );
    runs.fail(tenant, overflow.id, "queue full", t0).await?;

    let first = queue
        .claim_next()
        .await?
        .context("a queued run is claimed")?;
    ensure!(first.id == queued[0].id, "first in, first out");
    ensure!(
        first.status == RunStatus::Running && first.started_at == Some(started_at),
        "claiming starts the run"
    );
    ensure!(
        queue.recover().await? == Recovered::default(),
        "a run claimed within its lease is not recovered"
    );

    if capacity >= 3 {
        // A run that failed while queued is skipped.
        runs.fail(tenant, queued[1].id, "cancelled", t0).await?;
        let next = queue
            .claim_next()
            .await?
            .context("the next live run is claimed")?;
        ensure!(next.id == queued[2].id, "a failed queued run is skipped");
    }
    queue.close().await;
    ensure!(
        queue.claim_next().await?.is_none(),
        "a closed queue hands out nothing"
    );
    let late = run_of(
        tenant,
        "top-entities",
        Window::Day,
        date!(2026 - 01 - 01),
        t0,
    )?;
    runs.create(&late).await?;
    ensure!(
        matches!(queue.enqueue(&late).await, Err(EnqueueError::Closed)),
        "a closed queue accepts nothing"
    );
    Ok(())
}

fn audit_entry(
    tenant: TenantId,
    actor: &str,
    action: AuditAction,
    resource: &str,
) -> Result<NewAuditEntry> {
    Ok(NewAuditEntry {
        tenant,
        actor: Actor::parse(actor)?,
        action,
        resource_type: "recompute_run".to_owned(),
        resource_id: resource.to_owned(),
        metadata: json!({ "report_slug": "status-counts", "nested": { "n": 1 } }),
    })
}

/// Entries are appended with ids and times, listed newest first with exact filters.
///
/// # Errors
/// The first broken promise.
pub async fn audit_log(log: &dyn AuditLog, tenant: TenantId, other: TenantId) -> Result<()> {
    let first = log
        .record(audit_entry(
            tenant,
            "ops",
            AuditAction::RecomputeTriggered,
            "r1",
        )?)
        .await?;
    let second = log
        .record(audit_entry(
            tenant,
            "recompute-worker",
            AuditAction::RecomputeCompleted,
            "r1",
        )?)
        .await?;
    let third = log
        .record(audit_entry(
            tenant,
            "ops",
            AuditAction::RecomputeTriggered,
            "r2",
        )?)
        .await?;
    log.record(audit_entry(
        other,
        "ops",
        AuditAction::RecomputeTriggered,
        "r3",
    )?)
    .await?;
    ensure!(first.id < second.id && second.id < third.id, "ids increase");
    ensure!(
        first.metadata["nested"]["n"] == 1,
        "metadata is kept as JSON"
    );
    ensure!(
        first.actor.as_str() == "ops" && first.resource_id == "r1",
        "fields are kept"
    );

    let all = log
        .list(tenant, &AuditFilter::default(), PageRequest::new(20, 0))
        .await?;
    let ids: Vec<i64> = all.items.iter().map(|e| e.id).collect();
    ensure!(
        ids == [third.id, second.id, first.id],
        "newest first, only this tenant: {ids:?}"
    );
    ensure!(all.total == 3, "total of this tenant");

    let triggered = AuditFilter {
        action: Some(AuditAction::RecomputeTriggered),
        actor: None,
    };
    ensure!(
        log.list(tenant, &triggered, PageRequest::new(20, 0))
            .await?
            .total
            == 2,
        "action filter"
    );
    let worker = AuditFilter {
        action: None,
        actor: Some(Actor::parse("recompute-worker")?),
    };
    let page = log.list(tenant, &worker, PageRequest::new(20, 0)).await?;
    ensure!(
        page.total == 1 && page.items[0].id == second.id,
        "actor filter is exact"
    );
    let prefix = AuditFilter {
        action: None,
        actor: Some(Actor::parse("op")?),
    };
    ensure!(
        log.list(tenant, &prefix, PageRequest::new(20, 0))
            .await?
            .total
            == 0,
        "actor filter is not a prefix match"
    );
    let paged = log
        .list(tenant, &AuditFilter::default(), PageRequest::new(2, 1))
        .await?;
    ensure!(
        paged.items.len() == 2 && paged.items[0].id == second.id && paged.total == 3,
        "pagination"
    );
    Ok(())
}

/// Values come back until they expire; a miss is `None`.
///
/// # Errors
/// The first broken promise.
pub async fn response_cache(cache: &dyn ResponseCache, tenant: TenantId) -> Result<()> {
    let report = slug("status-counts")?;
    let key = CacheKey::report(tenant, &report, 1, "abc");
    ensure!(cache.get(&key).await?.is_none(), "a fresh key misses");
    cache
        .put(&key, b"first".to_vec(), Duration::from_secs(60))
        .await?;
    ensure!(
        cache.get(&key).await?.as_deref() == Some(&b"first"[..]),
        "a stored value hits"
    );
    cache
        .put(&key, b"second".to_vec(), Duration::from_secs(60))
        .await?;
    ensure!(
        cache.get(&key).await?.as_deref() == Some(&b"second"[..]),
        "put replaces"
    );
    let next_version = CacheKey::report(tenant, &report, 2, "abc");
    ensure!(
        cache.get(&next_version).await?.is_none(),
        "another version is another key"
    );

    let short = CacheKey::report(tenant, &report, 1, "short-lived");
    cache
        .put(&short, b"soon gone".to_vec(), Duration::from_millis(50))
        .await?;
    std::thread::sleep(Duration::from_millis(150));
    ensure!(
        cache.get(&short).await?.is_none(),
        "an expired value misses"
    );
    Ok(())
}

/// Versions start at 0 and bump by one, per tenant and report.
///
/// # Errors
/// The first broken promise.
pub async fn cache_versions(
    versions: &dyn CacheVersions,
    tenant: TenantId,
    other: TenantId,
) -> Result<()> {
    let status = slug("status-counts")?;
    let top = slug("top-entities")?;
    ensure!(
        versions.current(tenant, &status).await? == 0,
        "a report starts at version 0"
    );
    ensure!(
        versions.bump(tenant, &status).await? == 1,
        "the first bump gives 1"
    );
    ensure!(versions.bump(tenant, &status).await? == 2, "bumps count up");
    let current = versions.current(tenant, &status).await?;
    ensure!(current == 2, "current reads the last bump");
    ensure!(
        versions
            .known(tenant, &status)
            .is_none_or(|known| known == current),
        "what is known without asking is what current reads"
    );
    ensure!(
        versions.current(tenant, &top).await? == 0,
        "reports have their own versions"
    );
    ensure!(
        versions.current(other, &status).await? == 0,
        "tenants have their own versions"
    );
    ensure!(
        versions
            .known(other, &status)
            .is_none_or(|known| known == 0),
        "what is known of another tenant is its own version"
    );
    Ok(())
}

/// A lock has one owner at a time, only the owner releases or extends it, and it expires.
///
/// # Errors
/// The first broken promise.
pub async fn scope_lock(locks: &dyn ScopeLock, tenant: TenantId) -> Result<()> {
    let scope = RecomputeScope::new(
        tenant,
        slug("volume-by-period")?,
        Window::Week,
        range(date!(2026 - 11 - 18), date!(2026 - 11 - 20))?,
    );
    let owner = LockToken::generate();
    let intruder = LockToken::generate();
    let ttl = Duration::from_secs(30);
    ensure!(
        locks.acquire(&scope, &owner, ttl).await?,
        "a free scope is acquired"
    );
    ensure!(
        !locks.acquire(&scope, &intruder, ttl).await?,
        "a held scope is refused"
    );
    ensure!(
        !locks.release(&scope, &intruder).await?,
        "only the owner releases"
    );
    ensure!(
        !locks.extend(&scope, &intruder, ttl).await?,
        "only the owner extends"
    );
    ensure!(
        !locks.acquire(&scope, &intruder, ttl).await?,
        "a failed release by another leaves the lock held"
    );
    ensure!(
        locks.extend(&scope, &owner, ttl).await?,
        "the owner extends"
    );
    ensure!(locks.release(&scope, &owner).await?, "the owner releases");
    ensure!(
        !locks.release(&scope, &owner).await?,
        "a released lock is not released twice"
    );
    ensure!(
        locks.acquire(&scope, &intruder, ttl).await?,
        "a released scope is free again"
    );
    ensure!(
        locks.release(&scope, &intruder).await?,
        "and its new owner releases it"
    );

    let other_scope = RecomputeScope::new(
        tenant,
        slug("volume-by-period")?,
        Window::Day,
        range(date!(2026 - 11 - 18), date!(2026 - 11 - 20))?,
    );
    ensure!(
        locks
            .acquire(&other_scope, &owner, Duration::from_millis(50))
            .await?,
        "scopes lock independently"
    );
    std::thread::sleep(Duration::from_millis(150));
    ensure!(
        !locks.extend(&other_scope, &owner, ttl).await?,
        "an expired lock cannot be extended"
    );
    ensure!(
        locks.acquire(&other_scope, &intruder, ttl).await?,
        "an expired lock is free"
    );
    ensure!(
        !locks.release(&other_scope, &owner).await?,
        "the former owner cannot release the new owner's lock"
    );
    ensure!(locks.release(&other_scope, &intruder).await?, "cleanup");
    Ok(())
}

fn ingest_item(id: &str, fingerprint: &str, at: OffsetDateTime) -> Result<IngestEvent> {
    Ok(IngestEvent {
        event: event(id, "stripe", "entity-i", EventStatus::Success, at)?,
        fingerprint: fingerprint.to_owned(),
    })
}

/// Ingestion stores new ids, tells replays from conflicts by fingerprint (also within one
/// call), keeps tenants apart and records which days changed.
///
/// # Errors
/// The first broken promise.
pub async fn event_ingestion(
    events: &dyn EventStore,
    tenant: TenantId,
    other: TenantId,
) -> Result<()> {
    use domain::IngestStatus::{Conflict, Created, Duplicate};
    let at = datetime!(2026-11-21 12:00 UTC);
    let day = datetime!(2026-11-20 08:00 UTC);
    let statuses = |outcomes: Vec<domain::IngestOutcome>| {
        outcomes.into_iter().map(|o| o.status).collect::<Vec<_>>()
    };

    let first = events
        .ingest(
            tenant,
            vec![
                ingest_item("a", "fp-a", day)?,
                ingest_item("b", "fp-b", day)?,
            ],
            at,
        )
        .await?;
    ensure!(
        first
            .iter()
            .map(|o| o.event_id.as_str())
            .collect::<Vec<_>>()
            == ["a", "b"],
        "outcomes in order"
    );
    ensure!(statuses(first) == [Created, Created], "new ids are created");
    let replay = events
        .ingest(tenant, vec![ingest_item("a", "fp-a", day)?], at)
        .await?;
    ensure!(
        statuses(replay) == [Duplicate],
        "the same content again is a duplicate"
    );
    let changed = events
        .ingest(tenant, vec![ingest_item("a", "fp-other", day)?], at)
        .await?;
    ensure!(
        statuses(changed) == [Conflict],
        "other content under a known id is a conflict"
    );
    let within = events
        .ingest(
            tenant,
            vec![
                ingest_item("c", "fp-c", day)?,
                ingest_item("c", "fp-c", day)?,
                ingest_item("c", "fp-x", day)?,
            ],
            at,
        )
        .await?;
    ensure!(
        statuses(within) == [Created, Duplicate, Conflict],
        "one call decides in order"
    );
    ensure!(
        events.count(tenant).await? == 3,
        "only a, b and c are stored"
    );
    let foreign = events
        .ingest(other, vec![ingest_item("a", "fp-z", day)?], at)
        .await?;
    ensure!(statuses(foreign) == [Created], "ids are unique per tenant");

    let around = range(date!(2026 - 11 - 19), date!(2026 - 11 - 21))?;
    ensure!(
        events.changed_since(tenant, around).await? == Some(at),
        "the day of created events changed at `at`"
    );
    let elsewhere = range(date!(2026 - 10 - 01), date!(2026 - 10 - 31))?;
    ensure!(
        events.changed_since(tenant, elsewhere).await?.is_none(),
        "other days did not change"
    );
    let later = at + time::Duration::minutes(5);
    events
        .ingest(tenant, vec![ingest_item("a", "fp-a", day)?], later)
        .await?;
    ensure!(
        events.changed_since(tenant, around).await? == Some(at),
        "a duplicate changes nothing"
    );
    Ok(())
}

/// Tenants are created once per slug and found by slug; `default` is there from the start.
///
/// # Errors
/// The first broken promise.
pub async fn tenant_store(tenants: &dyn crate::ports::TenantStore) -> Result<()> {
    let default = tenants
        .find(&domain::TenantSlug::default_tenant())
        .await?
        .context("default exists")?;
    ensure!(default.id == TenantId::DEFAULT, "default is tenant 1");
    let slug = domain::TenantSlug::parse("tenant", "acme")?;
    ensure!(
        tenants.find(&slug).await?.is_none(),
        "acme does not exist yet"
    );
    let acme = tenants.create(&slug, &name("Acme")?).await?;
    ensure!(
        acme.id != TenantId::DEFAULT && acme.name == "Acme",
        "a new tenant: {acme:?}"
    );
    ensure!(
        tenants.find(&slug).await?.map(|t| t.id) == Some(acme.id),
        "found by slug"
    );
    ensure!(
        matches!(
            tenants.create(&slug, &name("Again")?).await,
            Err(crate::ports::TenancyError::AlreadyExists(_))
        ),
        "a slug is taken once"
    );
    ensure!(
        tenants.list().await?.iter().any(|t| t.id == acme.id),
        "listed"
    );
    Ok(())
}

/// Sources belong to one tenant; the reference tenant has the demo sources.
///
/// # Errors
/// The first broken promise.
pub async fn source_store(
    sources: &dyn crate::ports::SourceStore,
    tenant: TenantId,
    other: TenantId,
) -> Result<()> {
    let slugs = |list: Vec<domain::EventSource>| {
        list.into_iter()
            .map(|s| s.slug.to_string())
            .collect::<Vec<_>>()
    };
    ensure!(
        slugs(sources.list(tenant).await?) == ["adyen", "paypal", "stripe"],
        "the demo sources, by slug"
    );
    let klarna = SourceSlug::parse("source", "klarna")?;
    let created = sources
        .create(tenant, &klarna, &name("Klarna")?, &text("Pay later")?)
        .await?;
    ensure!(
        created.provider_name == "Klarna" && created.is_active && created.tenant == tenant,
        "{created:?}"
    );
    ensure!(
        matches!(
            sources
                .create(tenant, &klarna, &name("Klarna")?, &text("")?)
                .await,
            Err(crate::ports::TenancyError::AlreadyExists(_))
        ),
        "a slug is taken once per tenant"
    );
    ensure!(
        !slugs(sources.list(other).await?).contains(&"klarna".to_owned()),
        "another tenant does not see it"
    );
    sources
        .create(other, &klarna, &name("Klarna")?, &text("")?)
        .await
        .context("the same slug in another tenant")?;
    Ok(())
}

/// Keys are found by hash, listed per tenant and revoked by their tenant only.
///
/// # Errors
/// The first broken promise.
pub async fn api_key_store(
    keys: &dyn crate::ports::ApiKeyStore,
    tenant: TenantId,
    other: TenantId,
) -> Result<()> {
    let created_at = datetime!(2026-11-21 12:00 UTC);
    let new = crate::ports::NewApiKey {
        tenant,
        prefix: domain::KeyPrefix::parse("prefix", "pga_a1b2c3d4")?,
        key_hash: domain::KeyHash::from_digest([0xaa; 32]),
        scopes: vec![domain::Scope::Ingest, domain::Scope::Read],
        name: text("producer")?,
        created_at,
    };
    let key = keys.create(&new).await?;
    ensure!(
        key.scopes == new.scopes && key.revoked_at.is_none() && key.created_at == created_at,
        "{key:?}"
    );
    ensure!(
        keys.find_by_hash(&new.key_hash).await?.as_ref() == Some(&key),
        "found by hash"
    );
    ensure!(
        keys.find_by_hash(&domain::KeyHash::from_digest([0xbb; 32]))
            .await?
            .is_none(),
        "an unknown hash is None"
    );
    ensure!(
        matches!(
            keys.create(&new).await,
            Err(crate::ports::TenancyError::AlreadyExists(_))
        ),
        "a hash is stored once"
    );
    ensure!(
        keys.list(tenant).await?.len() == 1 && keys.list(other).await?.is_empty(),
        "listed per tenant"
    );
    ensure!(
        keys.revoke(other, &new.prefix, created_at).await?.is_none(),
        "another tenant cannot revoke it"
    );
    let revoked_at = created_at + time::Duration::hours(1);
    let revoked = keys
        .revoke(tenant, &new.prefix, revoked_at)
        .await?
        .context("revoked")?;
    ensure!(revoked.revoked_at == Some(revoked_at), "{revoked:?}");
    let found = keys
        .find_by_hash(&new.key_hash)
        .await?
        .context("still found")?;
    ensure!(
        !found.allows(domain::Scope::Ingest),
        "a revoked key allows nothing"
    );
    let again = keys
        .revoke(tenant, &new.prefix, revoked_at + time::Duration::hours(1))
        .await?
        .context("again")?;
    ensure!(
        again.revoked_at == Some(revoked_at),
        "the first revocation time stays"
    );
    Ok(())
}

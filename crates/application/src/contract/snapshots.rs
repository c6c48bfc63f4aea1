//! The built-in reports over a [`RollupStore`](crate::ports::RollupStore): rebuilds of the
//! rollups their seed files define replace exactly the buckets of their range, atomically,
//! with lineage; reads in the reports' shapes group, filter, order and paginate as the
//! reports define.
//!
//! The promises share one scenario around the week starting Monday 2026-03-02 (see
//! [`fixture_events`]): each replays the rebuilds of the scenario up to the [`Stage`] it
//! checks, then looks.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use domain::{
    Breakdown, DateRange, DimensionFilter, EventStatus, PageRequest, ReportKind, ReportQuery,
    ReportRow, RunId, SnapshotPage, SourceSlug, TenantId, Window,
};
use time::{
    Date, OffsetDateTime,
    macros::{date, datetime},
};

use super::{event, fixture_events, range, run_of, store};
use crate::ports::{
    EventStore, RollupRebuild, RollupRebuildOutcome, RunStore, SnapshotRows, WindowRebuild,
};
use crate::reports::read_builtin;

/// Stores with no events, snapshots or runs for `tenant` and `other`, over one database: the
/// snapshots aggregate `events`, and their rows point to runs of `runs`.
pub struct Fixture {
    pub events: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotRows>,
    pub runs: Arc<dyn RunStore>,
    pub tenant: TenantId,
    pub other: TenantId,
}

/// When every rebuild of the scenario computes.
const COMPUTED_AT: OffsetDateTime = datetime!(2026-03-10 06:00 UTC);

fn week_of_march_2() -> Result<DateRange> {
    range(date!(2026 - 03 - 02), date!(2026 - 03 - 08))
}

fn two_weeks() -> Result<DateRange> {
    range(date!(2026 - 03 - 02), date!(2026 - 03 - 15))
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

fn status(status: &str, count: i64) -> ReportRow {
    ReportRow::Status {
        status: status.to_owned(),
        event_count: count,
    }
}

fn entity(entity: &str, count: i64) -> ReportRow {
    ReportRow::Entity {
        entity_id: entity.to_owned(),
        event_count: count,
    }
}

/// How far the scenario has gone, each stage after the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// The fixture events stored for the tenant; nothing rebuilt.
    EventsStored,
    /// The day volume of the week before March 2 rebuilt: the one row of e7.
    WeekBeforeRebuilt,
    /// Then the day volume of the week of March 2.
    DaysRebuilt,
    /// Then e9 stored and the day volume of the week of March 2 rebuilt again.
    DaysRebuiltAgain,
    /// Then the day statuses of the week of March 2.
    StatusesRebuilt,
    /// Then the day entities of the week of March 2.
    EntitiesRebuilt,
    /// Then the week volume of the two weeks from March 2.
    WeeksRebuilt,
    /// Then the other tenant, which has no events, rebuilt the day volume of the week of March 2.
    OtherTenantRebuilt,
}

/// The scenario run against one fixture.
struct Scenario<'a> {
    f: &'a Fixture,
    /// Runs created so far; each gets a scope of its own day.
    runs_created: i64,
    /// The run of the rebuild of the week before March 2.
    before_run: Option<RunId>,
    /// The run of the first rebuild of the week of March 2, reused by the later rebuilds of
    /// other reports and windows.
    run: Option<RunId>,
}

impl<'a> Scenario<'a> {
    /// The scenario run up to `stage`.
    async fn at(f: &'a Fixture, stage: Stage) -> Result<Self> {
        store(f.events.as_ref(), f.tenant, &fixture_events()?).await?;
        let mut scenario = Self {
            f,
            runs_created: 0,
            before_run: None,
            run: None,
        };
        if stage >= Stage::WeekBeforeRebuilt {
            scenario.rebuild_the_week_before().await?;
        }
        if stage >= Stage::DaysRebuilt {
            scenario.rebuild_days().await?;
        }
        if stage >= Stage::DaysRebuiltAgain {
            scenario.rebuild_days_again().await?;
        }
        if stage >= Stage::StatusesRebuilt {
            scenario.rebuild_statuses().await?;
        }
        if stage >= Stage::EntitiesRebuilt {
            scenario.rebuild_entities().await?;
        }
        if stage >= Stage::WeeksRebuilt {
            scenario.rebuild_weeks().await?;
        }
        if stage >= Stage::OtherTenantRebuilt {
            scenario.rebuild_for_the_other_tenant().await?;
        }
        Ok(scenario)
    }

    /// A stored run of `owner`: snapshot rows point to real runs (a foreign key, in SQL).
    async fn new_run(&mut self, owner: TenantId) -> Result<RunId> {
        self.runs_created += 1;
        let run = run_of(
            owner,
            "volume-by-period",
            Window::Day,
            date!(2025 - 01 - 01) + time::Duration::days(self.runs_created),
            datetime!(2026-03-10 05:00 UTC),
        )?;
        self.f.runs.create(&run).await?;
        Ok(run.id)
    }

    fn run(&self) -> Result<RunId> {
        self.run.context("the week of March 2 was rebuilt")
    }

    async fn rebuild(
        &self,
        tenant: TenantId,
        kind: ReportKind,
        window: Window,
        range: DateRange,
        run_id: RunId,
    ) -> Result<RollupRebuildOutcome> {
        let definition = domain::rollup::builtin(kind);
        let mut outcomes = self
            .f
            .snapshots
            .rebuild(&RollupRebuild {
                tenant,
                report: kind.report_slug(),
                rollup: definition.rollup.clone(),
                windows: vec![WindowRebuild {
                    window,
                    range,
                    mode: domain::RunMode::Full,
                    run_id,
                }],
                computed_at: COMPUTED_AT,
            })
            .await?;
        ensure!(outcomes.len() == 1, "one outcome per window");
        Ok(outcomes.remove(0))
    }

    async fn rebuild_the_week_before(&mut self) -> Result<RollupRebuildOutcome> {
        let run = self.new_run(self.f.tenant).await?;
        self.before_run = Some(run);
        let before = range(date!(2026 - 02 - 23), date!(2026 - 03 - 01))?;
        self.rebuild(
            self.f.tenant,
            ReportKind::VolumeByPeriod,
            Window::Day,
            before,
            run,
        )
        .await
    }

    async fn rebuild_days(&mut self) -> Result<RollupRebuildOutcome> {
        let run = self.new_run(self.f.tenant).await?;
        self.run = Some(run);
        self.rebuild(
            self.f.tenant,
            ReportKind::VolumeByPeriod,
            Window::Day,
            week_of_march_2()?,
            run,
        )
        .await
    }

    async fn rebuild_days_again(&mut self) -> Result<RollupRebuildOutcome> {
        store(
            self.f.events.as_ref(),
            self.f.tenant,
            &[event(
                "e9",
                "stripe",
                "entity-d",
                EventStatus::Success,
                datetime!(2026-03-03 09:30 UTC),
            )?],
        )
        .await?;
        let rerun = self.new_run(self.f.tenant).await?;
        self.rebuild(
            self.f.tenant,
            ReportKind::VolumeByPeriod,
            Window::Day,
            week_of_march_2()?,
            rerun,
        )
        .await
    }

    async fn rebuild_statuses(&mut self) -> Result<RollupRebuildOutcome> {
        self.rebuild(
            self.f.tenant,
            ReportKind::StatusCounts,
            Window::Day,
            week_of_march_2()?,
            self.run()?,
        )
        .await
    }

    async fn rebuild_entities(&mut self) -> Result<RollupRebuildOutcome> {
        self.rebuild(
            self.f.tenant,
            ReportKind::TopEntities,
            Window::Day,
            week_of_march_2()?,
            self.run()?,
        )
        .await
    }

    async fn rebuild_weeks(&mut self) -> Result<RollupRebuildOutcome> {
        self.rebuild(
            self.f.tenant,
            ReportKind::VolumeByPeriod,
            Window::Week,
            two_weeks()?,
            self.run()?,
        )
        .await
    }

    async fn rebuild_for_the_other_tenant(&mut self) -> Result<RollupRebuildOutcome> {
        let foreign_run = self.new_run(self.f.other).await?;
        self.rebuild(
            self.f.other,
            ReportKind::VolumeByPeriod,
            Window::Day,
            week_of_march_2()?,
            foreign_run,
        )
        .await
    }
}

/// The day volume of `tenant` in the week of March 2, by `breakdown`.
async fn days_of_march_2(
    f: &Fixture,
    tenant: TenantId,
    breakdown: Breakdown,
) -> Result<SnapshotPage> {
    Ok(read_builtin(
        f.snapshots.as_ref(),
        &query(
            tenant,
            ReportKind::VolumeByPeriod,
            Window::Day,
            week_of_march_2()?,
            breakdown,
        ),
    )
    .await?)
}

pub async fn no_rows_before_a_rebuild(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::EventsStored).await?;
    let empty = days_of_march_2(f, f.tenant, Breakdown::Period).await?;
    ensure!(
        empty.rows.is_empty() && empty.total_rows == 0 && empty.last_refreshed_at.is_none(),
        "no rows before a rebuild"
    );
    Ok(())
}

pub async fn a_day_rebuild_stores_one_row_per_day_and_source(f: &Fixture) -> Result<()> {
    let mut scenario = Scenario::at(f, Stage::EventsStored).await?;
    let outcome = scenario.rebuild_the_week_before().await?;
    ensure!(
        outcome.rows_inserted == 1 && outcome.rows_deleted == 0,
        "one row for e7, got {outcome:?}"
    );
    // The neighbouring bucket rebuilt first must survive this rebuild untouched (see
    // `a_bucket_outside_the_rebuilt_range_keeps_its_run`).
    let outcome = scenario.rebuild_days().await?;
    ensure!(
        outcome.rows_inserted == 4 && outcome.rows_deleted == 0,
        "day rows per (bucket, source), got {outcome:?}"
    );
    Ok(())
}

pub async fn volume_is_counted_per_utc_day(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DaysRebuilt).await?;
    let totals = days_of_march_2(f, f.tenant, Breakdown::Period).await?;
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
    Ok(())
}

pub async fn the_total_counts_every_row_of_the_range(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DaysRebuilt).await?;
    let totals = days_of_march_2(f, f.tenant, Breakdown::Period).await?;
    ensure!(totals.total_rows == 3, "total rows");
    Ok(())
}

pub async fn last_refreshed_at_is_the_newest_computed_at(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DaysRebuilt).await?;
    let totals = days_of_march_2(f, f.tenant, Breakdown::Period).await?;
    ensure!(
        totals.last_refreshed_at == Some(COMPUTED_AT),
        "last_refreshed_at is the newest computed_at"
    );
    Ok(())
}

pub async fn a_read_carries_the_oldest_change_its_buckets_do_not_count(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DaysRebuilt).await?;
    let read = days_of_march_2(f, f.tenant, Breakdown::Period).await?;
    ensure!(
        read.uncounted_since.is_none() && !read.is_stale(),
        "the rebuild counts every event: {:?}",
        read.uncounted_since
    );
    let other = days_of_march_2(f, f.other, Breakdown::Period).await?;
    ensure!(
        other.uncounted_since.is_none(),
        "another tenant's events: {other:?}"
    );
    let late_at = datetime!(2026-03-10 08:00 UTC);
    let late = event(
        "late",
        "stripe",
        "ent_late",
        EventStatus::Success,
        datetime!(2026-03-04 12:00 UTC),
    )?;
    super::store_at(f.events.as_ref(), f.tenant, &[late], late_at).await?;
    let read = days_of_march_2(f, f.tenant, Breakdown::Period).await?;
    ensure!(
        read.uncounted_since == Some(late_at) && read.is_stale(),
        "a change after the rebuild makes the read stale: {:?}",
        read.uncounted_since
    );
    let earlier = read_builtin(
        f.snapshots.as_ref(),
        &query(
            f.tenant,
            ReportKind::VolumeByPeriod,
            Window::Day,
            range(date!(2026 - 03 - 02), date!(2026 - 03 - 03))?,
            Breakdown::Period,
        ),
    )
    .await?;
    ensure!(
        earlier.uncounted_since.is_none() && !earlier.is_stale(),
        "days without the late event count every event: {:?}",
        earlier.uncounted_since
    );
    Ok(())
}

pub async fn the_source_breakdown_is_by_date_then_source(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DaysRebuilt).await?;
    let by_source = days_of_march_2(f, f.tenant, Breakdown::Source).await?;
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
    Ok(())
}

pub async fn a_source_filter_keeps_only_that_source(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DaysRebuilt).await?;
    let mut stripe_only = query(
        f.tenant,
        ReportKind::VolumeByPeriod,
        Window::Day,
        week_of_march_2()?,
        Breakdown::Period,
    );
    stripe_only.filter = Some(DimensionFilter::Source(SourceSlug::parse(
        "source", "stripe",
    )?));
    let stripe = read_builtin(f.snapshots.as_ref(), &stripe_only).await?;
    ensure!(
        stripe.rows == vec![period(date!(2026 - 03 - 02), 3)],
        "source filter: {:?}",
        stripe.rows
    );
    Ok(())
}

/// The stored day volume rows of February and March, with their lineage.
async fn lineage(f: &Fixture) -> Result<Vec<crate::ports::SnapshotRow>> {
    Ok(f.snapshots
        .rows(
            f.tenant,
            &ReportKind::VolumeByPeriod.report_slug(),
            1,
            Window::Day,
            range(date!(2026 - 02 - 01), date!(2026 - 03 - 31))?,
        )
        .await?)
}

pub async fn rows_reads_every_stored_row_of_the_range(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DaysRebuilt).await?;
    let lineage = lineage(f).await?;
    ensure!(
        lineage.len() == 5,
        "five stored rows, got {}",
        lineage.len()
    );
    Ok(())
}

pub async fn a_bucket_outside_the_rebuilt_range_keeps_its_run(f: &Fixture) -> Result<()> {
    let scenario = Scenario::at(f, Stage::DaysRebuilt).await?;
    let before_run = scenario
        .before_run
        .context("the week before March 2 was rebuilt")?;
    let lineage = lineage(f).await?;
    let old = lineage
        .iter()
        .find(|r| r.bucket_start == date!(2026 - 02 - 28))
        .context("the 02-28 row survives")?;
    ensure!(
        old.run_id == before_run,
        "a bucket outside the range keeps its run"
    );
    Ok(())
}

pub async fn every_rebuilt_row_points_to_its_run(f: &Fixture) -> Result<()> {
    let scenario = Scenario::at(f, Stage::DaysRebuilt).await?;
    let run = scenario.run()?;
    let lineage = lineage(f).await?;
    ensure!(
        lineage
            .iter()
            .filter(|r| r.bucket_start >= date!(2026 - 03 - 02))
            .all(|r| r.run_id == run
                && r.dimension_values.len() == 1
                && r.measure_values.len() == 1),
        "every rebuilt row points to its run: {lineage:?}"
    );
    Ok(())
}

pub async fn a_second_rebuild_replaces_the_rows_of_its_buckets(f: &Fixture) -> Result<()> {
    let mut scenario = Scenario::at(f, Stage::DaysRebuilt).await?;
    let outcome = scenario.rebuild_days_again().await?;
    ensure!(
        outcome.rows_deleted == 4 && outcome.rows_inserted == 5,
        "rebuild replaces its buckets, got {outcome:?}"
    );
    Ok(())
}

pub async fn statuses_are_ordered_by_count_descending_then_status(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::StatusesRebuilt).await?;
    let statuses = read_builtin(
        f.snapshots.as_ref(),
        &query(
            f.tenant,
            ReportKind::StatusCounts,
            Window::Day,
            week_of_march_2()?,
            Breakdown::Status,
        ),
    )
    .await?;
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
    Ok(())
}

pub async fn statuses_per_day_are_by_date_then_status(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::StatusesRebuilt).await?;
    let per_day = read_builtin(
        f.snapshots.as_ref(),
        &query(
            f.tenant,
            ReportKind::StatusCounts,
            Window::Day,
            week_of_march_2()?,
            Breakdown::Period,
        ),
    )
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
    Ok(())
}

pub async fn a_status_filter_keeps_only_that_status(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::StatusesRebuilt).await?;
    let mut failed_only = query(
        f.tenant,
        ReportKind::StatusCounts,
        Window::Day,
        week_of_march_2()?,
        Breakdown::Status,
    );
    failed_only.filter = Some(DimensionFilter::Status(EventStatus::Failed));
    ensure!(
        read_builtin(f.snapshots.as_ref(), &failed_only).await?.rows == vec![status("failed", 1)],
        "status filter"
    );
    Ok(())
}

/// The day entities of `tenant` in the week of March 2, ranked.
fn top_entities(tenant: TenantId) -> Result<ReportQuery> {
    Ok(query(
        tenant,
        ReportKind::TopEntities,
        Window::Day,
        week_of_march_2()?,
        Breakdown::EntityId,
    ))
}

pub async fn entities_are_ranked_by_count_descending_then_entity(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::EntitiesRebuilt).await?;
    let ranked = read_builtin(f.snapshots.as_ref(), &top_entities(f.tenant)?).await?;
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
    Ok(())
}

pub async fn limit_and_offset_apply_to_the_ranked_rows(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::EntitiesRebuilt).await?;
    let top = ReportQuery {
        page: PageRequest::new(1, 1),
        ..top_entities(f.tenant)?
    };
    let second = read_builtin(f.snapshots.as_ref(), &top).await?;
    ensure!(
        second.rows == vec![entity("entity-b", 2)] && second.total_rows == 3,
        "limit/offset over ranked rows"
    );
    Ok(())
}

pub async fn a_week_rebuild_stores_one_row_per_week_and_source(f: &Fixture) -> Result<()> {
    let mut scenario = Scenario::at(f, Stage::EntitiesRebuilt).await?;
    let outcome = scenario.rebuild_weeks().await?;
    ensure!(
        outcome.rows_inserted == 4,
        "week rows per (week, source), got {outcome:?}"
    );
    Ok(())
}

/// The volume of the fixture's tenant over `range`, `window` by `window`.
async fn volume(f: &Fixture, window: Window, range: DateRange) -> Result<SnapshotPage> {
    Ok(read_builtin(
        f.snapshots.as_ref(),
        &query(
            f.tenant,
            ReportKind::VolumeByPeriod,
            window,
            range,
            Breakdown::Period,
        ),
    )
    .await?)
}

pub async fn weekly_totals_count_the_events_of_each_week(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::WeeksRebuilt).await?;
    let weeks = volume(f, Window::Week, two_weeks()?).await?;
    ensure!(
        weeks.rows
            == vec![
                period(date!(2026 - 03 - 02), 7),
                period(date!(2026 - 03 - 09), 1)
            ],
        "weekly totals: {:?}",
        weeks.rows
    );
    Ok(())
}

pub async fn a_week_whose_monday_is_before_the_range_is_left_out(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::WeeksRebuilt).await?;
    let from_tuesday = range(date!(2026 - 03 - 03), date!(2026 - 03 - 15))?;
    let later = volume(f, Window::Week, from_tuesday).await?;
    ensure!(
        later.rows == vec![period(date!(2026 - 03 - 09), 1)],
        "a week whose Monday is before the range is left out"
    );
    Ok(())
}

pub async fn day_and_week_snapshots_are_kept_apart(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::WeeksRebuilt).await?;
    let days = volume(f, Window::Day, two_weeks()?).await?;
    ensure!(
        days.rows.len() == 3,
        "day and week snapshots are kept apart"
    );
    Ok(())
}

pub async fn rows_of_one_tenant_are_invisible_to_another(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::WeeksRebuilt).await?;
    let foreign = days_of_march_2(f, f.other, Breakdown::Period).await?;
    ensure!(
        foreign.rows.is_empty(),
        "another tenant sees none of these rows"
    );
    Ok(())
}

pub async fn another_tenants_rebuild_reads_only_its_events(f: &Fixture) -> Result<()> {
    let mut scenario = Scenario::at(f, Stage::WeeksRebuilt).await?;
    ensure!(
        scenario.rebuild_for_the_other_tenant().await?.rows_inserted == 0,
        "another tenant's rebuild reads only its events"
    );
    Ok(())
}

pub async fn another_tenants_rebuild_leaves_these_rows_alone(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::OtherTenantRebuilt).await?;
    let mine = days_of_march_2(f, f.tenant, Breakdown::Period).await?;
    ensure!(
        mine.total_rows == 3,
        "another tenant's rebuild leaves these rows alone"
    );
    Ok(())
}

pub async fn clear_removes_every_row_of_the_tenant(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::OtherTenantRebuilt).await?;
    let cleared = f.snapshots.clear(f.tenant).await?;
    ensure!(
        cleared == 1 + 5 + 4 + 5 + 4,
        "clear removes every row of the tenant, got {cleared}"
    );
    Ok(())
}

pub async fn an_event_without_status_or_entity_is_counted_only_where_not_grouped_by_them(
    f: &Fixture,
) -> Result<()> {
    let mut scenario = Scenario::at(f, Stage::EventsStored).await?;
    let bare = domain::NewEvent {
        entity_id: None,
        status: None,
        event_name: "page_view".to_owned(),
        user_id: Some("u-1".to_owned()),
        ..event(
            "e10",
            "stripe",
            "unused",
            EventStatus::Success,
            datetime!(2026-03-02 11:00 UTC),
        )?
    };
    store(f.events.as_ref(), f.tenant, &[bare]).await?;
    scenario.rebuild_days().await?;
    scenario.rebuild_statuses().await?;
    scenario.rebuild_entities().await?;
    let volume = days_of_march_2(f, f.tenant, Breakdown::Period).await?;
    ensure!(
        volume.rows.first() == Some(&period(date!(2026 - 03 - 02), 5)),
        "the volume counts it: {:?}",
        volume.rows
    );
    let statuses = read_builtin(
        f.snapshots.as_ref(),
        &query(
            f.tenant,
            ReportKind::StatusCounts,
            Window::Day,
            week_of_march_2()?,
            Breakdown::Status,
        ),
    )
    .await?;
    ensure!(
        statuses.rows.iter().map(row_count).sum::<i64>() == 6,
        "statuses skip it: {:?}",
        statuses.rows
    );
    let entities = read_builtin(f.snapshots.as_ref(), &top_entities(f.tenant)?).await?;
    ensure!(
        entities.rows.iter().map(row_count).sum::<i64>() == 6,
        "entities skip it: {:?}",
        entities.rows
    );
    Ok(())
}

fn row_count(row: &ReportRow) -> i64 {
    match row {
        ReportRow::Period { event_count, .. }
        | ReportRow::PeriodSource { event_count, .. }
        | ReportRow::PeriodStatus { event_count, .. }
        | ReportRow::Status { event_count, .. }
        | ReportRow::Entity { event_count, .. } => *event_count,
    }
}

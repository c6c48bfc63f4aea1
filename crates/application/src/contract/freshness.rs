//! Dirty buckets ([`RollupStore::dirty`], ingestion's and definitions' marks, incremental
//! rebuilds): a stored event dirties exactly the buckets it changes, of exactly its tenant and
//! the rollups that count it; an incremental rebuild rebuilds exactly the dirty buckets,
//! leaves every other row and its run alone, clears what it rebuilt, and ends where a full
//! rebuild ends.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use domain::{
    DateRange, DirtyBucket, DirtyReason, NewEvent, PageRequest, RollupDefinition, RollupOrder,
    RollupQuery, RollupRow, RunId, RunMode, TenantId, Window,
};
use serde_json::json;
use time::{
    Date, OffsetDateTime,
    macros::{date, datetime},
};

use super::{
    range,
    rollups::{definition, generated_events, quarter, small_event},
    store, store_at,
};
use crate::ports::{
    EventStore, RollupDefinitions, RollupRebuild, RollupRebuildOutcome, SnapshotRow, SnapshotRows,
    WindowRebuild,
};

/// Stores with no events, definitions or rollup rows for `tenant` and `other`, over one
/// database.
pub struct Fixture {
    pub events: Arc<dyn EventStore>,
    pub rollups: Arc<dyn SnapshotRows>,
    pub definitions: Arc<dyn RollupDefinitions>,
    pub tenant: TenantId,
    pub other: TenantId,
}

/// When the definitions of a scenario are stored.
const DEFINED_AT: OffsetDateTime = datetime!(2026-03-10 01:00 UTC);
const FULL_BUILD: OffsetDateTime = datetime!(2026-03-10 06:00 UTC);
const LATE_AT: OffsetDateTime = datetime!(2026-03-10 07:00 UTC);
const REFRESH: OffsetDateTime = datetime!(2026-03-10 08:00 UTC);

/// Purchases by channel, by day, week and month.
fn purchases() -> Result<RollupDefinition> {
    definition(json!({
        "slug": "purchases",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "amount", "kind": "sum", "field": "amount_cents"}],
        "dimensions": [{"field": "properties.channel"}],
        "filters": {"event_name": "purchase"},
        "windows": [{"window": "day", "retention_days": 365}, {"window": "week", "retention_days": 365},
                    {"window": "month", "retention_days": 365}]
    }))
}

/// Sign-ups by day.
fn signups() -> Result<RollupDefinition> {
    definition(json!({
        "slug": "signups",
        "measures": [{"name": "events", "kind": "count"}],
        "filters": {"event_name": "signup"},
        "windows": [{"window": "day", "retention_days": 365}]
    }))
}

/// A purchase on Sunday 15 February 2026.
fn late_purchase(id: &str) -> Result<NewEvent> {
    let mut event = small_event(
        id,
        datetime!(2026-02-15 12:00 UTC),
        json!({"channel": "web"}),
    )?;
    event.event_name = "purchase".to_owned();
    event.amount_cents = 700;
    Ok(event)
}

async fn define(f: &Fixture, tenant: TenantId, definition: &RollupDefinition) -> Result<()> {
    f.definitions
        .create(tenant, definition, 20, DEFINED_AT)
        .await
        .map_err(|e| anyhow::anyhow!("storing {}: {e}", definition.slug))?;
    Ok(())
}

/// The dirty buckets of `definition`'s `window` over the quarter.
async fn dirty(
    f: &Fixture,
    tenant: TenantId,
    definition: &RollupDefinition,
    window: Window,
) -> Result<Vec<DirtyBucket>> {
    Ok(f.rollups
        .dirty(tenant, &definition.slug, window, window.widen(quarter()?))
        .await?)
}

/// Rebuilds every window of `definition` over the quarter in `mode`, for `run`.
async fn rebuild(
    f: &Fixture,
    definition: &RollupDefinition,
    mode: RunMode,
    run: RunId,
    at: OffsetDateTime,
) -> Result<Vec<RollupRebuildOutcome>> {
    rebuild_in(f, definition, mode, run, at, quarter()?).await
}

/// Rebuilds every window of `definition` over `range` in `mode`, for `run`.
async fn rebuild_in(
    f: &Fixture,
    definition: &RollupDefinition,
    mode: RunMode,
    run: RunId,
    at: OffsetDateTime,
    range: DateRange,
) -> Result<Vec<RollupRebuildOutcome>> {
    Ok(f.rollups
        .rebuild(&RollupRebuild {
            tenant: f.tenant,
            report: definition.slug.clone(),
            rollup: definition.rollup.clone(),
            windows: definition
                .windows
                .iter()
                .map(|w| WindowRebuild {
                    window: w.window,
                    range: w.window.widen(range),
                    mode,
                    run_id: run,
                })
                .collect(),
            computed_at: at,
        })
        .await?)
}

/// Every stored row of `definition`'s `window` over the quarter.
async fn rows(
    f: &Fixture,
    definition: &RollupDefinition,
    window: Window,
) -> Result<Vec<SnapshotRow>> {
    Ok(f.rollups
        .rows(
            f.tenant,
            &definition.slug,
            definition.rollup.dimensions.len(),
            window,
            window.widen(quarter()?),
        )
        .await?)
}

/// A read of every row of `definition`'s `window` inside `range`.
fn read_of(
    tenant: TenantId,
    definition: &RollupDefinition,
    window: Window,
    range: DateRange,
) -> RollupQuery {
    RollupQuery {
        tenant,
        report: definition.slug.clone(),
        window,
        range: window.widen(range),
        measures: definition
            .rollup
            .measures
            .iter()
            .map(|m| m.kind.combine())
            .collect(),
        by_period: true,
        dimensions: (0..definition.rollup.dimensions.len()).collect(),
        filters: Vec::new(),
        order: RollupOrder::Period,
        page: PageRequest::new(domain::pagination::MAX_LIMIT, 0),
        coarser: Vec::new(),
    }
}

/// The generated events stored, `definition` defined and built in full over the quarter (at
/// `FULL_BUILD`): every window then counts every event and takes a watermark. The full run.
async fn built(f: &Fixture, definition: &RollupDefinition) -> Result<RunId> {
    store(f.events.as_ref(), f.tenant, &generated_events()?).await?;
    define(f, f.tenant, definition).await?;
    let full = RunId::generate();
    rebuild(f, definition, RunMode::Full, full, FULL_BUILD).await?;
    Ok(full)
}

/// An incremental run of every window of `definition` over the quarter, at `REFRESH`.
async fn refresh(f: &Fixture, definition: &RollupDefinition) -> Result<Vec<RollupRebuildOutcome>> {
    rebuild(
        f,
        definition,
        RunMode::Incremental,
        RunId::generate(),
        REFRESH,
    )
    .await
}

/// What reads of every window of `definition` over the quarter return.
async fn reads(f: &Fixture, definition: &RollupDefinition) -> Result<Vec<Vec<RollupRow>>> {
    let mut all = Vec::new();
    for window in definition.windows.iter().map(|w| w.window) {
        all.push(
            f.rollups
                .read(&read_of(f.tenant, definition, window, quarter()?))
                .await?
                .rows,
        );
    }
    Ok(all)
}

/// Whether what `definition`'s windows hold reads as a full rebuild over every event (which
/// it then runs).
async fn reads_as_a_full_rebuild(f: &Fixture, definition: &RollupDefinition) -> Result<()> {
    let refreshed = reads(f, definition).await?;
    rebuild(f, definition, RunMode::Full, RunId::generate(), REFRESH).await?;
    let full = reads(f, definition).await?;
    for ((window, refreshed), full) in definition.windows.iter().zip(refreshed).zip(full) {
        ensure!(
            refreshed == full,
            "{}: the refreshed rows differ from a full rebuild's:\n{refreshed:?}\n{full:?}",
            window.window
        );
    }
    Ok(())
}

fn starts(buckets: &[DirtyBucket]) -> Vec<Date> {
    buckets.iter().map(|b| b.bucket_start).collect()
}

pub async fn a_late_event_dirties_exactly_its_buckets_in_the_rollups_that_count_it(
    f: &Fixture,
) -> Result<()> {
    let (purchases, signups) = (purchases()?, signups()?);
    for definition in [&purchases, &signups] {
        define(f, f.tenant, definition).await?;
        define(f, f.other, definition).await?;
    }
    store_at(
        f.events.as_ref(),
        f.tenant,
        &[late_purchase("late")?],
        LATE_AT,
    )
    .await?;
    let expected = [
        (Window::Day, date!(2026 - 02 - 15)),
        (Window::Week, date!(2026 - 02 - 09)),
        (Window::Month, date!(2026 - 02 - 01)),
    ];
    for (window, start) in expected {
        let marked = dirty(f, f.tenant, &purchases, window).await?;
        ensure!(
            marked
                == [DirtyBucket {
                    window,
                    bucket_start: start,
                    reason: DirtyReason::Events,
                    first_marked_at: LATE_AT,
                }],
            "{window}: the late purchase should dirty the bucket of {start} alone: {marked:?}"
        );
        let elsewhere = dirty(f, f.other, &purchases, window).await?;
        ensure!(
            elsewhere.is_empty(),
            "{window}: another tenant: {elsewhere:?}"
        );
    }
    let unmatched = dirty(f, f.tenant, &signups, Window::Day).await?;
    ensure!(
        unmatched.is_empty(),
        "a rollup whose filter the event fails: {unmatched:?}"
    );
    // Every tenant's rollups that count the event are marked too: here, the built-in volume.
    let scopes = f
        .rollups
        .dirty_scopes(date!(2026 - 01 - 01), date!(2026 - 03 - 10))
        .await?;
    ensure!(
        scopes
            .iter()
            .all(|s| s.tenant == f.tenant && s.report != signups.slug),
        "only the tenant's rollups counting the event: {scopes:?}"
    );
    ensure!(
        scopes
            .iter()
            .any(|s| s.report.as_str() == "volume-by-period" && s.window == Window::Day),
        "the built-in volume counts every event: {scopes:?}"
    );
    // A replayed event changes nothing, so it dirties nothing.
    let again = f
        .rollups
        .dirty_scopes(date!(2026 - 01 - 01), date!(2026 - 03 - 10))
        .await?;
    store_at(
        f.events.as_ref(),
        f.tenant,
        &[late_purchase("late")?],
        REFRESH,
    )
    .await?;
    let after = f
        .rollups
        .dirty_scopes(date!(2026 - 01 - 01), date!(2026 - 03 - 10))
        .await?;
    ensure!(after == again, "a duplicate marked buckets: {after:?}");
    Ok(())
}

pub async fn a_definition_dirties_its_buckets_with_events_and_takes_its_marks_when_deleted(
    f: &Fixture,
) -> Result<()> {
    store(f.events.as_ref(), f.tenant, &generated_events()?).await?;
    let purchases = purchases()?;
    define(f, f.tenant, &purchases).await?;
    let months = dirty(f, f.tenant, &purchases, Window::Month).await?;
    ensure!(
        starts(&months)
            == [
                date!(2026 - 01 - 01),
                date!(2026 - 02 - 01),
                date!(2026 - 03 - 01)
            ]
            && months
                .iter()
                .all(|b| b.reason == DirtyReason::Definition && b.first_marked_at == DEFINED_AT),
        "a new definition dirties every month with events: {months:?}"
    );
    ensure!(
        dirty(f, f.other, &purchases, Window::Month)
            .await?
            .is_empty(),
        "another tenant's buckets"
    );
    f.definitions.delete(f.tenant, &purchases.slug).await?;
    for window in [Window::Day, Window::Week, Window::Month] {
        let left = dirty(f, f.tenant, &purchases, window).await?;
        ensure!(
            left.is_empty(),
            "{window}: a deleted definition's marks: {left:?}"
        );
    }
    Ok(())
}

pub async fn an_incremental_rebuild_rebuilds_only_the_dirty_buckets_and_equals_a_full_one(
    f: &Fixture,
) -> Result<()> {
    store(f.events.as_ref(), f.tenant, &generated_events()?).await?;
    let purchases = purchases()?;
    define(f, f.tenant, &purchases).await?;
    let full = RunId::generate();
    rebuild(f, &purchases, RunMode::Full, full, FULL_BUILD).await?;
    for window in [Window::Day, Window::Week, Window::Month] {
        let left = dirty(f, f.tenant, &purchases, window).await?;
        ensure!(
            left.is_empty(),
            "{window}: a full rebuild leaves marks: {left:?}"
        );
    }
    let before: Vec<Vec<SnapshotRow>> = {
        let mut all = Vec::new();
        for window in [Window::Day, Window::Week, Window::Month] {
            all.push(rows(f, &purchases, window).await?);
        }
        all
    };

    let late = [late_purchase("late-1")?, late_purchase("late-2")?];
    store_at(f.events.as_ref(), f.tenant, &late, LATE_AT).await?;
    let refresh = RunId::generate();
    let outcomes = rebuild(f, &purchases, RunMode::Incremental, refresh, REFRESH).await?;
    let dirtied = [
        date!(2026 - 02 - 15),
        date!(2026 - 02 - 09),
        date!(2026 - 02 - 01),
    ];
    for ((outcome, window), start) in outcomes
        .iter()
        .zip([Window::Day, Window::Week, Window::Month])
        .zip(dirtied)
    {
        ensure!(
            outcome.bucket_count == 1 && starts(&outcome.dirty) == [start],
            "{window}: the refresh should rebuild the bucket of {start} alone: {outcome:?}"
        );
        let left = dirty(f, f.tenant, &purchases, window).await?;
        ensure!(
            left.is_empty(),
            "{window}: the refresh left marks: {left:?}"
        );
    }
    for ((window, start), before) in [Window::Day, Window::Week, Window::Month]
        .into_iter()
        .zip(dirtied)
        .zip(&before)
    {
        let after = rows(f, &purchases, window).await?;
        let untouched = |rows: &[SnapshotRow]| -> Vec<SnapshotRow> {
            rows.iter()
                .filter(|r| r.bucket_start != start)
                .cloned()
                .collect()
        };
        ensure!(
            untouched(&after) == untouched(before),
            "{window}: rows outside the dirty bucket changed"
        );
        // After a complete build, a refresh adds the new events to the rows they fall in:
        // those rows point to it, the other rows of the bucket are as they were.
        let (changed, same): (Vec<&SnapshotRow>, Vec<&SnapshotRow>) = after
            .iter()
            .filter(|r| r.bucket_start == start)
            .partition(|r| !before.contains(r));
        ensure!(
            !changed.is_empty()
                && changed
                    .iter()
                    .all(|r| r.run_id == refresh && r.computed_at == REFRESH),
            "{window}: the rows the late events fall in should point to the refresh: {changed:?}"
        );
        ensure!(
            !same.is_empty() && same.iter().all(|r| r.run_id == full),
            "{window}: the other rows of {start} should be the full build's: {same:?}"
        );
    }

    // The same rows as a full rebuild over every event.
    let mut incremental = Vec::new();
    for window in [Window::Day, Window::Week, Window::Month] {
        incremental.push(
            f.rollups
                .read(&read_of(f.tenant, &purchases, window, quarter()?))
                .await?
                .rows,
        );
    }
    rebuild(f, &purchases, RunMode::Full, RunId::generate(), REFRESH).await?;
    for (window, incremental) in [Window::Day, Window::Week, Window::Month]
        .into_iter()
        .zip(incremental)
    {
        let full = f
            .rollups
            .read(&read_of(f.tenant, &purchases, window, quarter()?))
            .await?
            .rows;
        ensure!(
            full == incremental,
            "{window}: the refreshed rows differ from a full rebuild's"
        );
    }
    Ok(())
}

pub async fn an_incremental_rebuild_of_clean_buckets_changes_nothing(f: &Fixture) -> Result<()> {
    let purchases = purchases()?;
    built(f, &purchases).await?;
    let before = rows(f, &purchases, Window::Day).await?;
    let outcomes = refresh(f, &purchases).await?;
    ensure!(
        outcomes
            .iter()
            .all(|o| o.bucket_count == 0 && o.rows_inserted == 0 && o.rows_deleted == 0),
        "nothing was dirty: {outcomes:?}"
    );
    ensure!(
        rows(f, &purchases, Window::Day).await? == before,
        "an empty refresh changed rows"
    );
    Ok(())
}

pub async fn a_read_carries_the_oldest_change_its_buckets_do_not_count(f: &Fixture) -> Result<()> {
    store(f.events.as_ref(), f.tenant, &generated_events()?).await?;
    let purchases = purchases()?;
    define(f, f.tenant, &purchases).await?;
    let week = |from, to| range(from, to);
    let unbuilt = f
        .rollups
        .read(&read_of(f.tenant, &purchases, Window::Week, quarter()?))
        .await?;
    ensure!(
        unbuilt.uncounted_since == Some(DEFINED_AT) && unbuilt.is_stale(),
        "before any build, the definition's change: {unbuilt:?}"
    );
    rebuild(f, &purchases, RunMode::Full, RunId::generate(), FULL_BUILD).await?;
    let built = f
        .rollups
        .read(&read_of(f.tenant, &purchases, Window::Week, quarter()?))
        .await?;
    ensure!(
        built.uncounted_since.is_none() && !built.is_stale(),
        "after the build: {:?}",
        built.uncounted_since
    );
    store_at(
        f.events.as_ref(),
        f.tenant,
        &[late_purchase("late")?],
        LATE_AT,
    )
    .await?;
    let february = f
        .rollups
        .read(&read_of(
            f.tenant,
            &purchases,
            Window::Week,
            week(date!(2026 - 02 - 09), date!(2026 - 02 - 15))?,
        ))
        .await?;
    ensure!(
        february.uncounted_since == Some(LATE_AT) && february.is_stale(),
        "the week of the late event: {:?}",
        february.uncounted_since
    );
    let january = f
        .rollups
        .read(&read_of(
            f.tenant,
            &purchases,
            Window::Week,
            week(date!(2026 - 01 - 05), date!(2026 - 01 - 25))?,
        ))
        .await?;
    ensure!(
        january.uncounted_since.is_none(),
        "weeks without the late event: {:?}",
        january.uncounted_since
    );
    let other = f
        .rollups
        .read(&read_of(f.other, &purchases, Window::Week, quarter()?))
        .await?;
    ensure!(other.uncounted_since.is_none(), "another tenant: {other:?}");
    Ok(())
}

pub async fn dirty_scopes_sum_up_each_rollup_and_window(f: &Fixture) -> Result<()> {
    let purchases = purchases()?;
    define(f, f.tenant, &purchases).await?;
    let first = late_purchase("first")?;
    let mut today = small_event(
        "today",
        datetime!(2026-03-10 05:00 UTC),
        json!({"channel": "app"}),
    )?;
    today.event_name = "purchase".to_owned();
    store_at(f.events.as_ref(), f.tenant, &[first], LATE_AT).await?;
    store_at(f.events.as_ref(), f.tenant, &[today], REFRESH).await?;
    let scopes = f
        .rollups
        .dirty_scopes(date!(2026 - 01 - 01), date!(2026 - 03 - 10))
        .await?;
    let day = scopes
        .iter()
        .find(|s| s.report == purchases.slug && s.window == Window::Day)
        .context("the purchases' day scope")?;
    ensure!(
        day.buckets == 2 && day.oldest == LATE_AT && day.oldest_current == Some(REFRESH),
        "two dirty days, the oldest change, the current day's: {day:?}"
    );
    let month = scopes
        .iter()
        .find(|s| s.report == purchases.slug && s.window == Window::Month)
        .context("the purchases' month scope")?;
    ensure!(
        month.buckets == 2 && month.oldest_current == Some(REFRESH),
        "February and March: {month:?}"
    );
    // Marks before `since` are left out.
    let recent = f
        .rollups
        .dirty_scopes(date!(2026 - 03 - 01), date!(2026 - 03 - 10))
        .await?;
    let day = recent
        .iter()
        .find(|s| s.report == purchases.slug && s.window == Window::Day)
        .context("the purchases' recent day scope")?;
    ensure!(
        day.buckets == 1 && day.oldest == REFRESH,
        "since March: {day:?}"
    );
    Ok(())
}

pub async fn clearing_the_events_clears_their_marks(f: &Fixture) -> Result<()> {
    let purchases = purchases()?;
    define(f, f.tenant, &purchases).await?;
    store_at(
        f.events.as_ref(),
        f.tenant,
        &[late_purchase("late")?],
        LATE_AT,
    )
    .await?;
    f.events.clear(f.tenant).await?;
    let left = f
        .rollups
        .dirty_scopes(date!(2026 - 01 - 01), date!(2026 - 03 - 10))
        .await?;
    ensure!(left.is_empty(), "marks of cleared events: {left:?}");
    ensure!(
        f.definitions
            .get(f.tenant, &purchases.slug)
            .await?
            .is_some(),
        "clearing events keeps the definitions"
    );
    Ok(())
}

pub async fn expiry_deletes_only_the_buckets_before_the_cutoff_with_their_marks(
    f: &Fixture,
) -> Result<()> {
    let purchases = purchases()?;
    built(f, &purchases).await?;
    store_at(
        f.events.as_ref(),
        f.tenant,
        &[late_purchase("late")?],
        LATE_AT,
    )
    .await?;
    let days_before = rows(f, &purchases, Window::Day).await?;
    let months_before = rows(f, &purchases, Window::Month).await?;
    let cutoff = date!(2026 - 02 - 16);
    let deleted = f
        .rollups
        .expire(f.tenant, &purchases.slug, Window::Day, cutoff, 7)
        .await?;
    let days_after = rows(f, &purchases, Window::Day).await?;
    let kept: Vec<SnapshotRow> = days_before
        .iter()
        .filter(|r| r.bucket_start >= cutoff)
        .cloned()
        .collect();
    ensure!(
        days_after == kept && deleted == (days_before.len() - kept.len()) as u64,
        "{deleted} rows expired, in batches of 7; {} of {} kept",
        days_after.len(),
        days_before.len()
    );
    ensure!(
        dirty(f, f.tenant, &purchases, Window::Day)
            .await?
            .is_empty(),
        "the late event's day (15 February) expired with its mark"
    );
    ensure!(
        rows(f, &purchases, Window::Month).await? == months_before
            && !dirty(f, f.tenant, &purchases, Window::Month)
                .await?
                .is_empty(),
        "other windows are untouched"
    );
    Ok(())
}

pub async fn a_purge_deletes_only_the_events_before_the_cutoff(f: &Fixture) -> Result<()> {
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    store(f.events.as_ref(), f.other, &events).await?;
    let cutoff = date!(2026 - 02 - 01);
    let before = events
        .iter()
        .filter(|e| e.occurred_at < cutoff.midnight().assume_utc())
        .count() as u64;
    let purged = f.events.purge(f.tenant, cutoff, 13).await?;
    ensure!(
        purged == before,
        "{purged} purged, {before} before the cutoff"
    );
    ensure!(
        f.events.count(f.tenant).await? == events.len() as u64 - before
            && f.events.count(f.other).await? == events.len() as u64,
        "the later events, and another tenant's, stay"
    );
    ensure!(
        f.events.purge(f.tenant, cutoff, 13).await? == 0,
        "nothing is left to purge"
    );
    Ok(())
}

/// Users and events by channel, by day, week and month: a distinct measure, whose sketches a
/// refresh unites with the stored ones.
fn buyers() -> Result<RollupDefinition> {
    definition(json!({
        "slug": "buyers",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "users", "kind": "distinct", "field": "user_id"}],
        "dimensions": [{"field": "properties.channel"}],
        "windows": [{"window": "day", "retention_days": 365}, {"window": "week", "retention_days": 365},
                    {"window": "month", "retention_days": 365}]
    }))
}

pub async fn a_refresh_adds_new_distinct_values_as_a_full_rebuild_counts_them(
    f: &Fixture,
) -> Result<()> {
    let buyers = buyers()?;
    built(f, &buyers).await?;
    // Users already counted in the bucket, and new ones, on two days.
    let mut late = Vec::new();
    for (i, (day, user)) in [
        (datetime!(2026-02-15 12:00 UTC), "u1"),
        (datetime!(2026-02-15 13:00 UTC), "u-new-1"),
        (datetime!(2026-02-15 14:00 UTC), "u-new-1"),
        (datetime!(2026-01-20 09:00 UTC), "u2"),
        (datetime!(2026-01-20 10:00 UTC), "u-new-2"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut event = small_event(&format!("late-{i}"), day, json!({"channel": "web"}))?;
        event.user_id = Some(user.to_owned());
        late.push(event);
    }
    store_at(f.events.as_ref(), f.tenant, &late, LATE_AT).await?;
    let outcomes = refresh(f, &buyers).await?;
    ensure!(
        outcomes
            .iter()
            .all(|o| o.rows_deleted == 0 && o.rows_inserted > 0 && o.dirty.len() == 2),
        "after a complete build, the refresh adds to the two dirty buckets' rows: {outcomes:?}"
    );
    reads_as_a_full_rebuild(f, &buyers).await
}

pub async fn a_redefined_rollup_refreshes_its_dirty_buckets_whole(f: &Fixture) -> Result<()> {
    let purchases = purchases()?;
    built(f, &purchases).await?;
    // Every event now, not purchases alone: the stored rows count what the old definition
    // did, so nothing can be added to them.
    let mut everything = purchases.clone();
    everything.rollup.filters.clear();
    f.definitions
        .replace(f.tenant, &everything, LATE_AT)
        .await
        .map_err(|e| anyhow::anyhow!("replacing the definition: {e}"))?;
    let refreshing = RunId::generate();
    let outcomes = rebuild(f, &everything, RunMode::Incremental, refreshing, REFRESH).await?;
    ensure!(
        outcomes.iter().all(|o| o.rows_deleted > 0
            && !o.dirty.is_empty()
            && o.dirty.iter().all(|d| d.reason == DirtyReason::Definition)),
        "the refresh should rebuild the buckets the definition dirtied: {outcomes:?}"
    );
    for window in [Window::Day, Window::Week, Window::Month] {
        let stale: Vec<SnapshotRow> = rows(f, &everything, window)
            .await?
            .into_iter()
            .filter(|r| r.run_id != refreshing)
            .collect();
        ensure!(
            stale.is_empty(),
            "{window}: rows the refresh did not rewrite: {stale:?}"
        );
    }
    // That refresh brought every bucket up to date: the next one adds a late event alone.
    store_at(
        f.events.as_ref(),
        f.tenant,
        &[late_purchase("late")?],
        REFRESH,
    )
    .await?;
    let outcomes = refresh(f, &everything).await?;
    ensure!(
        outcomes
            .iter()
            .all(|o| o.rows_deleted == 0 && o.rows_inserted == 1),
        "the next refresh adds one event to one row per window: {outcomes:?}"
    );
    reads_as_a_full_rebuild(f, &everything).await
}

pub async fn a_bucket_left_dirty_outside_a_runs_range_is_rebuilt_by_the_next_refresh(
    f: &Fixture,
) -> Result<()> {
    let purchases = purchases()?;
    built(f, &purchases).await?;
    // Late purchases in January and in February; a refresh of February alone.
    let mut january = late_purchase("late-january")?;
    january.occurred_at = datetime!(2026-01-20 12:00 UTC);
    store_at(
        f.events.as_ref(),
        f.tenant,
        &[january, late_purchase("late-february")?],
        LATE_AT,
    )
    .await?;
    let february = range(date!(2026 - 02 - 01), date!(2026 - 02 - 28))?;
    rebuild_in(
        f,
        &purchases,
        RunMode::Incremental,
        RunId::generate(),
        REFRESH,
        february,
    )
    .await?;
    let left = dirty(f, f.tenant, &purchases, Window::Day).await?;
    ensure!(
        starts(&left) == [date!(2026 - 01 - 20)],
        "the January day stays dirty: {left:?}"
    );
    // February counts its late purchase, January does not: the next refresh must count
    // January's, and February's no second time.
    store_at(
        f.events.as_ref(),
        f.tenant,
        &[late_purchase("later-february")?],
        REFRESH,
    )
    .await?;
    refresh(f, &purchases).await?;
    for window in [Window::Day, Window::Week, Window::Month] {
        let left = dirty(f, f.tenant, &purchases, window).await?;
        ensure!(left.is_empty(), "{window}: marks left: {left:?}");
    }
    reads_as_a_full_rebuild(f, &purchases).await
}

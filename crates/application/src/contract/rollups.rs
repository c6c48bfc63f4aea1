//! [`RollupStore`](crate::ports::RollupStore): a rebuilt rollup equals a direct aggregation of
//! the events it counts, for any definition, window and grouping; rebuilds replace exactly the
//! buckets of their range, per tenant, rollup and window; reads group, filter, order and page.
//!
//! Most promises compare an adapter with [`direct`], an aggregation of the generated events
//! ([`generated_events`]: names, users, sources, statuses and properties that are sometimes
//! missing, null or of another JSON type) written the way the domain defines each field's
//! value. A few pin the semantics with numbers worked out by hand.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::{Context, Result, ensure};
use domain::{
    DateRange, EventStatus, MeasureKind, NewEvent, PageRequest, ReportSlug, Rollup,
    RollupDefinition, RollupOrder, RollupPage, RollupQuery, RollupRow, RunId, SourceSlug, TenantId,
    Window,
    rollup::{Addend, MeasureValue, SpanQuery, compare_rows},
};
use serde_json::{Value, json};
use time::{
    Date, Duration, OffsetDateTime, UtcOffset,
    macros::{date, datetime},
};

use super::{range, store};
use crate::ports::{EventStore, RollupRebuild, RollupRebuildOutcome, RollupStore, WindowRebuild};

/// Stores with no events or rollup rows for `tenant` and `other`, over one database.
pub struct Fixture {
    pub events: Arc<dyn EventStore>,
    pub rollups: Arc<dyn RollupStore>,
    /// Where a scenario stores the definitions whose buckets ingestion marks dirty.
    pub definitions: Arc<dyn crate::ports::RollupDefinitions>,
    pub tenant: TenantId,
    pub other: TenantId,
}

const FIRST_BUILD: OffsetDateTime = datetime!(2026-03-10 06:00 UTC);
const SECOND_BUILD: OffsetDateTime = datetime!(2026-03-10 07:00 UTC);

/// January to March 2026, where every generated event lies.
pub(super) fn quarter() -> Result<DateRange> {
    range(date!(2026 - 01 - 01), date!(2026 - 03 - 31))
}

pub(super) fn definition(value: Value) -> Result<RollupDefinition> {
    RollupDefinition::parse(&value).map_err(|errors| {
        anyhow::anyhow!(
            "test definition: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

/// Count and amount by event name and channel.
fn by_name_and_channel() -> Result<RollupDefinition> {
    definition(json!({
        "slug": "by-name-and-channel",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "amount", "kind": "sum", "field": "amount_cents"}],
        "dimensions": [{"field": "event_name"}, {"field": "properties.channel"}],
        "windows": [{"window": "day"}, {"window": "week"}, {"window": "month"}]
    }))
}

/// Generated events: 240 of them over January to March 2026, every field varied, some
/// properties absent, null, or not strings.
pub(super) fn generated_events() -> Result<Vec<NewEvent>> {
    const NAMES: [&str; 3] = ["page_view", "purchase", "signup"];
    const SOURCES: [&str; 4] = ["stripe", "adyen", "paypal", "default"];
    const STATUSES: [EventStatus; 3] = [
        EventStatus::Success,
        EventStatus::Failed,
        EventStatus::Pending,
    ];
    let start = datetime!(2026-01-01 00:00 UTC);
    (0_u64..240)
        .map(|i| {
            let h = i.wrapping_mul(2_654_435_761).wrapping_add(12_345) % (1 << 32);
            let pick = |shift: u32, n: u64| ((h >> shift) ^ i) % n;
            let mut properties = serde_json::Map::new();
            match pick(3, 7) {
                0 => {}
                1 => {
                    properties.insert("channel".into(), json!(5));
                }
                2 => {
                    properties.insert("channel".into(), Value::Null);
                }
                3 => {
                    properties.insert("channel".into(), json!("web"));
                }
                4 => {
                    properties.insert("channel".into(), json!("ios"));
                }
                5 => {
                    properties.insert("channel".into(), json!("Email"));
                }
                _ => {
                    properties.insert("channel".into(), json!("émail"));
                }
            }
            if pick(5, 4) != 0 {
                properties.insert(
                    "path".into(),
                    json!(["/", "/pricing", "/docs"][pick(7, 3) as usize]),
                );
            }
            match pick(9, 6) {
                0 => {}
                1 => {
                    properties.insert("qty".into(), json!(3));
                }
                2 => {
                    properties.insert("qty".into(), json!("4"));
                }
                3 => {
                    properties.insert("qty".into(), json!(2.5));
                }
                4 => {
                    properties.insert("qty".into(), json!(-2));
                }
                _ => {
                    properties.insert("qty".into(), Value::Null);
                }
            }
            properties.insert(
                "plan".into(),
                json!(if pick(11, 3) == 0 { "pro" } else { "free" }),
            );
            let minutes = i64::try_from(h % (90 * 24 * 60)).context("minutes")?;
            Ok(NewEvent {
                event_id: format!("g{i}"),
                event_name: NAMES[pick(13, 3) as usize].to_owned(),
                user_id: (pick(15, 5) != 0).then(|| format!("u{}", pick(17, 9))),
                source: SourceSlug::parse("source", SOURCES[pick(19, 4) as usize])?,
                entity_id: (pick(21, 7) != 0).then(|| format!("entity-{}", pick(23, 5))),
                status: (pick(25, 6) != 0).then(|| STATUSES[pick(27, 3) as usize]),
                processing_ms: i64::try_from(h % 300).context("ms")?,
                amount_cents: i64::try_from(h % 5_000).context("cents")?,
                occurred_at: start + Duration::minutes(minutes),
                properties: Value::Object(properties),
            })
        })
        .collect()
}

/// A read's grouping, filters and order, over `range` of `window`.
struct Read {
    window: Window,
    range: DateRange,
    by_period: bool,
    dimensions: Vec<usize>,
    filters: Vec<(usize, String)>,
    order: RollupOrder,
}

impl Read {
    fn all(window: Window, range: DateRange, dimensions: usize) -> Self {
        Self {
            window,
            range: window.widen(range),
            by_period: true,
            dimensions: (0..dimensions).collect(),
            filters: Vec::new(),
            order: RollupOrder::Period,
        }
    }

    fn query(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        page: PageRequest,
    ) -> RollupQuery {
        RollupQuery {
            tenant,
            report: definition.slug.clone(),
            window: self.window,
            range: self.range,
            measures: definition
                .rollup
                .measures
                .iter()
                .map(|m| m.kind.combine())
                .collect(),
            by_period: self.by_period,
            dimensions: self.dimensions.clone(),
            filters: self.filters.clone(),
            order: self.order,
            page,
            coarser: Vec::new(),
        }
    }
}

/// A row's bucket (when by period) and grouped dimension values.
type GroupKey = (Option<(Date, u8)>, Vec<Option<String>>);

/// The rows `read` should give over `events` for `rollup` rebuilt over `rebuilt`: an
/// aggregation straight from the events (distinct counts exact: the tests keep them below the
/// sketches' explicit threshold), with what the sums skipped.
fn direct(
    events: &[NewEvent],
    rollup: &Rollup,
    rebuilt: DateRange,
    read: &Read,
) -> (Vec<RollupRow>, u64) {
    let mut groups: BTreeMap<GroupKey, Vec<i64>> = BTreeMap::new();
    let mut distinct: BTreeMap<(GroupKey, usize), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    let mut skipped = 0;
    for event in events {
        let date = event.occurred_at.to_offset(UtcOffset::UTC).date();
        let bucket = read.window.bucket_of(event.occurred_at);
        if !rebuilt.contains(date) || !rollup.filters.iter().all(|f| f.matches(event)) {
            continue;
        }
        let Some(values) = rollup.dimension_values(event) else {
            continue;
        };
        for measure in &rollup.measures {
            if let MeasureKind::Sum(field) = &measure.kind
                && field.addend(event) == Addend::Skipped
            {
                skipped += 1;
            }
        }
        if !read.range.contains(bucket.0)
            || !read
                .filters
                .iter()
                .all(|(p, v)| values[*p].as_deref() == Some(v.as_str()))
        {
            continue;
        }
        let key = (
            read.by_period.then_some(bucket),
            read.dimensions.iter().map(|p| values[*p].clone()).collect(),
        );
        let sums = groups
            .entry(key.clone())
            .or_insert_with(|| vec![0; rollup.measures.len()]);
        for (i, (sum, measure)) in sums.iter_mut().zip(&rollup.measures).enumerate() {
            *sum += match &measure.kind {
                MeasureKind::Count => 1,
                MeasureKind::Sum(field) => match field.addend(event) {
                    Addend::Value(v) => v,
                    Addend::Absent | Addend::Skipped => 0,
                },
                MeasureKind::Distinct(field) => {
                    let values = distinct.entry((key.clone(), i)).or_default();
                    if let Some(value) = field.value_of(event) {
                        values.insert(value.to_owned());
                    }
                    0
                }
            };
        }
    }
    for ((key, i), values) in distinct {
        if let Some(sum) = groups.get_mut(&key).and_then(|sums| sums.get_mut(i)) {
            *sum = values.len() as i64;
        }
    }
    let mut rows: Vec<RollupRow> = groups
        .into_iter()
        .map(|((bucket, dimensions), measures)| RollupRow {
            bucket_date: bucket.map(|(day, _)| day),
            bucket_hour: bucket
                .filter(|_| read.window.is_hourly())
                .map(|(_, hour)| hour),
            dimensions,
            measures,
        })
        .collect();
    rows.sort_by(|a, b| compare_rows(read.order, a, b));
    (rows, skipped)
}

async fn rebuild(
    f: &Fixture,
    tenant: TenantId,
    definition: &RollupDefinition,
    window: Window,
    range: DateRange,
    at: OffsetDateTime,
) -> Result<RollupRebuildOutcome> {
    let mut outcomes = rebuild_together(f, tenant, definition, &[(window, range)], at).await?;
    ensure!(
        outcomes.len() == 1,
        "{} outcomes of one window",
        outcomes.len()
    );
    outcomes.pop().context("the outcome")
}

/// Rebuilds the windows of `parts`, each over its range widened to whole buckets, in one call.
async fn rebuild_together(
    f: &Fixture,
    tenant: TenantId,
    definition: &RollupDefinition,
    parts: &[(Window, DateRange)],
    at: OffsetDateTime,
) -> Result<Vec<RollupRebuildOutcome>> {
    Ok(f.rollups
        .rebuild(&RollupRebuild {
            tenant,
            report: definition.slug.clone(),
            rollup: definition.rollup.clone(),
            windows: parts
                .iter()
                .map(|&(window, range)| WindowRebuild {
                    window,
                    range: window.widen(range),
                    mode: domain::RunMode::Full,
                    run_id: RunId::generate(),
                })
                .collect(),
            computed_at: at,
        })
        .await?)
}

/// Every row of `read`, page after page of the largest size, with the first page's total and
/// freshness (every page must agree on them).
async fn read_all(
    f: &Fixture,
    tenant: TenantId,
    definition: &RollupDefinition,
    read: &Read,
) -> Result<RollupPage> {
    let limit = domain::pagination::MAX_LIMIT;
    let first = f
        .rollups
        .read(&read.query(tenant, definition, PageRequest::new(limit, 0)))
        .await?;
    let mut all = first.clone();
    while (all.rows.len() as u64) < first.total_rows {
        let next = f
            .rollups
            .read(&read.query(
                tenant,
                definition,
                PageRequest::new(limit, all.rows.len() as u64),
            ))
            .await?;
        ensure!(
            !next.rows.is_empty()
                && next.total_rows == first.total_rows
                && next.last_refreshed_at == first.last_refreshed_at,
            "the page at {} disagrees with the first: {next:?}",
            all.rows.len()
        );
        all.rows.extend(next.rows);
    }
    Ok(all)
}

/// Checks that `page` holds exactly the rows `expected`, which are not none.
fn ensure_rows(what: &str, page: &RollupPage, expected: &[RollupRow]) -> Result<()> {
    ensure!(!expected.is_empty(), "{what}: the scenario reads no rows");
    ensure!(
        page.rows == expected,
        "{what}: read {} rows, expected {}; first difference: {:?}",
        page.rows.len(),
        expected.len(),
        page.rows
            .iter()
            .zip(expected)
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("{a:?} instead of {b:?}"))
    );
    Ok(())
}

/// Stores the generated events and rebuilds `definition`'s days over the quarter: the events
/// and the range rebuilt.
async fn days_of_the_quarter(
    f: &Fixture,
    definition: &RollupDefinition,
) -> Result<(Vec<NewEvent>, DateRange)> {
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let rebuilt = quarter()?;
    rebuild(f, f.tenant, definition, Window::Day, rebuilt, FIRST_BUILD).await?;
    Ok((events, rebuilt))
}

/// Stores the generated events, rebuilds `definition` in `window` over the quarter, and checks
/// `read` against [`direct`].
async fn equals_direct(
    f: &Fixture,
    definition: &RollupDefinition,
    read: &Read,
    what: &str,
) -> Result<()> {
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let rebuilt = read.window.widen(quarter()?);
    rebuild(f, f.tenant, definition, read.window, rebuilt, FIRST_BUILD).await?;
    let page = read_all(f, f.tenant, definition, read).await?;
    let (expected, _) = direct(&events, &definition.rollup, rebuilt, read);
    ensure_rows(what, &page, &expected)?;
    ensure!(
        page.total_rows == expected.len() as u64,
        "{what}: total {} for {} rows",
        page.total_rows,
        expected.len()
    );
    ensure!(
        page.last_refreshed_at == Some(FIRST_BUILD),
        "{what}: last_refreshed_at {:?}",
        page.last_refreshed_at
    );
    Ok(())
}

pub async fn a_rollup_by_two_dimensions_equals_a_direct_aggregation(f: &Fixture) -> Result<()> {
    let definition = by_name_and_channel()?;
    equals_direct(
        f,
        &definition,
        &Read::all(Window::Day, quarter()?, 2),
        "by day",
    )
    .await
}

pub async fn a_required_dimension_leaves_out_the_events_without_a_value_for_it(
    f: &Fixture,
) -> Result<()> {
    let definition = definition(json!({
        "slug": "channels-known",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "qty", "kind": "sum", "field": "properties.qty"}],
        "dimensions": [{"field": "event_name"},
                       {"field": "properties.channel", "required": true}],
        "windows": [{"window": "week"}]
    }))?;
    equals_direct(
        f,
        &definition,
        &Read::all(Window::Week, quarter()?, 2),
        "by week, with a channel",
    )
    .await?;
    let page = read_all(
        f,
        f.tenant,
        &definition,
        &Read::all(Window::Week, quarter()?, 2),
    )
    .await?;
    ensure!(
        page.rows.iter().all(|row| row.dimensions[1].is_some()),
        "no row of a null channel: {:?}",
        page.rows
    );
    Ok(())
}

pub async fn week_buckets_equal_a_direct_aggregation(f: &Fixture) -> Result<()> {
    let definition = by_name_and_channel()?;
    equals_direct(
        f,
        &definition,
        &Read::all(Window::Week, quarter()?, 2),
        "by week",
    )
    .await
}

pub async fn month_buckets_of_three_dimensions_equal_a_direct_aggregation(
    f: &Fixture,
) -> Result<()> {
    let definition = definition(json!({
        "slug": "three-dimensions",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "ms", "kind": "sum", "field": "processing_ms"}],
        "dimensions": [{"field": "source"}, {"field": "status"}, {"field": "user_id"}],
        "windows": [{"window": "month"}]
    }))?;
    equals_direct(
        f,
        &definition,
        &Read::all(Window::Month, quarter()?, 3),
        "by month",
    )
    .await
}

pub async fn every_grouping_and_order_equals_a_direct_aggregation(f: &Fixture) -> Result<()> {
    let definition = by_name_and_channel()?;
    let (events, rebuilt) = days_of_the_quarter(f, &definition).await?;
    let groupings: [(bool, &[usize]); 6] = [
        (true, &[]),
        (true, &[0]),
        (true, &[1]),
        (false, &[0, 1]),
        (false, &[1]),
        (false, &[]),
    ];
    let orders = [
        RollupOrder::Period,
        RollupOrder::MeasureDescending(0),
        RollupOrder::MeasureDescending(1),
    ];
    every_read_equals_direct(f, &definition, &events, rebuilt, &groupings, &orders).await
}

/// Checks every read of the day rows of `definition` rebuilt over `rebuilt`, by each of
/// `groupings` (by period, and the dimension positions) in each of `orders`, against
/// [`direct`] over `events`.
async fn every_read_equals_direct(
    f: &Fixture,
    definition: &RollupDefinition,
    events: &[NewEvent],
    rebuilt: DateRange,
    groupings: &[(bool, &[usize])],
    orders: &[RollupOrder],
) -> Result<()> {
    for &(by_period, dimensions) in groupings {
        for &order in orders {
            let read = Read {
                by_period,
                dimensions: dimensions.to_vec(),
                order,
                ..Read::all(Window::Day, rebuilt, 0)
            };
            let page = read_all(f, f.tenant, definition, &read).await?;
            let (expected, _) = direct(events, &definition.rollup, rebuilt, &read);
            ensure!(
                page.rows == expected && page.total_rows == expected.len() as u64,
                "by period {by_period}, dimensions {dimensions:?}, {order:?}: {:?} instead of {:?}",
                page.rows.iter().take(3).collect::<Vec<_>>(),
                expected.iter().take(3).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}

/// Events and distinct users, paths and sources by event name and channel.
fn distinct_by_name_and_channel() -> Result<RollupDefinition> {
    definition(json!({
        "slug": "uniques",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "users", "kind": "distinct", "field": "user_id"},
                     {"name": "paths", "kind": "distinct", "field": "properties.path"},
                     {"name": "sources", "kind": "distinct", "field": "source"}],
        "dimensions": [{"field": "event_name"}, {"field": "properties.channel"}],
        "windows": [{"window": "day"}, {"window": "week"}, {"window": "month"}]
    }))
}

/// Distinct counts merge across buckets and dimension values (daily uniques do not add up):
/// every grouping and order, by a distinct measure too, equals the exact counts.
pub async fn distinct_counts_merge_to_the_exact_counts_at_every_grouping_and_order(
    f: &Fixture,
) -> Result<()> {
    let definition = distinct_by_name_and_channel()?;
    let (events, rebuilt) = days_of_the_quarter(f, &definition).await?;
    let groupings: [(bool, &[usize]); 4] =
        [(true, &[]), (true, &[1]), (false, &[0, 1]), (false, &[])];
    let orders = [
        RollupOrder::Period,
        RollupOrder::MeasureDescending(1),
        RollupOrder::MeasureDescending(2),
    ];
    every_read_equals_direct(f, &definition, &events, rebuilt, &groupings, &orders).await?;
    let all = read_all(
        f,
        f.tenant,
        &definition,
        &Read {
            by_period: false,
            ..Read::all(Window::Day, rebuilt, 0)
        },
    )
    .await?;
    let users: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e.user_id.as_deref()).collect();
    ensure!(
        all.rows.len() == 1 && all.rows[0].measures[1] == users.len() as i64,
        "the quarter's users merged from its days: {:?}, {} users",
        all.rows,
        users.len()
    );
    Ok(())
}

/// Week and month sketches built with the days in one rebuild (merged from them) equal the
/// exact counts.
pub async fn distinct_counts_of_windows_rebuilt_together_equal_the_exact_counts(
    f: &Fixture,
) -> Result<()> {
    let definition = distinct_by_name_and_channel()?;
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let parts = [
        (Window::Day, quarter()?),
        (Window::Week, quarter()?),
        (Window::Month, quarter()?),
    ];
    rebuild_together(f, f.tenant, &definition, &parts, FIRST_BUILD).await?;
    for (window, part) in parts {
        let rebuilt = window.widen(part);
        for read in [
            Read::all(window, quarter()?, 2),
            Read {
                by_period: true,
                dimensions: Vec::new(),
                order: RollupOrder::MeasureDescending(1),
                ..Read::all(window, quarter()?, 0)
            },
        ] {
            let page = read_all(f, f.tenant, &definition, &read).await?;
            let (expected, _) = direct(&events, &definition.rollup, rebuilt, &read);
            ensure_rows(&format!("{window}, {:?}", read.order), &page, &expected)?;
        }
    }
    Ok(())
}

/// Hour buckets, rebuilt with the day, week and month windows in one rebuild (each coarser
/// window folded from the hours) or alone, equal the exact counts at every grouping; a
/// rebuild of some days replaces exactly the hours of those days.
pub async fn hour_buckets_equal_the_exact_counts_alone_or_with_coarser_windows(
    f: &Fixture,
) -> Result<()> {
    let mut definition = distinct_by_name_and_channel()?;
    definition.slug = ReportSlug::parse("hourly-uniques")?;
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let fortnight = range(date!(2026 - 02 - 02), date!(2026 - 02 - 15))?;
    let parts = [
        (Window::Hour, fortnight),
        (Window::Day, fortnight),
        (Window::Week, fortnight),
        (Window::Month, fortnight),
    ];
    let outcomes = rebuild_together(f, f.tenant, &definition, &parts, FIRST_BUILD).await?;
    for ((window, part), outcome) in parts.iter().zip(&outcomes) {
        let rebuilt = window.widen(*part);
        for read in [
            Read::all(*window, *part, 2),
            Read::all(*window, *part, 0),
            Read {
                by_period: false,
                ..Read::all(*window, *part, 1)
            },
            Read {
                order: RollupOrder::MeasureDescending(1),
                ..Read::all(*window, *part, 1)
            },
        ] {
            let page = read_all(f, f.tenant, &definition, &read).await?;
            let (expected, _) = direct(&events, &definition.rollup, rebuilt, &read);
            ensure_rows(&format!("{window}, {:?}", read.order), &page, &expected)?;
            if read.by_period && read.dimensions.len() == 2 {
                ensure!(
                    outcome.rows_inserted == expected.len() as u64,
                    "{window}: {outcome:?} for {} rows",
                    expected.len()
                );
            }
        }
    }
    let hours = read_all(
        f,
        f.tenant,
        &definition,
        &Read::all(Window::Hour, fortnight, 0),
    )
    .await?;
    ensure!(
        hours.rows.len() > fortnight.days() as usize
            && hours
                .rows
                .iter()
                .all(|r| r.bucket_hour.is_some_and(|h| h < 24)),
        "rows of hours: {:?}",
        hours.rows.iter().take(3).collect::<Vec<_>>()
    );
    // The hour window alone, over two of the days: the same rows, and nothing else changed.
    let two_days = range(date!(2026 - 02 - 04), date!(2026 - 02 - 05))?;
    let alone = rebuild(
        f,
        f.tenant,
        &definition,
        Window::Hour,
        two_days,
        SECOND_BUILD,
    )
    .await?;
    let again = read_all(
        f,
        f.tenant,
        &definition,
        &Read::all(Window::Hour, fortnight, 0),
    )
    .await?;
    ensure!(
        again.rows == hours.rows && again.last_refreshed_at == Some(SECOND_BUILD),
        "the hours of two days rebuilt alone changed the rows"
    );
    let (expected, _) = direct(
        &events,
        &definition.rollup,
        two_days,
        &Read::all(Window::Hour, two_days, 2),
    );
    ensure!(
        alone.rows_deleted == alone.rows_inserted && alone.rows_inserted == expected.len() as u64,
        "{alone:?} for {} rows of two days",
        expected.len()
    );
    Ok(())
}

/// A merged read is every row of the read, in its order, each measure as it merges further:
/// a sketch whose estimate is the read's number, and which merges across rows into the count
/// of the rows taken together.
pub async fn a_merged_read_holds_every_row_with_sketches_that_merge_further(
    f: &Fixture,
) -> Result<()> {
    let definition = distinct_by_name_and_channel()?;
    let (_, rebuilt) = days_of_the_quarter(f, &definition).await?;
    let by_day = Read {
        dimensions: vec![1],
        ..Read::all(Window::Day, rebuilt, 0)
    };
    let merged = f
        .rollups
        .read_merged(&by_day.query(f.tenant, &definition, PageRequest::new(1, 5)))
        .await?;
    let read = read_all(f, f.tenant, &definition, &by_day).await?;
    let rows: Vec<RollupRow> = merged.rows.iter().map(|m| m.row.clone()).collect();
    ensure_rows("merged, unpaged", &read, &rows)?;
    ensure!(
        merged.last_refreshed_at == Some(FIRST_BUILD),
        "freshness: {:?}",
        merged.last_refreshed_at
    );
    for merged_row in &merged.rows {
        let numbers: Vec<i64> = merged_row.values.iter().map(MeasureValue::number).collect();
        ensure!(
            numbers == merged_row.row.measures,
            "{numbers:?} estimate {:?}",
            merged_row.row
        );
    }
    let mut total: Vec<MeasureValue> = definition
        .rollup
        .measures
        .iter()
        .map(|m| m.kind.combine().empty())
        .collect();
    for merged_row in &merged.rows {
        for (value, more) in total.iter_mut().zip(&merged_row.values) {
            value.combine(more)?;
        }
    }
    let whole = read_all(
        f,
        f.tenant,
        &definition,
        &Read {
            by_period: false,
            ..Read::all(Window::Day, rebuilt, 0)
        },
    )
    .await?;
    let numbers: Vec<i64> = total.iter().map(MeasureValue::number).collect();
    ensure!(
        whole.rows.len() == 1 && whole.rows[0].measures == numbers,
        "merged across days and channels: {numbers:?}, read as one row: {:?}",
        whole.rows
    );
    Ok(())
}

/// A span aggregates exactly the events that occurred in `[from, to)`, with the rollup's
/// filters and required dimensions, and the dimension values asked for.
pub async fn a_span_aggregates_exactly_the_events_that_occurred_in_it(f: &Fixture) -> Result<()> {
    let definition = definition(json!({
        "slug": "spans",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "qty", "kind": "sum", "field": "properties.qty"},
                     {"name": "users", "kind": "distinct", "field": "user_id"},
                     {"name": "sources", "kind": "distinct", "field": "source"}],
        "dimensions": [{"field": "event_name"}, {"field": "properties.channel", "required": true},
                       {"field": "source"}],
        "filters": {"properties.plan": "free"}
    }))?;
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let from = datetime!(2026-02-03 10:17:30 UTC);
    let to = datetime!(2026-02-21 05:00 UTC);
    for filters in [
        vec![],
        vec![(0, "page_view".to_owned())],
        vec![(1, "web".to_owned()), (2, "adyen".to_owned())],
        vec![(0, "no-such-name".to_owned())],
    ] {
        let span = SpanQuery {
            tenant: f.tenant,
            rollup: definition.rollup.clone(),
            from,
            to,
            filters: filters.clone(),
        };
        let values = f.rollups.aggregate_span(&span).await?;
        let counted: Vec<&NewEvent> = events.iter().filter(|e| span.counts(e)).collect();
        let qty: i64 = counted
            .iter()
            .map(|e| match definition.rollup.measures[1].kind {
                MeasureKind::Sum(ref field) => match field.addend(e) {
                    Addend::Value(v) => v,
                    Addend::Absent | Addend::Skipped => 0,
                },
                _ => 0,
            })
            .sum();
        let users: std::collections::BTreeSet<&str> = counted
            .iter()
            .filter_map(|e| e.user_id.as_deref())
            .collect();
        let sources: std::collections::BTreeSet<&str> =
            counted.iter().map(|e| e.source.as_str()).collect();
        let numbers: Vec<i64> = values.iter().map(MeasureValue::number).collect();
        let expected = vec![
            counted.len() as i64,
            qty,
            users.len() as i64,
            sources.len() as i64,
        ];
        ensure!(
            numbers == expected,
            "{filters:?}: {numbers:?} instead of {expected:?}"
        );
        ensure!(
            !filters.is_empty() || counted.len() > 10,
            "the span holds events: {}",
            counted.len()
        );
    }
    // Events at `to` are the next span's; at `from`, this one's.
    let at = events
        .iter()
        .map(|e| e.occurred_at)
        .min()
        .context("an event")?;
    let before = SpanQuery {
        tenant: f.tenant,
        rollup: definition.rollup.clone(),
        from: at - Duration::hours(1),
        to: at,
        filters: Vec::new(),
    };
    let numbers: Vec<i64> = f
        .rollups
        .aggregate_span(&before)
        .await?
        .iter()
        .map(MeasureValue::number)
        .collect();
    ensure!(
        numbers == [0, 0, 0, 0],
        "nothing before the first event: {numbers:?}"
    );
    let other = f
        .rollups
        .aggregate_span(&SpanQuery {
            tenant: f.other,
            ..before
        })
        .await?;
    ensure!(
        other.iter().all(|v| v.number() == 0),
        "another tenant's span is empty"
    );
    Ok(())
}

/// Reads `definition` over `part` not by period, grouped and ordered three ways, tiled and by
/// day alone, and checks they agree; returns the rows read.
async fn tiled_equals_days(
    f: &Fixture,
    definition: &RollupDefinition,
    part: DateRange,
) -> Result<Vec<Vec<RollupRow>>> {
    let mut rows = Vec::new();
    for (dimensions, order) in [
        (vec![], RollupOrder::MeasureDescending(0)),
        (vec![1], RollupOrder::MeasureDescending(1)),
        (vec![0, 1], RollupOrder::MeasureDescending(0)),
    ] {
        let read = Read {
            by_period: false,
            dimensions,
            order,
            ..Read::all(Window::Day, part, 0)
        };
        let mut tiled = read.query(f.tenant, definition, PageRequest::new(100, 0));
        tiled.coarser = vec![Window::Day, Window::Week, Window::Month];
        ensure!(tiled.is_tiled(), "the read is tiled: {:?}", tiled.tiles());
        let alone = read.query(f.tenant, definition, PageRequest::new(100, 0));
        let (from_tiles, from_days) =
            (f.rollups.read(&tiled).await?, f.rollups.read(&alone).await?);
        ensure!(
            from_tiles.rows == from_days.rows && from_tiles.total_rows == from_days.total_rows,
            "{order:?}: tiled {:?}, by day {:?}",
            from_tiles.rows.iter().take(3).collect::<Vec<_>>(),
            from_days.rows.iter().take(3).collect::<Vec<_>>()
        );
        let merged = f.rollups.read_merged(&tiled).await?;
        ensure!(
            merged.rows.iter().map(|m| &m.row).eq(from_days.rows.iter()),
            "{order:?}: a merged tiled read"
        );
        rows.push(from_days.rows);
    }
    Ok(rows)
}

/// A read not by period merges the coarsest buckets that tile its range (months inside,
/// weeks, days at the edges) and answers as the day buckets alone do; where a coarser window
/// was computed before the latest change to its events, the day buckets alone answer.
pub async fn a_tiled_read_equals_the_day_read_and_falls_back_when_a_coarser_window_lags(
    f: &Fixture,
) -> Result<()> {
    let definition = distinct_by_name_and_channel()?;
    // Stored, so that late events mark its buckets dirty.
    f.definitions
        .create(f.tenant, &definition, 20, FIRST_BUILD)
        .await
        .map_err(|e| anyhow::anyhow!("storing the definition: {e}"))?;
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let parts = [
        (Window::Day, quarter()?),
        (Window::Week, quarter()?),
        (Window::Month, quarter()?),
    ];
    rebuild_together(f, f.tenant, &definition, &parts, FIRST_BUILD).await?;
    // January 7 to March 25: days, weeks, days, February, a day, weeks, days.
    let part = range(date!(2026 - 01 - 07), date!(2026 - 03 - 25))?;
    let before = tiled_equals_days(f, &definition, part).await?;
    let tiles = Read {
        by_period: false,
        ..Read::all(Window::Day, part, 0)
    };
    let mut query = tiles.query(f.tenant, &definition, PageRequest::new(1, 0));
    query.coarser = vec![Window::Week, Window::Month];
    let windows: Vec<Window> = query.tiles().iter().map(|(w, _)| *w).collect();
    ensure!(
        windows
            == [
                Window::Day,
                Window::Week,
                Window::Day,
                Window::Month,
                Window::Day,
                Window::Week,
                Window::Day
            ],
        "tiles: {:?}",
        query.tiles()
    );

    // Late events in February, counted by a rebuild of the days, and of March's month alone:
    // February's month lags, though the window has a row newer than the events.
    let late: Vec<NewEvent> = events
        .iter()
        .filter(|e| e.occurred_at.month() == time::Month::February)
        .take(5)
        .map(|e| NewEvent {
            event_id: format!("late-{}", e.event_id),
            user_id: Some(format!("late-user-{}", e.event_id)),
            ..e.clone()
        })
        .collect();
    super::store_at(
        f.events.as_ref(),
        f.tenant,
        &late,
        FIRST_BUILD + Duration::minutes(30),
    )
    .await?;
    rebuild(
        f,
        f.tenant,
        &definition,
        Window::Day,
        quarter()?,
        SECOND_BUILD,
    )
    .await?;
    let march = range(date!(2026 - 03 - 01), date!(2026 - 03 - 31))?;
    rebuild(f, f.tenant, &definition, Window::Month, march, SECOND_BUILD).await?;
    let after = tiled_equals_days(f, &definition, part).await?;
    ensure!(
        before != after,
        "the late events change the answer, so a lagging month would show"
    );
    Ok(())
}

pub async fn a_read_over_part_of_the_range_and_one_value_equals_a_direct_aggregation(
    f: &Fixture,
) -> Result<()> {
    let definition = by_name_and_channel()?;
    let (events, rebuilt) = days_of_the_quarter(f, &definition).await?;
    let read = Read {
        range: range(date!(2026 - 02 - 03), date!(2026 - 02 - 20))?,
        dimensions: vec![0],
        filters: vec![(1, "web".to_owned())],
        ..Read::all(Window::Day, rebuilt, 0)
    };
    let page = read_all(f, f.tenant, &definition, &read).await?;
    let (expected, _) = direct(&events, &definition.rollup, rebuilt, &read);
    ensure!(!expected.is_empty(), "the scenario reads no rows");
    ensure!(
        page.rows == expected,
        "{:?} instead of {expected:?}",
        page.rows
    );
    Ok(())
}

pub async fn filters_count_only_the_events_that_match_them(f: &Fixture) -> Result<()> {
    let definition = definition(json!({
        "slug": "pro-purchases",
        "measures": [{"name": "purchases", "kind": "count"},
                     {"name": "amount", "kind": "sum", "field": "amount_cents"}],
        "dimensions": [{"field": "user_id"}],
        "filters": {"event_name": "purchase", "properties.plan": "pro", "source": "stripe"},
        "windows": [{"window": "month"}]
    }))?;
    equals_direct(
        f,
        &definition,
        &Read::all(Window::Month, quarter()?, 1),
        "filtered",
    )
    .await
}

pub async fn a_property_sum_equals_a_direct_aggregation_and_counts_what_it_skips(
    f: &Fixture,
) -> Result<()> {
    let definition = definition(json!({
        "slug": "quantities",
        "measures": [{"name": "qty", "kind": "sum", "field": "properties.qty"},
                     {"name": "events", "kind": "count"}],
        "dimensions": [{"field": "properties.path"}],
        "windows": [{"window": "week"}]
    }))?;
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let read = Read::all(Window::Week, quarter()?, 1);
    let outcome = rebuild(
        f,
        f.tenant,
        &definition,
        Window::Week,
        read.range,
        FIRST_BUILD,
    )
    .await?;
    let page = read_all(f, f.tenant, &definition, &read).await?;
    let (expected, skipped) = direct(&events, &definition.rollup, read.range, &read);
    ensure!(
        page.rows == expected,
        "{:?} instead of {expected:?}",
        page.rows
    );
    ensure!(skipped > 0, "the scenario skips nothing");
    ensure!(
        outcome.values_skipped == skipped,
        "skipped {} values, expected {skipped}",
        outcome.values_skipped
    );
    ensure!(
        outcome.rows_inserted == page.total_rows,
        "inserted {} rows, read {}",
        outcome.rows_inserted,
        page.total_rows
    );
    Ok(())
}

/// An event of the hand-worked scenarios: `id` at `at`, with `properties`.
pub(super) fn small_event(id: &str, at: OffsetDateTime, properties: Value) -> Result<NewEvent> {
    Ok(NewEvent {
        event_id: id.to_owned(),
        event_name: "order".to_owned(),
        user_id: None,
        source: SourceSlug::default_source(),
        entity_id: None,
        status: None,
        processing_ms: 0,
        amount_cents: 0,
        occurred_at: at,
        properties,
    })
}

pub async fn a_property_sum_adds_integers_and_skips_every_other_value(f: &Fixture) -> Result<()> {
    let at = datetime!(2026-03-02 10:00 UTC);
    let events = [
        json!({"qty": 3}),
        json!({"qty": -2}),
        json!({"qty": 999_999_999_999_999_999_i64}),
        json!({"qty": "4"}),
        json!({"qty": 2.5}),
        json!({"qty": {"n": 1}}),
        json!({"qty": 1_000_000_000_000_000_000_i64}),
        json!({"qty": null}),
        json!({}),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, p)| small_event(&format!("q{i}"), at, p))
    .collect::<Result<Vec<_>>>()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let definition = definition(json!({
        "slug": "qty", "measures": [{"name": "qty", "kind": "sum", "field": "properties.qty"}]
    }))?;
    let day = range(date!(2026 - 03 - 02), date!(2026 - 03 - 02))?;
    let outcome = rebuild(f, f.tenant, &definition, Window::Day, day, FIRST_BUILD).await?;
    let page = read_all(f, f.tenant, &definition, &Read::all(Window::Day, day, 0)).await?;
    let expected = vec![RollupRow {
        bucket_date: Some(date!(2026 - 03 - 02)),
        bucket_hour: None,
        dimensions: vec![],
        measures: vec![1_000_000_000_000_000_000],
    }];
    ensure!(page.rows == expected, "{:?}", page.rows);
    ensure!(
        outcome.values_skipped == 4,
        "a string, a fraction, an object and a 19-digit integer are skipped; absent and null are not counted: {}",
        outcome.values_skipped
    );
    Ok(())
}

pub async fn top_values_are_by_measure_descending_then_bytewise_with_null_last(
    f: &Fixture,
) -> Result<()> {
    let at = datetime!(2026-03-02 10:00 UTC);
    let channels = [
        json!({"channel": "b"}),
        json!({"channel": "b"}),
        json!({"channel": "a"}),
        json!({"channel": "B"}),
        json!({}),
        json!({"channel": 7}),
        json!({"channel": "é"}),
        json!({"channel": "a"}),
    ];
    let events = channels
        .into_iter()
        .enumerate()
        .map(|(i, p)| small_event(&format!("c{i}"), at, p))
        .collect::<Result<Vec<_>>>()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let definition = definition(json!({
        "slug": "channels", "measures": [{"name": "events", "kind": "count"}],
        "dimensions": [{"field": "properties.channel"}]
    }))?;
    let day = range(date!(2026 - 03 - 02), date!(2026 - 03 - 02))?;
    rebuild(f, f.tenant, &definition, Window::Day, day, FIRST_BUILD).await?;
    let read = Read {
        by_period: false,
        order: RollupOrder::MeasureDescending(0),
        ..Read::all(Window::Day, day, 1)
    };
    let page = read_all(f, f.tenant, &definition, &read).await?;
    let got: Vec<(Option<&str>, i64)> = page
        .rows
        .iter()
        .map(|r| (r.dimensions[0].as_deref(), r.measures[0]))
        .collect();
    let expected = [
        (Some("a"), 2),
        (Some("b"), 2),
        (None, 2),
        (Some("B"), 1),
        (Some("é"), 1),
    ];
    ensure!(got == expected, "{got:?}");
    Ok(())
}

pub async fn pages_keep_the_total_and_an_empty_page_still_has_it(f: &Fixture) -> Result<()> {
    let definition = by_name_and_channel()?;
    store(f.events.as_ref(), f.tenant, &generated_events()?).await?;
    let read = Read::all(Window::Month, quarter()?, 2);
    rebuild(
        f,
        f.tenant,
        &definition,
        Window::Month,
        read.range,
        FIRST_BUILD,
    )
    .await?;
    let all = read_all(f, f.tenant, &definition, &read).await?;
    let page = f
        .rollups
        .read(&read.query(f.tenant, &definition, PageRequest::new(2, 1)))
        .await?;
    ensure!(
        page.rows == all.rows[1..3] && page.total_rows == all.total_rows,
        "limit 2 offset 1: {page:?}"
    );
    let past = f
        .rollups
        .read(&read.query(f.tenant, &definition, PageRequest::new(10, 10_000)))
        .await?;
    ensure!(
        past.rows.is_empty()
            && past.total_rows == all.total_rows
            && past.last_refreshed_at == Some(FIRST_BUILD),
        "a page past the end: {past:?}"
    );
    Ok(())
}

pub async fn nothing_is_read_before_a_rebuild(f: &Fixture) -> Result<()> {
    let definition = by_name_and_channel()?;
    store(f.events.as_ref(), f.tenant, &generated_events()?).await?;
    let page = read_all(
        f,
        f.tenant,
        &definition,
        &Read::all(Window::Day, quarter()?, 2),
    )
    .await?;
    ensure!(
        page.rows.is_empty() && page.total_rows == 0 && page.last_refreshed_at.is_none(),
        "{page:?}"
    );
    Ok(())
}

pub async fn without_dimensions_each_bucket_with_events_is_one_row(f: &Fixture) -> Result<()> {
    let events = [
        small_event("d1", datetime!(2026-03-02 10:00 UTC), json!({}))?,
        small_event("d2", datetime!(2026-03-02 11:00 UTC), json!({}))?,
        small_event("d3", datetime!(2026-03-04 11:00 UTC), json!({}))?,
    ];
    store(f.events.as_ref(), f.tenant, &events).await?;
    let definition = definition(json!({
        "slug": "total", "measures": [{"name": "events", "kind": "count"}]
    }))?;
    let days = range(date!(2026 - 03 - 01), date!(2026 - 03 - 05))?;
    let outcome = rebuild(f, f.tenant, &definition, Window::Day, days, FIRST_BUILD).await?;
    let page = read_all(f, f.tenant, &definition, &Read::all(Window::Day, days, 0)).await?;
    let got: Vec<(Option<Date>, Vec<i64>)> = page
        .rows
        .into_iter()
        .map(|r| (r.bucket_date, r.measures))
        .collect();
    ensure!(
        got == [
            (Some(date!(2026 - 03 - 02)), vec![2]),
            (Some(date!(2026 - 03 - 04)), vec![1])
        ],
        "{got:?}"
    );
    ensure!(outcome.rows_inserted == 2, "{outcome:?}");
    Ok(())
}

pub async fn a_rebuild_replaces_only_the_buckets_of_its_range(f: &Fixture) -> Result<()> {
    let definition = by_name_and_channel()?;
    let mut events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let whole = quarter()?;
    rebuild(f, f.tenant, &definition, Window::Day, whole, FIRST_BUILD).await?;
    let day = range(date!(2026 - 02 - 10), date!(2026 - 02 - 10))?;
    let rows_of_day = read_all(f, f.tenant, &definition, &Read::all(Window::Day, day, 2))
        .await?
        .total_rows;
    let late = small_event(
        "late",
        datetime!(2026-02-10 12:00 UTC),
        json!({"channel": "web"}),
    )?;
    store(f.events.as_ref(), f.tenant, std::slice::from_ref(&late)).await?;
    events.push(late);
    let outcome = rebuild(f, f.tenant, &definition, Window::Day, day, SECOND_BUILD).await?;
    ensure!(
        outcome.rows_deleted == rows_of_day,
        "deleted {} rows of a day that had {rows_of_day}",
        outcome.rows_deleted
    );
    let read = Read::all(Window::Day, whole, 2);
    let page = read_all(f, f.tenant, &definition, &read).await?;
    let (expected, _) = direct(&events, &definition.rollup, whole, &read);
    ensure!(
        page.rows == expected,
        "the late event is counted, the rest unchanged"
    );
    let rebuilt = read_all(f, f.tenant, &definition, &Read::all(Window::Day, day, 2)).await?;
    let before = read_all(
        f,
        f.tenant,
        &definition,
        &Read::all(
            Window::Day,
            range(date!(2026 - 01 - 01), date!(2026 - 02 - 09))?,
            2,
        ),
    )
    .await?;
    ensure!(
        rebuilt.last_refreshed_at == Some(SECOND_BUILD)
            && before.last_refreshed_at == Some(FIRST_BUILD),
        "the rebuilt day is from the second build ({:?}), the days before from the first ({:?})",
        rebuilt.last_refreshed_at,
        before.last_refreshed_at
    );
    Ok(())
}

pub async fn windows_rebuilt_together_equal_each_window_rebuilt_alone(f: &Fixture) -> Result<()> {
    let definition = definition(json!({
        "slug": "together",
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "qty", "kind": "sum", "field": "properties.qty"}],
        "dimensions": [{"field": "event_name"}, {"field": "properties.channel"}],
        "windows": [{"window": "day"}, {"window": "week"}, {"window": "month"}]
    }))?;
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    // Three windows over three different ranges, none inside another's.
    let parts = [
        (
            Window::Month,
            range(date!(2026 - 02 - 01), date!(2026 - 03 - 31))?,
        ),
        (
            Window::Day,
            range(date!(2026 - 01 - 10), date!(2026 - 02 - 20))?,
        ),
        (
            Window::Week,
            range(date!(2026 - 01 - 01), date!(2026 - 02 - 03))?,
        ),
    ];
    let outcomes = rebuild_together(f, f.tenant, &definition, &parts, FIRST_BUILD).await?;
    ensure!(
        outcomes.len() == 3,
        "{} outcomes of three windows",
        outcomes.len()
    );
    for ((window, part), outcome) in parts.iter().zip(&outcomes) {
        let rebuilt = window.widen(*part);
        let read = Read::all(*window, quarter()?, 2);
        let page = read_all(f, f.tenant, &definition, &read).await?;
        let (expected, skipped) = direct(&events, &definition.rollup, rebuilt, &read);
        ensure_rows(&window.to_string(), &page, &expected)?;
        ensure!(
            outcome.rows_inserted == expected.len() as u64
                && outcome.rows_deleted == 0
                && outcome.values_skipped == skipped,
            "{window}: {outcome:?}, expected {} rows and {skipped} skipped",
            expected.len()
        );
    }
    // Again, over rows that exist now: each window deletes exactly its own.
    let again = rebuild_together(f, f.tenant, &definition, &parts, SECOND_BUILD).await?;
    for (first, second) in outcomes.iter().zip(&again) {
        ensure!(
            second.rows_deleted == first.rows_inserted
                && second.rows_inserted == first.rows_inserted,
            "a second rebuild: {second:?} after {first:?}"
        );
    }
    Ok(())
}

pub async fn a_rebuild_naming_a_window_twice_is_refused_and_changes_nothing(
    f: &Fixture,
) -> Result<()> {
    let definition = by_name_and_channel()?;
    store(f.events.as_ref(), f.tenant, &generated_events()?).await?;
    let whole = quarter()?;
    let twice = [
        (Window::Day, whole),
        (Window::Week, whole),
        (Window::Day, whole),
    ];
    let refused = rebuild_together(f, f.tenant, &definition, &twice, FIRST_BUILD).await;
    ensure!(refused.is_err(), "a window named twice was accepted");
    let refused = rebuild_together(f, f.tenant, &definition, &[], FIRST_BUILD).await;
    ensure!(refused.is_err(), "a rebuild of no window was accepted");
    for window in [Window::Day, Window::Week] {
        let page = read_all(f, f.tenant, &definition, &Read::all(window, whole, 2)).await?;
        ensure!(
            page.rows.is_empty(),
            "{window}: a refused rebuild wrote {page:?}"
        );
    }
    Ok(())
}

pub async fn tenants_windows_and_rollups_are_kept_apart(f: &Fixture) -> Result<()> {
    let definition = by_name_and_channel()?;
    let events = generated_events()?;
    store(f.events.as_ref(), f.tenant, &events).await?;
    let whole = quarter()?;
    rebuild(f, f.tenant, &definition, Window::Day, whole, FIRST_BUILD).await?;
    let day_read = Read::all(Window::Day, whole, 2);
    let before = read_all(f, f.tenant, &definition, &day_read).await?;

    let week = read_all(f, f.tenant, &definition, &Read::all(Window::Week, whole, 2)).await?;
    ensure!(
        week.rows.is_empty(),
        "a day rebuild wrote week rows: {week:?}"
    );
    let other = read_all(f, f.other, &definition, &day_read).await?;
    ensure!(
        other.rows.is_empty(),
        "another tenant reads rows: {other:?}"
    );
    let mut renamed = definition.clone();
    renamed.slug = ReportSlug::parse("another-rollup")?;
    let unbuilt = read_all(f, f.tenant, &renamed, &day_read).await?;
    ensure!(
        unbuilt.rows.is_empty(),
        "another rollup reads rows: {unbuilt:?}"
    );

    let theirs = [small_event(
        "o1",
        datetime!(2026-02-10 12:00 UTC),
        json!({"channel": "web"}),
    )?];
    store(f.events.as_ref(), f.other, &theirs).await?;
    rebuild(f, f.other, &definition, Window::Day, whole, SECOND_BUILD).await?;
    let other = read_all(f, f.other, &definition, &day_read).await?;
    let (expected, _) = direct(&theirs, &definition.rollup, whole, &day_read);
    ensure!(
        other.rows == expected,
        "the other tenant counts only its event: {other:?}"
    );
    let after = read_all(f, f.tenant, &definition, &day_read).await?;
    ensure!(
        after == before,
        "another tenant's rebuild changed these rows"
    );
    Ok(())
}

pub async fn remove_deletes_every_window_of_the_rollup_and_nothing_else(f: &Fixture) -> Result<()> {
    let definition = by_name_and_channel()?;
    store(f.events.as_ref(), f.tenant, &generated_events()?).await?;
    let whole = quarter()?;
    let mut kept = definition.clone();
    kept.slug = ReportSlug::parse("kept")?;
    let day = rebuild(f, f.tenant, &definition, Window::Day, whole, FIRST_BUILD).await?;
    let month = rebuild(f, f.tenant, &definition, Window::Month, whole, FIRST_BUILD).await?;
    rebuild(f, f.tenant, &kept, Window::Day, whole, FIRST_BUILD).await?;
    store(
        f.events.as_ref(),
        f.other,
        &[small_event(
            "o1",
            datetime!(2026-02-10 12:00 UTC),
            json!({}),
        )?],
    )
    .await?;
    rebuild(f, f.other, &definition, Window::Day, whole, FIRST_BUILD).await?;

    let removed = f.rollups.remove(f.tenant, &definition.slug).await?;
    ensure!(
        removed == day.rows_inserted + month.rows_inserted,
        "removed {removed} rows of {} + {}",
        day.rows_inserted,
        month.rows_inserted
    );
    let read = Read::all(Window::Day, whole, 2);
    ensure!(
        read_all(f, f.tenant, &definition, &read)
            .await?
            .rows
            .is_empty(),
        "the removed rollup still has rows"
    );
    ensure!(
        !read_all(f, f.tenant, &kept, &read).await?.rows.is_empty(),
        "another rollup lost its rows"
    );
    ensure!(
        !read_all(f, f.other, &definition, &read)
            .await?
            .rows
            .is_empty(),
        "another tenant's rollup of the same slug lost its rows"
    );
    Ok(())
}

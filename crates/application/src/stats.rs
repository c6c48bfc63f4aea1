//! The answers web analytics asks first, in the shapes earlier systems gave them: a day's (or
//! a range's) views, unique users and top paths (`stats`), and the count and unique users of
//! events over any time window, in total and per day or hour (`metrics`).
//!
//! Both read the standard rollups (`traffic`, `top-paths`, `events-by-name`), never a range of
//! raw events. `stats` reads whole days, through the read cache. `metrics` takes a window
//! `[from, to)` of any instants: it reads whole days from the day buckets, whole hours of a
//! partial day from the hour buckets, and only the ragged edges (what lies before the first
//! whole hour and after the last, less than an hour at each end) from raw events, merging the
//! edges' users into the buckets' sketches so that nobody is counted twice.

use std::{collections::BTreeMap, sync::Arc};

use domain::{
    Combine, DateRange, PageRequest, ReportSlug, RollupDefinition, RollupOrder, RollupQuery,
    SourceSlug, TenantId, ValidationError, Window, parse_date,
    rollup::{MeasureValue, MergedPage, SpanQuery, filter_text, standard_rollup},
};
use time::{
    Date, Duration, OffsetDateTime, Time, UtcOffset, format_description::well_known::Rfc3339,
};

use crate::{
    ReportError,
    ports::{Clock, RollupStore},
    read_cache::CachedReads,
};

/// The rows of `top_paths` a `stats` answer gives unless asked otherwise.
pub const DEFAULT_TOP_PATHS: u32 = 10;

/// The most rows of `top_paths` a `stats` answer gives.
pub const MAX_TOP_PATHS: u32 = 100;

/// The query parameters of a request, as sent.
pub type Params = [(String, String)];

/// The ports a [`StatsService`] works with.
#[derive(Clone)]
pub struct StatsPorts {
    /// Reads of whole buckets, through the cache.
    pub reads: CachedReads,
    /// Merged reads and raw spans, for windows that are not whole buckets.
    pub rollups: Arc<dyn RollupStore>,
    pub clock: Arc<dyn Clock>,
}

/// Answers `stats` and `metrics` from the standard rollups.
#[derive(Clone)]
pub struct StatsService {
    ports: StatsPorts,
    max_range_days: u32,
}

impl std::fmt::Debug for StatsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsService")
            .field("max_range_days", &self.max_range_days)
            .finish_non_exhaustive()
    }
}

/// How fresh an answer is: the oldest of the newest `computed_at` of each snapshot read it
/// made, and whether events any of them counts changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Freshness {
    pub last_refreshed_at: Option<OffsetDateTime>,
    pub stale: bool,
    /// The oldest change some read does not count yet.
    pub uncounted_since: Option<OffsetDateTime>,
    /// How long that change had waited when the answer was made, in whole seconds; 0 when
    /// every read counts every event.
    pub lag_seconds: u64,
}

impl Freshness {
    /// Takes in a read that was computed at `refreshed` and does not count changes since
    /// `uncounted`, if any.
    /// Sets `lag_seconds` as of `now`.
    fn as_of(mut self, now: OffsetDateTime) -> Self {
        self.lag_seconds = self.uncounted_since.map_or(0, |since| {
            u64::try_from((now - since).whole_seconds()).unwrap_or(0)
        });
        self
    }

    fn add(&mut self, refreshed: Option<OffsetDateTime>, uncounted: Option<OffsetDateTime>) {
        self.stale |= uncounted.is_some();
        if let Some(uncounted) = uncounted {
            self.uncounted_since = Some(
                self.uncounted_since
                    .map_or(uncounted, |oldest| oldest.min(uncounted)),
            );
        }
        if let Some(refreshed) = refreshed {
            self.last_refreshed_at = Some(
                self.last_refreshed_at
                    .map_or(refreshed, |oldest| oldest.min(refreshed)),
            );
        }
    }
}

/// Views, unique users and top paths over a range of days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub date: Date,
    pub date_to: Date,
    /// The source the answer is limited to, if any.
    pub source: Option<SourceSlug>,
    /// Every event of the range (of the source).
    pub total_views: i64,
    pub unique_users: i64,
    /// The paths with the most events, most first (ties by path, bytewise).
    pub top_paths: Vec<PathStats>,
    pub freshness: Freshness,
    /// Whether every read came from the cache.
    pub cache_hit: bool,
}

/// One path of [`Stats::top_paths`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStats {
    pub path: String,
    pub views: i64,
    pub unique_users: i64,
}

/// How a `metrics` answer is bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Day,
    Hour,
}

impl Grouping {
    const fn step(self) -> Duration {
        match self {
            Grouping::Day => Duration::DAY,
            Grouping::Hour => Duration::HOUR,
        }
    }

    /// The start of the bucket holding `at`.
    fn floor(self, at: OffsetDateTime) -> OffsetDateTime {
        match self {
            Grouping::Day => floor_day(at),
            Grouping::Hour => floor_hour(at),
        }
    }
}

/// The count and unique users of events over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub event_name: Option<String>,
    pub channel: Option<String>,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub group_by: Option<Grouping>,
    pub count: i64,
    pub unique_users: i64,
    /// With a grouping, every bucket that overlaps the window, in order, empty ones included;
    /// the first and last count only their part inside the window.
    pub buckets: Vec<MetricsBucket>,
    pub freshness: Freshness,
}

/// One bucket of [`Metrics::buckets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsBucket {
    pub start: OffsetDateTime,
    pub count: i64,
    pub unique_users: i64,
}

/// The standard rollup `slug`.
fn standard(slug: &str) -> Result<&'static RollupDefinition, ReportError> {
    ReportSlug::parse(slug)
        .ok()
        .and_then(|slug| standard_rollup(&slug))
        .ok_or_else(|| ReportError::Unexpected(anyhow::anyhow!("no standard rollup {slug}")))
}

/// The position of `definition`'s dimension `name`.
fn position(definition: &RollupDefinition, name: &str) -> Result<usize, ReportError> {
    definition
        .rollup
        .dimensions
        .iter()
        .position(|d| d.name == name)
        .ok_or_else(|| {
            ReportError::Unexpected(anyhow::anyhow!(
                "the standard rollup {} has no dimension {name}",
                definition.slug
            ))
        })
}

/// The parameters of one request by name, each sent at most once and each one of `allowed`
/// (or `tenant`, which the caller resolves).
fn single<'a>(
    params: &'a Params,
    allowed: &[&str],
) -> Result<BTreeMap<&'a str, &'a str>, ValidationError> {
    let mut single = BTreeMap::new();
    for (name, value) in params {
        let name = name.as_str();
        if name == "tenant" {
            continue;
        }
        if !allowed.contains(&name) {
            return Err(ValidationError::new(
                name,
                format!(
                    "is not a parameter here (parameters: {})",
                    allowed.join(", ")
                ),
            ));
        }
        if single.insert(name, value.as_str()).is_some() {
            return Err(ValidationError::new(name, "may be sent once"));
        }
    }
    Ok(single)
}

/// The earliest instant a window may start or end at.
const EARLIEST: OffsetDateTime = time::macros::datetime!(1970-01-01 00:00 UTC);

/// The latest instant a window may start or end at: far enough from the calendar's end that
/// whole days and hours around it exist.
const LATEST: OffsetDateTime = time::macros::datetime!(9000-01-01 00:00 UTC);

/// An instant given as RFC 3339 (`2026-11-18T10:00:00Z`) or as Unix seconds, from 1970 to
/// the year 9000.
///
/// # Errors
/// A [`ValidationError`] on `field` naming both forms, or the range.
pub fn parse_instant(field: &str, raw: &str) -> Result<OffsetDateTime, ValidationError> {
    let invalid = || {
        ValidationError::new(
            field,
            format!("must be an RFC 3339 time (2026-11-18T10:00:00Z) or Unix seconds; got {raw:?}"),
        )
    };
    let trimmed = raw.trim();
    let at = if let Ok(seconds) = trimmed.parse::<i64>() {
        OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| invalid())?
    } else {
        // A `+` of an offset sent unencoded in a query string arrives as a space.
        OffsetDateTime::parse(trimmed, &Rfc3339)
            .or_else(|_| OffsetDateTime::parse(&trimmed.replace(' ', "+"), &Rfc3339))
            .map_err(|_| invalid())?
            .checked_to_offset(UtcOffset::UTC)
            .ok_or_else(invalid)?
    };
    if at < EARLIEST || at > LATEST {
        return Err(ValidationError::new(
            field,
            format!("must be from 1970-01-01T00:00:00Z to 9000-01-01T00:00:00Z; got {raw:?}"),
        ));
    }
    Ok(at)
}

fn floor_hour(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    at.replace_time(Time::MIDNIGHT) + Duration::hours(i64::from(at.hour()))
}

fn ceil_hour(at: OffsetDateTime) -> OffsetDateTime {
    let floor = floor_hour(at);
    if floor == at {
        floor
    } else {
        floor + Duration::HOUR
    }
}

fn floor_day(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(UtcOffset::UTC).replace_time(Time::MIDNIGHT)
}

fn ceil_day(at: OffsetDateTime) -> OffsetDateTime {
    let floor = floor_day(at);
    if floor == at {
        floor
    } else {
        floor + Duration::DAY
    }
}

/// The days `[from, to)` touches (UTC), as a range of dates.
fn days_of(from: OffsetDateTime, to: OffsetDateTime) -> Result<DateRange, ValidationError> {
    let first = from.to_offset(UtcOffset::UTC).date();
    let last = (to - Duration::NANOSECOND).to_offset(UtcOffset::UTC).date();
    DateRange::new(first, last.max(first))
}

/// Where the parts of a `metrics` window are read from.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Spans of raw events, each inside one hour.
    raw: Vec<(OffsetDateTime, OffsetDateTime)>,
    /// Spans of whole hours, read from the hour buckets.
    hours: Vec<(OffsetDateTime, OffsetDateTime)>,
    /// A span of whole days, read from the day buckets.
    days: Option<(OffsetDateTime, OffsetDateTime)>,
}

impl Plan {
    /// Tiles `[from, to)`: the ragged edges raw, whole days (unless bucketed by hour) from day
    /// buckets, the whole hours around them from hour buckets.
    fn of(from: OffsetDateTime, to: OffsetDateTime, grouping: Option<Grouping>) -> Self {
        let mut plan = Plan::default();
        let (h0, h1) = (ceil_hour(from), floor_hour(to));
        if h0 >= h1 {
            if from < to {
                plan.raw.push((from, to));
            }
            return plan;
        }
        if from < h0 {
            plan.raw.push((from, h0));
        }
        if h1 < to {
            plan.raw.push((h1, to));
        }
        let (d0, d1) = (ceil_day(h0), floor_day(h1));
        if grouping == Some(Grouping::Hour) || d0 >= d1 {
            plan.hours.push((h0, h1));
            return plan;
        }
        if h0 < d0 {
            plan.hours.push((h0, d0));
        }
        plan.days = Some((d0, d1));
        if d1 < h1 {
            plan.hours.push((d1, h1));
        }
        plan
    }
}

/// Measures in definition order, merged as rows and spans come in.
struct Sums {
    count: usize,
    users: usize,
    total: Vec<MeasureValue>,
    buckets: BTreeMap<OffsetDateTime, Vec<MeasureValue>>,
    grouping: Option<Grouping>,
    empty: Vec<MeasureValue>,
}

impl Sums {
    fn add(&mut self, at: OffsetDateTime, values: &[MeasureValue]) -> Result<(), ReportError> {
        let overflow = |e: domain::rollup::Overflow| ReportError::Unexpected(e.into());
        for (value, more) in self.total.iter_mut().zip(values) {
            value.combine(more).map_err(overflow)?;
        }
        if let Some(grouping) = self.grouping {
            let bucket = self
                .buckets
                .entry(grouping.floor(at))
                .or_insert_with(|| self.empty.clone());
            for (value, more) in bucket.iter_mut().zip(values) {
                value.combine(more).map_err(overflow)?;
            }
        }
        Ok(())
    }

    fn number(&self, values: &[MeasureValue], position: usize) -> i64 {
        values.get(position).map_or(0, MeasureValue::number)
    }
}

impl StatsService {
    /// A service over `ports` whose ranges cover at most `max_range_days` days.
    pub fn new(ports: StatsPorts, max_range_days: u32) -> Self {
        Self {
            ports,
            max_range_days,
        }
    }

    /// Views, unique users and the top paths of `tenant` over the days `date` to `date_to`
    /// (default: `date` alone), of one source (`source`, or its alias `site_id`) or all, with
    /// `limit` top paths (default 10, at most 100).
    ///
    /// # Errors
    /// [`ReportError::Invalid`] naming the parameter that breaks its rule, or a store error.
    pub async fn stats(&self, tenant: TenantId, params: &Params) -> Result<Stats, ReportError> {
        let single = single(params, &["date", "date_to", "source", "site_id", "limit"])?;
        let date = parse_date(
            "date",
            single
                .get("date")
                .ok_or_else(|| ValidationError::new("date", "is required (YYYY-MM-DD)"))?,
        )?;
        let date_to = single
            .get("date_to")
            .map(|raw| parse_date("date_to", raw))
            .transpose()?
            .unwrap_or(date);
        if date > date_to {
            return Err(ValidationError::new(
                "date",
                format!("must not be after date_to ({date} > {date_to})"),
            )
            .into());
        }
        let range = DateRange::new(date, date_to)?.within_limit(self.max_range_days)?;
        let source = match (single.get("source"), single.get("site_id")) {
            (Some(source), Some(site)) if source != site => {
                return Err(ValidationError::new(
                    "site_id",
                    "is an alias of source: send one, or the same value in both",
                )
                .into());
            }
            (Some(raw), _) => Some(SourceSlug::parse("source", raw)?),
            (None, Some(raw)) => Some(SourceSlug::parse("site_id", raw)?),
            (None, None) => None,
        };
        let limit = match single.get("limit") {
            None => DEFAULT_TOP_PATHS,
            Some(raw) => raw
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_TOP_PATHS).contains(limit))
                .ok_or_else(|| {
                    ValidationError::new(
                        "limit",
                        format!("must be an integer from 1 to {MAX_TOP_PATHS}"),
                    )
                })?,
        };

        let today = self.ports.clock.now().date();
        let traffic = standard("traffic")?;
        let paths = standard("top-paths")?;
        // The range is `date` to `date_to`: the parameter a client fixes is `date`.
        traffic
            .check_retention(Window::Day, range, today)
            .map_err(|e| ValidationError::new("date", e.message()))?;
        let by_source =
            |definition: &RollupDefinition| -> Result<Vec<(usize, String)>, ReportError> {
                Ok(match &source {
                    Some(source) => vec![(position(definition, "source")?, source.to_string())],
                    None => Vec::new(),
                })
            };
        let total_query = RollupQuery {
            tenant,
            report: traffic.slug.clone(),
            window: Window::Day,
            range,
            measures: combines(traffic),
            by_period: false,
            dimensions: Vec::new(),
            filters: by_source(traffic)?,
            order: RollupOrder::MeasureDescending(0),
            page: PageRequest::new(1, 0),
            coarser: traffic.windows_kept_over(range, today, self.max_range_days),
        };
        let paths_query = RollupQuery {
            tenant,
            report: paths.slug.clone(),
            window: Window::Day,
            range,
            measures: combines(paths),
            by_period: false,
            dimensions: vec![position(paths, "path")?],
            filters: by_source(paths)?,
            order: RollupOrder::MeasureDescending(0),
            page: PageRequest::new(limit, 0),
            coarser: paths.windows_kept_over(range, today, self.max_range_days),
        };
        let total = self
            .ports
            .reads
            .read(&total_query, traffic.cache_ttl_seconds)
            .await?;
        let top = self
            .ports
            .reads
            .read(&paths_query, paths.cache_ttl_seconds)
            .await?;
        let mut freshness = Freshness::default();
        freshness.add(total.page.last_refreshed_at, total.page.uncounted_since);
        freshness.add(top.page.last_refreshed_at, top.page.uncounted_since);
        let number = |row: Option<&domain::RollupRow>, i: usize| {
            row.and_then(|row| row.measures.get(i).copied())
                .unwrap_or(0)
        };
        Ok(Stats {
            date,
            date_to,
            source,
            total_views: number(total.page.rows.first(), 0),
            unique_users: number(total.page.rows.first(), 1),
            top_paths: top
                .page
                .rows
                .iter()
                .map(|row| PathStats {
                    path: row
                        .dimensions
                        .first()
                        .cloned()
                        .flatten()
                        .unwrap_or_default(),
                    views: number(Some(row), 0),
                    unique_users: number(Some(row), 1),
                })
                .collect(),
            freshness: freshness.as_of(self.ports.clock.now()),
            cache_hit: total.cache_hit && top.cache_hit,
        })
    }

    /// The count and unique users of `tenant`'s events over `[from, to)` (RFC 3339 or Unix
    /// seconds), of one `event_name` and one `channel` or all, in total and, with `group_by`
    /// (`day` or `hour`), per bucket.
    ///
    /// # Errors
    /// [`ReportError::Invalid`] naming the parameter that breaks its rule (`from` after `to`,
    /// a window longer than the range limit, or by hour longer than the hour buckets are kept
    /// or outside them), or a store error.
    pub async fn metrics(&self, tenant: TenantId, params: &Params) -> Result<Metrics, ReportError> {
        let single = single(params, &["event_name", "channel", "from", "to", "group_by"])?;
        let required = |name: &str| -> Result<OffsetDateTime, ValidationError> {
            let raw = single.get(name).ok_or_else(|| {
                ValidationError::new(name, "is required (RFC 3339 or Unix seconds)")
            })?;
            parse_instant(name, raw)
        };
        let (from, to) = (required("from")?, required("to")?);
        if from > to {
            return Err(ValidationError::new("from", "must not be after to").into());
        }
        let grouping = match single.get("group_by").map(|raw| raw.trim()) {
            None | Some("") => None,
            Some(raw) if raw.eq_ignore_ascii_case("day") => Some(Grouping::Day),
            Some(raw) if raw.eq_ignore_ascii_case("hour") => Some(Grouping::Hour),
            Some(raw) => {
                return Err(ValidationError::new(
                    "group_by",
                    format!("must be day or hour; got {raw:?}"),
                )
                .into());
            }
        };
        let definition = standard("events-by-name")?;
        let hour_retention = definition
            .windows
            .iter()
            .find(|w| w.window == Window::Hour)
            .map_or(1, |w| w.retention_days);
        let limit_days = self.max_range_days;
        if to - from > Duration::days(i64::from(limit_days)) {
            return Err(ValidationError::new(
                "to",
                format!("the window covers more than {limit_days} days, the most allowed"),
            )
            .into());
        }
        let mut filters = Vec::new();
        let event_name = single
            .get("event_name")
            .map(|raw| filter_text("event_name", raw))
            .transpose()?;
        let channel = single
            .get("channel")
            .map(|raw| filter_text("channel", raw))
            .transpose()?;
        if let Some(name) = &event_name {
            filters.push((position(definition, "event_name")?, name.clone()));
        }
        if let Some(channel) = &channel {
            filters.push((position(definition, "channel")?, channel.clone()));
        }
        filters.sort();

        let plan = Plan::of(from, to, grouping);
        // Hour buckets are kept for the hour window's retention, counted in days up to today.
        let kept_from = floor_day(self.ports.clock.now())
            - Duration::days(i64::from(hour_retention.saturating_sub(1)));
        if plan.hours.iter().any(|(start, _)| *start < kept_from) {
            return Err(ValidationError::new(
                "from",
                format!(
                    "needs hour buckets, which are kept for {hour_retention} days (from {}T00:00:00Z); \
                     for an older window give whole UTC days (from and to at 00:00)",
                    domain::dates::format_date(kept_from.date())
                ),
            )
            .into());
        }

        let measures = combines(definition);
        let empty: Vec<MeasureValue> = measures.iter().map(|c| c.empty()).collect();
        let mut sums = Sums {
            count: position_of_measure(definition, "events")?,
            users: position_of_measure(definition, "unique_users")?,
            total: empty.clone(),
            buckets: BTreeMap::new(),
            grouping,
            empty,
        };
        let mut freshness = Freshness::default();
        let query = |window: Window, range: DateRange| RollupQuery {
            tenant,
            report: definition.slug.clone(),
            window,
            range,
            measures: measures.clone(),
            by_period: true,
            dimensions: Vec::new(),
            filters: filters.clone(),
            order: RollupOrder::Period,
            page: PageRequest::new(1, 0),
            coarser: Vec::new(),
        };
        let mut take = |page: MergedPage,
                        within: (OffsetDateTime, OffsetDateTime),
                        sums: &mut Sums|
         -> Result<(), ReportError> {
            freshness.add(page.last_refreshed_at, page.uncounted_since);
            for merged in page.rows {
                let Some(day) = merged.row.bucket_date else {
                    continue;
                };
                let start = day.with_time(Time::MIDNIGHT).assume_utc()
                    + Duration::hours(i64::from(merged.row.bucket_hour.unwrap_or(0)));
                if within.0 <= start && start < within.1 {
                    sums.add(start, &merged.values)?;
                }
            }
            Ok(())
        };
        if let Some((d0, d1)) = plan.days {
            let page = self
                .ports
                .rollups
                .read_merged(&query(Window::Day, days_of(d0, d1)?))
                .await?;
            take(page, (d0, d1), &mut sums)?;
        }
        for &(start, end) in &plan.hours {
            let page = self
                .ports
                .rollups
                .read_merged(&query(Window::Hour, days_of(start, end)?))
                .await?;
            take(page, (start, end), &mut sums)?;
        }
        for &(start, end) in &plan.raw {
            let values = self
                .ports
                .rollups
                .aggregate_span(&SpanQuery {
                    tenant,
                    rollup: definition.rollup.clone(),
                    from: start,
                    to: end,
                    filters: filters.clone(),
                })
                .await?;
            sums.add(start, &values)?;
        }

        let mut buckets = Vec::new();
        if let Some(grouping) = grouping.filter(|_| from < to) {
            let mut start = grouping.floor(from);
            while start < to {
                let values = sums.buckets.get(&start);
                buckets.push(MetricsBucket {
                    start,
                    count: values.map_or(0, |v| sums.number(v, sums.count)),
                    unique_users: values.map_or(0, |v| sums.number(v, sums.users)),
                });
                start += grouping.step();
            }
        }
        Ok(Metrics {
            event_name,
            channel,
            from,
            to,
            group_by: grouping,
            count: sums.number(&sums.total, sums.count),
            unique_users: sums.number(&sums.total, sums.users),
            buckets,
            freshness: freshness.as_of(self.ports.clock.now()),
        })
    }
}

/// How each measure of `definition` combines, in definition order.
fn combines(definition: &RollupDefinition) -> Vec<Combine> {
    definition
        .rollup
        .measures
        .iter()
        .map(|m| m.kind.combine())
        .collect()
}

/// The position of `definition`'s measure `name`.
fn position_of_measure(definition: &RollupDefinition, name: &str) -> Result<usize, ReportError> {
    definition
        .rollup
        .measures
        .iter()
        .position(|m| m.name == name)
        .ok_or_else(|| {
            ReportError::Unexpected(anyhow::anyhow!(
                "the standard rollup {} has no measure {name}",
                definition.slug
            ))
        })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn instants_are_rfc_3339_or_unix_seconds() {
        assert_eq!(
            parse_instant("from", "2026-11-18T10:00:00Z"),
            Ok(datetime!(2026-11-18 10:00 UTC))
        );
        assert_eq!(
            parse_instant("from", "2026-11-18T11:00:00+01:00"),
            Ok(datetime!(2026-11-18 10:00 UTC))
        );
        assert_eq!(
            parse_instant("from", "2026-11-18T11:00:00 01:00"),
            Ok(datetime!(2026-11-18 10:00 UTC)),
            "an unencoded + arrives as a space"
        );
        assert_eq!(
            parse_instant("to", "1763460000"),
            Ok(datetime!(2025-11-18 10:00 UTC))
        );
        for out_of_range in [
            "9999-12-31T23:30:00-01:00",
            "9999-12-31T12:00:00Z",
            "-0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "-1",
        ] {
            assert!(
                parse_instant("from", out_of_range).is_err(),
                "{out_of_range}"
            );
        }
        let err = parse_instant("to", "yesterday").unwrap_err();
        assert_eq!(err.field(), "to");
        assert!(err.message().contains("RFC 3339"), "{err}");
        assert!(parse_instant("to", "99999999999999999").is_err());
    }

    #[test]
    fn a_window_is_tiled_by_raw_edges_whole_hours_and_whole_days() {
        let plan = Plan::of(
            datetime!(2026-11-16 22:15 UTC),
            datetime!(2026-11-19 01:30 UTC),
            None,
        );
        assert_eq!(
            plan,
            Plan {
                raw: vec![
                    (
                        datetime!(2026-11-16 22:15 UTC),
                        datetime!(2026-11-16 23:00 UTC)
                    ),
                    (
                        datetime!(2026-11-19 01:00 UTC),
                        datetime!(2026-11-19 01:30 UTC)
                    ),
                ],
                hours: vec![
                    (
                        datetime!(2026-11-16 23:00 UTC),
                        datetime!(2026-11-17 00:00 UTC)
                    ),
                    (
                        datetime!(2026-11-19 00:00 UTC),
                        datetime!(2026-11-19 01:00 UTC)
                    ),
                ],
                days: Some((
                    datetime!(2026-11-17 00:00 UTC),
                    datetime!(2026-11-19 00:00 UTC)
                )),
            }
        );
        let by_hour = Plan::of(
            datetime!(2026-11-16 22:15 UTC),
            datetime!(2026-11-19 01:30 UTC),
            Some(Grouping::Hour),
        );
        assert_eq!(
            by_hour.hours,
            [(
                datetime!(2026-11-16 23:00 UTC),
                datetime!(2026-11-19 01:00 UTC)
            )]
        );
        assert_eq!(by_hour.days, None);
        let inside_an_hour = Plan::of(
            datetime!(2026-11-16 22:15 UTC),
            datetime!(2026-11-16 22:45 UTC),
            None,
        );
        assert_eq!(
            inside_an_hour.raw,
            [(
                datetime!(2026-11-16 22:15 UTC),
                datetime!(2026-11-16 22:45 UTC)
            )]
        );
        assert!(inside_an_hour.hours.is_empty() && inside_an_hour.days.is_none());
        let whole_days = Plan::of(
            datetime!(2026-11-16 00:00 UTC),
            datetime!(2026-11-18 00:00 UTC),
            Some(Grouping::Day),
        );
        assert_eq!(
            whole_days,
            Plan {
                days: Some((
                    datetime!(2026-11-16 00:00 UTC),
                    datetime!(2026-11-18 00:00 UTC)
                )),
                ..Plan::default()
            }
        );
        let empty = Plan::of(
            datetime!(2026-11-16 00:00 UTC),
            datetime!(2026-11-16 00:00 UTC),
            None,
        );
        assert_eq!(empty, Plan::default());
    }

    #[test]
    fn the_days_of_a_span_end_before_its_end() {
        let days = days_of(
            datetime!(2026-11-17 00:00 UTC),
            datetime!(2026-11-19 00:00 UTC),
        )
        .unwrap();
        assert_eq!(
            (days.from(), days.to()),
            (
                time::macros::date!(2026 - 11 - 17),
                time::macros::date!(2026 - 11 - 18)
            )
        );
        let hours = days_of(
            datetime!(2026-11-16 23:00 UTC),
            datetime!(2026-11-17 00:00 UTC),
        )
        .unwrap();
        assert_eq!(hours.days(), 1);
    }
}

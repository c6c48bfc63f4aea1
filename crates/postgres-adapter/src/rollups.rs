//! Rollup snapshot rows in `rollup_snapshots`: the rebuild from `analytics_events` with one
//! set-based aggregation generated from the definition, and reads that group the rows in SQL.
//!
//! The statements are built from fixed fragments, one per field and measure kind; every value
//! a definition or a query supplies (a property key, a filter value) is a bind parameter, never
//! text in the statement.

use application::ports::{
    RollupRebuild, RollupRebuildOutcome, RollupStore, SourceSystem, StoreError, WindowRebuild,
};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::{
    Combine, DateRange, DirtyBucket, DirtyReason, DirtyScope, Field, MeasureKind, NumericField,
    ReportSlug, Rollup, RollupOrder, RollupPage, RollupQuery, RollupRow, RunMode, TenantId, Window,
    rollup::{MeasureValue, MergedPage, MergedRow, SpanQuery},
    sketch::{self, Sketch},
};
use futures_core::Stream;
use std::{
    collections::{BTreeMap, BTreeSet},
    future::poll_fn,
    pin::pin,
};
use time::{Date, OffsetDateTime, PrimitiveDateTime};
use tokio_postgres::{
    binary_copy::BinaryCopyInWriter,
    types::{ToSql, Type},
};

use crate::{
    error::{PgResultExt, corrupt, delete_in_batches},
    freshness::{DROP_WATERMARKS_OF, MARK_COLUMNS, SeenMark, seen_mark},
};

/// A value of the hll extension's type, as its bytes (its binary form is its storage form).
struct HllBytes(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for HllBytes {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw.to_vec()))
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "hll"
    }
}

/// The sketch in column `index` of `row` (of the hll type); null is an empty sketch.
fn sketch_at(row: &tokio_postgres::Row, index: usize) -> Result<Sketch, StoreError> {
    let bytes: Option<HllBytes> = row
        .try_get(index)
        .map_err(|e| StoreError::from(corrupt("rollup sketch", e)))?;
    match bytes {
        None => Ok(Sketch::new()),
        Some(HllBytes(bytes)) => Sketch::from_bytes(&bytes)
            .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("a stored sketch: {e}"))),
    }
}

/// Rollup snapshots in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresRollupStore {
    pool: Pool,
}

impl PostgresRollupStore {
    /// The store over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

/// Bind parameters after a statement's fixed ones, each written as `$n::type`.
struct Binds {
    fixed: usize,
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Binds {
    fn after(fixed: usize) -> Self {
        Self {
            fixed,
            values: Vec::new(),
        }
    }

    fn text(&mut self, value: &str) -> String {
        self.values.push(Box::new(value.to_owned()));
        format!("${}::text", self.fixed + self.values.len())
    }

    fn date(&mut self, value: Date) -> String {
        self.values.push(Box::new(value));
        format!("${}::date", self.fixed + self.values.len())
    }
}

/// A property's value as a JSON integer of at most 18 digits (the domain's `Addend::Value`).
fn integral(key: &str) -> String {
    format!(
        "jsonb_typeof(e.properties -> {key}) = 'number' AND (e.properties ->> {key}) ~ '^-?[0-9]{{1,18}}$'"
    )
}

/// The grouping expression of a dimension over event `e`. Sources are grouped by id and named
/// once per group afterwards.
fn dimension_sql(field: &Field, binds: &mut Binds) -> String {
    match field {
        Field::Source => "e.source_id".to_owned(),
        Field::Status => "e.status".to_owned(),
        Field::EventName => "e.event_name".to_owned(),
        Field::EntityId => "e.entity_id".to_owned(),
        Field::UserId => "e.user_id".to_owned(),
        Field::Property(key) => {
            let key = binds.text(key.as_str());
            format!(
                "CASE WHEN jsonb_typeof(e.properties -> {key}) = 'string' THEN e.properties ->> {key} END"
            )
        }
    }
}

/// The condition of a filter over event `e` of tenant `$1`.
fn filter_sql(field: &Field, value: &str, binds: &mut Binds) -> String {
    let value = binds.text(value);
    match field {
        Field::Source => format!(
            "e.source_id = (SELECT id FROM event_sources WHERE tenant_id = $1 AND slug = {value})"
        ),
        Field::Status => format!("e.status = {value}"),
        Field::EventName => format!("e.event_name = {value}"),
        Field::EntityId => format!("e.entity_id = {value}"),
        Field::UserId => format!("e.user_id = {value}"),
        Field::Property(key) => {
            let key = binds.text(key.as_str());
            format!("e.properties @> jsonb_build_object({key}, {value})")
        }
    }
}

/// The aggregate of a measure, and of the values it skipped.
fn measure_sql(kind: &MeasureKind, binds: &mut Binds) -> (String, Option<String>) {
    match kind {
        MeasureKind::Count => ("count(*)".to_owned(), None),
        MeasureKind::Sum(NumericField::AmountCents) => {
            ("coalesce(sum(e.amount_cents), 0)::int8".to_owned(), None)
        }
        MeasureKind::Sum(NumericField::ProcessingMs) => {
            ("coalesce(sum(e.processing_ms), 0)::int8".to_owned(), None)
        }
        MeasureKind::Distinct(field) => {
            // The text the service hashes: a source by its slug (joined as `es`, see
            // `aggregate_sql`).
            let value = match field {
                Field::Source => "es.slug".to_owned(),
                other => dimension_sql(other, binds),
            };
            (
                format!(
                    "hll_add_agg(hll_hash_text(({value})::text), {}, {})",
                    sketch::LOG2M,
                    sketch::REGWIDTH
                ),
                None,
            )
        }
        MeasureKind::Sum(NumericField::Property(key)) => {
            let key = binds.text(key.as_str());
            let integral = integral(&key);
            (
                format!(
                    "coalesce(sum(CASE WHEN {integral} THEN (e.properties ->> {key})::int8 END), 0)::int8"
                ),
                Some(format!(
                    "count(*) FILTER (WHERE jsonb_typeof(e.properties -> {key}) <> 'null' AND NOT ({integral}))"
                )),
            )
        }
    }
}

/// The join that names each event's source `es.slug`.
const SOURCE_SLUGS: &str = " LEFT JOIN event_sources es ON es.id = e.source_id";

/// The aggregation of `rollup` over whole buckets: `$1` tenant, `$2` window, the buckets of
/// `$3..=$4` (already whole buckets: `date_trunc` by the window gives each event's). Returns
/// one row per bucket and dimension values, in bucket order: the bucket's start (a UTC
/// timestamp), the three dimension
/// columns of the key, the measures and the values the measures skipped.
///
/// One `GROUP BY` over the range: a rollup reads fields the events index does not hold (its
/// name, its properties), so the heap is read whatever the plan, and one pass over it with a
/// hash of every (bucket, values) group beats a range scan per bucket (measured by the bench's
/// rollup phase); the groups are few (buckets × distinct values). It is a plain `SELECT`, so
/// PostgreSQL may scan in parallel, which it never does for an `INSERT … SELECT`.
///
/// With `delta`, the events are only those stored since the snapshot `$5` (as text): visible
/// in the reading transaction's snapshot and not in that one, found through the events' index
/// on `(tenant_id, ingest_xid)`.
fn aggregate_sql(rollup: &Rollup, delta: bool) -> (String, Binds) {
    let mut binds = Binds::after(if delta { 5 } else { 4 });
    // A distinct count of sources counts their slugs: joined once, not looked up per event.
    let counts_sources = rollup
        .measures
        .iter()
        .any(|m| m.kind == MeasureKind::Distinct(Field::Source));
    let expressions: Vec<String> = rollup
        .dimensions
        .iter()
        .map(|d| dimension_sql(&d.field, &mut binds))
        .collect();
    let dimensions: Vec<String> = expressions
        .iter()
        .enumerate()
        .map(|(i, expression)| format!("{expression} AS d{i}"))
        .collect();
    let mut measures = Vec::new();
    let mut skipped = Vec::new();
    for (i, measure) in rollup.measures.iter().enumerate() {
        let (aggregate, skips) = measure_sql(&measure.kind, &mut binds);
        measures.push(format!("{aggregate} AS m{i}"));
        if let Some(skips) = skips {
            skipped.push(format!("{skips} AS k{}", skipped.len()));
        }
    }
    let mut filters: String = rollup
        .filters
        .iter()
        .map(|f| format!(" AND {}", filter_sql(&f.field, &f.value, &mut binds)))
        .collect();
    for (dimension, expression) in rollup.dimensions.iter().zip(&expressions) {
        if dimension.required {
            filters.push_str(&format!(" AND {expression} IS NOT NULL"));
        }
    }
    if delta {
        filters.push_str(
            " AND e.ingest_xid >= pg_snapshot_xmin($5::text::pg_snapshot)
              AND NOT pg_visible_in_snapshot(e.ingest_xid, $5::text::pg_snapshot)",
        );
    }
    // The bucket is the first column, then the dimensions.
    let group_by = (1..=rollup.dimensions.len() + 1)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let selected: Vec<String> = dimensions
        .iter()
        .chain(&measures)
        .chain(&skipped)
        .cloned()
        .collect();
    let mut joins = String::new();
    let named: Vec<String> = rollup
        .dimensions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if d.field == Field::Source {
                joins.push_str(&format!(
                    " LEFT JOIN event_sources s{i} ON s{i}.id = grouped.d{i}"
                ));
                format!("s{i}.slug")
            } else {
                format!("grouped.d{i}")
            }
        })
        .collect();
    // Totals in the array (null for a distinct measure), each sketch a column after it.
    let measure_columns: Vec<String> = rollup
        .measures
        .iter()
        .enumerate()
        .map(|(i, m)| match m.kind.combine() {
            Combine::Sum => format!("grouped.m{i}"),
            Combine::Distinct => "NULL::int8".to_owned(),
        })
        .collect();
    let sketch_columns: String = rollup
        .measures
        .iter()
        .enumerate()
        .filter(|(_, m)| m.kind.combine() == Combine::Distinct)
        .map(|(i, _)| format!(", grouped.m{i}"))
        .collect();
    let skipped_total = if skipped.is_empty() {
        "0".to_owned()
    } else {
        (0..skipped.len())
            .map(|i| format!("grouped.k{i}"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    // Three dimension columns whatever the rollup has, compared bytewise as the key is.
    let named: Vec<String> = (0..3)
        .map(|i| match named.get(i) {
            Some(value) => format!("{value}::text COLLATE \"C\""),
            None => "NULL::text COLLATE \"C\"".to_owned(),
        })
        .collect();
    let sql = format!(
        "SELECT grouped.bucket_start, {named}, ARRAY[{measure_columns}]::int8[], ({skipped_total})::int8{sketch_columns}
        FROM (
            SELECT date_trunc($2::text, e.occurred_at AT TIME ZONE 'UTC') AS bucket_start, {selected}
            FROM analytics_events e{sources}
            WHERE e.tenant_id = $1
              AND e.occurred_at >= $3::date::timestamp AT TIME ZONE 'UTC'
              AND e.occurred_at < ($4::date + 1)::timestamp AT TIME ZONE 'UTC'{filters}
            GROUP BY {group_by}
        ) AS grouped{joins}
        ORDER BY 1",
        selected = selected.join(", "),
        named = named.join(", "),
        measure_columns = measure_columns.join(", "),
        sources = if counts_sources { SOURCE_SLUGS } else { "" },
    );
    (sql, binds)
}

/// Adds the rows of a delta (the aggregation of new events) to the stored rows of one window
/// of `rollup`: `$1` tenant, `$2` report, `$3` window, `$4` computed_at, `$5` run, then one
/// array per column of the delta rows: `$6` bucket starts, `$7` hours, `$8..=$10` dimension
/// values, and from `$11` one per measure (totals for a summed one, sketches for a distinct
/// one); last, the bucket starts once each, which the planner reads to estimate how many
/// stored rows the delta meets (it adds an estimate per element). A stored row of the same bucket and values gains the delta's totals and the union of
/// its sketches and points to the run; a delta row without one is inserted.
///
/// Rows are unique by construction (see migration V10): the caller holds the window's rebuild
/// lock, and each delta row is its own group. The stored rows are matched on a key compared as
/// an array, which holds nulls as values and hashes, so the rows of the touched buckets are
/// joined to the delta in one hash join, not probed row by row.
fn merge_sql(rollup: &Rollup) -> String {
    let measures = &rollup.measures;
    let arrays: String = measures
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let kind = match m.kind.combine() {
                Combine::Sum => "int8",
                Combine::Distinct => "bytea",
            };
            format!(", ${}::{kind}[]", 11 + i)
        })
        .collect();
    let names: String = (0..measures.len()).map(|i| format!(", v{i}")).collect();
    let buckets = 11 + measures.len();
    let any_distinct = measures
        .iter()
        .any(|m| m.kind.combine() == Combine::Distinct);
    let column = |sum: &dyn Fn(usize) -> String, distinct: &dyn Fn(usize) -> String| {
        let totals: Vec<String> = measures
            .iter()
            .enumerate()
            .map(|(i, m)| match m.kind.combine() {
                Combine::Sum => sum(i),
                Combine::Distinct => "NULL::int8".to_owned(),
            })
            .collect();
        let sketches: Vec<String> = measures
            .iter()
            .enumerate()
            .map(|(i, m)| match m.kind.combine() {
                Combine::Sum => "NULL::bytea".to_owned(),
                Combine::Distinct => distinct(i),
            })
            .collect();
        let sketches = if any_distinct {
            format!("ARRAY[{}]::bytea[]", sketches.join(", "))
        } else {
            "NULL::bytea[]".to_owned()
        };
        (format!("ARRAY[{}]::int8[]", totals.join(", ")), sketches)
    };
    let (new_totals, new_sketches) = column(&|i| format!("u.v{i}"), &|i| format!("u.v{i}"));
    let (merged_totals, merged_sketches) =
        column(&|i| format!("r.measure_values[{}] + u.v{i}", i + 1), &|i| {
            format!(
                "hll_union(r.sketches[{}]::hll, u.v{i}::hll)::text::bytea",
                i + 1
            )
        });
    format!(
        "WITH delta AS MATERIALIZED (
            SELECT * FROM unnest($6::date[], $7::int2[], $8::text[], $9::text[], $10::text[]{arrays})
                WITH ORDINALITY AS u(b, h, d1, d2, d3{names}, i)
        ), updated AS (
            UPDATE rollup_snapshots r
            SET measure_values = {merged_totals}, sketches = {merged_sketches},
                computed_at = $4, run_id = $5
            FROM delta u
            WHERE r.tenant_id = $1 AND r.report_slug = $2 AND r.window_name = $3
              AND r.bucket_start = ANY(${buckets}::date[])
              AND r.bucket_start = u.b AND r.bucket_hour = u.h
              AND ARRAY[r.d1, r.d2, r.d3] = ARRAY[u.d1, u.d2, u.d3] COLLATE \"C\"
            RETURNING u.i
        )
        INSERT INTO rollup_snapshots (tenant_id, report_slug, window_name, bucket_start,
                                      bucket_hour, d1, d2, d3, measure_values, sketches,
                                      computed_at, run_id)
        SELECT $1, $2, $3, u.b, u.h, u.d1, u.d2, u.d3, {new_totals}, {new_sketches}, $4, $5
        FROM delta u
        WHERE u.i NOT IN (SELECT i FROM updated)"
    )
}

/// The planner may join the delta to the stored rows with an index probe per delta row, each
/// reading every row of its bucket (thousands, for a report by entity), or sort both sides on
/// a key compared as an array; a hash join reads the touched buckets once. Measured on 5,000
/// rows of one week of top-entities: 16.2 s probing, 0.09 s hashed; sorting took most of
/// 0.15 s. Set for the merges only ([`MERGED_SETTINGS`] restores them).
const MERGE_SETTINGS: &str = "SET LOCAL enable_nestloop = off; SET LOCAL enable_mergejoin = off";
const MERGED_SETTINGS: &str = "SET LOCAL enable_nestloop = on; SET LOCAL enable_mergejoin = on";

/// How many delta rows one statement of [`merge_sql`] adds.
const MERGE_CHUNK: usize = 10_000;

/// The aggregation of the events of a span: `$1` tenant, events that occurred in `[$2, $3)`,
/// passing `rollup`'s filters, with a value for each required dimension and, at each position
/// of `filters`, that value. One row: each measure's aggregate in definition order (a sum's
/// total, a distinct measure's sketch). The time bounds select through the events' index on
/// `(tenant_id, occurred_at)`.
fn span_sql(rollup: &Rollup, filters: &[(usize, String)]) -> (String, Binds) {
    let mut binds = Binds::after(3);
    let counts_sources = rollup
        .measures
        .iter()
        .any(|m| m.kind == MeasureKind::Distinct(Field::Source));
    let measures: Vec<String> = rollup
        .measures
        .iter()
        .map(|m| measure_sql(&m.kind, &mut binds).0)
        .collect();
    let mut conditions: String = rollup
        .filters
        .iter()
        .map(|f| format!(" AND {}", filter_sql(&f.field, &f.value, &mut binds)))
        .collect();
    for dimension in rollup.dimensions.iter().filter(|d| d.required) {
        let expression = dimension_sql(&dimension.field, &mut binds);
        conditions.push_str(&format!(" AND {expression} IS NOT NULL"));
    }
    for (position, value) in filters {
        if let Some(dimension) = rollup.dimensions.get(*position) {
            let condition = filter_sql(&dimension.field, value, &mut binds);
            conditions.push_str(&format!(" AND {condition}"));
        }
    }
    let sql = format!(
        "SELECT {measures}
        FROM analytics_events e{sources}
        WHERE e.tenant_id = $1 AND e.occurred_at >= $2 AND e.occurred_at < $3{conditions}",
        measures = measures.join(", "),
        sources = if counts_sources { SOURCE_SLUGS } else { "" },
    );
    (sql, binds)
}

/// The read of `query`: `$1` tenant, `$2` report, `$3` window, buckets starting in `$4..=$5`
/// (tiled, the first tile's; the others follow as binds), page `$6` rows from `$7`, event
/// changes dated in `$8..=$9` (the range widened to whole buckets). Every row carries the
/// whole read's row count, its newest `computed_at` and the latest change to its events; an
/// empty page is one row of nulls carrying them. The snapshot rows are read once, but for a
/// tiled read's check of its coarser buckets' freshness.
fn read_sql(query: &RollupQuery) -> (String, Binds) {
    let mut binds = Binds::after(9);
    let filters: String = query
        .filters
        .iter()
        .map(|(position, value)| format!(" AND d{} = {}", position + 1, binds.text(value)))
        .collect();
    let bucket = if query.by_period {
        "bucket_start"
    } else {
        "NULL::date"
    };
    let hourly = query.by_period && query.window.is_hourly();
    let hour = if hourly { "bucket_hour" } else { "NULL::int2" };
    let dimensions: Vec<String> = query
        .dimensions
        .iter()
        .map(|position| format!("d{}", position + 1))
        .collect();
    // Totals summed; a distinct measure's place holds 0 until its merged sketch is estimated.
    let measures: Vec<String> = query
        .measures
        .iter()
        .enumerate()
        .map(|(i, combine)| match combine {
            // Zero rather than null where only rows of another shape of the measure remain (a
            // rebuild that read the definition before a change committed after it).
            Combine::Sum => format!("coalesce(sum(measure_values[{}]), 0)::int8", i + 1),
            Combine::Distinct => "0::int8".to_owned(),
        })
        .collect();
    let sketches: Vec<String> = distinct_positions(query)
        .map(|i| format!(", hll_union_agg(sketches[{}]::hll) AS s{i}", i + 1))
        .collect();
    // Grouped by the columns themselves: grouping by the array built from them would compare
    // arrays, element by element, through the array support functions.
    let mut keys = Vec::new();
    if query.by_period {
        keys.push("bucket_start".to_owned());
    }
    if hourly {
        keys.push("bucket_hour".to_owned());
    }
    keys.extend(dimensions.iter().cloned());
    let group_by = if keys.is_empty() {
        String::new()
    } else {
        format!(" GROUP BY {}", keys.join(", "))
    };
    let mut order = Vec::new();
    // By a distinct measure, every row is read and ordered by its estimate here.
    if let RollupOrder::MeasureDescending(i) = query.order
        && !ordered_here(query)
    {
        order.push(format!("measures[{}] DESC", i + 1));
    }
    order.push("bucket_date".to_owned());
    if hourly {
        order.push("bucket_hour".to_owned());
    }
    order.extend((1..=dimensions.len()).map(|i| format!("dimensions[{i}] COLLATE \"C\"")));
    // A tiled read: the first tile is `$3` over `$4..=$5`, each other one its own binds; each
    // window's newest row, and how many buckets of each coarser window lag the events they
    // count, come out beside the rows.
    let tiles = query.tiles();
    let mut buckets = "window_name = $3 AND bucket_start BETWEEN $4 AND $5".to_owned();
    let mut newest = String::new();
    let mut extra = Vec::new();
    if query.is_tiled() {
        let conditions: Vec<String> = std::iter::once(buckets.clone())
            .chain(tiles.iter().skip(1).map(|(window, range)| {
                format!(
                    "window_name = {} AND bucket_start BETWEEN {} AND {}",
                    binds.text(window.as_str()),
                    binds.date(range.from()),
                    binds.date(range.to())
                )
            }))
            .collect();
        buckets = format!("(({}))", conditions.join(") OR ("));
        for window in tiled_windows(query) {
            let name = window.as_str();
            newest.push_str(&format!(
                ", max(computed_at) FILTER (WHERE window_name = '{name}') AS newest_{name}"
            ));
            extra.push(format!(
                "(SELECT max(newest_{name}) FROM grouped) AS refreshed_{name}"
            ));
            if window == query.window {
                continue;
            }
            // The dirty buckets of this coarser window among the tiles.
            let buckets: Vec<String> = tiles
                .iter()
                .filter(|(w, _)| *w == window)
                .map(|(_, range)| {
                    format!(
                        "m.bucket_start BETWEEN {} AND {}",
                        binds.date(range.from()),
                        binds.date(range.to())
                    )
                })
                .collect();
            extra.push(format!(
                "(SELECT count(*) FROM dirty_buckets m
                  WHERE m.tenant_id = $1 AND m.report_slug = $2 AND m.window_name = '{name}'
                    AND ({buckets}))::int8 AS lagging_{name}",
                buckets = buckets.join(" OR ")
            ));
        }
    }
    let grouped = format!(
        "
            SELECT {bucket} AS bucket_date, {hour} AS bucket_hour, ARRAY[{dimensions}]::text[] AS dimensions, ARRAY[{measures}]::int8[] AS measures,
                   max(computed_at) AS computed_at{newest}{sketches}
            FROM rollup_snapshots
            WHERE tenant_id = $1 AND report_slug = $2
              AND {buckets}{filters}{group_by}
            HAVING count(*) > 0",
        dimensions = dimensions.join(", "),
        measures = measures.join(", "),
        sketches = sketches.concat(),
    );
    let sketch_names: Vec<String> = distinct_positions(query).map(|i| format!("s{i}")).collect();
    let columns: Vec<&str> = ["bucket_date", "bucket_hour", "dimensions", "measures"]
        .into_iter()
        .chain(sketch_names.iter().map(String::as_str))
        .collect();
    let sql = crate::paged::paged_read(&grouped, &columns, &order.join(", "), 6, &extra);
    (sql, binds)
}

/// The windows a tiled read merges, in order; empty when it is not tiled.
fn tiled_windows(query: &RollupQuery) -> Vec<Window> {
    if !query.is_tiled() {
        return Vec::new();
    }
    let mut windows: Vec<Window> = query.tiles().iter().map(|(w, _)| *w).collect();
    windows.sort_unstable();
    windows.dedup();
    windows
}

/// The positions of `query`'s distinct measures.
fn distinct_positions(query: &RollupQuery) -> impl Iterator<Item = usize> + '_ {
    query
        .measures
        .iter()
        .enumerate()
        .filter(|(_, combine)| **combine == Combine::Distinct)
        .map(|(i, _)| i)
}

/// Whether `query` is ordered by a distinct measure, whose estimates exist only here: then
/// the statement reads every row and the page is ordered and cut here.
fn ordered_here(query: &RollupQuery) -> bool {
    matches!(query.order, RollupOrder::MeasureDescending(i)
        if query.measures.get(i) == Some(&Combine::Distinct))
}

/// The text of the read of `query` with its parameters as [`read_sql`] numbers them; the
/// values of its filters, if any, follow from `$10` on.
pub fn read_statement(query: &RollupQuery) -> String {
    read_sql(query).0
}

/// Serializes rebuilds of one tenant's rollup and window, so overlapping scopes never
/// interleave their deletes and inserts.
const REBUILD_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended('rollup:' || $1::text || ':' || $2 || ':' || $3, 0))";

/// Settings of the aggregation's transaction only. The planner cannot tell how few groups a
/// `date_trunc` makes and prices sending them from parallel workers as if they were rows;
/// they are not, so a parallel scan is worth its setup on any large range.
const AGGREGATE_SETTINGS: &str =
    "SET LOCAL work_mem = '128MB'; SET LOCAL jit = off; SET LOCAL parallel_tuple_cost = 0.001";

/// The rebuilt rows, streamed in as the aggregation produces them.
const COPY_ROWS: &str = "
    COPY rollup_snapshots (tenant_id, report_slug, window_name, bucket_start, bucket_hour,
                           d1, d2, d3, measure_values, sketches, computed_at, run_id)
    FROM STDIN (FORMAT binary)";

/// The column types of [`COPY_ROWS`].
const COPY_TYPES: [Type; 12] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::DATE,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8_ARRAY,
    Type::BYTEA_ARRAY,
    Type::TIMESTAMPTZ,
    Type::UUID,
];

/// How many rows a rebuild writes before it refreshes the planner's statistics of
/// `rollup_snapshots` itself.
const ANALYZE_AFTER_ROWS: u64 = 10_000;

/// The statistics refresh after a bulk rebuild; it gives up rather than wait behind a vacuum
/// or another analyze of the table, which refresh them as well.
const ANALYZE_SNAPSHOTS: &str =
    "BEGIN; SET LOCAL lock_timeout = '1s'; ANALYZE rollup_snapshots; COMMIT";

/// Settings of the write transaction.
const REBUILD_SETTINGS: &str = "SET LOCAL jit = off";

/// The dimension values of a snapshot row, as its key stores them: null past the rollup's
/// dimensions.
type Key = [Option<String>; 3];

/// The rows of one window of a rebuild, from aggregated rows in bucket order at the
/// rebuild's grain. At the window's own grain a row passes through; at a finer one (hours or
/// days, for a day, a week or a month) the rows of the window's current bucket are summed by dimension values
/// and come out when the bucket is complete. So the rows of every window are written bucket
/// after bucket, in the order of the table's index, and what is held is the groups of one
/// bucket per window at most.
struct Fold {
    window: Window,
    range: DateRange,
    /// In an incremental rebuild, the buckets it rebuilds (the dirty ones); else every bucket
    /// of `range`.
    only: Option<BTreeSet<Date>>,
    run_id: uuid::Uuid,
    /// Whether rows arrive at this window's grain, passing through.
    direct: bool,
    bucket: Option<Bucket>,
    groups: BTreeMap<Key, Vec<MeasureValue>>,
}

/// One aggregation of a rebuild: events of the days of `spans` (disjoint, in order) at
/// `grain`, for the windows at `parts` (positions in the request).
struct Pass {
    grain: Window,
    spans: Vec<(Date, Date)>,
    parts: Vec<usize>,
}

/// The days a window of a rebuild reads: its range, or in an incremental rebuild the days of
/// its dirty buckets (`only`), in order.
fn spans_of(part: &WindowRebuild, only: Option<&BTreeSet<Date>>) -> Vec<(Date, Date)> {
    match only {
        None => vec![(part.range.from(), part.range.to())],
        Some(only) => only
            .iter()
            .map(|&start| (start, part.window.bucket_end(start).min(part.range.to())))
            .collect(),
    }
}

/// `spans` in order, overlapping or adjacent ones joined.
fn joined(mut spans: Vec<(Date, Date)>) -> Vec<(Date, Date)> {
    spans.sort_unstable();
    let mut out: Vec<(Date, Date)> = Vec::with_capacity(spans.len());
    for (from, to) in spans {
        match out.last_mut() {
            Some(last) if last.1.next_day().is_none_or(|next| from <= next) => {
                last.1 = last.1.max(to);
            }
            _ => out.push((from, to)),
        }
    }
    out
}

/// The aggregations a rebuild of `windows` runs: one at the grain of a single window; for
/// several, one by day over all of them (every window's buckets are whole days), except the
/// hour window, aggregated by hour over its own range only (folding days, weeks and months
/// from hours would aggregate 24 times the rows over ranges the hour window does not keep).
/// An incremental window reads the days of its dirty buckets (`only`) alone; one with none
/// reads nothing.
fn passes(windows: &[WindowRebuild], only: &[Option<BTreeSet<Date>>]) -> Vec<Pass> {
    let pass = |grain: Window, parts: Vec<usize>| Pass {
        grain,
        spans: joined(
            parts
                .iter()
                .flat_map(|&i| spans_of(&windows[i], only[i].as_ref()))
                .collect(),
        ),
        parts,
    };
    let (hourly, daily): (Vec<usize>, Vec<usize>) = (0..windows.len())
        .filter(|&i| only[i].as_ref().is_none_or(|only| !only.is_empty()))
        .partition(|&i| windows[i].window.is_hourly());
    let mut passes: Vec<Pass> = hourly
        .into_iter()
        .map(|i| pass(Window::Hour, vec![i]))
        .collect();
    match daily.as_slice() {
        [] => {}
        [only] => passes.push(pass(windows[*only].window, vec![*only])),
        _ => passes.push(pass(Window::Day, daily)),
    }
    passes
}

/// What every row of a rebuild shares.
struct Target<'a> {
    tenant: i64,
    slug: &'a str,
    computed_at: OffsetDateTime,
}

/// A bucket: its first day, and its hour of day for the `hour` window (0 for the others).
type Bucket = (Date, u8);

/// A row of a window: bucket, dimension values, measures.
type Written = (Bucket, Key, Vec<MeasureValue>);

impl Fold {
    fn new(part: &WindowRebuild, only: Option<BTreeSet<Date>>, grain: Window) -> Self {
        Self {
            window: part.window,
            range: part.range,
            only,
            run_id: part.run_id.as_uuid(),
            direct: part.window == grain,
            bucket: None,
            groups: BTreeMap::new(),
        }
    }

    /// Whether the rebuild replaces the bucket of this window holding `day`.
    fn covers(&self, day: Date) -> bool {
        self.range.contains(day)
            && self
                .only
                .as_ref()
                .is_none_or(|only| only.contains(&self.window.bucket_start(day)))
    }

    /// Takes in one aggregated row of the grain's bucket `at` (inside the window's range);
    /// returns the rows complete since.
    fn add(
        &mut self,
        at: Bucket,
        key: &Key,
        measures: &[MeasureValue],
    ) -> Result<Vec<Written>, StoreError> {
        if self.direct {
            return Ok(vec![(at, key.clone(), measures.to_vec())]);
        }
        let bucket = (self.window.bucket_start(at.0), 0);
        let done = if self.bucket == Some(bucket) {
            Vec::new()
        } else {
            let done = self.close();
            self.bucket = Some(bucket);
            done
        };
        match self.groups.get_mut(key) {
            None => {
                self.groups.insert(key.clone(), measures.to_vec());
            }
            Some(values) => {
                for (value, more) in values.iter_mut().zip(measures) {
                    value
                        .combine(more)
                        .map_err(|e| StoreError::Unexpected(e.into()))?;
                }
            }
        }
        Ok(done)
    }

    /// The rows of the current bucket, in key order; the fold is then empty.
    fn close(&mut self) -> Vec<Written> {
        let Some(bucket) = self.bucket.take() else {
            return Vec::new();
        };
        std::mem::take(&mut self.groups)
            .into_iter()
            .map(|(key, sums)| (bucket, key, sums))
            .collect()
    }

    /// Writes `rows` of this window into the rebuild's `COPY`; returns how many.
    async fn write(
        &self,
        mut copy: std::pin::Pin<&mut BinaryCopyInWriter>,
        target: &Target<'_>,
        rows: Vec<Written>,
    ) -> Result<u64, StoreError> {
        let count = rows.len() as u64;
        for ((bucket, hour), key, values) in rows {
            let hour = i16::from(hour);
            let mut measures = Vec::with_capacity(values.len());
            let mut sketches = Vec::with_capacity(values.len());
            for value in &values {
                match value {
                    MeasureValue::Total(total) => {
                        measures.push(Some(*total));
                        sketches.push(None);
                    }
                    MeasureValue::Distinct(sketch) => {
                        measures.push(None);
                        sketches.push(Some(sketch.to_bytes()));
                    }
                }
            }
            let sketches = sketches.iter().any(Option::is_some).then_some(sketches);
            copy.as_mut()
                .write(&[
                    &target.tenant,
                    &target.slug,
                    &self.window.as_str(),
                    &bucket,
                    &hour,
                    &key[0],
                    &key[1],
                    &key[2],
                    &measures,
                    &sketches,
                    &target.computed_at,
                    &self.run_id,
                ])
                .await
                .classify("writing rollup snapshots")?;
        }
        Ok(count)
    }
}

/// One row of [`aggregate_sql`]: its bucket, dimension values, measures, and how many values
/// the measures skipped.
fn aggregated(
    row: &tokio_postgres::Row,
) -> Result<(Bucket, Key, Vec<MeasureValue>, u64), StoreError> {
    let get = |e: tokio_postgres::Error| corrupt("aggregated rollup row", e);
    let start: PrimitiveDateTime = row.try_get(0).map_err(get)?;
    let bucket: Bucket = (start.date(), start.hour());
    let key: Key = [
        row.try_get(1).map_err(get)?,
        row.try_get(2).map_err(get)?,
        row.try_get(3).map_err(get)?,
    ];
    let totals: Vec<Option<i64>> = row.try_get(4).map_err(get)?;
    let skipped = u64::try_from(row.try_get::<_, i64>(5).map_err(get)?).unwrap_or(0);
    let mut sketch_column = 6;
    let mut measures = Vec::with_capacity(totals.len());
    for total in totals {
        measures.push(match total {
            Some(total) => MeasureValue::Total(total),
            None => {
                sketch_column += 1;
                MeasureValue::Distinct(sketch_at(row, sketch_column - 1)?)
            }
        });
    }
    Ok((bucket, key, measures, skipped))
}

/// Adds `rows` of a delta to the stored rows of `part`'s window with [`merge_sql`] (`sql`);
/// returns how many rows it wrote (updated or inserted).
async fn merge(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    target: &Target<'_>,
    part: &WindowRebuild,
    rows: Vec<Written>,
) -> Result<u64, StoreError> {
    let count = rows.len() as u64;
    let measures = rows.first().map_or(0, |(_, _, values)| values.len());
    let mut starts = Vec::with_capacity(rows.len());
    let mut hours = Vec::with_capacity(rows.len());
    let mut keys: [Vec<Option<String>>; 3] = Default::default();
    let mut totals: Vec<Vec<Option<i64>>> = vec![Vec::with_capacity(rows.len()); measures];
    let mut sketches: Vec<Vec<Option<Vec<u8>>>> = vec![Vec::with_capacity(rows.len()); measures];
    for ((start, hour), key, values) in rows {
        starts.push(start);
        hours.push(i16::from(hour));
        for (column, value) in keys.iter_mut().zip(key) {
            column.push(value);
        }
        for (i, value) in values.iter().enumerate() {
            match value {
                MeasureValue::Total(total) => totals[i].push(Some(*total)),
                MeasureValue::Distinct(sketch) => sketches[i].push(Some(sketch.to_bytes())),
            }
        }
    }
    let window = part.window.as_str();
    let run = part.run_id.as_uuid();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &target.tenant,
        &target.slug,
        &window,
        &target.computed_at,
        &run,
        &starts,
        &hours,
        &keys[0],
        &keys[1],
        &keys[2],
    ];
    for (totals, sketches) in totals.iter().zip(&sketches) {
        // A measure's column holds what it is: totals for a summed one, sketches else.
        if sketches.is_empty() {
            params.push(totals);
        } else {
            params.push(sketches);
        }
    }
    let mut buckets = starts.clone();
    buckets.dedup();
    params.push(&buckets);
    tx.execute(sql, &params)
        .await
        .classify("adding new events to rollup snapshots")?;
    Ok(count)
}

const DELETE_BUCKETS: &str = "
    DELETE FROM rollup_snapshots
    WHERE tenant_id = $1 AND report_slug = $2 AND window_name = $3 AND bucket_start BETWEEN $4 AND $5";

/// The rows of the listed buckets `$4` (an incremental rebuild's dirty ones).
const DELETE_LISTED_BUCKETS: &str = "
    DELETE FROM rollup_snapshots
    WHERE tenant_id = $1 AND report_slug = $2 AND window_name = $3 AND bucket_start = ANY($4::date[])";

/// Every mark of a rebuild's windows `$3`, read in the snapshot the events are read in: those
/// inside a window's range are its dirty buckets, one outside keeps the window from taking a
/// watermark.
const SEEN_MARKS: &str = "
    SELECT window_name, bucket_start, version, first_marked_at, reason FROM dirty_buckets
    WHERE tenant_id = $1 AND report_slug = $2 AND window_name = ANY($3::text[])
    ORDER BY window_name, bucket_start";

/// The snapshot a rebuild reads the events in, as text, with the watermarks of its windows `$3`
/// (see migration V14): a row per watermark, or one row without when there is none. A
/// watermark from beyond this snapshot (taken in another cluster, before a restore) is not one.
const SNAPSHOT_AND_WATERMARKS: &str = "
    SELECT pg_current_snapshot()::text, w.window_name, w.counted::text
    FROM (SELECT 1) AS one
    LEFT JOIN refresh_watermarks w
      ON w.tenant_id = $1 AND w.report_slug = $2 AND w.window_name = ANY($3::text[])
     AND pg_snapshot_xmax(w.counted) <= pg_snapshot_xmax(pg_current_snapshot())";

/// The watermark of windows `$3` (each with its run, `$5`) becomes the rebuild's snapshot `$4`.
const SET_WATERMARKS: &str = "
    INSERT INTO refresh_watermarks (tenant_id, report_slug, window_name, counted, run_id)
    SELECT $1, $2, w, $4::text::pg_snapshot, r FROM unnest($3::text[], $5::uuid[]) AS s(w, r)
    ON CONFLICT (tenant_id, report_slug, window_name) DO UPDATE
    SET counted = EXCLUDED.counted, run_id = EXCLUDED.run_id";

/// Windows `$3` have no watermark any more: some of their buckets do not count the events of
/// the rebuild's snapshot.
const DROP_WATERMARKS: &str = "
    DELETE FROM refresh_watermarks
    WHERE tenant_id = $1 AND report_slug = $2 AND window_name = ANY($3::text[])";

/// Clears the marks a rebuild saw (`$3` windows, `$4` buckets, `$5` versions) unless they
/// changed since: a change committed after the rebuild's snapshot has a greater version (the
/// delete waits for a writer holding the mark, then sees its version).
const CLEAR_MARKS: &str = "
    DELETE FROM dirty_buckets d
    USING unnest($3::text[], $4::date[], $5::int8[]) AS s(w, b, v)
    WHERE d.tenant_id = $1 AND d.report_slug = $2 AND d.window_name = s.w AND d.bucket_start = s.b
      AND d.version <= s.v";

/// The marks [`CLEAR_MARKS`] left, changed during the rebuild, count from `$5` (the rebuild's
/// `computed_at`, taken before its snapshot) at the earliest: what changed before it is
/// counted now. A statement of its own, so its snapshot sees the writers the delete waited for.
const RESTAMP_MARKS: &str = "
    UPDATE dirty_buckets d SET first_marked_at = greatest(d.first_marked_at, $5)
    FROM unnest($3::text[], $4::date[]) AS s(w, b)
    WHERE d.tenant_id = $1 AND d.report_slug = $2 AND d.window_name = s.w AND d.bucket_start = s.b";

fn with_fixed<'a>(
    fixed: &[&'a (dyn ToSql + Sync)],
    binds: &'a Binds,
) -> Vec<&'a (dyn ToSql + Sync)> {
    fixed
        .iter()
        .copied()
        .chain(binds.values.iter().map(|v| {
            let v: &(dyn ToSql + Sync) = v.as_ref();
            v
        }))
        .collect()
}

#[async_trait]
impl RollupStore for PostgresRollupStore {
    fn system(&self) -> SourceSystem {
        SourceSystem::Postgres
    }

    /// Two connections: one holds the write transaction (the locks, the deletes, a `COPY` of
    /// the new rows), the other runs the aggregation as a plain `SELECT`, which PostgreSQL
    /// may scan in parallel, and its rows stream into the `COPY` bucket after bucket. One
    /// window is aggregated straight into its rows; several are aggregated once by day, and
    /// each coarser window's rows are summed from the day rows as they pass (see [`Fold`]);
    /// the hour window is aggregated by hour over its own range in a pass of its own, both
    /// passes reading one snapshot of the events (see [`passes`]), so
    /// memory stays bounded by one bucket's groups per window. Nothing is visible until the
    /// write transaction commits; any failure rolls it back whole.
    #[tracing::instrument(skip_all, fields(report = %request.report, windows = request.windows.len()), err)]
    async fn rebuild(
        &self,
        request: &RollupRebuild,
    ) -> Result<Vec<RollupRebuildOutcome>, StoreError> {
        request.check()?;
        let mut writer = self
            .pool
            .get()
            .await
            .classify("connecting to rebuild a rollup")?;
        let tx = writer
            .transaction()
            .await
            .classify("starting a rollup rebuild")?;
        tx.batch_execute(REBUILD_SETTINGS)
            .await
            .classify("configuring the rollup rebuild")?;
        let tenant = request.tenant.get();
        let slug = request.report.as_str();
        // Locked in window order, the same in every rebuild, so two never wait on each other.
        let mut order: Vec<usize> = (0..request.windows.len()).collect();
        order.sort_by_key(|&i| request.windows[i].window);
        let mut outcomes = vec![RollupRebuildOutcome::default(); request.windows.len()];
        for &i in &order {
            let part = &request.windows[i];
            // Each window's rows start a bucket at its `from` and step by whole windows.
            debug_assert_eq!(part.window.widen(part.range), part.range);
            tx.execute(
                REBUILD_LOCK,
                &[&tenant.to_string(), &slug, &part.window.as_str()],
            )
            .await
            .classify("locking the rollup for a rebuild")?;
        }

        // The second connection, taken once this rebuild holds its locks and for the
        // aggregation alone.
        let mut reader = self
            .pool
            .get()
            .await
            .classify("connecting to aggregate events for a rollup")?;
        let cancel = reader.cancel_token();
        let started = std::time::Instant::now();
        let mut first_row = None;
        let mut seen: Vec<SeenMark> = Vec::new();
        // The windows with a mark outside their range, and the snapshot the events are read in.
        let mut outside: BTreeSet<Window> = BTreeSet::new();
        // The rows written by `COPY` (a delta's merges are not new rows to the statistics).
        let mut copied = 0_u64;
        let mut snapshot = String::new();
        let streamed = async {
            // The marks and the passes read one snapshot of the events.
            let read = reader
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .classify("starting a rollup aggregation")?;
            let names: Vec<&str> = request.windows.iter().map(|w| w.window.as_str()).collect();
            let mut counted: BTreeMap<Window, String> = BTreeMap::new();
            for row in read
                .query(SNAPSHOT_AND_WATERMARKS, &[&tenant, &slug, &names])
                .await
                .classify("reading the snapshot and watermarks of a rebuild")?
            {
                let get = |e: tokio_postgres::Error| corrupt("refresh watermark", e);
                snapshot = row.try_get(0).map_err(get)?;
                let Some(window) = row.try_get::<_, Option<String>>(1).map_err(get)? else {
                    continue;
                };
                let window = window
                    .parse::<Window>()
                    .map_err(|e| corrupt("refresh watermark window", e))?;
                counted.insert(window, row.try_get(2).map_err(get)?);
            }
            for row in read
                .query(SEEN_MARKS, &[&tenant, &slug, &names])
                .await
                .classify("reading the dirty buckets of a rebuild")?
            {
                let mark = seen_mark(&row)?;
                if request.windows.iter().any(|w| {
                    w.window == mark.bucket.window && w.range.contains(mark.bucket.bucket_start)
                }) {
                    seen.push(mark);
                } else {
                    outside.insert(mark.bucket.window);
                }
            }
            // An incremental window with a watermark, and no bucket dirty for a change of its
            // definition, adds the events stored since to its rows (a delta) instead of
            // rebuilding its dirty buckets.
            let delta: Vec<Option<&String>> = request
                .windows
                .iter()
                .map(|part| {
                    let redefined = seen.iter().any(|m| {
                        m.bucket.window == part.window && m.bucket.reason == DirtyReason::Definition
                    });
                    (part.mode == RunMode::Incremental && !redefined)
                        .then(|| counted.get(&part.window))
                        .flatten()
                })
                .collect();
            // Each window's buckets to rebuild: all of its range, or its dirty ones, or none
            // for a delta.
            let only: Vec<Option<BTreeSet<Date>>> = request
                .windows
                .iter()
                .zip(&delta)
                .map(|(part, delta)| match part.mode {
                    RunMode::Full => None,
                    RunMode::Incremental if delta.is_some() => Some(BTreeSet::new()),
                    RunMode::Incremental => Some(
                        seen.iter()
                            .filter(|m| m.bucket.window == part.window)
                            .map(|m| m.bucket.bucket_start)
                            .collect(),
                    ),
                })
                .collect();
            for &i in &order {
                let part = &request.windows[i];
                let window = part.window.as_str();
                let outcome = &mut outcomes[i];
                outcome.dirty = seen
                    .iter()
                    .filter(|m| m.bucket.window == part.window)
                    .map(|m| m.bucket)
                    .collect();
                let per_bucket = if part.window.is_hourly() { 24 } else { 1 };
                if delta[i].is_some() {
                    outcome.bucket_count = u32::try_from(outcome.dirty.len())
                        .unwrap_or(u32::MAX)
                        .saturating_mul(per_bucket);
                    continue;
                }
                outcome.rows_deleted = match &only[i] {
                    None => {
                        outcome.bucket_count = part.window.bucket_count(part.range);
                        tx.execute(
                            DELETE_BUCKETS,
                            &[
                                &tenant,
                                &slug,
                                &window,
                                &part.range.from(),
                                &part.range.to(),
                            ],
                        )
                        .await
                    }
                    Some(only) => {
                        outcome.bucket_count = u32::try_from(only.len())
                            .unwrap_or(u32::MAX)
                            .saturating_mul(per_bucket);
                        let listed: Vec<Date> = only.iter().copied().collect();
                        tx.execute(DELETE_LISTED_BUCKETS, &[&tenant, &slug, &window, &listed])
                            .await
                    }
                }
                .classify("deleting rebuilt rollup buckets")?;
            }
            // One window: its own buckets. Several: days, which every window's buckets tile;
            // the hour window, kept for days where the others keep years, in a pass of its own.
            let passes = passes(&request.windows, &only);
            read.batch_execute(AGGREGATE_SETTINGS)
                .await
                .classify("configuring the rollup aggregation")?;
            let (sql, binds) = aggregate_sql(&request.rollup, false);
            let target = Target {
                tenant,
                slug,
                computed_at: request.computed_at,
            };
            for pass in &passes {
                let grain_name = pass.grain.as_str();
                let sink = tx
                    .copy_in(COPY_ROWS)
                    .await
                    .classify("writing rollup snapshots")?;
                let mut copy = pin!(BinaryCopyInWriter::new(sink, &COPY_TYPES));
                let mut folds: Vec<(usize, Fold)> = pass
                    .parts
                    .iter()
                    .map(|&i| {
                        (
                            i,
                            Fold::new(&request.windows[i], only[i].clone(), pass.grain),
                        )
                    })
                    .collect();
                for (from, to) in &pass.spans {
                    let fixed: [&(dyn ToSql + Sync); 4] = [&tenant, &grain_name, from, to];
                    let rows = read
                        .query_raw(&sql, with_fixed(&fixed, &binds))
                        .await
                        .classify("aggregating events into rollup snapshots")?;
                    let mut rows = pin!(rows);
                    while let Some(row) = poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
                        first_row.get_or_insert_with(|| started.elapsed());
                        let row = row.classify("aggregating events into rollup snapshots")?;
                        let (bucket, key, measures, skipped) = aggregated(&row)?;
                        for (i, fold) in &mut folds {
                            if !fold.covers(bucket.0) {
                                continue;
                            }
                            let outcome = &mut outcomes[*i];
                            outcome.values_skipped += skipped;
                            let written = fold.add(bucket, &key, &measures)?;
                            let rows = fold.write(copy.as_mut(), &target, written).await?;
                            outcome.rows_inserted += rows;
                            copied += rows;
                        }
                    }
                }
                for (i, fold) in &mut folds {
                    let written = fold.close();
                    let rows = fold.write(copy.as_mut(), &target, written).await?;
                    outcomes[*i].rows_inserted += rows;
                    copied += rows;
                }
                copy.finish().await.classify("writing rollup snapshots")?;
            }
            // The deltas: each window's events stored since its watermark, at its own grain,
            // added to its rows a chunk at a time as they stream in.
            if delta.iter().any(Option::is_some) {
                let (sql, binds) = aggregate_sql(&request.rollup, true);
                let merging = merge_sql(&request.rollup);
                tx.batch_execute(MERGE_SETTINGS)
                    .await
                    .classify("configuring the addition of new events")?;
                for &i in &order {
                    let Some(counted) = delta[i] else { continue };
                    let part = &request.windows[i];
                    let (grain, from, to) =
                        (part.window.as_str(), part.range.from(), part.range.to());
                    let fixed: [&(dyn ToSql + Sync); 5] = [&tenant, &grain, &from, &to, counted];
                    let rows = read
                        .query_raw(&sql, with_fixed(&fixed, &binds))
                        .await
                        .classify("aggregating new events of a rollup")?;
                    let mut rows = pin!(rows);
                    let mut pending: Vec<Written> = Vec::new();
                    while let Some(row) = poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
                        first_row.get_or_insert_with(|| started.elapsed());
                        let row = row.classify("aggregating new events of a rollup")?;
                        let (bucket, key, measures, skipped) = aggregated(&row)?;
                        outcomes[i].values_skipped += skipped;
                        pending.push((bucket, key, measures));
                        if pending.len() == MERGE_CHUNK {
                            let rows = std::mem::take(&mut pending);
                            outcomes[i].rows_inserted +=
                                merge(&tx, &merging, &target, part, rows).await?;
                        }
                    }
                    if !pending.is_empty() {
                        outcomes[i].rows_inserted +=
                            merge(&tx, &merging, &target, part, pending).await?;
                    }
                }
                tx.batch_execute(MERGED_SETTINGS)
                    .await
                    .classify("configuring the addition of new events")?;
            }
            tracing::debug!(
                first_row_ms = first_row.unwrap_or_default().as_millis() as u64,
                copied_ms = started.elapsed().as_millis() as u64,
                "rollup rows aggregated and copied"
            );
            read.commit()
                .await
                .classify("finishing a rollup aggregation")?;
            Ok::<(), StoreError>(())
        }
        .await;
        if let Err(err) = streamed {
            // The aggregation may still run on the server: stop it before the connection
            // goes back to the pool, or its next user waits behind it.
            if let Err(cancel_err) = cancel.cancel_query(tokio_postgres::NoTls).await {
                tracing::warn!(error = %cancel_err, "could not cancel an abandoned rollup aggregation");
            }
            return Err(err);
        }
        drop(reader);
        // The marks seen are cleared with the rows they stood for, unless changed since.
        if !seen.is_empty() {
            let windows: Vec<&str> = seen.iter().map(|m| m.bucket.window.as_str()).collect();
            let buckets: Vec<Date> = seen.iter().map(|m| m.bucket.bucket_start).collect();
            let versions: Vec<i64> = seen.iter().map(|m| m.version).collect();
            tx.execute(
                CLEAR_MARKS,
                &[&tenant, &slug, &windows, &buckets, &versions],
            )
            .await
            .classify("clearing the marks of rebuilt buckets")?;
            tx.execute(
                RESTAMP_MARKS,
                &[&tenant, &slug, &windows, &buckets, &request.computed_at],
            )
            .await
            .classify("restamping the marks changed during a rebuild")?;
        }
        // A window whose every marked bucket was rebuilt or brought up to date counts exactly
        // the events of this snapshot: it is the window's watermark.
        let (dropped, kept): (Vec<&WindowRebuild>, Vec<&WindowRebuild>) = request
            .windows
            .iter()
            .partition(|part| outside.contains(&part.window));
        if !kept.is_empty() {
            let names: Vec<&str> = kept.iter().map(|p| p.window.as_str()).collect();
            let runs: Vec<uuid::Uuid> = kept.iter().map(|p| p.run_id.as_uuid()).collect();
            tx.execute(SET_WATERMARKS, &[&tenant, &slug, &names, &snapshot, &runs])
                .await
                .classify("recording the watermarks of a rebuild")?;
        }
        if !dropped.is_empty() {
            let names: Vec<&str> = dropped.iter().map(|p| p.window.as_str()).collect();
            tx.execute(DROP_WATERMARKS, &[&tenant, &slug, &names])
                .await
                .classify("dropping the watermarks of a rebuild")?;
        }
        tx.commit().await.classify("committing a rollup rebuild")?;
        tracing::debug!(
            committed_ms = started.elapsed().as_millis() as u64,
            "rollup rebuild committed"
        );
        if copied >= ANALYZE_AFTER_ROWS {
            // A bulk write (a backfill, say) outruns autovacuum's statistics; reads plan on
            // them. The rows are committed: a failure here only leaves the old statistics.
            if let Err(err) = writer.batch_execute(ANALYZE_SNAPSHOTS).await {
                tracing::warn!(error = %err, "could not analyze rollup snapshots after a bulk rebuild");
                // Leave no failed transaction on a connection going back to the pool.
                if let Err(err) = writer.batch_execute("ROLLBACK").await {
                    tracing::warn!(error = %err, "could not end a failed analyze; dropping the connection");
                    let _ = deadpool_postgres::Object::take(writer);
                }
            }
        }
        Ok(outcomes)
    }

    async fn expire(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        window: Window,
        before: Date,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to expire snapshot buckets")?;
        let key: [&(dyn ToSql + Sync); 4] =
            [&tenant.get(), &report.as_str(), &window.as_str(), &before];
        let deleted = delete_in_batches(
            &client,
            "DELETE FROM rollup_snapshots WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM rollup_snapshots
                 WHERE tenant_id = $1 AND report_slug = $2 AND window_name = $3
                   AND bucket_start < $4
                 LIMIT $5))",
            &key,
            batch,
            "expiring snapshot buckets",
        )
        .await?;
        client
            .execute(
                "DELETE FROM dirty_buckets
                 WHERE tenant_id = $1 AND report_slug = $2 AND window_name = $3 AND bucket_start < $4",
                &key,
            )
            .await
            .classify("expiring dirty buckets")?;
        Ok(deleted)
    }

    async fn dirty(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        window: Window,
        range: DateRange,
    ) -> Result<Vec<DirtyBucket>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to read dirty buckets")?;
        let rows = client
            .query(
                &format!(
                    "SELECT {MARK_COLUMNS} FROM dirty_buckets
                     WHERE tenant_id = $1 AND report_slug = $2 AND window_name = $3
                       AND bucket_start BETWEEN $4 AND $5
                     ORDER BY bucket_start"
                ),
                &[
                    &tenant.get(),
                    &report.as_str(),
                    &window.as_str(),
                    &range.from(),
                    &range.to(),
                ],
            )
            .await
            .classify("reading dirty buckets")?;
        Ok(rows
            .iter()
            .map(|row| seen_mark(row).map(|mark| mark.bucket))
            .collect::<Result<_, _>>()?)
    }

    async fn dirty_scopes(&self, since: Date, today: Date) -> Result<Vec<DirtyScope>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to read dirty buckets")?;
        // A bucket holds `today` when it starts on or before it and ends on or after it.
        let rows = client
            .query(
                "SELECT tenant_id, report_slug, window_name, count(*)::int8, min(first_marked_at),
                        min(first_marked_at) FILTER (WHERE bucket_start <= $2 AND $2 <= CASE window_name
                            WHEN 'week' THEN bucket_start + 6
                            WHEN 'month' THEN (bucket_start + interval '1 month')::date - 1
                            ELSE bucket_start END)
                 FROM dirty_buckets
                 WHERE bucket_start >= $1
                 GROUP BY tenant_id, report_slug, window_name
                 ORDER BY tenant_id, report_slug, window_name",
                &[&since, &today],
            )
            .await
            .classify("summing up dirty buckets")?;
        let mut scopes = Vec::with_capacity(rows.len());
        for row in &rows {
            let get = |e: tokio_postgres::Error| StoreError::from(corrupt("dirty scope", e));
            let report: String = row.try_get(1).map_err(get)?;
            let window: String = row.try_get(2).map_err(get)?;
            scopes.push(DirtyScope {
                tenant: TenantId::new(row.try_get(0).map_err(get)?),
                report: ReportSlug::parse(&report)
                    .map_err(|e| StoreError::from(corrupt("dirty scope report", e)))?,
                window: window
                    .parse()
                    .map_err(|e| StoreError::from(corrupt("dirty scope window", e)))?,
                buckets: u64::try_from(row.try_get::<_, i64>(3).map_err(get)?).unwrap_or(0),
                oldest: row.try_get(4).map_err(get)?,
                oldest_current: row.try_get(5).map_err(get)?,
            });
        }
        // Ordered as the memory store orders them: by tenant, report, then window order.
        scopes
            .sort_by(|a, b| (a.tenant, &a.report, a.window).cmp(&(b.tenant, &b.report, b.window)));
        Ok(scopes)
    }

    #[tracing::instrument(skip_all, fields(report = %query.report, window = %query.window), err)]
    async fn read(&self, query: &RollupQuery) -> Result<RollupPage, StoreError> {
        Ok(self.read_rows(query, false).await?.0)
    }

    #[tracing::instrument(skip_all, fields(report = %query.report, window = %query.window), err)]
    async fn read_merged(&self, query: &RollupQuery) -> Result<MergedPage, StoreError> {
        let (page, values) = self.read_rows(query, true).await?;
        Ok(MergedPage {
            rows: page
                .rows
                .into_iter()
                .zip(values)
                .map(|(row, values)| MergedRow { row, values })
                .collect(),
            last_refreshed_at: page.last_refreshed_at,
            uncounted_since: page.uncounted_since,
        })
    }

    #[tracing::instrument(skip_all, err)]
    async fn aggregate_span(&self, span: &SpanQuery) -> Result<Vec<MeasureValue>, StoreError> {
        span.check()
            .map_err(|e| StoreError::Unexpected(anyhow::anyhow!(e)))?;
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to aggregate events")?;
        let (sql, binds) = span_sql(&span.rollup, &span.filters);
        let tenant = span.tenant.get();
        let fixed: [&(dyn ToSql + Sync); 3] = [&tenant, &span.from, &span.to];
        let statement = client
            .prepare_cached(&sql)
            .await
            .classify("preparing an aggregation of events")?;
        let row = client
            .query_one(&statement, &with_fixed(&fixed, &binds))
            .await
            .classify("aggregating events")?;
        span.rollup
            .measures
            .iter()
            .enumerate()
            .map(|(i, measure)| match measure.kind.combine() {
                Combine::Sum => row
                    .try_get::<_, Option<i64>>(i)
                    .map(|total| MeasureValue::Total(total.unwrap_or(0)))
                    .map_err(|e| corrupt("aggregated events", e).into()),
                Combine::Distinct => sketch_at(&row, i).map(MeasureValue::Distinct),
            })
            .collect()
    }

    /// Takes the rebuild locks of every window first, in the rebuilds' order, so a removal
    /// never interleaves with a rebuild of the same rollup.
    async fn remove(&self, tenant: TenantId, report: &ReportSlug) -> Result<u64, StoreError> {
        let mut client = self
            .pool
            .get()
            .await
            .classify("connecting to remove a rollup")?;
        let tx = client
            .transaction()
            .await
            .classify("starting to remove a rollup")?;
        let (tenant, slug) = (tenant.get(), report.as_str());
        let mut windows = Window::ALL;
        windows.sort();
        for window in windows {
            tx.execute(
                REBUILD_LOCK,
                &[&tenant.to_string(), &slug, &window.as_str()],
            )
            .await
            .classify("locking the rollup for removal")?;
        }
        let removed = tx
            .execute(
                "DELETE FROM rollup_snapshots WHERE tenant_id = $1 AND report_slug = $2",
                &[&tenant, &slug],
            )
            .await
            .classify("removing rollup rows")?;
        tx.execute(DROP_WATERMARKS_OF, &[&tenant, &slug])
            .await
            .classify("removing rollup watermarks")?;
        tx.commit().await.classify("removing rollup rows")?;
        Ok(removed)
    }

    async fn clear(&self, tenant: TenantId) -> Result<u64, StoreError> {
        let mut client = self
            .pool
            .get()
            .await
            .classify("connecting to clear snapshots")?;
        let tx = client
            .transaction()
            .await
            .classify("starting to clear snapshots")?;
        let cleared = tx
            .execute(
                "DELETE FROM rollup_snapshots WHERE tenant_id = $1",
                &[&tenant.get()],
            )
            .await
            .classify("clearing snapshots")?;
        tx.execute(
            "DELETE FROM refresh_watermarks WHERE tenant_id = $1",
            &[&tenant.get()],
        )
        .await
        .classify("clearing watermarks")?;
        tx.commit().await.classify("clearing snapshots")?;
        Ok(cleared)
    }
}

impl PostgresRollupStore {
    /// The rows of `query`: its page, or with `merged` every row (unpaged), each also with its
    /// measures as they merge (a distinct one as its merged sketch).
    async fn read_rows(
        &self,
        query: &RollupQuery,
        merged: bool,
    ) -> Result<(RollupPage, Vec<Vec<MeasureValue>>), StoreError> {
        if let Some(read) = self.read_once(query, merged).await? {
            return Ok(read);
        }
        // A coarser window lags the events it counts: read the query's own window alone.
        let mut alone = query.clone();
        alone.coarser.clear();
        self.read_once(&alone, merged)
            .await?
            .ok_or_else(|| StoreError::Unexpected(anyhow::anyhow!("an untiled read was tiled")))
    }

    /// As [`PostgresRollupStore::read_rows`], but `None` when the read is tiled and a coarser
    /// window it merges was computed before the latest change to the events it counts.
    async fn read_once(
        &self,
        query: &RollupQuery,
        merged: bool,
    ) -> Result<Option<(RollupPage, Vec<Vec<MeasureValue>>)>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to read a rollup")?;
        let (sql, binds) = read_sql(query);
        let tenant = query.tenant.get();
        let slug = query.report.as_str();
        // Tiled, `$3..=$5` are the first tile's.
        let (window, range) = query
            .tiles()
            .first()
            .copied()
            .unwrap_or((query.window, query.range));
        let window = window.as_str();
        let (from, to) = (range.from(), range.to());
        let windows = tiled_windows(query);
        let (limit, offset) = if merged || ordered_here(query) {
            (i64::MAX, 0)
        } else {
            (
                i64::from(query.page.limit()),
                i64::try_from(query.page.offset()).unwrap_or(i64::MAX),
            )
        };
        let widened = query.window.widen(query.range);
        let (changed_from, changed_to) = (widened.from(), widened.to());
        let fixed: [&(dyn ToSql + Sync); 9] = [
            &tenant,
            &slug,
            &window,
            &from,
            &to,
            &limit,
            &offset,
            &changed_from,
            &changed_to,
        ];
        // Kept prepared per connection: the text depends only on the read's shape (measures,
        // grouping, filtered positions, order), never on a value, so few texts ever exist.
        let statement = client
            .prepare_cached(&sql)
            .await
            .classify("preparing a rollup read")?;
        // Where each distinct measure's merged sketch is among the columns, found once.
        let sketch_columns: Vec<(usize, usize)> = distinct_positions(query)
            .map(|position| {
                let name = format!("s{position}");
                statement
                    .columns()
                    .iter()
                    .position(|c| c.name() == name)
                    .map(|index| (position, index))
                    .ok_or_else(|| {
                        StoreError::Unexpected(anyhow::anyhow!("a read lacks its sketch {name}"))
                    })
            })
            .collect::<Result<_, _>>()?;
        // Streamed: a read ordered by a distinct measure reads every row, and each row's merged
        // sketch (up to 20 KB) is estimated and dropped as it arrives, so what is held is the
        // rows' numbers alone.
        let rows = client
            .query_raw(&statement, with_fixed(&fixed, &binds))
            .await
            .classify("reading rollup rows")?;
        let mut rows = pin!(rows);
        let mut page = RollupPage {
            rows: Vec::new(),
            total_rows: 0,
            last_refreshed_at: None,
            uncounted_since: None,
        };
        let mut all_values = Vec::new();
        // Each tiled window's newest row (read with the latest change to its events from the
        // first row: every row carries them).
        let mut newest: Option<Vec<Option<OffsetDateTime>>> = None;
        while let Some(row) = poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
            let row = &row.classify("reading rollup rows")?;
            let get = |e: tokio_postgres::Error| corrupt("rollup row", e);
            let total: i64 = row.try_get("total_rows").map_err(get)?;
            page.total_rows = u64::try_from(total).unwrap_or(0);
            page.last_refreshed_at = row
                .try_get::<_, Option<OffsetDateTime>>("last_refreshed_at")
                .map_err(get)?;
            page.uncounted_since = row
                .try_get::<_, Option<OffsetDateTime>>("uncounted_since")
                .map_err(get)?;
            if newest.is_none() && !windows.is_empty() {
                let mut each = Vec::new();
                for window in &windows {
                    let name = window.as_str();
                    let refreshed: Option<OffsetDateTime> = row
                        .try_get(format!("refreshed_{name}").as_str())
                        .map_err(get)?;
                    if *window != query.window {
                        let lagging: i64 = row
                            .try_get(format!("lagging_{name}").as_str())
                            .map_err(get)?;
                        if lagging > 0 {
                            return Ok(None);
                        }
                    }
                    each.push(refreshed);
                }
                newest = Some(each);
            }
            let dimensions: Option<Vec<Option<String>>> = row.try_get("dimensions").map_err(get)?;
            let Some(dimensions) = dimensions else {
                continue; // the row of an empty page
            };
            let mut measures: Vec<i64> = row.try_get("measures").map_err(get)?;
            let mut values: Vec<MeasureValue> = if merged {
                measures
                    .iter()
                    .map(|&total| MeasureValue::Total(total))
                    .collect()
            } else {
                Vec::new()
            };
            for &(position, index) in &sketch_columns {
                let sketch = MeasureValue::Distinct(sketch_at(row, index)?);
                if let Some(value) = measures.get_mut(position) {
                    *value = sketch.number();
                }
                if let Some(value) = values.get_mut(position) {
                    *value = sketch;
                }
            }
            if merged {
                all_values.push(values);
            }
            let bucket_date: Option<Date> = row.try_get("bucket_date").map_err(get)?;
            let bucket_hour: Option<i16> = row.try_get("bucket_hour").map_err(get)?;
            page.rows.push(RollupRow {
                bucket_date,
                bucket_hour: bucket_hour.and_then(|h| u8::try_from(h).ok()),
                dimensions,
                measures,
            });
        }
        if let Some(each) = &newest {
            // Tiled, the answer is as fresh as its least fresh window.
            page.last_refreshed_at = each.iter().flatten().min().copied();
        }
        if merged {
            // The statement orders the rows, but by a distinct measure, known only here.
            if ordered_here(query) {
                let mut rows: Vec<(RollupRow, Vec<MeasureValue>)> = std::mem::take(&mut page.rows)
                    .into_iter()
                    .zip(all_values)
                    .collect();
                rows.sort_by(|a, b| domain::rollup::compare_rows(query.order, &a.0, &b.0));
                let (rows, values) = rows.into_iter().unzip();
                page.rows = rows;
                return Ok(Some((page, values)));
            }
            return Ok(Some((page, all_values)));
        }
        if ordered_here(query) {
            page.rows
                .sort_by(|a, b| domain::rollup::compare_rows(query.order, a, b));
            page.rows = query.page.slice(std::mem::take(&mut page.rows));
        }
        Ok(Some((page, Vec::new())))
    }
}

#[cfg(feature = "test-support")]
#[async_trait]
impl application::ports::SnapshotRows for PostgresRollupStore {
    async fn rows(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        dimensions: usize,
        window: Window,
        range: DateRange,
    ) -> Result<Vec<application::ports::SnapshotRow>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to read snapshots")?;
        let rows = client
            .query(
                "SELECT bucket_start, bucket_hour, ARRAY[d1, d2, d3] AS dimension_values, measure_values,
                        sketches, computed_at, run_id
                 FROM rollup_snapshots
                 WHERE tenant_id = $1 AND report_slug = $2 AND window_name = $3
                   AND bucket_start BETWEEN $4 AND $5
                 ORDER BY bucket_start, bucket_hour, d1 NULLS FIRST, d2 NULLS FIRST, d3 NULLS FIRST",
                &[
                    &tenant.get(),
                    &report.as_str(),
                    &window.as_str(),
                    &range.from(),
                    &range.to(),
                ],
            )
            .await
            .classify("reading snapshot rows")?;
        rows.iter()
            .map(|row| {
                let get = |e: tokio_postgres::Error| corrupt("snapshot row", e);
                let mut dimension_values: Vec<Option<String>> =
                    row.try_get("dimension_values").map_err(get)?;
                dimension_values.truncate(dimensions);
                Ok(application::ports::SnapshotRow {
                    bucket_start: row.try_get("bucket_start").map_err(get)?,
                    bucket_hour: u8::try_from(row.try_get::<_, i16>("bucket_hour").map_err(get)?)
                        .map_err(|e| corrupt("snapshot row", e))?,
                    dimension_values,
                    measure_values: {
                        let totals: Vec<Option<i64>> =
                            row.try_get("measure_values").map_err(get)?;
                        let sketches: Option<Vec<Option<Vec<u8>>>> =
                            row.try_get("sketches").map_err(get)?;
                        totals
                            .iter()
                            .enumerate()
                            .map(|(i, total)| match total {
                                Some(total) => Ok(*total),
                                None => {
                                    let bytes = sketches
                                        .as_ref()
                                        .and_then(|s| s.get(i).cloned().flatten())
                                        .ok_or_else(|| {
                                            corrupt("snapshot row", "a measure without a value")
                                        })?;
                                    let sketch = Sketch::from_bytes(&bytes)
                                        .map_err(|e| corrupt("snapshot sketch", e))?;
                                    Ok(MeasureValue::Distinct(sketch).number())
                                }
                            })
                            .collect::<Result<_, crate::error::Failure>>()?
                    },
                    computed_at: row.try_get("computed_at").map_err(get)?,
                    run_id: domain::RunId::from_uuid(row.try_get("run_id").map_err(get)?),
                })
            })
            .collect::<Result<_, crate::error::Failure>>()
            .map_err(StoreError::from)
    }
}

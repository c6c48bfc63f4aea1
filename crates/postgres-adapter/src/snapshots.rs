//! Snapshot rows in `metric_snapshots`: report reads, and the rebuild from `analytics_events`.

use application::ports::{RebuildOutcome, RebuildRequest, SnapshotStore, SourceSystem, StoreError};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::{Breakdown, ReportKind, ReportQuery, ReportRow, SnapshotPage, TenantId, Window};
use time::Date;
use tokio_postgres::Row;

use crate::error::{Failure, PgResultExt, corrupt};

/// Snapshots in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresSnapshotStore {
    pool: Pool,
}

impl PostgresSnapshotStore {
    /// The store over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

/// The one statement of a read of `kind` by `window`: `$1` tenant, buckets starting in
/// `$2..=$3`, optionally only dimension value `$4`, page `$5` rows from `$6`, and event changes
/// dated in `$7..=$8` (the range widened to whole buckets). The report and the window are
/// written into the statement (they come from fixed sets, never from a request's text), so
/// the plan PostgreSQL keeps for the prepared statement reads their partition alone. Every row carries the whole
/// read's row count, its newest `computed_at` and the latest change to its events; an empty
/// page is one row of nulls carrying them. The selection is served by the primary key, whose
/// prefix is exactly its columns, and read once.
///
/// Each report shape yields the columns (bucket_date, name, event_count) with NULL where the
/// shape has none; text is ordered by byte value (`COLLATE "C"`) so every adapter agrees.
pub fn read_sql(kind: ReportKind, breakdown: Breakdown, window: Window) -> String {
    let (bucket, name, group_by, order) = match (kind, breakdown) {
        (ReportKind::VolumeByPeriod, Breakdown::Source)
        | (ReportKind::StatusCounts, Breakdown::Period) => (
            "bucket_start",
            "dimension_value",
            "bucket_start, dimension_value",
            "bucket_date, name COLLATE \"C\"",
        ),
        (ReportKind::VolumeByPeriod, _) => {
            ("bucket_start", "NULL::text", "bucket_start", "bucket_date")
        }
        (ReportKind::StatusCounts | ReportKind::TopEntities, _) => (
            "NULL::date",
            "dimension_value",
            "dimension_value",
            "event_count DESC, name COLLATE \"C\"",
        ),
    };
    let grouped = format!(
        "
            SELECT {bucket} AS bucket_date, {name} AS name, sum(metric_value)::int8 AS event_count,
                   max(computed_at) AS computed_at
            FROM metric_snapshots
            WHERE tenant_id = $1 AND report_slug = '{slug}' AND window_name = '{window}'
              AND bucket_start BETWEEN $2 AND $3
              AND metric_name = 'event_count'
              AND ($4::text IS NULL OR dimension_value = $4)
            GROUP BY {group_by}",
        slug = kind.slug(),
        window = window.as_str(),
    );
    crate::paged::paged_read(&grouped, &["bucket_date", "name", "event_count"], order, 5)
}

fn report_row(kind: ReportKind, breakdown: Breakdown, row: &Row) -> Result<ReportRow, Failure> {
    let get = |e: tokio_postgres::Error| corrupt("report row", e);
    let bucket: Option<Date> = row.try_get("bucket_date").map_err(get)?;
    let name: Option<String> = row.try_get("name").map_err(get)?;
    let event_count: i64 = row.try_get("event_count").map_err(get)?;
    ReportRow::from_parts(kind, breakdown, bucket, name, event_count)
        .ok_or_else(|| corrupt("report row", "a grouping column is NULL"))
}

/// Serializes rebuilds of one tenant's report and window, so overlapping scopes never
/// interleave their deletes and inserts.
const REBUILD_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended($1::text || ':' || $2 || ':' || $3, 0))";

/// Settings of the rebuild's transaction only. Each bucket's aggregation and sort is small
/// (see `rebuild_sql!`), so 128 MB is headroom for a bucket of a very busy tenant rather than
/// the size of the whole rebuild. JIT is off: the planner prices the per-bucket loop as one
/// large query and would spend longer compiling it than the loop takes to run.
const REBUILD_SETTINGS: &str = "SET LOCAL work_mem = '128MB'; SET LOCAL jit = off";

const DELETE_BUCKETS: &str = "
    DELETE FROM metric_snapshots
    WHERE tenant_id = $1 AND report_slug = $2 AND window_name = $3 AND bucket_start BETWEEN $4 AND $5";

/// The insert of one report kind: one row per bucket of `$4..=$5` (already whole buckets of
/// window `$3`, so `$4` is a bucket's first day) and dimension value. Only the dimension
/// (and, for sources, the lookup that names them) differs between kinds.
///
/// The events are aggregated one bucket at a time: for each bucket start, an index-only range
/// scan of `(tenant_id, occurred_at)` (whose included columns hold every dimension), grouped
/// and sorted by value. Rows therefore come out in primary-key order (bucket, then value
/// bytewise, hence `COLLATE "C"`), so the index grows at one edge instead of taking each row
/// at a random leaf, and no step ever holds more than one bucket: a single `GROUP BY bucket,
/// value` over the range builds one hash table of every group and then sorts all of them,
/// which for top-entities (a row per entity and day) took twice as long as the insert itself.
/// A bucket with no events yields no rows, as a `GROUP BY` over the range does.
///
/// `$grouped` are the pieces of the per-bucket subquery, which reads the events that
/// `events_of_bucket!` selects. Sources are counted by id and named afterwards, so only a
/// bucket's few groups meet `event_sources`, not each of its events.
macro_rules! rebuild_sql {
    ($key:literal, $($grouped:expr),+) => {
        concat!(
            "INSERT INTO metric_snapshots (tenant_id, report_slug, window_name, bucket_start, dimension_key,
                                           dimension_value, metric_name, metric_value, computed_at, run_id)
             SELECT $1, $2, $3, bucket.start::date, '",
            $key,
            "', grouped.value, 'event_count', grouped.events, $6, $7
             FROM generate_series($4::date::timestamp, $5::date::timestamp, ('1 ' || $3::text)::interval) AS bucket (start)
             CROSS JOIN LATERAL (",
            $($grouped),+,
            ") AS grouped"
        )
    };
}

/// The events of the bucket starting at `bucket.start`, one window (`$3`) long.
macro_rules! events_of_bucket {
    () => {
        "FROM analytics_events e
         WHERE e.tenant_id = $1
           AND e.occurred_at >= bucket.start AT TIME ZONE 'UTC'
           AND e.occurred_at < (bucket.start + ('1 ' || $3::text)::interval) AT TIME ZONE 'UTC'"
    };
}

fn rebuild_sql(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::VolumeByPeriod => rebuild_sql!(
            "source",
            "SELECT s.slug COLLATE \"C\" AS value, counted.events
             FROM (SELECT e.source_id, count(*) AS events ",
            events_of_bucket!(),
            " GROUP BY 1) AS counted
             JOIN event_sources s ON s.id = counted.source_id
             ORDER BY 1"
        ),
        ReportKind::StatusCounts => rebuild_sql!(
            "status",
            "SELECT e.status COLLATE \"C\" AS value, count(*) AS events ",
            events_of_bucket!(),
            " AND e.status IS NOT NULL GROUP BY 1 ORDER BY 1"
        ),
        ReportKind::TopEntities => rebuild_sql!(
            "entity_id",
            "SELECT e.entity_id COLLATE \"C\" AS value, count(*) AS events ",
            events_of_bucket!(),
            " AND e.entity_id IS NOT NULL GROUP BY 1 ORDER BY 1"
        ),
    }
}

#[cfg(feature = "test-support")]
const SELECT_ROWS: &str = "
    SELECT bucket_start, dimension_key, dimension_value, metric_name, metric_value, computed_at, run_id
    FROM metric_snapshots
    WHERE tenant_id = $1 AND report_slug = $2 AND window_name = $3 AND bucket_start BETWEEN $4 AND $5
    ORDER BY bucket_start, dimension_value COLLATE \"C\", metric_name COLLATE \"C\"";

#[async_trait]
impl SnapshotStore for PostgresSnapshotStore {
    fn system(&self) -> SourceSystem {
        SourceSystem::Postgres
    }

    #[tracing::instrument(skip_all, fields(report = query.kind.slug(), window = %query.window), err)]
    async fn query(&self, query: &ReportQuery) -> Result<SnapshotPage, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to read snapshots")?;
        let filter = query.filter.as_ref().map(|f| f.value());
        let (from, to) = (query.range.from(), query.range.to());
        let widened = query.window.widen(query.range);
        let limit = i64::from(query.page.limit());
        let offset = i64::try_from(query.page.offset()).unwrap_or(i64::MAX);
        let statement = client
            .prepare_cached(&read_sql(query.kind, query.breakdown, query.window))
            .await
            .classify("preparing a snapshot read")?;
        let rows = client
            .query(
                &statement,
                &[
                    &query.tenant.get(),
                    &from,
                    &to,
                    &filter,
                    &limit,
                    &offset,
                    &widened.from(),
                    &widened.to(),
                ],
            )
            .await
            .classify("reading snapshot rows")?;
        let mut page = SnapshotPage {
            rows: Vec::new(),
            total_rows: 0,
            last_refreshed_at: None,
            changed_at: None,
        };
        for row in &rows {
            let get = |e: tokio_postgres::Error| corrupt("snapshot page", e);
            let total: i64 = row.try_get("total_rows").map_err(get)?;
            page.total_rows = u64::try_from(total).unwrap_or(0);
            page.last_refreshed_at = row.try_get("last_refreshed_at").map_err(get)?;
            page.changed_at = row.try_get("changed_at").map_err(get)?;
            let count: Option<i64> = row.try_get("event_count").map_err(get)?;
            if count.is_none() {
                continue; // the row of an empty page
            }
            page.rows
                .push(report_row(query.kind, query.breakdown, row)?);
        }
        Ok(page)
    }

    #[tracing::instrument(skip_all, fields(report = request.kind.slug(), window = %request.window, run_id = %request.run_id), err)]
    async fn rebuild(&self, request: &RebuildRequest) -> Result<RebuildOutcome, StoreError> {
        let mut client = self
            .pool
            .get()
            .await
            .classify("connecting to rebuild snapshots")?;
        let tx = client.transaction().await.classify("starting a rebuild")?;
        let tenant = request.tenant.get();
        let slug = request.kind.slug();
        let window = request.window.as_str();
        let (from, to) = (request.range.from(), request.range.to());
        // The insert starts a bucket at `from` and steps by whole windows.
        debug_assert_eq!(request.window.widen(request.range), request.range);
        tx.execute(REBUILD_LOCK, &[&tenant.to_string(), &slug, &window])
            .await
            .classify("locking the report for a rebuild")?;
        tx.batch_execute(REBUILD_SETTINGS)
            .await
            .classify("configuring the rebuild")?;
        let rows_deleted = tx
            .execute(DELETE_BUCKETS, &[&tenant, &slug, &window, &from, &to])
            .await
            .classify("deleting rebuilt buckets")?;
        let rows_inserted = tx
            .execute(
                rebuild_sql(request.kind),
                &[
                    &tenant,
                    &slug,
                    &window,
                    &from,
                    &to,
                    &request.computed_at,
                    &request.run_id.as_uuid(),
                ],
            )
            .await
            .classify("aggregating events into snapshots")?;
        tx.commit().await.classify("committing a rebuild")?;
        Ok(RebuildOutcome {
            rows_deleted,
            rows_inserted,
        })
    }

    async fn clear(&self, tenant: TenantId) -> Result<u64, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to clear snapshots")?;
        Ok(client
            .execute(
                "DELETE FROM metric_snapshots WHERE tenant_id = $1",
                &[&tenant.get()],
            )
            .await
            .classify("clearing snapshots")?)
    }
}

#[cfg(feature = "test-support")]
#[async_trait]
impl application::ports::SnapshotRows for PostgresSnapshotStore {
    async fn rows(
        &self,
        tenant: TenantId,
        kind: ReportKind,
        window: Window,
        range: domain::DateRange,
    ) -> Result<Vec<application::ports::SnapshotRow>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to read snapshots")?;
        let rows = client
            .query(
                SELECT_ROWS,
                &[
                    &tenant.get(),
                    &kind.slug(),
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
                let run_id: Option<uuid::Uuid> = row.try_get("run_id").map_err(get)?;
                Ok(application::ports::SnapshotRow {
                    bucket_start: row.try_get("bucket_start").map_err(get)?,
                    dimension_key: row.try_get("dimension_key").map_err(get)?,
                    dimension_value: row.try_get("dimension_value").map_err(get)?,
                    metric_name: row.try_get("metric_name").map_err(get)?,
                    metric_value: row.try_get("metric_value").map_err(get)?,
                    computed_at: row.try_get("computed_at").map_err(get)?,
                    run_id: run_id.map(domain::RunId::from_uuid),
                })
            })
            .collect::<Result<_, Failure>>()
            .map_err(StoreError::from)
    }
}

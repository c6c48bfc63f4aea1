//! Dirty buckets in `dirty_buckets` (migration V13): the marks ingestion and definition changes
//! write, in the transactions that make the change, and what rebuilds read and clear.
//!
//! Ingestion reads the tenant's definitions under a shared advisory lock of the tenant, and a
//! definition change takes the same lock exclusively: an ingestion either commits before the
//! change marks the buckets of the days with events, or sees the changed definition.

use std::collections::{BTreeSet, HashMap};

use domain::{
    DirtyBucket, DirtyReason, RollupDefinition, TenantId, Window,
    freshness::{Mark, marks_of, tenant_rollups},
};
use time::{Date, OffsetDateTime};
use tokio_postgres::{GenericClient, Row};

use crate::error::{Failure, PgResultExt, corrupt};

/// Waits until no definition of the tenants `$1` is being changed, and keeps them from changing
/// until the transaction ends.
const SHARE_DEFINITIONS: &str = "
    SELECT pg_advisory_xact_lock_shared(hashtextextended('definitions:' || t::text, 0))
    FROM (SELECT DISTINCT t FROM unnest($1::int8[]) AS t ORDER BY t) AS tenants";

/// Waits until no ingestion of the tenant `$1` is reading its definitions, and keeps new ones
/// waiting until the transaction ends.
pub(crate) const LOCK_DEFINITIONS: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('definitions:' || $1::int8::text, 0))";

/// The definitions of the tenants `$1`.
const DEFINITIONS_OF: &str =
    "SELECT tenant_id, definition FROM rollup_definitions WHERE tenant_id = ANY($1::int8[])";

/// Marks buckets dirty. The version is taken with the row locked (on insert, or in the update
/// of a conflicting insert), so it is greater than any version a rebuild read before.
pub(crate) const MARK: &str = "
    INSERT INTO dirty_buckets (tenant_id, report_slug, window_name, bucket_start, version,
                               first_marked_at, reason)
    SELECT t, s, w, b, nextval('dirty_bucket_versions'), $5, $6
    FROM unnest($1::int8[], $2::text[], $3::text[], $4::date[]) AS m(t, s, w, b)
    ORDER BY t, s, w, b
    ON CONFLICT (tenant_id, report_slug, window_name, bucket_start) DO UPDATE
    SET version = nextval('dirty_bucket_versions'),
        reason = CASE WHEN EXCLUDED.reason = 'definition' THEN 'definition' ELSE dirty_buckets.reason END";

/// Marks dirty, for a change of tenant `$1`'s definition `$2` at `$5`, every bucket of each of
/// its windows `$3` that holds a day with events on or after the window's `$4`.
pub(crate) const MARK_DEFINITION: &str = "
    INSERT INTO dirty_buckets (tenant_id, report_slug, window_name, bucket_start, version,
                               first_marked_at, reason)
    SELECT $1, $2, b.w, b.bucket, nextval('dirty_bucket_versions'), $5, 'definition'
    FROM (
        SELECT DISTINCT w.name AS w,
               CASE w.name WHEN 'week' THEN date_trunc('week', d.day::timestamp)::date
                           WHEN 'month' THEN date_trunc('month', d.day::timestamp)::date
                           ELSE d.day END AS bucket
        FROM stale_days d
        JOIN unnest($3::text[], $4::date[]) AS w(name, kept_from) ON d.day >= w.kept_from
        WHERE d.tenant_id = $1
    ) AS b
    ORDER BY b.w, b.bucket
    ON CONFLICT (tenant_id, report_slug, window_name, bucket_start) DO UPDATE
    SET version = nextval('dirty_bucket_versions'), reason = 'definition'";

/// Marks `definition` of `tenant`, changed at `at`, dirty where the tenant has events. The
/// caller's transaction holds [`LOCK_DEFINITIONS`].
pub(crate) async fn mark_definition(
    client: &impl GenericClient,
    tenant: TenantId,
    definition: &RollupDefinition,
    at: OffsetDateTime,
) -> Result<(), Failure> {
    let today = at.date();
    let names: Vec<&str> = definition
        .windows
        .iter()
        .map(|w| w.window.as_str())
        .collect();
    let kept: Vec<Date> = definition
        .windows
        .iter()
        .map(|w| w.kept(today).from())
        .collect();
    client
        .execute(
            MARK_DEFINITION,
            &[&tenant.get(), &definition.slug.as_str(), &names, &kept, &at],
        )
        .await
        .classify("marking a definition's buckets dirty")?;
    client
        .execute(
            DROP_WATERMARKS_OF,
            &[&tenant.get(), &definition.slug.as_str()],
        )
        .await
        .classify("dropping a redefined rollup's watermarks")?;
    Ok(())
}

/// The watermarks of tenant `$1`'s rollup `$2` go: its rows no longer count what a watermark
/// says (it changed or went), so its next runs rebuild its dirty buckets.
pub(crate) const DROP_WATERMARKS_OF: &str =
    "DELETE FROM refresh_watermarks WHERE tenant_id = $1 AND report_slug = $2";

/// The columns of a mark as a rebuild and a read see it.
pub(crate) const MARK_COLUMNS: &str = "window_name, bucket_start, version, first_marked_at, reason";

/// Buckets to mark, by tenant.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    tenants: Vec<i64>,
    reports: Vec<String>,
    windows: Vec<&'static str>,
    buckets: Vec<Date>,
}

impl Marks {
    pub(crate) fn add(&mut self, tenant: TenantId, marks: impl IntoIterator<Item = Mark>) {
        for mark in marks {
            self.tenants.push(tenant.get());
            self.reports.push(mark.report.to_string());
            self.windows.push(mark.window.as_str());
            self.buckets.push(mark.bucket_start);
        }
    }

    /// Writes the marks at `at` for `reason`.
    pub(crate) async fn write(
        &self,
        client: &impl GenericClient,
        at: OffsetDateTime,
        reason: DirtyReason,
    ) -> Result<(), Failure> {
        if self.tenants.is_empty() {
            return Ok(());
        }
        client
            .execute(
                MARK,
                &[
                    &self.tenants,
                    &self.reports,
                    &self.windows,
                    &self.buckets,
                    &at,
                    &reason.as_str(),
                ],
            )
            .await
            .classify("marking buckets dirty")?;
        Ok(())
    }
}

/// The rollups of each of `tenants` (the shared ones and its definitions), read under the
/// shared lock of their definitions, which the caller's transaction holds from then on.
pub(crate) async fn rollups_of(
    client: &impl GenericClient,
    tenants: &[i64],
) -> Result<HashMap<i64, Vec<RollupDefinition>>, Failure> {
    client
        .execute(SHARE_DEFINITIONS, &[&tenants])
        .await
        .classify("locking the tenants' definitions")?;
    let rows = client
        .query(DEFINITIONS_OF, &[&tenants])
        .await
        .classify("reading the tenants' definitions")?;
    let mut rollups: HashMap<i64, Vec<RollupDefinition>> = HashMap::new();
    for row in rows {
        let get = |e: tokio_postgres::Error| corrupt("rollup definition", e);
        let tenant: i64 = row.try_get(0).map_err(get)?;
        let value: serde_json::Value = row.try_get(1).map_err(get)?;
        let definition = RollupDefinition::parse(&value).map_err(|errors| {
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            corrupt("rollup definition", first)
        })?;
        rollups.entry(tenant).or_default().push(definition);
    }
    Ok(rollups)
}

/// The marks that storing `events` on `today` makes, tenant by tenant, with the tenants'
/// `rollups`.
pub(crate) fn marks_of_events<'a>(
    rollups: &HashMap<i64, Vec<RollupDefinition>>,
    events: impl IntoIterator<Item = (TenantId, &'a domain::NewEvent)>,
    today: Date,
) -> Marks {
    let mut by_tenant: HashMap<TenantId, Vec<&domain::NewEvent>> = HashMap::new();
    for (tenant, event) in events {
        by_tenant.entry(tenant).or_default().push(event);
    }
    let mut tenants: Vec<TenantId> = by_tenant.keys().copied().collect();
    tenants.sort_unstable();
    let mut marks = Marks::default();
    for tenant in tenants {
        let definitions = tenant_rollups(rollups.get(&tenant.get()).into_iter().flatten());
        let events = by_tenant.remove(&tenant).unwrap_or_default();
        let made: BTreeSet<Mark> = marks_of(&definitions, events, today);
        marks.add(tenant, made);
    }
    marks
}

/// A mark as a rebuild reads it: its bucket, and the version to clear it at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeenMark {
    pub(crate) bucket: DirtyBucket,
    pub(crate) version: i64,
}

/// A mark read with [`MARK_COLUMNS`].
pub(crate) fn seen_mark(row: &Row) -> Result<SeenMark, Failure> {
    let get = |e: tokio_postgres::Error| corrupt("dirty bucket", e);
    let window: String = row.try_get(0).map_err(get)?;
    let reason: String = row.try_get(4).map_err(get)?;
    Ok(SeenMark {
        bucket: DirtyBucket {
            window: window
                .parse::<Window>()
                .map_err(|e| corrupt("dirty bucket window", e))?,
            bucket_start: row.try_get(1).map_err(get)?,
            reason: DirtyReason::from_stored(&reason)
                .ok_or_else(|| corrupt("dirty bucket reason", reason.clone()))?,
            first_marked_at: row.try_get(3).map_err(get)?,
        },
        version: row.try_get(2).map_err(get)?,
    })
}

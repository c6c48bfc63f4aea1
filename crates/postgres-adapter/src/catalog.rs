//! The report catalog: `report_definitions` with their `aggregate_windows`.

use application::ports::{ReportCatalog, StoreError};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::{
    CatalogQuery, CatalogSort, Page, ReportDefinition, ReportKind, ReportSlug, SortOrder, Window,
    WindowDefinition,
};
use tokio_postgres::Row;

use crate::error::{Failure, PgResultExt, corrupt};

/// The catalog in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresCatalog {
    pool: Pool,
}

impl PostgresCatalog {
    /// The catalog over `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

/// The columns of a definition with its windows as a JSON array, in catalog order.
const SELECT_DEFINITION: &str = "
    SELECT d.slug, d.name, d.description, d.cache_ttl_seconds, d.default_window, d.is_public,
           d.supported_filters, d.updated_at,
           COALESCE((SELECT jsonb_agg(jsonb_build_object(
                        'window', w.window_name,
                        'retention_days', w.retention_days,
                        'refresh_interval_minutes', w.refresh_interval_minutes,
                        'is_default', w.is_default)
                      ORDER BY CASE w.window_name WHEN 'day' THEN 0 ELSE 1 END)
                     FROM aggregate_windows w WHERE w.report_slug = d.slug), '[]'::jsonb) AS windows
    FROM report_definitions d";

/// `ORDER BY` clauses by sort and order; the sort column comes only from this allowlist, and
/// ties always fall back to the slug, ascending.
fn order_by(sort: CatalogSort, order: SortOrder) -> &'static str {
    use CatalogSort::*;
    use SortOrder::*;
    match (sort, order) {
        (Slug, Asc) => "ORDER BY d.slug COLLATE \"C\" ASC",
        (Slug, Desc) => "ORDER BY d.slug COLLATE \"C\" DESC",
        (Name, Asc) => "ORDER BY d.name COLLATE \"C\" ASC, d.slug COLLATE \"C\" ASC",
        (Name, Desc) => "ORDER BY d.name COLLATE \"C\" DESC, d.slug COLLATE \"C\" ASC",
        (UpdatedAt, Asc) => "ORDER BY d.updated_at ASC, d.slug COLLATE \"C\" ASC",
        (UpdatedAt, Desc) => "ORDER BY d.updated_at DESC, d.slug COLLATE \"C\" ASC",
        (CacheTtlSeconds, Asc) => "ORDER BY d.cache_ttl_seconds ASC, d.slug COLLATE \"C\" ASC",
        (CacheTtlSeconds, Desc) => "ORDER BY d.cache_ttl_seconds DESC, d.slug COLLATE \"C\" ASC",
    }
}

/// Public definitions whose slug or name contains the (escaped) search term.
const PUBLIC_MATCHING: &str = "
    WHERE d.is_public
      AND ($1::text IS NULL
           OR strpos(lower(d.slug), lower($1)) > 0
           OR strpos(lower(d.name), lower($1)) > 0)";

fn definition(row: &Row) -> Result<ReportDefinition, Failure> {
    let get = |e: tokio_postgres::Error| corrupt("report definition", e);
    let slug_text: String = row.try_get("slug").map_err(get)?;
    let slug = ReportSlug::parse(&slug_text).map_err(|e| corrupt("report slug", e))?;
    let kind = ReportKind::from_slug(&slug)
        .ok_or_else(|| corrupt("report slug", format!("{slug} has no snapshot builder")))?;
    let default_window: String = row.try_get("default_window").map_err(get)?;
    let windows: serde_json::Value = row.try_get("windows").map_err(get)?;
    let windows: Vec<WindowDefinition> =
        serde_json::from_value(windows).map_err(|e| corrupt("aggregate windows", e))?;
    let ttl: i32 = row.try_get("cache_ttl_seconds").map_err(get)?;
    Ok(ReportDefinition {
        slug,
        kind,
        name: row.try_get("name").map_err(get)?,
        description: row.try_get("description").map_err(get)?,
        cache_ttl_seconds: u32::try_from(ttl).map_err(|e| corrupt("cache_ttl_seconds", e))?,
        default_window: default_window
            .parse::<Window>()
            .map_err(|e| corrupt("default window", e))?,
        is_public: row.try_get("is_public").map_err(get)?,
        windows,
        supported_filters: row.try_get("supported_filters").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

#[async_trait]
impl ReportCatalog for PostgresCatalog {
    #[tracing::instrument(skip_all, err)]
    async fn list_public(
        &self,
        query: &CatalogQuery,
    ) -> Result<Page<ReportDefinition>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to list reports")?;
        let sql = format!(
            "{SELECT_DEFINITION} {PUBLIC_MATCHING} {} LIMIT $2 OFFSET $3",
            order_by(query.sort, query.order)
        );
        let limit = i64::from(query.page.limit());
        let offset = i64::try_from(query.page.offset()).unwrap_or(i64::MAX);
        let rows = client
            .query(&sql, &[&query.search(), &limit, &offset])
            .await
            .classify("listing reports")?;
        let total_sql = format!("SELECT count(*) FROM report_definitions d {PUBLIC_MATCHING}");
        let total: i64 = client
            .query_one(&total_sql, &[&query.search()])
            .await
            .classify("counting reports")?
            .get(0);
        let items = rows.iter().map(definition).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::new(
            items,
            u64::try_from(total).unwrap_or(0),
            query.page,
        ))
    }

    #[tracing::instrument(skip_all, fields(slug = %slug), err)]
    async fn get(&self, slug: &ReportSlug) -> Result<Option<ReportDefinition>, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .classify("connecting to read a report")?;
        let sql = format!("{SELECT_DEFINITION} WHERE d.slug = $1");
        let row = client
            .query_opt(&sql, &[&slug.as_str()])
            .await
            .classify("reading a report")?;
        Ok(row.as_ref().map(definition).transpose()?)
    }
}

/// Writes the reference definition of every built-in report (see
/// [`ReportDefinition::reference`]: the seed files) into the catalog, changing an entry only
/// where it differs, so `updated_at` moves only when a seed did.
pub(crate) async fn install_reference(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    use anyhow::Context;
    const UPSERT: &str = "
        INSERT INTO report_definitions (slug, name, description, cache_ttl_seconds, default_window,
                                        is_public, supported_filters)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (slug) DO UPDATE SET
            name = EXCLUDED.name, description = EXCLUDED.description,
            cache_ttl_seconds = EXCLUDED.cache_ttl_seconds,
            default_window = EXCLUDED.default_window, is_public = EXCLUDED.is_public,
            supported_filters = EXCLUDED.supported_filters, updated_at = now()
        WHERE (report_definitions.name, report_definitions.description,
               report_definitions.cache_ttl_seconds, report_definitions.default_window,
               report_definitions.is_public, report_definitions.supported_filters)
              IS DISTINCT FROM
              (EXCLUDED.name, EXCLUDED.description, EXCLUDED.cache_ttl_seconds,
               EXCLUDED.default_window, EXCLUDED.is_public, EXCLUDED.supported_filters)";
    const UPSERT_WINDOW: &str = "
        INSERT INTO aggregate_windows (report_slug, window_name, retention_days,
                                       refresh_interval_minutes, is_default)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (report_slug, window_name) DO UPDATE SET
            retention_days = EXCLUDED.retention_days,
            refresh_interval_minutes = EXCLUDED.refresh_interval_minutes,
            is_default = EXCLUDED.is_default
        WHERE (aggregate_windows.retention_days, aggregate_windows.refresh_interval_minutes,
               aggregate_windows.is_default)
              IS DISTINCT FROM
              (EXCLUDED.retention_days, EXCLUDED.refresh_interval_minutes, EXCLUDED.is_default)";
    const DROP_OTHER_WINDOWS: &str =
        "DELETE FROM aggregate_windows WHERE report_slug = $1 AND NOT (window_name = ANY ($2))";
    // At most one default window per report: the old one steps down before the new one is
    // written.
    const CLEAR_OTHER_DEFAULT: &str = "
        UPDATE aggregate_windows SET is_default = FALSE
        WHERE report_slug = $1 AND is_default AND window_name <> $2";
    let now = time::OffsetDateTime::now_utc();
    // All or nothing, so a failed install leaves the catalog as it was.
    let tx = client
        .transaction()
        .await
        .context("starting to install the catalog")?;
    let client = &tx;
    for kind in ReportKind::ALL {
        let reference = ReportDefinition::reference(kind, now);
        let slug = reference.slug.as_str();
        let ttl = i32::try_from(reference.cache_ttl_seconds).unwrap_or(i32::MAX);
        client
            .execute(
                UPSERT,
                &[
                    &slug,
                    &reference.name,
                    &reference.description,
                    &ttl,
                    &reference.default_window.as_str(),
                    &reference.is_public,
                    &reference.supported_filters,
                ],
            )
            .await
            .with_context(|| format!("installing the catalog entry of {slug}"))?;
        let names: Vec<&str> = reference
            .windows
            .iter()
            .map(|w| w.window.as_str())
            .collect();
        client
            .execute(DROP_OTHER_WINDOWS, &[&slug, &names])
            .await
            .with_context(|| format!("installing the windows of {slug}"))?;
        client
            .execute(
                CLEAR_OTHER_DEFAULT,
                &[&slug, &reference.default_window.as_str()],
            )
            .await
            .with_context(|| format!("installing the windows of {slug}"))?;
        for window in &reference.windows {
            let retention = i32::try_from(window.retention_days).unwrap_or(i32::MAX);
            let refresh = i32::try_from(window.refresh_interval_minutes).unwrap_or(i32::MAX);
            client
                .execute(
                    UPSERT_WINDOW,
                    &[
                        &slug,
                        &window.window.as_str(),
                        &retention,
                        &refresh,
                        &window.is_default,
                    ],
                )
                .await
                .with_context(|| format!("installing the windows of {slug}"))?;
        }
    }
    tx.commit().await.context("installing the catalog")?;
    Ok(())
}

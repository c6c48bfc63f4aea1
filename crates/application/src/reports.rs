//! Report listing and execution: the read path, served from snapshots through the cache.

use std::{sync::Arc, time::Instant};

use domain::{
    Breakdown, CatalogQuery, DateRange, DimensionFilter, Listed, Page, PageRequest,
    ReportDefinition, ReportKind, ReportQuery, ReportRow, ReportSlug, RollupRow, SnapshotPage,
    TenantId, ValidationError, Window, dates::parse_date,
};
use time::{Date, OffsetDateTime};

use crate::ports::{Clock, ReportCatalog, RollupStore, StoreError, StoredRollup};
use crate::read_cache::{CachedReads, HitBasis, ReadInfo};

/// The default number of rows of a report page.
pub const DEFAULT_ROW_LIMIT: u32 = 50;

/// The failure of a report read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No public report has this slug.
    #[error("report {0:?} not found")]
    NotFound(String),
    /// A parameter broke a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The catalog or the snapshots could not be read.
    #[error("report storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<StoreError> for ReportError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(e) => ReportError::Unavailable(e),
            StoreError::Unexpected(e) => ReportError::Unexpected(e),
        }
    }
}

/// The raw parameters of a report run, as they arrive; the service parses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReportParams {
    pub window: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub breakdown: Option<String>,
    pub source: Option<String>,
    pub status: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

impl RunReportParams {
    /// The query these parameters ask of `report` (of `kind`) for `tenant`, with `today` as
    /// the default end of the range and ranges up to `max_range_days`: checks every parameter
    /// in the order the API promises.
    ///
    /// # Errors
    /// A [`ValidationError`] on the first parameter that breaks its rule.
    pub fn parse(
        &self,
        tenant: TenantId,
        report: &ReportDefinition,
        kind: ReportKind,
        today: Date,
        max_range_days: u32,
    ) -> Result<ReportQuery, ValidationError> {
        let params = self;
        let window = match params.window.as_deref() {
            Some(raw) => raw.parse::<Window>()?,
            None => report.default_window,
        };
        report.check_window(window)?;
        let from = params
            .date_from
            .as_deref()
            .map(|raw| parse_date("date_from", raw))
            .transpose()?;
        let to = params
            .date_to
            .as_deref()
            .map(|raw| parse_date("date_to", raw))
            .transpose()?;
        let range = DateRange::resolve(from, to, today)?.within_limit(max_range_days)?;
        report.check_retention(window, range, today)?;
        let breakdown = Breakdown::for_report(kind, params.breakdown.as_deref())?;
        let filter =
            DimensionFilter::parse(kind, params.source.as_deref(), params.status.as_deref())?;
        let page = PageRequest::strict(
            params.limit.as_deref(),
            params.offset.as_deref(),
            DEFAULT_ROW_LIMIT,
        )?;
        Ok(ReportQuery {
            tenant,
            kind,
            window,
            range,
            breakdown,
            filter,
            page,
        })
    }
}

/// A report result.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportResult {
    pub report_slug: ReportSlug,
    pub window: Window,
    pub range: DateRange,
    pub breakdown: Breakdown,
    pub page: PageRequest,
    pub rows: Vec<ReportRow>,
    pub read: ReadInfo,
}

/// An entry of the catalog a caller sees: a built-in report, or a report a tenant defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEntry {
    BuiltIn(ReportDefinition),
    Defined(StoredRollup),
}

impl Listed for CatalogEntry {
    fn slug(&self) -> &str {
        match self {
            Self::BuiltIn(report) => report.slug.as_str(),
            Self::Defined(stored) => stored.definition.slug.as_str(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::BuiltIn(report) => &report.name,
            Self::Defined(stored) => stored.definition.name.as_str(),
        }
    }

    fn updated_at(&self) -> OffsetDateTime {
        match self {
            Self::BuiltIn(report) => report.updated_at,
            Self::Defined(stored) => stored.updated_at,
        }
    }

    fn cache_ttl_seconds(&self) -> u32 {
        match self {
            Self::BuiltIn(report) => report.cache_ttl_seconds,
            Self::Defined(stored) => stored.definition.cache_ttl_seconds,
        }
    }
}

/// The page `query` asks of a built-in report: a read of the rollup the report is (see
/// [`ReportQuery::rollup_query`]), its rows in the report's shape.
///
/// # Errors
/// As [`RollupStore::read`]; [`StoreError::Unexpected`] when a row lacks a column the shape
/// needs (the rollup's rows are not the report's).
pub async fn read_builtin(
    store: &dyn RollupStore,
    query: &ReportQuery,
) -> Result<SnapshotPage, StoreError> {
    let page = store.read(&query.rollup_query()).await?;
    Ok(SnapshotPage {
        rows: builtin_rows(query, page.rows)?,
        total_rows: page.total_rows,
        last_refreshed_at: page.last_refreshed_at,
        uncounted_since: page.uncounted_since,
    })
}

/// `rows`, read for `query`'s rollup query, in the shape of `query`'s report.
///
/// # Errors
/// [`StoreError::Unexpected`] when a row lacks a column the shape needs.
fn builtin_rows(
    query: &ReportQuery,
    rows: impl IntoIterator<Item = RollupRow>,
) -> Result<Vec<ReportRow>, StoreError> {
    rows.into_iter()
        .map(|row| {
            ReportRow::from_rollup(query.kind, query.breakdown, row).ok_or_else(|| {
                StoreError::Unexpected(anyhow::anyhow!(
                    "a snapshot row of {} lacks a column of its {} shape",
                    query.kind.slug(),
                    query.breakdown
                ))
            })
        })
        .collect()
}

/// Lists reports and runs them from snapshots, through the versioned response cache.
#[derive(Clone)]
pub struct ReportService {
    catalog: Arc<dyn ReportCatalog>,
    reads: CachedReads,
    clock: Arc<dyn Clock>,
    max_range_days: u32,
}

/// The ports a [`ReportService`] works with.
#[derive(Clone)]
pub struct ReportPorts {
    pub catalog: Arc<dyn ReportCatalog>,
    /// The snapshot rows of every report, through the cache: a built-in report is read as the
    /// rollup it is.
    pub reads: CachedReads,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ReportService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportService")
            .field("max_range_days", &self.max_range_days)
            .finish_non_exhaustive()
    }
}

impl ReportService {
    /// A service over `ports`; ranges longer than `max_range_days` are refused.
    pub fn new(ports: ReportPorts, max_range_days: u32) -> Self {
        Self {
            catalog: ports.catalog,
            reads: ports.reads,
            clock: ports.clock,
            max_range_days,
        }
    }

    /// The public reports matching `query`.
    ///
    /// # Errors
    /// [`ReportError::Unavailable`] or [`ReportError::Unexpected`] when the catalog fails.
    #[tracing::instrument(skip_all, err)]
    pub async fn list(&self, query: &CatalogQuery) -> Result<Page<ReportDefinition>, ReportError> {
        Ok(self.catalog.list_public(query).await?)
    }

    /// One listing of the public reports and `defined` (the reports of the caller's tenant it
    /// may see), each matched, sorted and paged as `query` says, as the catalog is: ties, and
    /// every sort, end on the slug compared bytewise.
    ///
    /// # Errors
    /// [`ReportError::Unavailable`] or [`ReportError::Unexpected`] when the catalog fails.
    #[tracing::instrument(skip_all, err)]
    pub async fn list_with(
        &self,
        query: &CatalogQuery,
        defined: Vec<StoredRollup>,
    ) -> Result<Page<CatalogEntry>, ReportError> {
        let mut entries = Vec::new();
        // Every matching public report: the built-ins, a handful.
        loop {
            let page = PageRequest::new(domain::pagination::MAX_LIMIT, entries.len() as u64);
            let public = self.catalog.list_public(&query.with_page(page)).await?;
            let fetched = public.items.len();
            entries.extend(public.items.into_iter().map(CatalogEntry::BuiltIn));
            if fetched == 0 || entries.len() as u64 >= public.total {
                break;
            }
        }
        entries.extend(
            defined
                .into_iter()
                .filter(|stored| {
                    query.matches_text(
                        stored.definition.slug.as_str(),
                        stored.definition.name.as_str(),
                    )
                })
                .map(CatalogEntry::Defined),
        );
        entries.sort_by(|a, b| query.compare(a, b));
        let total = entries.len() as u64;
        Ok(Page::new(query.page.slice(entries), total, query.page))
    }

    /// The public report called `slug`.
    ///
    /// # Errors
    /// [`ReportError::NotFound`] when there is no such public report, including a malformed slug.
    #[tracing::instrument(skip_all, fields(slug = %slug), err(level = "info"))]
    pub async fn get(&self, slug: &str) -> Result<ReportDefinition, ReportError> {
        let not_found = || ReportError::NotFound(slug.to_owned());
        let parsed = ReportSlug::parse(slug).map_err(|_| not_found())?;
        match self.catalog.get(&parsed).await? {
            Some(report) if report.is_public => Ok(report),
            _ => Err(not_found()),
        }
    }

    /// Runs the report `slug` for `params`: parses them against the report's definition, then
    /// serves the result from the cache or, on a miss, from the snapshots (and caches it).
    ///
    /// # Errors
    /// [`ReportError::NotFound`] for an unknown report, [`ReportError::Invalid`] for a bad
    /// parameter, [`ReportError::Unavailable`] when the snapshots cannot be read. Cache failures
    /// are never errors: the result is then served from the snapshots.
    #[tracing::instrument(skip_all, fields(slug = %slug), err(level = "info"))]
    pub async fn run(
        &self,
        tenant: TenantId,
        slug: &str,
        params: &RunReportParams,
    ) -> Result<ReportResult, ReportError> {
        let started = Instant::now();
        let report = self.get(slug).await?;
        let kind = ReportKind::from_slug(&report.slug)
            .ok_or_else(|| ReportError::NotFound(slug.to_owned()))?;
        let now = self.clock.now();
        let query = params.parse(tenant, &report, kind, now.date(), self.max_range_days)?;

        let mut served = self
            .reads
            .read(&query.rollup_query(), report.cache_ttl_seconds)
            .await?;
        let read = ReadInfo::of(&mut served, elapsed_ms(started));
        Ok(ReportResult {
            report_slug: report.slug,
            window: query.window,
            range: query.range,
            breakdown: query.breakdown,
            page: query.page,
            rows: builtin_rows(&query, served.page.rows.iter().cloned())?,
            read,
        })
    }

    /// Whether a hit served on `basis` would be served alike now (see
    /// [`CachedReads::still_holds`]).
    pub async fn still_holds(&self, basis: &HitBasis) -> bool {
        self.reads.still_holds(basis).await
    }
}

/// Milliseconds since `started`, to the microsecond: the `execution_ms` of a result.
pub fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

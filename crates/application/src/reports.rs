//! Report listing and execution: the read path, served from snapshots through the cache.

use std::{sync::Arc, time::Duration, time::Instant};

use domain::{
    Breakdown, CatalogQuery, DateRange, DimensionFilter, Listed, Page, PageRequest,
    ReportDefinition, ReportKind, ReportQuery, ReportRow, ReportSlug, SnapshotPage, TenantId,
    ValidationError, Window,
    dates::{format_date, parse_date},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::{Date, OffsetDateTime};
use tracing::warn;

use crate::digest::sha256_hex;
use crate::ports::{
    CacheKey, CacheVersions, Clock, ReportCatalog, ResponseCache, RollupStore, SourceSystem,
    StoreError, StoredRollup,
};

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
    pub generated_at: OffsetDateTime,
    pub rows: ReportRows,
    pub total_rows: u64,
    pub cache_hit: bool,
    pub execution_ms: f64,
    pub source_system: SourceSystem,
    /// The cache version the result belongs to; `None` when the versions could not be read.
    pub snapshot_version: Option<u64>,
    pub last_refreshed_at: Option<OffsetDateTime>,
    /// Events dated in the range were ingested after the newest snapshot row read was computed
    /// (as of `generated_at`): a recompute would change the result.
    pub stale: bool,
    /// On a cache hit, what the result rests on: see [`HitBasis`]. `None` on a miss.
    pub basis: Option<HitBasis>,
}

/// What a cache hit rests on besides the request itself: the report's cache version, the UTC
/// day the parameters were resolved on (a range without dates ends today), and a time after
/// which it is not vouched for: the cached result's `generated_at` plus the report's TTL (the
/// entry itself lives at least that long, since it was written after `generated_at`), but at
/// most [`HIT_BASIS_LIFETIME`] after the hit, since the report's definition was read for it.
///
/// While all of these still hold ([`ReportService::still_holds`]), the same request by the same
/// tenant gets the same result, every field but `execution_ms` alike. A caller may keep the form
/// it served a hit in and serve it again after asking, instead of running the report again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitBasis {
    tenant: TenantId,
    slug: ReportSlug,
    version: u64,
    day: Date,
    until: OffsetDateTime,
}

/// How long a hit vouches for the definition it read. Definitions are held in process for a
/// minute (see [`CachedCatalog`](crate::CachedCatalog)), so every process sees a change
/// within a minute anyway; a kept hit adds at most this much to that.
pub const HIT_BASIS_LIFETIME: time::Duration = time::Duration::SECOND;

impl HitBasis {
    /// A hit of `slug` for `tenant` at cache `version`, resolved on `day`, vouched for until
    /// `until`. The service builds these for its hits; holding one grants nothing, since
    /// [`ReportService::still_holds`] checks it against the current state.
    pub fn new(
        tenant: TenantId,
        slug: ReportSlug,
        version: u64,
        day: Date,
        until: OffsetDateTime,
    ) -> Self {
        Self {
            tenant,
            slug,
            version,
            day,
            until,
        }
    }
}

/// The rows of a result: as read from the snapshots, or as the JSON array the API serves,
/// straight from a cache entry (a hit neither decodes nor re-encodes its rows).
#[derive(Debug, Clone)]
pub enum ReportRows {
    Decoded(Vec<ReportRow>),
    Rendered {
        /// A JSON array of rows, as [`ReportRow`] serializes them.
        json: Arc<RawValue>,
        len: usize,
    },
}

impl ReportRows {
    /// How many rows there are.
    pub fn len(&self) -> usize {
        match self {
            ReportRows::Decoded(rows) => rows.len(),
            ReportRows::Rendered { len, .. } => *len,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows, decoded if need be.
    ///
    /// # Errors
    /// When rendered rows are not rows (an entry this service wrote always decodes).
    pub fn to_rows(&self) -> serde_json::Result<Vec<ReportRow>> {
        match self {
            ReportRows::Decoded(rows) => Ok(rows.clone()),
            ReportRows::Rendered { json, .. } => serde_json::from_str(json.get()),
        }
    }
}

impl Serialize for ReportRows {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ReportRows::Decoded(rows) => rows.serialize(serializer),
            ReportRows::Rendered { json, .. } => json.serialize(serializer),
        }
    }
}

/// Rows that do not decode equal nothing.
impl PartialEq for ReportRows {
    fn eq(&self, other: &Self) -> bool {
        matches!((self.to_rows(), other.to_rows()), (Ok(a), Ok(b)) if a == b)
    }
}

impl PartialEq<Vec<ReportRow>> for ReportRows {
    fn eq(&self, other: &Vec<ReportRow>) -> bool {
        self.to_rows().is_ok_and(|rows| &rows == other)
    }
}

/// What the cache holds for one result: everything that does not depend on how it was served.
#[derive(Debug)]
struct CachedResult {
    generated_at: OffsetDateTime,
    rows: ReportRows,
    total_rows: u64,
    last_refreshed_at: Option<OffsetDateTime>,
    stale: bool,
}

/// How a [`CachedResult`] is stored: times as Unix nanoseconds and the rows as the API serves
/// them, so that a hit parses no dates and decodes no rows. `R` is the rows when writing and
/// their raw JSON when reading.
#[derive(Serialize, Deserialize)]
struct StoredResult<R> {
    generated_at: i128,
    rows: R,
    row_count: usize,
    total_rows: u64,
    last_refreshed_at: Option<i128>,
    stale: bool,
}

impl CachedResult {
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&StoredResult {
            generated_at: self.generated_at.unix_timestamp_nanos(),
            rows: &self.rows,
            row_count: self.rows.len(),
            total_rows: self.total_rows,
            last_refreshed_at: self
                .last_refreshed_at
                .map(OffsetDateTime::unix_timestamp_nanos),
            stale: self.stale,
        })
    }

    fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let stored: StoredResult<Box<RawValue>> = serde_json::from_slice(bytes)?;
        let instant = |nanos: i128| {
            OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .map_err(|err| anyhow::anyhow!("a stored time is out of range: {err}"))
        };
        anyhow::ensure!(
            stored.rows.get().starts_with('['),
            "the stored rows are not an array"
        );
        Ok(Self {
            generated_at: instant(stored.generated_at)?,
            rows: ReportRows::Rendered {
                json: Arc::from(stored.rows),
                len: stored.row_count,
            },
            total_rows: stored.total_rows,
            last_refreshed_at: stored.last_refreshed_at.map(instant).transpose()?,
            stale: stored.stale,
        })
    }
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
    let rows = page
        .rows
        .into_iter()
        .map(|row| {
            ReportRow::from_rollup(query.kind, query.breakdown, row).ok_or_else(|| {
                StoreError::Unexpected(anyhow::anyhow!(
                    "a snapshot row of {} lacks a column of its {} shape",
                    query.kind.slug(),
                    query.breakdown
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(SnapshotPage {
        rows,
        total_rows: page.total_rows,
        last_refreshed_at: page.last_refreshed_at,
        changed_at: page.changed_at,
    })
}

/// Lists reports and runs them from snapshots, through the versioned response cache.
#[derive(Clone)]
pub struct ReportService {
    catalog: Arc<dyn ReportCatalog>,
    snapshots: Arc<dyn RollupStore>,
    cache: Arc<dyn ResponseCache>,
    versions: Arc<dyn CacheVersions>,
    clock: Arc<dyn Clock>,
    max_range_days: u32,
}

/// The ports a [`ReportService`] works with.
#[derive(Clone)]
pub struct ReportPorts {
    pub catalog: Arc<dyn ReportCatalog>,
    /// The snapshot rows of every report: a built-in report is read as the rollup it is.
    pub snapshots: Arc<dyn RollupStore>,
    pub cache: Arc<dyn ResponseCache>,
    pub versions: Arc<dyn CacheVersions>,
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
            snapshots: ports.snapshots,
            cache: ports.cache,
            versions: ports.versions,
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

        let version = match self.versions.current(tenant, &report.slug).await {
            Ok(version) => Some(version),
            Err(err) => {
                warn!(error = %err, "cache versions unavailable; reading snapshots directly");
                None
            }
        };
        let cacheable = report.cache_ttl_seconds > 0;
        let key = version
            .filter(|_| cacheable)
            .map(|version| CacheKey::report(tenant, &report.slug, version, &params_hash(&query)));

        if let Some(key) = &key
            && let Some(version) = version
            && let Some(cached) = self.cached(key).await
        {
            let ttl = time::Duration::seconds(i64::from(report.cache_ttl_seconds));
            let basis = HitBasis::new(
                tenant,
                report.slug.clone(),
                version,
                now.date(),
                (cached.generated_at + ttl).min(now + HIT_BASIS_LIFETIME),
            );
            return Ok(ReportResult {
                report_slug: report.slug,
                window: query.window,
                range: query.range,
                breakdown: query.breakdown,
                page: query.page,
                generated_at: cached.generated_at,
                rows: cached.rows.clone(),
                total_rows: cached.total_rows,
                cache_hit: true,
                execution_ms: elapsed_ms(started),
                source_system: self.cache.system(),
                snapshot_version: Some(version),
                last_refreshed_at: cached.last_refreshed_at,
                stale: cached.stale,
                basis: Some(basis),
            });
        }

        let page = read_builtin(self.snapshots.as_ref(), &query).await?;
        let stale = page.is_stale();
        let fresh = CachedResult {
            generated_at: self.clock.now(),
            rows: ReportRows::Decoded(page.rows),
            total_rows: page.total_rows,
            last_refreshed_at: page.last_refreshed_at,
            stale,
        };
        if let Some(key) = &key {
            self.write_cache(
                key,
                &fresh,
                Duration::from_secs(u64::from(report.cache_ttl_seconds)),
            )
            .await;
        }
        Ok(ReportResult {
            report_slug: report.slug,
            window: query.window,
            range: query.range,
            breakdown: query.breakdown,
            page: query.page,
            generated_at: fresh.generated_at,
            rows: fresh.rows,
            total_rows: fresh.total_rows,
            cache_hit: false,
            execution_ms: elapsed_ms(started),
            source_system: self.snapshots.system(),
            snapshot_version: version,
            last_refreshed_at: fresh.last_refreshed_at,
            stale: fresh.stale,
            basis: None,
        })
    }

    /// Whether a hit served on `basis` would be served alike now: its time is not up, the UTC
    /// day is the same and the report's cache version has not moved. Costs a clock read and,
    /// while the process knows the version without asking ([`CacheVersions::known`]), one
    /// lookup in memory; a version that cannot be read counts as moved.
    pub async fn still_holds(&self, basis: &HitBasis) -> bool {
        let now = self.clock.now();
        if now >= basis.until || now.date() != basis.day {
            return false;
        }
        let version = match self.versions.known(basis.tenant, &basis.slug) {
            Some(version) => Ok(version),
            None => self.versions.current(basis.tenant, &basis.slug).await,
        };
        matches!(version, Ok(version) if version == basis.version)
    }

    /// The result cached under `key`: the decoded form the cache holds for it in this process
    /// if any, else the stored value, decoded and handed to the cache to hold.
    async fn cached(&self, key: &CacheKey) -> Option<Arc<CachedResult>> {
        if let Some(held) = self
            .cache
            .held(key)
            .and_then(|decoded| decoded.downcast::<CachedResult>().ok())
        {
            return Some(held);
        }
        let cached = Arc::new(self.read_cache(key).await?);
        self.cache.hold(key, cached.clone());
        Some(cached)
    }

    async fn read_cache(&self, key: &CacheKey) -> Option<CachedResult> {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => match CachedResult::decode(&bytes) {
                Ok(cached) => Some(cached),
                Err(err) => {
                    warn!(error = %err, "unreadable cache entry; serving from snapshots");
                    None
                }
            },
            Ok(None) => None,
            Err(err) => {
                warn!(error = %err, "response cache unavailable; serving from snapshots");
                None
            }
        }
    }

    async fn write_cache(&self, key: &CacheKey, result: &CachedResult, ttl: Duration) {
        let bytes = match result.encode() {
            Ok(bytes) => bytes,
            Err(err) => {
                warn!(error = %err, "could not serialize a report result for the cache");
                return;
            }
        };
        if let Err(err) = self.cache.put(key, bytes, ttl).await {
            warn!(error = %err, "response cache unavailable; result not cached");
        }
    }
}

/// The layout of cache entries ([`StoredResult`]), hashed into every key: entries written
/// by a process that stores another layout are never read, during a rolling upgrade either.
const ENTRY_FORMAT: u32 = 2;

/// The SHA-256 (hex) of the normalized parameters of `query`: every parameter resolved to its
/// effective value and written in a fixed order, so equivalent requests share one entry.
pub fn params_hash(query: &ReportQuery) -> String {
    let filter = query.filter.as_ref().map_or("", DimensionFilter::value);
    let normalized = format!(
        "format={ENTRY_FORMAT}&window={}&date_from={}&date_to={}&breakdown={}&filter={}&limit={}&offset={}",
        query.window,
        format_date(query.range.from()),
        format_date(query.range.to()),
        query.breakdown,
        filter,
        query.page.limit(),
        query.page.offset(),
    );
    sha256_hex(normalized.as_bytes())
}

/// Milliseconds since `started`, to the microsecond: the `execution_ms` of a result.
pub fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

//! The JSON shapes of the API's data, converted from domain and application types.
//!
//! These types exist so that the wire format and its OpenAPI schema are owned here: the domain
//! and application crates stay free of `utoipa`, and a field added to a domain type does not
//! reach clients until it is added to its DTO on purpose (run records never expose their lock
//! token, for example).

use std::sync::Arc;

use application::{
    HealthReport, OverallStatus, ReportResult, RollupChange, RollupResult,
    ports::{DependencyStatus, SourceSystem, StoredRollup},
};
use domain::{
    AuditAction, AuditEntry, Breakdown, EventSource, IngestOutcome, IngestStatus, MeasureKind,
    RecomputeRun, ReportDefinition, RollupOrder, RunStatus, RunSummary, Window, WindowDefinition,
    dates::format_date,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// A report window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowDto {
    Hour,
    Day,
    Week,
    Month,
}

impl From<Window> for WindowDto {
    fn from(window: Window) -> Self {
        match window {
            Window::Hour => WindowDto::Hour,
            Window::Day => WindowDto::Day,
            Window::Week => WindowDto::Week,
            Window::Month => WindowDto::Month,
        }
    }
}

/// How the rows of a report result are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakdownDto {
    Period,
    Source,
    Status,
    EntityId,
}

impl From<Breakdown> for BreakdownDto {
    fn from(breakdown: Breakdown) -> Self {
        match breakdown {
            Breakdown::Period => BreakdownDto::Period,
            Breakdown::Source => BreakdownDto::Source,
            Breakdown::Status => BreakdownDto::Status,
            Breakdown::EntityId => BreakdownDto::EntityId,
        }
    }
}

/// A window a report may be read in, with its operational settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WindowDefinitionDto {
    pub window: WindowDto,
    /// How far back snapshots of this window are kept.
    pub retention_days: u32,
    /// How often this window is meant to be refreshed.
    pub refresh_interval_minutes: u32,
    pub is_default: bool,
}

impl From<WindowDefinition> for WindowDefinitionDto {
    fn from(definition: WindowDefinition) -> Self {
        Self {
            window: definition.window.into(),
            retention_days: definition.retention_days,
            refresh_interval_minutes: definition.refresh_interval_minutes,
            is_default: definition.is_default,
        }
    }
}

/// A report of the catalog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportDto {
    #[schema(example = "volume-by-period")]
    pub slug: String,
    pub name: String,
    pub description: String,
    /// How long a result may be served from the cache; 0 disables caching.
    pub cache_ttl_seconds: u32,
    pub default_window: WindowDto,
    pub allowed_windows: Vec<WindowDefinitionDto>,
    /// The breakdowns and filters the report accepts, e.g.
    /// `{"breakdown": ["period", "source"], "filters": ["source"]}`.
    #[schema(value_type = Object)]
    pub supported_filters: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<ReportDefinition> for ReportDto {
    fn from(report: ReportDefinition) -> Self {
        Self {
            slug: report.slug.to_string(),
            name: report.name,
            description: report.description,
            cache_ttl_seconds: report.cache_ttl_seconds,
            default_window: report.default_window.into(),
            allowed_windows: report.windows.into_iter().map(Into::into).collect(),
            supported_filters: report.supported_filters,
            updated_at: report.updated_at,
        }
    }
}

/// The system that answered a report read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceSystemDto {
    Postgres,
    Redis,
    Memory,
}

impl From<SourceSystem> for SourceSystemDto {
    fn from(system: SourceSystem) -> Self {
        match system {
            SourceSystem::Postgres => SourceSystemDto::Postgres,
            SourceSystem::Redis => SourceSystemDto::Redis,
            SourceSystem::Memory => SourceSystemDto::Memory,
        }
    }
}

/// One row of a report result; which shape depends on the report and its breakdown.
///
/// This is the documented schema of `domain::ReportRow`, which is serialized as it is. Each
/// shape is closed (no other property), so a row matches exactly one of them.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ReportRowSchema {
    PeriodSource(PeriodSourceRow),
    PeriodStatus(PeriodStatusRow),
    Period(PeriodRow),
    Status(StatusRow),
    Entity(EntityRow),
}

/// volume-by-period with `breakdown=source`, ordered by date then source.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodSourceRow {
    #[schema(value_type = String, format = Date)]
    pub bucket_date: String,
    pub source: String,
    pub event_count: i64,
}

/// status-counts with `breakdown=period`, ordered by date then status.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodStatusRow {
    #[schema(value_type = String, format = Date)]
    pub bucket_date: String,
    pub status: String,
    pub event_count: i64,
}

/// volume-by-period totals, ordered by date.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodRow {
    #[schema(value_type = String, format = Date)]
    pub bucket_date: String,
    pub event_count: i64,
}

/// status-counts totals, ordered by count descending then status.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRow {
    pub status: String,
    pub event_count: i64,
}

/// top-entities, ordered by count descending then entity id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRow {
    pub entity_id: String,
    pub event_count: i64,
}

/// The rows of a report read, rendered as the JSON array the API serves, once: a kept hit
/// (see [`replay`](crate::replay)) is served again without rendering its rows again.
#[derive(Debug, Clone)]
pub struct RenderedRows {
    json: Arc<serde_json::value::RawValue>,
    len: usize,
}

impl RenderedRows {
    /// `rows`, rendered.
    ///
    /// # Errors
    /// When a row cannot be rendered as JSON.
    pub fn render<T: Serialize>(rows: &[T]) -> serde_json::Result<Self> {
        Ok(Self {
            json: Arc::from(serde_json::value::to_raw_value(rows)?),
            len: rows.len(),
        })
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rendered array.
    pub fn json(&self) -> &str {
        self.json.get()
    }
}

impl Serialize for RenderedRows {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// What every report read carries beside its rows: what was read, when, from where, and how
/// fresh it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadDto {
    pub report_slug: String,
    pub window: WindowDto,
    /// The first day of the range, inclusive (YYYY-MM-DD, UTC).
    #[schema(format = Date, example = "2026-01-01")]
    pub date_from: String,
    /// The last day of the range, inclusive (YYYY-MM-DD, UTC).
    #[schema(format = Date, example = "2026-01-30")]
    pub date_to: String,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// How many rows this page holds.
    pub row_count: usize,
    /// How many rows the whole result has.
    pub total_rows: u64,
    pub cache_hit: bool,
    /// How long the read took on the server, in milliseconds.
    pub execution_ms: f64,
    pub source_system: SourceSystemDto,
    /// The report's cache version the result belongs to; null when it could not be read.
    pub snapshot_version: Option<u64>,
    /// When the newest snapshot row read was computed; null when no row was read.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refreshed_at: Option<OffsetDateTime>,
    /// Some event dated in the range is not counted yet (as of `generated_at`): a refresh
    /// would change the result.
    pub stale: bool,
    /// How long the oldest change the result does not count had waited at `generated_at`, in
    /// seconds; 0 when it counts every event.
    pub lag_seconds: u64,
}

impl ReadDto {
    /// What a read of `slug` in `window` over `range`, giving `row_count` rows, carries.
    fn new(
        slug: &domain::ReportSlug,
        window: Window,
        range: domain::DateRange,
        row_count: usize,
        read: &application::read_cache::ReadInfo,
    ) -> Self {
        Self {
            report_slug: slug.to_string(),
            window: window.into(),
            date_from: format_date(range.from()),
            date_to: format_date(range.to()),
            generated_at: read.generated_at,
            row_count,
            total_rows: read.total_rows,
            cache_hit: read.cache_hit,
            execution_ms: read.execution_ms,
            source_system: read.source_system.into(),
            snapshot_version: read.snapshot_version,
            last_refreshed_at: read.last_refreshed_at,
            stale: read.stale,
            lag_seconds: read.lag_seconds(),
        }
    }
}

/// A built-in report's result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportRunDto {
    #[serde(flatten)]
    pub read: ReadDto,
    #[schema(value_type = Vec<ReportRowSchema>)]
    pub rows: RenderedRows,
    pub breakdown: BreakdownDto,
}

impl TryFrom<ReportResult> for ReportRunDto {
    type Error = serde_json::Error;

    fn try_from(result: ReportResult) -> serde_json::Result<Self> {
        Ok(Self {
            read: ReadDto::new(
                &result.report_slug,
                result.window,
                result.range,
                result.rows.len(),
                &result.read,
            ),
            rows: RenderedRows::render(&result.rows)?,
            breakdown: result.breakdown.into(),
        })
    }
}

/// Where a recompute run is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatusDto {
    Pending,
    Running,
    Completed,
    Failed,
}

impl From<RunStatus> for RunStatusDto {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Pending => RunStatusDto::Pending,
            RunStatus::Running => RunStatusDto::Running,
            RunStatus::Completed => RunStatusDto::Completed,
            RunStatus::Failed => RunStatusDto::Failed,
        }
    }
}

/// What a completed run did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunSummaryDto {
    pub rows_deleted: u64,
    pub rows_inserted: u64,
    pub bucket_count: u32,
    /// The first day rebuilt: the requested start widened to its bucket.
    #[schema(format = Date)]
    pub effective_date_from: String,
    /// The last day rebuilt: the requested end widened to its bucket.
    #[schema(format = Date)]
    pub effective_date_to: String,
    /// Events whose value for a rollup's `sum` of a property was not an integer, so not added
    /// (0 for the built-in reports).
    pub values_skipped: u64,
    /// An incremental run's rebuilt buckets and why, oldest first, at most 100 (`bucket_count`
    /// counts them all); absent for a full run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rebuilt: Vec<RebuiltBucketDto>,
}

/// A bucket an incremental run rebuilt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RebuiltBucketDto {
    /// The bucket's first day (an hour bucket's day: its hours are rebuilt together).
    #[schema(format = Date)]
    pub bucket_start: String,
    /// Why it was dirty: `events` (new or late events) or `definition` (the report changed).
    #[schema(example = "events")]
    pub reason: String,
    /// When the oldest change it did not count was committed.
    #[serde(with = "time::serde::rfc3339")]
    pub marked_at: OffsetDateTime,
}

impl From<RunSummary> for RunSummaryDto {
    fn from(summary: RunSummary) -> Self {
        Self {
            rebuilt: summary
                .rebuilt
                .iter()
                .map(|b| RebuiltBucketDto {
                    bucket_start: format_date(b.bucket_start),
                    reason: b.reason.as_str().to_owned(),
                    marked_at: b.first_marked_at,
                })
                .collect(),
            rows_deleted: summary.rows_deleted,
            rows_inserted: summary.rows_inserted,
            bucket_count: summary.bucket_count,
            effective_date_from: format_date(summary.effective_date_from),
            effective_date_to: format_date(summary.effective_date_to),
            values_skipped: summary.values_skipped,
        }
    }
}

/// A recompute run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunDto {
    pub id: Uuid,
    pub report_slug: String,
    pub window: WindowDto,
    /// `full` or `incremental`.
    #[schema(example = "full")]
    pub mode: String,
    /// The requested first day, inclusive.
    #[schema(format = Date)]
    pub date_from: String,
    /// The requested last day, inclusive.
    #[schema(format = Date)]
    pub date_to: String,
    pub requested_by: String,
    pub status: RunStatusDto,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub error_message: Option<String>,
    /// Set once the run completed.
    pub summary: Option<RunSummaryDto>,
}

impl From<RecomputeRun> for RunDto {
    fn from(run: RecomputeRun) -> Self {
        Self {
            id: run.id.as_uuid(),
            report_slug: run.report_slug.to_string(),
            window: run.window.into(),
            mode: run.mode.as_str().to_owned(),
            date_from: format_date(run.range.from()),
            date_to: format_date(run.range.to()),
            requested_by: run.requested_by.to_string(),
            status: run.status.into(),
            requested_at: run.requested_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            error_message: run.error_message,
            summary: run.summary.map(Into::into),
        }
    }
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum AuditActionDto {
    #[serde(rename = "recompute.triggered")]
    RecomputeTriggered,
    #[serde(rename = "recompute.completed")]
    RecomputeCompleted,
    #[serde(rename = "recompute.failed")]
    RecomputeFailed,
    #[serde(rename = "source.created")]
    SourceCreated,
    #[serde(rename = "report.created")]
    ReportCreated,
    #[serde(rename = "report.updated")]
    ReportUpdated,
    #[serde(rename = "report.deleted")]
    ReportDeleted,
    #[serde(rename = "snapshots.expired")]
    SnapshotsExpired,
    #[serde(rename = "events.purged")]
    EventsPurged,
}

impl From<AuditAction> for AuditActionDto {
    fn from(action: AuditAction) -> Self {
        match action {
            AuditAction::RecomputeTriggered => AuditActionDto::RecomputeTriggered,
            AuditAction::RecomputeCompleted => AuditActionDto::RecomputeCompleted,
            AuditAction::RecomputeFailed => AuditActionDto::RecomputeFailed,
            AuditAction::SourceCreated => AuditActionDto::SourceCreated,
            AuditAction::ReportCreated => AuditActionDto::ReportCreated,
            AuditAction::ReportUpdated => AuditActionDto::ReportUpdated,
            AuditAction::ReportDeleted => AuditActionDto::ReportDeleted,
            AuditAction::SnapshotsExpired => AuditActionDto::SnapshotsExpired,
            AuditAction::EventsPurged => AuditActionDto::EventsPurged,
        }
    }
}

/// An entry of the audit trail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntryDto {
    pub id: i64,
    pub actor: String,
    pub action: AuditActionDto,
    #[schema(example = "recompute_run")]
    pub resource_type: String,
    pub resource_id: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<AuditEntry> for AuditEntryDto {
    fn from(entry: AuditEntry) -> Self {
        Self {
            id: entry.id,
            actor: entry.actor.to_string(),
            action: entry.action.into(),
            resource_type: entry.resource_type,
            resource_id: entry.resource_id,
            metadata: entry.metadata,
            created_at: entry.created_at,
        }
    }
}

/// The overall health of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatusDto {
    Ok,
    Degraded,
}

/// The health of one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DependencyStatusDto {
    Ok,
    Unavailable,
    /// The process was started without this dependency; not a failure.
    NotConfigured,
}

impl From<DependencyStatus> for DependencyStatusDto {
    fn from(status: DependencyStatus) -> Self {
        match status {
            DependencyStatus::Ok => DependencyStatusDto::Ok,
            DependencyStatus::Unavailable => DependencyStatusDto::Unavailable,
            DependencyStatus::NotConfigured => DependencyStatusDto::NotConfigured,
        }
    }
}

/// The health of each dependency.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DependenciesDto {
    pub postgres: DependencyStatusDto,
    pub redis: DependencyStatusDto,
}

/// The health of the service and its dependencies.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthDto {
    pub status: HealthStatusDto,
    #[schema(example = "pg-analytics")]
    pub service: String,
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub dependencies: DependenciesDto,
}

impl HealthDto {
    /// The health report of `service`.
    pub fn new(report: HealthReport, service: &str) -> Self {
        Self {
            status: match report.status {
                OverallStatus::Ok => HealthStatusDto::Ok,
                OverallStatus::Degraded => HealthStatusDto::Degraded,
            },
            service: service.to_owned(),
            version: report.version,
            timestamp: report.timestamp,
            dependencies: DependenciesDto {
                postgres: report.postgres.into(),
                redis: report.redis.into(),
            },
        }
    }
}

/// The body of a recompute trigger as it is read. Every field is optional at the type level so
/// that the service, not the deserializer, decides what is missing and reports it on its field;
/// [`TriggerSchema`] documents it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    pub report_slug: Option<String>,
    pub window: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub mode: Option<String>,
    pub requested_by: Option<String>,
}

/// The body of a recompute trigger. Besides what the schema says: `date_from` must not be
/// after `date_to`, and the range may span at most `MAX_REPORT_RANGE_DAYS` (366) days.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSchema {
    /// The report to recompute.
    #[schema(schema_with = crate::openapi::report_slug_schema)]
    pub report_slug: String,
    /// `day` (default) or `week`, in any case.
    #[schema(schema_with = crate::openapi::nullable_window_schema)]
    pub window: Option<String>,
    /// First day, inclusive (YYYY-MM-DD); default: 29 days before `date_to`.
    #[schema(schema_with = crate::openapi::nullable_date_schema)]
    pub date_from: Option<String>,
    /// Last day, inclusive (YYYY-MM-DD); default: today (UTC).
    #[schema(schema_with = crate::openapi::nullable_date_schema)]
    pub date_to: Option<String>,
    /// `full` (default: every bucket of the range) or `incremental` (only the buckets of the
    /// range whose events or definition changed since they were built), in any case.
    #[schema(schema_with = crate::openapi::nullable_mode_schema)]
    pub mode: Option<String>,
    /// Who asked; default: the `X-Actor` header, else the caller.
    #[schema(schema_with = crate::openapi::nullable_actor_schema)]
    pub requested_by: Option<String>,
}

/// An event source of a tenant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceDto {
    #[schema(example = "stripe")]
    pub slug: String,
    #[schema(example = "Stripe")]
    pub provider_name: String,
    pub description: String,
    /// Only events of active sources are accepted.
    pub is_active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<EventSource> for SourceDto {
    fn from(source: EventSource) -> Self {
        Self {
            slug: source.slug.to_string(),
            provider_name: source.provider_name,
            description: source.description,
            is_active: source.is_active,
            created_at: source.created_at,
        }
    }
}

/// The body of `POST /sources` as it is read. Fields are optional at the type level so that
/// the service reports what is missing on its field; [`SourceSchema`] documents it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceBody {
    pub slug: Option<String>,
    pub provider_name: Option<String>,
    pub description: Option<String>,
}

/// The body of `POST /sources`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSchema {
    /// The source's slug.
    #[schema(schema_with = crate::openapi::source_schema)]
    pub slug: String,
    /// A display name (default: the slug), 1 to 200 characters.
    #[schema(schema_with = crate::openapi::nullable_name_schema)]
    pub provider_name: Option<String>,
    /// At most 1,000 characters (default empty); line breaks and tabs are the only control
    /// characters allowed.
    #[schema(schema_with = crate::openapi::nullable_description_schema)]
    pub description: Option<String>,
}

/// The status of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStatusDto {
    Success,
    Failed,
    Pending,
}

/// An event, as producers send it. The server validates the raw JSON itself, so that every
/// offending field is reported at once; this type only documents the shape. Each field may come
/// under one of its names (ours first, then the Segment Track spec's and earlier shapes'), never
/// two of them. Besides what the schema says: `occurred_at` (or `timestamp`) is required, at
/// most 5 minutes in the future and not older than the longest retention of any report window;
/// `source` must be one of the tenant's active sources (see `GET /sources`; absent, the tenant's
/// `default` source); `event_id` must equal the `Idempotency-Key` header when both are sent;
/// `channel`, `campaign_id`, `tags`, `context` and an `anonymousId` beside a `userId` are stored
/// in `properties` under their own names, which must not be keys of it already; `properties`,
/// with them, is at most 16 KiB of JSON without the character U+0000.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct EventSchema {
    /// The idempotency key when no `Idempotency-Key` header is sent (with the header, it must
    /// be equal to it); without either, the server assigns one. 1 to 128 characters.
    #[schema(schema_with = crate::openapi::nullable_id_schema)]
    pub event_id: Option<String>,
    /// Segment's name of `event_id`.
    #[schema(schema_with = crate::openapi::nullable_id_schema)]
    pub messageId: Option<String>,
    /// What happened, 1 to 128 characters (default `event`).
    #[schema(schema_with = crate::openapi::nullable_event_name_schema)]
    pub event_name: Option<String>,
    /// Segment's name of `event_name`.
    #[schema(schema_with = crate::openapi::nullable_event_name_schema)]
    pub event: Option<String>,
    /// Who did it, 1 to 128 characters: the subject of distinct counts.
    #[schema(schema_with = crate::openapi::nullable_user_schema)]
    pub user_id: Option<String>,
    /// Segment's name of `user_id`.
    #[schema(schema_with = crate::openapi::nullable_user_schema)]
    pub userId: Option<String>,
    /// Segment's visitor id: the `user_id` when no `userId` is sent, else kept in `properties`.
    #[schema(schema_with = crate::openapi::nullable_user_schema)]
    pub anonymousId: Option<String>,
    /// A source of the tenant (default `default`).
    #[schema(schema_with = crate::openapi::nullable_source_schema)]
    pub source: Option<String>,
    /// The thing the event is about, 1 to 128 characters; reports by entity skip events
    /// without one.
    #[schema(schema_with = crate::openapi::nullable_id_schema)]
    pub entity_id: Option<String>,
    /// The event's outcome; reports by status skip events without one.
    #[schema(schema_with = crate::openapi::nullable_status_value_schema)]
    pub status: Option<String>,
    /// When it happened: RFC 3339, or integer Unix seconds. Required, as this or `timestamp`.
    #[schema(schema_with = crate::openapi::event_time_schema)]
    pub occurred_at: Option<serde_json::Value>,
    /// Segment's name of `occurred_at`.
    #[schema(schema_with = crate::openapi::event_time_schema)]
    pub timestamp: Option<serde_json::Value>,
    /// Non-negative (default 0).
    #[schema(schema_with = crate::openapi::nullable_count_schema)]
    pub processing_ms: Option<i64>,
    /// Non-negative (default 0).
    #[schema(schema_with = crate::openapi::nullable_count_schema)]
    pub amount_cents: Option<i64>,
    /// Free dimensions such as `path` or `channel`: a JSON object (default `{}`).
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Value>,
    /// The first event shape's name of `properties`.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    /// The seed-style name of `properties`.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Stored as `properties.channel`.
    #[schema(value_type = Option<serde_json::Value>)]
    pub channel: Option<serde_json::Value>,
    /// Stored as `properties.campaign_id`.
    #[schema(value_type = Option<serde_json::Value>)]
    pub campaign_id: Option<serde_json::Value>,
    /// Stored as `properties.tags`.
    #[schema(value_type = Option<serde_json::Value>)]
    pub tags: Option<serde_json::Value>,
    /// Segment's context (library, page, device), stored as `properties.context`.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    /// Segment's call type: only `track` calls are events.
    #[schema(schema_with = crate::openapi::call_type_schema)]
    pub r#type: Option<String>,
}

/// The body of `POST /events/bulk`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEventsSchema {
    /// 1 to 1,000 events; if any is invalid, none is stored.
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<EventSchema>,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IngestStatusDto {
    /// Stored now.
    Created,
    /// Received before with the same content: nothing written.
    Duplicate,
    /// Its key was used before for different content: refused.
    Conflict,
}

impl From<IngestStatus> for IngestStatusDto {
    fn from(status: IngestStatus) -> Self {
        match status {
            IngestStatus::Created => IngestStatusDto::Created,
            IngestStatus::Duplicate => IngestStatusDto::Duplicate,
            IngestStatus::Conflict => IngestStatusDto::Conflict,
        }
    }
}

/// A stored (or already stored) event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestedEventDto {
    /// The idempotency key the event is stored under.
    pub event_id: String,
    /// Whether the event had been received before, with the same content.
    pub duplicate: bool,
}

/// The outcome of one item of a bulk request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BulkItemDto {
    /// The item's position in `events`.
    pub index: usize,
    pub event_id: String,
    pub status: IngestStatusDto,
}

/// How many items had each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct IngestCountsDto {
    pub created: usize,
    pub duplicate: usize,
    pub conflict: usize,
}

/// The outcome of a bulk request, item by item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BulkIngestDto {
    /// One per event, in request order.
    pub results: Vec<BulkItemDto>,
    pub counts: IngestCountsDto,
}

impl From<Vec<IngestOutcome>> for BulkIngestDto {
    fn from(outcomes: Vec<IngestOutcome>) -> Self {
        let mut counts = IngestCountsDto::default();
        let results = outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| {
                match outcome.status {
                    IngestStatus::Created => counts.created += 1,
                    IngestStatus::Duplicate => counts.duplicate += 1,
                    IngestStatus::Conflict => counts.conflict += 1,
                }
                BulkItemDto {
                    index,
                    event_id: outcome.event_id,
                    status: outcome.status.into(),
                }
            })
            .collect();
        Self { results, counts }
    }
}

/// A measure of a tenant's report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeasureDto {
    /// What a result row calls it: 1 to 64 of `a-z`, `0-9`, `_`, starting with a letter.
    #[schema(example = "revenue_cents")]
    pub name: String,
    /// `count` (events), `sum` (of `field`) or `distinct` (the number of distinct values of
    /// `field`: exact up to 2,560, then estimated within about 1 %).
    #[schema(example = "sum")]
    pub kind: String,
    /// For a sum: `amount_cents`, `processing_ms` or `properties.<key>`. For a distinct count:
    /// `source`, `status`, `event_name`, `entity_id`, `user_id` or `properties.<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "amount_cents")]
    pub field: Option<String>,
}

/// A dimension of a tenant's report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DimensionDto {
    /// What a result row and a filter parameter call it (default: from the field).
    #[schema(example = "channel")]
    pub name: Option<String>,
    /// `source`, `status`, `event_name`, `entity_id`, `user_id` or `properties.<key>`.
    #[schema(example = "properties.channel")]
    pub field: String,
    /// Events without a value for the field are not counted at all, rather than counted
    /// under null (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// A window of a tenant's report, as sent.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSchema {
    /// `day`, `week` or `month`.
    #[schema(schema_with = crate::openapi::window_schema)]
    pub window: String,
    /// 1 to 1825 (default 365, 730 or 1825 for day, week or month).
    #[schema(minimum = 1, maximum = 1825)]
    pub retention_days: Option<u32>,
    /// 1 to 44640 (default 60, 240 or 1440).
    #[schema(minimum = 1, maximum = 44640)]
    pub refresh_interval_minutes: Option<u32>,
    /// At most one window is the default; without one, the first is.
    pub is_default: Option<bool>,
}

/// The body of `POST /reports` and `PUT /reports/{slug}`: a report defined as data (see
/// docs/reports.md). Every broken rule is a 400 naming its field.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollupSchema {
    /// Required by `POST`; by `PUT`, absent or the slug of the path.
    #[schema(example = "purchases-by-channel")]
    pub slug: Option<String>,
    /// 1 to 200 characters (default: the slug).
    pub name: Option<String>,
    /// At most 1,000 characters.
    pub description: Option<String>,
    /// 1 to 4.
    #[schema(min_items = 1, max_items = 4)]
    pub measures: Vec<MeasureDto>,
    /// 0 to 3, each on another field.
    #[schema(max_items = 3)]
    pub dimensions: Option<Vec<DimensionDto>>,
    /// Field name to value: only events with that value are counted.
    #[schema(value_type = Object, example = json!({"event_name": "purchase"}))]
    pub filters: Option<serde_json::Value>,
    /// 1 to 3 distinct windows (default: `day` alone).
    #[schema(min_items = 1, max_items = 3)]
    pub windows: Option<Vec<WindowSchema>>,
    /// 0 to 86400 (default 60).
    #[schema(maximum = 86400)]
    pub cache_ttl_seconds: Option<u32>,
    pub is_public: Option<bool>,
}

/// A report a tenant defined.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RollupDto {
    #[schema(example = "purchases-by-channel")]
    pub slug: String,
    pub name: String,
    pub description: String,
    pub measures: Vec<MeasureDto>,
    pub dimensions: Vec<DimensionDto>,
    /// Field name to value: only events with that value are counted.
    #[schema(value_type = Object)]
    pub filters: serde_json::Value,
    pub windows: Vec<WindowDefinitionDto>,
    pub cache_ttl_seconds: u32,
    pub is_public: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<StoredRollup> for RollupDto {
    fn from(stored: StoredRollup) -> Self {
        let definition = stored.definition;
        let json = definition.to_json();
        Self {
            slug: definition.slug.to_string(),
            name: definition.name.as_str().to_owned(),
            description: definition.description.as_str().to_owned(),
            measures: definition
                .rollup
                .measures
                .iter()
                .map(|m| MeasureDto {
                    name: m.name.clone(),
                    kind: match m.kind {
                        MeasureKind::Count => "count".to_owned(),
                        MeasureKind::Sum(_) => "sum".to_owned(),
                        MeasureKind::Distinct(_) => "distinct".to_owned(),
                    },
                    field: match &m.kind {
                        MeasureKind::Count => None,
                        MeasureKind::Sum(field) => Some(field.name()),
                        MeasureKind::Distinct(field) => Some(field.name()),
                    },
                })
                .collect(),
            dimensions: definition
                .rollup
                .dimensions
                .iter()
                .map(|d| DimensionDto {
                    name: Some(d.name.clone()),
                    field: d.field.name(),
                    required: Some(d.required),
                })
                .collect(),
            filters: json["filters"].clone(),
            windows: definition.windows.into_iter().map(Into::into).collect(),
            cache_ttl_seconds: definition.cache_ttl_seconds,
            is_public: definition.is_public,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        }
    }
}

/// A report a tenant defined or changed, with the runs queued to build it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RollupChangeDto {
    #[serde(flatten)]
    pub report: RollupDto,
    /// One pending run per window over its retention (at most `MAX_REPORT_RANGE_DAYS`), when
    /// what the report computes is new or changed; else empty.
    pub runs: Vec<RunDto>,
}

impl From<RollupChange> for RollupChangeDto {
    fn from(change: RollupChange) -> Self {
        Self {
            report: change.stored.into(),
            runs: change.runs.into_iter().map(Into::into).collect(),
        }
    }
}

/// A read of a tenant's report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RollupRunDto {
    #[serde(flatten)]
    pub read: ReadDto,
    /// What the rows are grouped by: `period` and dimension names.
    pub group_by: Vec<String>,
    /// `period`, or `-<measure>` for a top-N.
    #[schema(example = "-purchases")]
    pub order: String,
    /// A row per bucket (when grouped by `period`, as `bucket_date`: the bucket's first day, or
    /// for the `hour` window the hour's start as RFC 3339 in UTC) and grouped dimension
    /// values (by dimension name; null for events without the field), with every measure by
    /// name.
    #[schema(value_type = Vec<Object>)]
    pub rows: RenderedRows,
}

impl TryFrom<RollupResult> for RollupRunDto {
    type Error = serde_json::Error;

    fn try_from(result: RollupResult) -> serde_json::Result<Self> {
        let rollup = &result.definition.rollup;
        let query = &result.query;
        let mut group_by = Vec::new();
        if query.by_period {
            group_by.push("period".to_owned());
        }
        group_by.extend(
            query
                .dimensions
                .iter()
                .filter_map(|p| rollup.dimensions.get(*p))
                .map(|d| d.name.clone()),
        );
        let order = match query.order {
            RollupOrder::Period => "period".to_owned(),
            RollupOrder::MeasureDescending(i) => rollup
                .measures
                .get(i)
                .map_or_else(String::new, |m| format!("-{}", m.name)),
        };
        let rows: Vec<serde_json::Value> = result
            .page
            .rows
            .iter()
            .map(|row| {
                let mut object = serde_json::Map::new();
                if let Some(day) = row.bucket_date {
                    let bucket = match row.bucket_hour {
                        // An hour's bucket is the instant it starts.
                        Some(hour) => format!("{}T{hour:02}:00:00Z", format_date(day)),
                        None => format_date(day),
                    };
                    object.insert("bucket_date".to_owned(), bucket.into());
                }
                for (position, value) in query.dimensions.iter().zip(&row.dimensions) {
                    if let Some(dimension) = rollup.dimensions.get(*position) {
                        object.insert(dimension.name.clone(), value.clone().into());
                    }
                }
                for (measure, value) in rollup.measures.iter().zip(&row.measures) {
                    object.insert(measure.name.clone(), (*value).into());
                }
                serde_json::Value::Object(object)
            })
            .collect();
        Ok(Self {
            read: ReadDto::new(
                &result.definition.slug,
                query.window,
                query.range,
                rows.len(),
                &result.read,
            ),
            group_by,
            order,
            rows: RenderedRows::render(&rows)?,
        })
    }
}

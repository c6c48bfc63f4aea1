//! The two envelopes every JSON response is wrapped in.
//!
//! Success: `{"data": ..., "meta": ...}` with `meta` omitted when there is none. Failure:
//! `{"error": {"code", "message", "details"}}`. Each success envelope is a concrete type rather
//! than one generic wrapper so that the OpenAPI document names every response schema plainly
//! and the handlers cannot return a shape the document does not describe.

use serde::Serialize;
use utoipa::ToSchema;

use crate::dto::{
    AuditEntryDto, BulkIngestDto, HealthDto, IngestedEventDto, ReportDto, ReportRunDto,
    RollupChangeDto, RollupDto, RollupRunDto, RunDto, SourceDto,
};

/// The stable, machine-readable code of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a parameter or the body broke a rule; `details.field` names it when known.
    InvalidRequest,
    /// 401: credentials are missing or wrong (an unknown or revoked API key, a wrong management
    /// key), or the route needs credentials and none were sent.
    Unauthorized,
    /// 403: the caller is known but may not do this.
    Forbidden,
    /// 404: no such route or resource.
    NotFound,
    /// 405: the route exists but not for this method; see the `Allow` header.
    MethodNotAllowed,
    /// 408: the request head or body did not arrive in time; the connection is closed.
    RequestTimeout,
    /// 409: the request conflicts with work in progress or an existing resource.
    Conflict,
    /// 409: the event's idempotency key was already used for different content;
    /// `details.event_id` names it.
    IdempotencyConflict,
    /// 413: the body is larger than the route accepts.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 431: the request line and headers are larger than the server reads (128 KiB), or the
    /// request target is longer than 65,534 bytes; the connection is closed.
    RequestHeaderFieldsTooLarge,
    /// 429: too many requests; see the `Retry-After` header.
    RateLimited,
    /// 500: a fault on the server; the details are only in its logs.
    InternalError,
    /// 503: a dependency is unavailable or the service is at capacity; retry later.
    ServiceUnavailable,
}

impl ErrorCode {
    /// The code as served.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RequestHeaderFieldsTooLarge => "request_header_fields_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::ServiceUnavailable => "service_unavailable",
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// A readable explanation; opaque for 5xx errors.
    pub message: String,
    /// Structured context, e.g. `{"field": "window"}` for an invalid parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The page parameters actually used and the number of matching items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Pagination {
    pub limit: u32,
    pub offset: u64,
    pub total: u64,
}

impl<T> From<&domain::Page<T>> for Pagination {
    fn from(page: &domain::Page<T>) -> Self {
        Self {
            limit: page.request.limit,
            offset: page.request.offset,
            total: page.total,
        }
    }
}

/// The meta of a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ListMeta {
    pub pagination: Pagination,
}

/// The meta of a report result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportRunMeta {
    pub cache_hit: bool,
    /// The row page used; `total` is the number of rows of the whole result.
    pub pagination: Pagination,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthEnvelope {
    pub data: HealthDto,
}

/// `GET /reports`: built-in reports' catalog entries and the caller's tenant's definitions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportListEnvelope {
    pub data: Vec<ReportOrRollupDto>,
    pub meta: ListMeta,
}

/// `GET /reports/{slug}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportEnvelope {
    pub data: ReportDto,
}

/// `GET /reports/{slug}/run`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportRunEnvelope {
    pub data: ReportRunDto,
    pub meta: ReportRunMeta,
}

/// `POST /recomputations` and `GET /recomputations/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunEnvelope {
    pub data: RunDto,
}

/// `GET /recomputations`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunListEnvelope {
    pub data: Vec<RunDto>,
    pub meta: ListMeta,
}

/// `GET /audit-entries`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditListEnvelope {
    pub data: Vec<AuditEntryDto>,
    pub meta: ListMeta,
}

/// `POST /events`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestedEventEnvelope {
    pub data: IngestedEventDto,
}

/// `POST /events/bulk`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BulkIngestEnvelope {
    pub data: BulkIngestDto,
}

/// `POST /sources`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceEnvelope {
    pub data: SourceDto,
}

/// `GET /reports/{slug}` of a tenant's report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RollupEnvelope {
    pub data: RollupDto,
}

/// `GET /reports/{slug}`: a built-in report's catalog entry, or a tenant's definition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportOrRollupEnvelope {
    pub data: ReportOrRollupDto,
}

/// A built-in report's catalog entry, or a tenant's definition (it has `measures`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ReportOrRollupDto {
    Report(ReportDto),
    Rollup(RollupDto),
}

/// `GET /reports/{slug}/run` of a tenant's report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RollupRunEnvelope {
    pub data: RollupRunDto,
    pub meta: ReportRunMeta,
}

/// `GET /reports/{slug}/run`: a built-in report's result, or a tenant's report's.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AnyReportRunEnvelope {
    Report(ReportRunEnvelope),
    Rollup(RollupRunEnvelope),
}

/// `POST /reports` and `PUT /reports/{slug}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RollupChangeEnvelope {
    pub data: RollupChangeDto,
}

/// `GET /sources`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceListEnvelope {
    pub data: Vec<SourceDto>,
}

//! The one place where failures become HTTP responses.
//!
//! Every handler and extractor fails with [`ApiError`]; its [`ResponseError`] impl decides the
//! status, the stable `error.code` and the envelope. 5xx messages are opaque: the cause chain
//! goes to the log, once, when the response is rendered.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError},
    http::{StatusCode, header},
};
use application::{
    AccessError, AuditError, IngestError, ReportError, RollupError, RunLookupError,
    TenancyServiceError, TriggerError,
};
use domain::ValidationError;
use serde_json::{Value, json};

use crate::envelope::{ErrorBody, ErrorCode, ErrorEnvelope};

/// A failed request, as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter or the body broke a rule.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        details: Option<Value>,
    },
    /// Credentials are missing or wrong, or the route needs credentials the caller lacks.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, but only for the methods in `allow` (an `Allow` header value).
    #[error("this route allows only {allow}")]
    MethodNotAllowed { allow: &'static str },
    /// The request conflicts with work in progress.
    #[error("{message}")]
    Conflict {
        message: String,
        details: Option<Value>,
    },
    /// An event's idempotency key was already used for different content.
    #[error(
        "event {event_id} was already received with different content; \
         a different event needs a different idempotency key"
    )]
    IdempotencyConflict { event_id: String },
    /// The request head or body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// The body is larger than the route accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request line and headers are larger than the server reads.
    #[error("{0}")]
    HeaderFieldsTooLarge(String),
    /// The body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many requests; the client should wait `retry_after_secs`.
    #[error("too many requests; retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    /// A fault on the server. The message is deliberately opaque; the cause is logged.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
    /// A dependency is unavailable or the service is at capacity.
    #[error("{message}")]
    ServiceUnavailable {
        message: String,
        details: Option<Value>,
        /// Logged, never served.
        #[source]
        cause: Option<anyhow::Error>,
    },
}

impl ApiError {
    /// A 400 without a specific field.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            details: None,
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::Conflict { .. } => ErrorCode::Conflict,
            ApiError::IdempotencyConflict { .. } => ErrorCode::IdempotencyConflict,
            ApiError::RequestTimeout(_) => ErrorCode::RequestTimeout,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::HeaderFieldsTooLarge(_) => ErrorCode::RequestHeaderFieldsTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Internal(_) => ErrorCode::InternalError,
            ApiError::ServiceUnavailable { .. } => ErrorCode::ServiceUnavailable,
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::InvalidRequest { details, .. }
            | ApiError::Conflict { details, .. }
            | ApiError::ServiceUnavailable { details, .. } => details.clone(),
            ApiError::MethodNotAllowed { allow } => Some(json!({ "allow": allow })),
            ApiError::RateLimited { retry_after_secs } => {
                Some(json!({ "retry_after_seconds": retry_after_secs }))
            }
            ApiError::IdempotencyConflict { event_id } => Some(json!({ "event_id": event_id })),
            ApiError::Unauthorized(_)
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_)
            | ApiError::RequestTimeout(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::HeaderFieldsTooLarge(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::Internal(_) => None,
        }
    }

    /// The envelope served for this error.
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code(),
                message: self.to_string(),
                details: self.details(),
            },
        }
    }

    /// Writes the cause of a 5xx to the log; client errors are the client's business and are
    /// already visible in the per-request log line.
    fn log_cause(&self) {
        match self {
            ApiError::Internal(cause) => {
                // `{:#}` renders the whole chain on one line: "outer: middle: root cause".
                tracing::error!(
                    error = format!("{cause:#}"),
                    "request failed with an internal error"
                );
            }
            ApiError::ServiceUnavailable {
                message,
                cause: Some(cause),
                ..
            } => {
                tracing::warn!(error = format!("{cause:#}"), "{message}");
            }
            ApiError::ServiceUnavailable { cause: None, .. }
            | ApiError::InvalidRequest { .. }
            | ApiError::Unauthorized(_)
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed { .. }
            | ApiError::Conflict { .. }
            | ApiError::IdempotencyConflict { .. }
            | ApiError::RequestTimeout(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::HeaderFieldsTooLarge(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::RateLimited { .. } => {}
        }
    }
}

impl ErrorCode {
    /// The HTTP status of this code.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Conflict | ErrorCode::IdempotencyConflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RequestHeaderFieldsTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.log_cause();
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::MethodNotAllowed { allow } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        if let ApiError::RateLimited { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let ApiError::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(self.envelope())
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ApiError::InvalidRequest {
            message: format!("{} {}", err.field(), err.message()),
            details: Some(json!({ "field": err.field() })),
        }
    }
}

/// The most field errors listed in `details.errors`; `details.error_count` has the total.
pub const MAX_LISTED_ERRORS: usize = 1_000;

/// The longest message of a request with several invalid fields, before "and N more".
const MAX_FIELDS_MESSAGE_CHARS: usize = 600;

/// The longest description of one field in that message.
const MAX_FIELD_PART_CHARS: usize = 200;

/// `text`, cut to [`MAX_FIELD_PART_CHARS`] characters with an ellipsis when longer.
fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_FIELD_PART_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_FIELD_PART_CHARS - 1).collect();
    short.push('…');
    short
}

impl ApiError {
    /// A 400 for several invalid fields at once (an event, or the items of a bulk request):
    /// every error in `details.errors` (up to [`MAX_LISTED_ERRORS`]), the first one's field in
    /// `details.field`, and a readable message of bounded length naming as many as fit.
    pub fn invalid_fields(errors: &[ValidationError]) -> Self {
        let Some(first) = errors.first() else {
            return ApiError::invalid("the request is invalid");
        };
        if let [only] = errors {
            return only.clone().into();
        }
        let mut message = format!("{} fields are invalid: ", errors.len());
        let mut named = 0;
        for error in errors {
            let part = shorten(&format!("{} {}", error.field(), error.message()));
            if named > 0 && message.len() + part.len() + 2 > MAX_FIELDS_MESSAGE_CHARS {
                break;
            }
            if named > 0 {
                message.push_str("; ");
            }
            message.push_str(&part);
            named += 1;
        }
        if named < errors.len() {
            message.push_str(&format!("; and {} more", errors.len() - named));
        }
        let listed: Vec<Value> = errors
            .iter()
            .take(MAX_LISTED_ERRORS)
            .map(|error| json!({ "field": error.field(), "message": error.message() }))
            .collect();
        ApiError::InvalidRequest {
            message,
            details: Some(json!({
                "field": first.field(),
                "errors": listed,
                "error_count": errors.len(),
            })),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::Invalid(errors) => ApiError::invalid_fields(&errors),
            IngestError::Unavailable(cause) => ApiError::ServiceUnavailable {
                message: "event storage is unavailable; nothing was stored, retry later".to_owned(),
                details: None,
                cause: Some(cause),
            },
            IngestError::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(err: AccessError) -> Self {
        let message = err.to_string();
        match err {
            AccessError::Unauthenticated(message) => ApiError::Unauthorized(message),
            AccessError::Forbidden(message) => ApiError::Forbidden(message),
            AccessError::UnknownTenant(_) => ApiError::NotFound(message),
            AccessError::Invalid(invalid) => invalid.into(),
            AccessError::Unavailable(cause) => ApiError::ServiceUnavailable {
                message: "tenancy storage is unavailable; retry later".to_owned(),
                details: None,
                cause: Some(cause),
            },
            AccessError::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<TenancyServiceError> for ApiError {
    fn from(err: TenancyServiceError) -> Self {
        let message = err.to_string();
        match err {
            TenancyServiceError::Invalid(invalid) => invalid.into(),
            TenancyServiceError::NotFound(_) => ApiError::NotFound(message),
            TenancyServiceError::AlreadyExists(_) => ApiError::Conflict {
                message,
                details: None,
            },
            TenancyServiceError::Unavailable(cause) => ApiError::ServiceUnavailable {
                message: "tenancy storage is unavailable; retry later".to_owned(),
                details: None,
                cause: Some(cause),
            },
            TenancyServiceError::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<RollupError> for ApiError {
    fn from(err: RollupError) -> Self {
        let message = err.to_string();
        match err {
            RollupError::Invalid(errors) => ApiError::invalid_fields(&errors),
            RollupError::SlugTaken(_) => ApiError::Conflict {
                message,
                details: None,
            },
            RollupError::NotFound(_) => ApiError::NotFound(message),
            RollupError::BuiltIn(_) => ApiError::Forbidden(message),
            RollupError::Unavailable(cause) => ApiError::ServiceUnavailable {
                message: "report storage is unavailable; retry later".to_owned(),
                details: None,
                cause: Some(cause),
            },
            RollupError::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<ReportError> for ApiError {
    fn from(err: ReportError) -> Self {
        match err {
            ReportError::NotFound(_) => ApiError::NotFound(err.to_string()),
            ReportError::Invalid(invalid) => invalid.into(),
            ReportError::Unavailable(cause) => ApiError::ServiceUnavailable {
                message: "report storage is unavailable; retry later".to_owned(),
                details: None,
                cause: Some(cause),
            },
            ReportError::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<TriggerError> for ApiError {
    fn from(err: TriggerError) -> Self {
        let message = err.to_string();
        match err {
            TriggerError::Invalid(invalid) => invalid.into(),
            TriggerError::ReportNotFound(_) => ApiError::NotFound(message),
            TriggerError::ScopeBusy {
                report_slug,
                window,
                mode,
                date_from,
                date_to,
            } => ApiError::Conflict {
                message,
                details: Some(json!({
                    "report_slug": report_slug,
                    "window": window.as_str(),
                    "mode": mode.as_str(),
                    "date_from": date_from,
                    "date_to": date_to,
                })),
            },
            TriggerError::QueueFull(run_id) | TriggerError::ShuttingDown(run_id) => {
                ApiError::ServiceUnavailable {
                    message,
                    details: Some(json!({ "run_id": run_id.to_string() })),
                    cause: None,
                }
            }
            TriggerError::Unavailable(cause) => ApiError::ServiceUnavailable {
                message,
                details: None,
                cause: Some(cause),
            },
            TriggerError::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<RunLookupError> for ApiError {
    fn from(err: RunLookupError) -> Self {
        match err {
            RunLookupError::NotFound(_) => ApiError::NotFound(err.to_string()),
            RunLookupError::Invalid(invalid) => invalid.into(),
            RunLookupError::Unavailable(cause) => ApiError::ServiceUnavailable {
                message: "run storage is unavailable; retry later".to_owned(),
                details: None,
                cause: Some(cause),
            },
            RunLookupError::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(err: AuditError) -> Self {
        match err {
            AuditError::Unavailable(cause) => ApiError::ServiceUnavailable {
                message: "the audit log is unavailable; retry later".to_owned(),
                details: None,
                cause: Some(cause),
            },
            AuditError::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(err: JsonPayloadError) -> Self {
        match err {
            JsonPayloadError::OverflowKnownLength { length, limit } => ApiError::PayloadTooLarge(
                format!("the body has {length} bytes; this route accepts at most {limit}"),
            ),
            JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge(format!(
                "the body is larger than {limit} bytes, the most this route accepts"
            )),
            JsonPayloadError::Payload(PayloadError::Overflow) => {
                ApiError::PayloadTooLarge("the body is larger than this route accepts".to_owned())
            }
            JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(
                "the body must be JSON sent with Content-Type: application/json".to_owned(),
            ),
            JsonPayloadError::Deserialize(cause) => {
                ApiError::invalid(format!("invalid JSON body: {cause}"))
            }
            JsonPayloadError::Serialize(cause) => ApiError::Internal(cause.into()),
            JsonPayloadError::Payload(cause) => {
                ApiError::invalid(format!("could not read the body: {cause}"))
            }
            // The enum is non-exhaustive; anything new is still the client's body at fault.
            other => ApiError::invalid(other.to_string()),
        }
    }
}

impl From<QueryPayloadError> for ApiError {
    fn from(err: QueryPayloadError) -> Self {
        match err {
            QueryPayloadError::Deserialize(cause) => {
                ApiError::invalid(format!("invalid query string: {cause}"))
            }
            // Non-exhaustive upstream.
            other => ApiError::invalid(other.to_string()),
        }
    }
}

impl From<PathError> for ApiError {
    fn from(err: PathError) -> Self {
        // A path parameter that does not parse names no resource that could exist.
        ApiError::NotFound(err.to_string())
    }
}

/// The error handler of `web::JsonConfig`, so body errors use the envelope.
pub(crate) fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::from(err).into()
}

/// The error handler of `web::QueryConfig`.
pub(crate) fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::from(err).into()
}

/// The error handler of `web::PathConfig`.
pub(crate) fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::from(err).into()
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;
    use anyhow::anyhow;

    use super::*;

    async fn body_of(error: &ApiError) -> Value {
        let bytes = to_bytes(error.error_response().into_body()).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[actix_web::test]
    async fn every_error_has_its_status_and_code() {
        let cases = [
            (ApiError::invalid("bad"), 400, "invalid_request"),
            (ApiError::Unauthorized("no key"), 401, "unauthorized"),
            (ApiError::Forbidden("no".into()), 403, "forbidden"),
            (ApiError::NotFound("gone".into()), 404, "not_found"),
            (
                ApiError::MethodNotAllowed { allow: "GET" },
                405,
                "method_not_allowed",
            ),
            (
                ApiError::Conflict {
                    message: "busy".into(),
                    details: None,
                },
                409,
                "conflict",
            ),
            (
                ApiError::IdempotencyConflict {
                    event_id: "evt-1".into(),
                },
                409,
                "idempotency_conflict",
            ),
            (
                ApiError::RequestTimeout("slow".into()),
                408,
                "request_timeout",
            ),
            (
                ApiError::PayloadTooLarge("big".into()),
                413,
                "payload_too_large",
            ),
            (
                ApiError::HeaderFieldsTooLarge("long".into()),
                431,
                "request_header_fields_too_large",
            ),
            (
                ApiError::UnsupportedMediaType("xml".into()),
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::RateLimited {
                    retry_after_secs: 7,
                },
                429,
                "rate_limited",
            ),
            (ApiError::Internal(anyhow!("boom")), 500, "internal_error"),
            (
                ApiError::ServiceUnavailable {
                    message: "down".into(),
                    details: None,
                    cause: None,
                },
                503,
                "service_unavailable",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status_code().as_u16(), status, "status of {error:?}");
            let body = body_of(&error).await;
            assert_eq!(body["error"]["code"], code, "code of {error:?}");
            assert!(body["error"]["message"].is_string(), "message of {error:?}");
        }
    }

    #[actix_web::test]
    async fn internal_errors_hide_their_cause() {
        let error = ApiError::Internal(anyhow!("password=hunter2").context("query failed"));
        let body = body_of(&error).await;
        assert_eq!(
            body["error"]["message"], "internal server error",
            "opaque message"
        );
        assert!(
            !body.to_string().contains("hunter2"),
            "the cause stays out of the body: {body}"
        );
    }

    #[test]
    fn rate_limiting_and_wrong_methods_set_their_headers() {
        let limited = ApiError::RateLimited {
            retry_after_secs: 30,
        }
        .error_response();
        assert_eq!(
            limited
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("30")
        );
        let wrong = ApiError::MethodNotAllowed { allow: "GET, POST" }.error_response();
        assert_eq!(
            wrong
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok()),
            Some("GET, POST")
        );
    }

    #[actix_web::test]
    async fn several_invalid_fields_are_all_listed_under_a_bounded_message() {
        let errors: Vec<ValidationError> = (0..2_000)
            .map(|n| ValidationError::new(format!("events[{n}].status"), "must be one of: x"))
            .collect();
        let body = body_of(&ApiError::invalid_fields(&errors)).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("2000 fields are invalid: events[0].status must be one of: x; "),
            "readable: {message}"
        );
        assert!(
            message.ends_with(" more"),
            "says how many were left out: {message}"
        );
        assert!(message.len() < 700, "bounded: {} characters", message.len());
        let details = &body["error"]["details"];
        assert_eq!(details["field"], "events[0].status", "the first field");
        assert_eq!(details["error_count"], 2_000, "the total");
        assert_eq!(
            details["errors"].as_array().map(Vec::len),
            Some(MAX_LISTED_ERRORS),
            "listed up to the cap"
        );
        assert_eq!(
            details["errors"][1],
            json!({ "field": "events[1].status", "message": "must be one of: x" }),
            "each error has its field and message"
        );
    }

    #[actix_web::test]
    async fn a_single_invalid_field_reads_like_any_validation_error() {
        let error = ApiError::invalid_fields(&[ValidationError::new("source", "is unknown")]);
        let body = body_of(&error).await;
        assert_eq!(body["error"]["message"], "source is unknown", "message");
        assert_eq!(body["error"]["details"]["field"], "source", "field");
    }

    #[actix_web::test]
    async fn validation_errors_name_their_field() {
        let error = ApiError::from(ValidationError::new("window", "must be one of: day, week"));
        let body = body_of(&error).await;
        assert_eq!(
            body["error"]["message"], "window must be one of: day, week",
            "readable message"
        );
        assert_eq!(
            body["error"]["details"],
            json!({ "field": "window" }),
            "the field in details"
        );
    }
}

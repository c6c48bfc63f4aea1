//! Event ingestion: one event or a batch, with a tenant's API key.

use actix_web::{HttpRequest, HttpResponse, http::header::HeaderMap, web};
use domain::{IngestStatus, ValidationError};
use serde_json::Value;

use super::json_body;
use crate::{
    AppState,
    auth::IngestTenant,
    dto::{BulkEventsSchema, BulkIngestDto, EventSchema, IngestedEventDto},
    envelope::{BulkIngestEnvelope, ErrorEnvelope, IngestedEventEnvelope},
    error::ApiError,
};

/// The largest body either ingestion route accepts: a full bulk request of small events.
pub const EVENTS_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The `Idempotency-Key` header, as documented.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// The event's idempotency key; takes the place of `event_id`, which must be equal to it
    /// when both are sent.
    #[serde(rename = "Idempotency-Key")]
    #[param(schema_with = crate::openapi::header_text_schema)]
    pub key: Option<String>,
}

/// The header carrying the idempotency key of a single event.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Stores one event, idempotently.
///
/// The idempotency key is the `Idempotency-Key` header, else the event's `event_id`, else one
/// assigned by the server. A replay with the same content is a 200 with `duplicate: true` and
/// the original id; the same key with different content is a 409 `idempotency_conflict`. The
/// answer is sent only once the event is committed.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "events",
    operation_id = "ingestEvent",
    params(IdempotencyKeyHeader, crate::auth::TenantParam),
    request_body(content = EventSchema, content_type = "application/json", description = "At most 2 MiB"),
    responses(
        (status = 201, description = "The event was stored", body = IngestedEventEnvelope),
        (status = 200, description = "The event had been received before with the same content; nothing was written", body = IngestedEventEnvelope),
        (status = 400, description = "A field is invalid (`details.errors` lists every one), the JSON is malformed, or `event_id` differs from `Idempotency-Key`", body = ErrorEnvelope),
        (status = 401, description = "The API key is missing, unknown or revoked", body = ErrorEnvelope),
        (status = 403, description = "The key lacks the ingest scope, names another tenant, or the management key was sent instead", body = ErrorEnvelope),
        (status = 409, description = "`idempotency_conflict`: the key was used for different content; `details.event_id` names it", body = ErrorEnvelope),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorEnvelope),
        (status = 415, description = "The body is not sent as application/json", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "Event storage is unavailable; nothing was stored", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn ingest_event(
    tenant: IngestTenant,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(req.headers())?;
    let body: Value = json_body(&req, payload, EVENTS_BODY_LIMIT).await?;

    let outcome = state
        .ingest
        .ingest_one(tenant.0, &body, key.as_deref())
        .await?;

    let (mut response, duplicate) = match outcome.status {
        IngestStatus::Created => (HttpResponse::Created(), false),
        IngestStatus::Duplicate => (HttpResponse::Ok(), true),
        IngestStatus::Conflict => {
            return Err(ApiError::IdempotencyConflict {
                event_id: outcome.event_id,
            });
        }
    };
    Ok(response.json(IngestedEventEnvelope {
        data: IngestedEventDto {
            event_id: outcome.event_id,
            duplicate,
        },
    }))
}

/// Stores up to 1,000 events: all are validated first, and if any is invalid none is stored
/// and every offending field is named (`events[3].status`). Each valid event is then created,
/// a duplicate, or a conflict on its own; the answer is 201 when any was created, else 200.
#[utoipa::path(
    post,
    path = "/api/v1/events/bulk",
    tag = "events",
    operation_id = "ingestEvents",
    params(crate::auth::TenantParam),
    request_body(content = BulkEventsSchema, content_type = "application/json", description = "At most 2 MiB; unknown top-level fields are a 400"),
    responses(
        (status = 201, description = "At least one event was stored; the outcome of each item", body = BulkIngestEnvelope),
        (status = 200, description = "No event was new (every item is a duplicate or a conflict)", body = BulkIngestEnvelope),
        (status = 400, description = "An item is invalid (nothing was stored; `details.errors` names every field as `events[i].field`), `events` does not hold 1 to 1,000 items, or the JSON is malformed", body = ErrorEnvelope),
        (status = 401, description = "The API key is missing, unknown or revoked", body = ErrorEnvelope),
        (status = 403, description = "The key lacks the ingest scope, names another tenant, or the management key was sent instead", body = ErrorEnvelope),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorEnvelope),
        (status = 415, description = "The body is not sent as application/json", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "Event storage is unavailable; nothing was stored", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn ingest_bulk(
    tenant: IngestTenant,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: Value = json_body(&req, payload, EVENTS_BODY_LIMIT).await?;

    let outcomes = state.ingest.ingest_bulk(tenant.0, body).await?;

    let data = BulkIngestDto::from(outcomes);
    let mut response = if data.counts.created > 0 {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(BulkIngestEnvelope { data }))
}

/// The `Idempotency-Key` header as text; its rules are checked by the ingest service.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ValidationError> {
    headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .map(|value| {
            value.to_str().map(str::to_owned).map_err(|_| {
                ValidationError::new(IDEMPOTENCY_KEY_HEADER, "must be printable ASCII text")
            })
        })
        .transpose()
}

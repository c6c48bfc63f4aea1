//! Recompute triggers and run records (management).

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderMap},
    web,
};
use application::TriggerRequest;
use domain::{Actor, PageRequest, ReportSlug, RunFilter, RunStatus, ValidationError};
use serde::Deserialize;

use super::{json_body, query};
use crate::{
    AppState,
    auth::{self, ManagedTenant, TenantParam},
    dto::{RunDto, TriggerBody, TriggerSchema},
    envelope::{ErrorEnvelope, ListMeta, Pagination, RunEnvelope, RunListEnvelope},
    error::ApiError,
};

/// The `X-Actor` header, as documented.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ActorHeader {
    /// Who triggers, when the body has no `requested_by`.
    #[serde(rename = "X-Actor")]
    #[param(schema_with = crate::openapi::header_text_schema)]
    pub actor: Option<String>,
}

/// The largest trigger body accepted; a trigger is a handful of short fields.
pub const TRIGGER_BODY_LIMIT: usize = 16 * 1024;

/// The header naming who triggers when the body does not.
pub const ACTOR_HEADER: &str = "X-Actor";

/// Triggers a recompute of one report and window over a date range, for the tenant.
///
/// Checks, in order: the window, date order, the range limit, the report's existence, and that
/// no recompute of the same scope is in progress. The run is then stored `pending`, audited as
/// `recompute.triggered` and queued.
#[utoipa::path(
    post,
    path = "/api/v1/recomputations",
    tag = "recomputations",
    operation_id = "triggerRecomputation",
    params(ActorHeader, TenantParam),
    request_body(content = TriggerSchema, content_type = "application/json", description = "At most 16 KiB; unknown fields are a 400"),
    responses(
        (status = 202, description = "The run was admitted and queued", body = RunEnvelope,
            headers(("Location" = String, description = "The URL of the run"))),
        (status = 400, description = "A field or `tenant` is invalid, a field is unknown, or the JSON is malformed", body = ErrorEnvelope),
        (status = 401, description = "Credentials are missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the manage scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "No report has this slug, or the management key names an unknown tenant", body = ErrorEnvelope),
        (status = 409, description = "A recompute of the same scope is in progress", body = ErrorEnvelope),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorEnvelope),
        (status = 415, description = "The body is not sent as application/json", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The queue is full (the run was marked failed) or a store is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []), ("api_key" = []))
)]
pub async fn trigger(
    tenant: ManagedTenant,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: TriggerBody = json_body(&req, payload, TRIGGER_BODY_LIMIT).await?;
    // A sent header is checked whether or not the body names the requester (which then wins).
    let on_behalf_of = actor_header(req.headers())?.unwrap_or_else(|| auth::actor_of(&req));
    let request = TriggerRequest {
        report_slug: body.report_slug,
        window: body.window,
        date_from: body.date_from,
        date_to: body.date_to,
        mode: body.mode,
        requested_by: body.requested_by,
        on_behalf_of: Some(on_behalf_of),
    };
    let run = state.recompute.trigger(tenant.0, &request).await?;
    let location = format!("/api/v1/recomputations/{}", run.id);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location))
        .json(RunEnvelope { data: run.into() }))
}

/// The `X-Actor` header, checked as an actor name would be.
fn actor_header(headers: &HeaderMap) -> Result<Option<Actor>, ValidationError> {
    headers
        .get(ACTOR_HEADER)
        .map(|value| {
            let text = value
                .to_str()
                .map_err(|_| ValidationError::new(ACTOR_HEADER, "must be printable ASCII text"))?;
            Actor::parse(text).map_err(|err| ValidationError::new(ACTOR_HEADER, err.message()))
        })
        .transpose()
}

impl RunListParams {
    /// The filter and page this query asks for.
    ///
    /// # Errors
    /// A [`ValidationError`] on the first parameter that breaks its rule.
    pub fn parse(&self) -> Result<(RunFilter, PageRequest), ValidationError> {
        let filter = RunFilter {
            report_slug: self
                .report_slug
                .as_deref()
                .map(ReportSlug::parse)
                .transpose()?,
            status: self
                .status
                .as_deref()
                .map(str::parse::<RunStatus>)
                .transpose()?,
        };
        let page = super::listing_page(self.limit.as_deref(), self.offset.as_deref())?;
        Ok((filter, page))
    }
}

/// The query of `GET /recomputations`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunListParams {
    /// Only runs of this report.
    #[param(schema_with = crate::openapi::report_slug_schema)]
    pub report_slug: Option<String>,
    /// Only runs in this status.
    #[param(schema_with = crate::openapi::run_status_schema)]
    pub status: Option<String>,
    /// Page size, 1 to 100 (default 20); values out of range are clamped.
    #[param(schema_with = crate::openapi::clamped_limit_schema)]
    pub limit: Option<String>,
    /// Items to skip (default 0).
    #[param(schema_with = crate::openapi::offset_schema)]
    pub offset: Option<String>,
}

/// Lists the tenant's recompute runs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/recomputations",
    tag = "recomputations",
    operation_id = "listRecomputations",
    params(RunListParams, TenantParam),
    responses(
        (status = 200, description = "A page of runs", body = RunListEnvelope),
        (status = 400, description = "A filter, the page or `tenant` is invalid", body = ErrorEnvelope),
        (status = 401, description = "Credentials are missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the manage scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "The management key names an unknown tenant", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The run store is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []), ("api_key" = []))
)]
pub async fn list_runs(
    tenant: ManagedTenant,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (filter, page) = query::<RunListParams>(&req)?.parse()?;

    let runs = state.recompute.list(tenant.0, &filter, page).await?;
    let pagination = Pagination::from(&runs);
    Ok(HttpResponse::Ok().json(RunListEnvelope {
        data: runs.items.into_iter().map(RunDto::from).collect(),
        meta: ListMeta { pagination },
    }))
}

/// Returns one of the tenant's recompute runs; another tenant's run is a 404.
#[utoipa::path(
    get,
    path = "/api/v1/recomputations/{id}",
    tag = "recomputations",
    operation_id = "getRecomputation",
    params(("id" = String, Path, format = Uuid, description = "The run id"), TenantParam),
    responses(
        (status = 200, description = "The run", body = RunEnvelope),
        (status = 400, description = "`tenant` is not a slug", body = ErrorEnvelope),
        (status = 401, description = "Credentials are missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the manage scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "The tenant has no run with this id, the id is not a UUID, or the management key names an unknown tenant", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The run store is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []), ("api_key" = []))
)]
pub async fn get_run(
    tenant: ManagedTenant,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let run = state.recompute.get(tenant.0, &id).await?;
    Ok(HttpResponse::Ok().json(RunEnvelope { data: run.into() }))
}

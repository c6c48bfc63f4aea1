//! A tenant's event sources (management).

use actix_web::{HttpRequest, HttpResponse, web};
use domain::ValidationError;

use super::json_body;
use crate::{
    AppState,
    auth::ManagedTenant,
    dto::{SourceBody, SourceDto, SourceSchema},
    envelope::{ErrorEnvelope, SourceEnvelope, SourceListEnvelope},
    error::ApiError,
};

/// The largest source body accepted: three short fields.
pub const SOURCE_BODY_LIMIT: usize = 16 * 1024;

/// Lists the tenant's event sources, by slug.
#[utoipa::path(
    get,
    path = "/api/v1/sources",
    tag = "sources",
    operation_id = "listSources",
    params(crate::auth::TenantParam),
    responses(
        (status = 200, description = "The tenant's sources", body = SourceListEnvelope),
        (status = 400, description = "`tenant` is not a slug", body = ErrorEnvelope),
        (status = 401, description = "Credentials are missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the manage scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "The management key names an unknown tenant", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "Tenancy storage is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []), ("api_key" = []))
)]
pub async fn list_sources(
    tenant: ManagedTenant,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sources = state.tenancy.sources(tenant.0).await?;
    Ok(HttpResponse::Ok().json(SourceListEnvelope {
        data: sources.into_iter().map(SourceDto::from).collect(),
    }))
}

/// Adds an event source to the tenant; events of it are accepted from then on.
#[utoipa::path(
    post,
    path = "/api/v1/sources",
    tag = "sources",
    operation_id = "createSource",
    params(crate::auth::TenantParam),
    request_body(content = SourceSchema, content_type = "application/json", description = "At most 16 KiB; unknown fields are a 400"),
    responses(
        (status = 201, description = "The source was created", body = SourceEnvelope),
        (status = 400, description = "A field or `tenant` is invalid, a field is unknown, or the JSON is malformed", body = ErrorEnvelope),
        (status = 401, description = "Credentials are missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the manage scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "The management key names an unknown tenant", body = ErrorEnvelope),
        (status = 409, description = "The tenant already has a source with this slug", body = ErrorEnvelope),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorEnvelope),
        (status = 415, description = "The body is not sent as application/json", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "Tenancy storage is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []), ("api_key" = []))
)]
pub async fn create_source(
    tenant: ManagedTenant,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: SourceBody = json_body(&req, payload, SOURCE_BODY_LIMIT).await?;
    let slug = body
        .slug
        .ok_or_else(|| ValidationError::new("slug", "is required"))?;

    let source = state
        .tenancy
        .create_source(
            tenant.0,
            &slug,
            body.provider_name.as_deref(),
            body.description.as_deref(),
            &crate::auth::actor_of(&req),
        )
        .await?;

    Ok(HttpResponse::Created().json(SourceEnvelope {
        data: source.into(),
    }))
}

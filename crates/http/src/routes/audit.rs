//! The audit trail (management).

use actix_web::{HttpRequest, HttpResponse, web};
use domain::{Actor, AuditAction, AuditFilter, PageRequest, ValidationError};
use serde::Deserialize;

use super::query;
use crate::{
    AppState,
    auth::{ManagedTenant, TenantParam},
    dto::AuditEntryDto,
    envelope::{AuditListEnvelope, ErrorEnvelope, ListMeta, Pagination},
    error::ApiError,
};

impl AuditListParams {
    /// The filter and page this query asks for.
    ///
    /// # Errors
    /// A [`ValidationError`] on the first parameter that breaks its rule.
    pub fn parse(&self) -> Result<(AuditFilter, PageRequest), ValidationError> {
        let filter = AuditFilter {
            action: self
                .action
                .as_deref()
                .map(str::parse::<AuditAction>)
                .transpose()?,
            // `Actor::parse` names the trigger's field; here the parameter is `actor`.
            actor: self
                .actor
                .as_deref()
                .map(|raw| {
                    Actor::parse(raw).map_err(|err| ValidationError::new("actor", err.message()))
                })
                .transpose()?,
        };
        let page = super::listing_page(self.limit.as_deref(), self.offset.as_deref())?;
        Ok((filter, page))
    }
}

/// The query of `GET /audit-entries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditListParams {
    /// Only entries of exactly this action.
    #[param(schema_with = crate::openapi::audit_action_schema)]
    pub action: Option<String>,
    /// Only entries of exactly this actor.
    #[param(schema_with = crate::openapi::actor_schema)]
    pub actor: Option<String>,
    /// Page size, 1 to 100 (default 20); values out of range are clamped.
    #[param(schema_with = crate::openapi::clamped_limit_schema)]
    pub limit: Option<String>,
    /// Items to skip (default 0).
    #[param(schema_with = crate::openapi::offset_schema)]
    pub offset: Option<String>,
}

/// Lists the tenant's audit entries, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit-entries",
    tag = "audit",
    operation_id = "listAuditEntries",
    params(AuditListParams, TenantParam),
    responses(
        (status = 200, description = "A page of audit entries", body = AuditListEnvelope),
        (status = 400, description = "A filter, the page or `tenant` is invalid", body = ErrorEnvelope),
        (status = 401, description = "Credentials are missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the manage scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "The management key names an unknown tenant", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The audit log is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []), ("api_key" = []))
)]
pub async fn list_audit_entries(
    tenant: ManagedTenant,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (filter, page) = query::<AuditListParams>(&req)?.parse()?;

    let entries = state.audit.list(tenant.0, &filter, page).await?;
    let pagination = Pagination::from(&entries);
    Ok(HttpResponse::Ok().json(AuditListEnvelope {
        data: entries.items.into_iter().map(AuditEntryDto::from).collect(),
        meta: ListMeta { pagination },
    }))
}

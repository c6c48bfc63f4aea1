//! The audit trail (management).

use actix_web::{HttpResponse, web};
use domain::{Actor, AuditAction, AuditFilter, PageRequest, TenantId, ValidationError};
use serde::Deserialize;

use super::DEFAULT_PAGE_LIMIT;
use crate::{
    AppState,
    auth::ManagementAuth,
    dto::{AuditActionDto, AuditEntryDto},
    envelope::{AuditListEnvelope, ErrorEnvelope, ListMeta, Pagination},
    error::ApiError,
};

/// The query of `GET /audit-entries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditListParams {
    /// Only entries of exactly this action.
    #[param(value_type = Option<AuditActionDto>)]
    pub action: Option<String>,
    /// Only entries of exactly this actor.
    #[param(example = "recompute-worker")]
    pub actor: Option<String>,
    /// Page size, 1 to 100 (default 20); values out of range are clamped.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Items to skip (default 0).
    #[param(value_type = Option<u64>, minimum = 0)]
    pub offset: Option<String>,
}

/// Lists audit entries, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit-entries",
    tag = "audit",
    operation_id = "listAuditEntries",
    params(AuditListParams),
    responses(
        (status = 200, description = "A page of audit entries", body = AuditListEnvelope),
        (status = 400, description = "A filter or the page is invalid", body = ErrorEnvelope),
        (status = 401, description = "The management key is missing or wrong", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The audit log is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []))
)]
pub async fn list_audit_entries(
    _auth: ManagementAuth,
    state: web::Data<AppState>,
    params: web::Query<AuditListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let filter = AuditFilter {
        action: params
            .action
            .as_deref()
            .map(str::parse::<AuditAction>)
            .transpose()?,
        // `Actor::parse` names the trigger's field; here the parameter is `actor`.
        actor: params
            .actor
            .as_deref()
            .map(|raw| {
                Actor::parse(raw).map_err(|err| ValidationError::new("actor", err.message()))
            })
            .transpose()?,
    };
    let page = PageRequest::clamped(
        params.limit.as_deref(),
        params.offset.as_deref(),
        DEFAULT_PAGE_LIMIT,
    )?;

    let entries = state.audit.list(TenantId::DEFAULT, &filter, page).await?;
    let pagination = Pagination::from(&entries);
    Ok(HttpResponse::Ok().json(AuditListEnvelope {
        data: entries.items.into_iter().map(AuditEntryDto::from).collect(),
        meta: ListMeta { pagination },
    }))
}

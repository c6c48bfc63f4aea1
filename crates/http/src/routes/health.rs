//! `GET /health`.

use actix_web::{HttpResponse, http::StatusCode, web};

use crate::{
    AppState,
    dto::{HealthDto, HealthStatusDto},
    envelope::HealthEnvelope,
};

/// Reports the health of the service and of each configured dependency.
///
/// A dependency the process runs without is `not_configured`, which is not a failure.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    operation_id = "getHealth",
    responses(
        (status = 200, description = "Every configured dependency answers", body = HealthEnvelope),
        (status = 503, description = "A configured dependency is unavailable (still a data envelope)", body = HealthEnvelope),
    )
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let health = HealthDto::new(state.health.check().await, &state.service_name);
    let status = match health.status {
        HealthStatusDto::Ok => StatusCode::OK,
        HealthStatusDto::Degraded => StatusCode::SERVICE_UNAVAILABLE,
    };
    HttpResponse::build(status).json(HealthEnvelope { data: health })
}

//! The routes under `/api/v1`, each a resource that answers a wrong method with a JSON 405.

use std::future::ready;

use actix_web::{HttpRequest, HttpResponse, Route, web};

use crate::{error::ApiError, openapi};

pub mod audit;
pub mod health;
pub mod recomputations;
pub mod reports;

/// The page size of listings whose client names none.
pub const DEFAULT_PAGE_LIMIT: u32 = 20;

/// Registers every route of the API; mounted under `/api/v1`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .default_service(method_not_allowed("GET")),
    )
    .service(
        web::resource("/reports")
            .route(web::get().to(reports::list_reports))
            .default_service(method_not_allowed("GET")),
    )
    .service(
        web::resource("/reports/{slug}")
            .route(web::get().to(reports::get_report))
            .default_service(method_not_allowed("GET")),
    )
    .service(
        web::resource("/reports/{slug}/run")
            .route(web::get().to(reports::run_report))
            .default_service(method_not_allowed("GET")),
    )
    .service(
        web::resource("/recomputations")
            .app_data(recomputations::trigger_body_config())
            .route(web::get().to(recomputations::list_runs))
            .route(web::post().to(recomputations::trigger))
            .default_service(method_not_allowed("GET, POST")),
    )
    .service(
        web::resource("/recomputations/{id}")
            .route(web::get().to(recomputations::get_run))
            .default_service(method_not_allowed("GET")),
    )
    .service(
        web::resource("/audit-entries")
            .route(web::get().to(audit::list_audit_entries))
            .default_service(method_not_allowed("GET")),
    )
    .service(
        web::resource("/openapi.json")
            .route(web::get().to(openapi::openapi_json))
            .default_service(method_not_allowed("GET")),
    );
}

/// The fallback of a resource: its path matched but none of its methods did.
fn method_not_allowed(allow: &'static str) -> Route {
    web::route().to(move || ready(Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow })))
}

/// The fallback of the whole application: no route has this path.
pub(crate) async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

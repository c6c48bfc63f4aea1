//! The routes under `/api/v1`, each a resource that answers a wrong method with a JSON 405.

use std::future::ready;

use actix_web::{HttpRequest, HttpResponse, Route, guard, web};
use serde::de::DeserializeOwned;

use crate::{AppState, error::ApiError, openapi};

pub mod audit;
pub mod events;
pub mod health;
pub mod recomputations;
pub mod reports;
pub mod sources;
pub mod stats;

/// The page size of listings whose client names none.
pub const DEFAULT_PAGE_LIMIT: u32 = 20;

/// The page a listing's `limit` and `offset` ask for: `limit` clamped into 1..=100.
pub(crate) fn listing_page(
    limit: Option<&str>,
    offset: Option<&str>,
) -> Result<domain::PageRequest, domain::ValidationError> {
    domain::PageRequest::clamped(limit, offset, DEFAULT_PAGE_LIMIT)
}

/// Registers every route of the API; mounted under `/api/v1`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(read_only("/health", health::health))
        .service(
            web::resource("/reports")
                .route(read().to(reports::list_reports))
                .route(web::post().to(reports::create_report))
                .default_service(method_not_allowed("GET, HEAD, POST")),
        )
        // Report runs are the hot path: matched before any other pattern with a parameter.
        .service(
            web::resource("/reports/{slug}/run")
                .wrap(actix_web::middleware::from_fn(crate::replay::middleware))
                .route(read().to(reports::run_report))
                .default_service(method_not_allowed("GET, HEAD")),
        )
        .service(
            web::resource("/reports/{slug}")
                .route(read().to(reports::get_report))
                .route(web::put().to(reports::replace_report))
                .route(web::delete().to(reports::delete_report))
                .default_service(method_not_allowed("GET, HEAD, PUT, DELETE")),
        )
        .service(
            web::resource("/recomputations")
                .route(read().to(recomputations::list_runs))
                .route(web::post().to(recomputations::trigger))
                .default_service(method_not_allowed("GET, HEAD, POST")),
        )
        .service(read_only("/recomputations/{id}", recomputations::get_run))
        .service(read_only("/audit-entries", audit::list_audit_entries))
        .service(
            web::resource("/events")
                .route(web::post().to(events::ingest_event))
                .default_service(method_not_allowed("POST")),
        )
        .service(
            web::resource("/events/bulk")
                .route(web::post().to(events::ingest_bulk))
                .default_service(method_not_allowed("POST")),
        )
        .service(
            web::resource("/sources")
                .route(read().to(sources::list_sources))
                .route(web::post().to(sources::create_source))
                .default_service(method_not_allowed("GET, HEAD, POST")),
        )
        .service(read_only("/stats", stats::stats))
        .service(read_only("/metrics", stats::metrics))
        .service(read_only("/openapi.json", openapi::openapi_json))
        .service(read_only("/docs", crate::dashboard::docs));
}

/// A route answering GET, and HEAD as GET without the body.
pub(crate) fn read() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// A resource at `path` answering GET and HEAD with `handler`, and 405 otherwise.
pub(crate) fn read_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(read().to(handler))
        .default_service(method_not_allowed("GET, HEAD"))
}

/// The fallback of a resource: its path matched but none of its methods did.
pub(crate) fn method_not_allowed(allow: &'static str) -> Route {
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

/// The query of a request, read by the handler once the caller is authorized.
///
/// Handlers read their query and body themselves rather than through extractors because actix
/// polls all extractors of a handler together: a bad parameter would otherwise be reported
/// before the missing credentials whenever the credential lookup has to wait for a store.
pub(crate) fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(ApiError::from)
}

/// The JSON body of a request, read by the handler once the caller is authorized, so that an
/// unauthorized client cannot make the server buffer a body. `Content-Type` must be JSON (else
/// 415), the body at most `limit` bytes (else 413, from `Content-Length` before reading when it
/// is sent), all of it sent within the body timeout (else 408), valid JSON of the expected
/// shape (else 400).
pub(crate) async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let timeout = req
        .app_data::<web::Data<AppState>>()
        .map_or(DEFAULT_BODY_TIMEOUT, |state| state.body_timeout);
    let mut payload = payload.into_inner();
    let body = web::JsonBody::<T>::new(req, &mut payload, None, true).limit(limit);
    match tokio::time::timeout(timeout, body).await {
        Ok(parsed) => parsed.map_err(ApiError::from),
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} s",
            timeout.as_secs()
        ))),
    }
}

/// The body timeout when the application state names none.
const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

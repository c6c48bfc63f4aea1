//! The HTTP API of pg-analytics, on actix-web: routes under `/api/v1`, the extractors that
//! turn requests into use-case calls, the response envelopes, authentication and tenant
//! selection (the management key, tenants' API keys), per-key rate limiting, the single mapping
//! from errors to statuses, request ids and the generated OpenAPI document.
//!
//! It drives the use cases of `application` and speaks in `domain` values; it must not depend
//! on a storage adapter (PostgreSQL, Redis or the in-memory fakes, which only its tests use) nor
//! read configuration: the binary builds an [`AppState`] and serves [`build_app`].

use actix_web::{
    App, Error,
    body::MessageBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    middleware, web,
};
use application::{
    AccessPolicy, AuditService, HealthService, IngestService, RecomputeService, ReportService,
    RollupService, TenancyService, stats::StatsService,
};

pub mod auth;
pub mod dashboard;
pub mod dto;
pub mod envelope;
pub mod error;
pub mod openapi;
pub mod probes;
pub mod rate_limit;
pub mod replay;
pub mod request_id;
pub mod routes;
pub mod server;

pub use actix_server::ServerHandle;
pub use auth::{IngestTenant, ManagedTenant, ReadTenant};
pub use error::ApiError;
pub use openapi::ApiDoc;
pub use probes::MetricsEndpoint;
pub use rate_limit::RateLimit;
pub use replay::HitReplays;
pub use server::{ServerSettings, serve, serve_metrics};

/// The largest JSON body any route accepts unless it sets its own, smaller limit.
const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Everything the handlers need: the use cases, the management key, the API keys' rate limit
/// and the service name.
#[derive(Clone)]
pub struct AppState {
    pub reports: ReportService,
    /// Report hits as sent, sent again while they still hold.
    pub replays: HitReplays,
    pub recompute: RecomputeService,
    /// The reports tenants define.
    pub rollups: RollupService,
    /// Web analytics' first answers, from the standard rollups.
    pub stats: StatsService,
    pub audit: AuditService,
    pub health: HealthService,
    pub ingest: IngestService,
    /// Tenants, their sources, and the lookup of API keys.
    pub tenancy: TenancyService,
    /// Who may do what.
    pub access: AccessPolicy,
    /// Applied to requests authenticated by an API key, never to the management key.
    pub rate_limit: RateLimit,
    /// The name reported by `GET /health`.
    pub service_name: String,
    /// How long a route waits for the whole body of a request before answering 408.
    pub body_timeout: std::time::Duration,
    /// The Prometheus scrape served at `/metrics`; `None` when metrics are off or served on an
    /// address of their own.
    pub metrics: Option<MetricsEndpoint>,
}

/// What the HTTP layer adds to the use cases: how API keys are limited, how many hit bodies
/// are kept, how long a body may take, and the name `/health` reports.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub rate_limit: RateLimit,
    /// Bytes of report hit bodies kept to be sent again; 0 keeps none.
    pub replay_bytes: usize,
    pub body_timeout: std::time::Duration,
    pub service_name: String,
    /// See [`AppState::metrics`].
    pub metrics: Option<MetricsEndpoint>,
}

impl AppState {
    /// The state serving `services` as `settings` say.
    pub fn new(services: &application::Services, settings: HttpSettings) -> Self {
        Self {
            reports: services.reports.clone(),
            replays: HitReplays::new(settings.replay_bytes),
            recompute: services.recompute.clone(),
            rollups: services.rollups.clone(),
            stats: services.stats.clone(),
            audit: services.audit.clone(),
            health: services.health.clone(),
            ingest: services.ingest.clone(),
            tenancy: services.tenancy.clone(),
            access: services.access.clone(),
            rate_limit: settings.rate_limit,
            service_name: settings.service_name,
            body_timeout: settings.body_timeout,
            metrics: settings.metrics,
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("service_name", &self.service_name)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

/// The application: every route under `/api/v1`, JSON 404 and 405 fallbacks, envelope-producing
/// extractor errors and the request-id middleware. The server and the tests both build it here,
/// so what is tested is what is served.
pub fn build_app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        .app_data(
            web::JsonConfig::default()
                .limit(DEFAULT_BODY_LIMIT)
                .error_handler(error::json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .service(web::scope("/api/v1").configure(routes::configure))
        .service(routes::read_only("/", dashboard::index))
        .service(routes::read_only("/assets/{path:.*}", dashboard::asset))
        .service(routes::read_only("/livez", probes::livez))
        .service(routes::read_only("/readyz", probes::readyz))
        .service(routes::read_only("/metrics", probes::metrics))
        .default_service(web::to(routes::not_found))
        .wrap(middleware::from_fn(request_id::middleware))
}

/// The application of a metrics-only listener (`METRICS_ADDR`): `GET /metrics`, and the JSON
/// 404 and 405 for anything else.
pub fn metrics_app(
    endpoint: MetricsEndpoint,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(endpoint))
        .service(routes::read_only(
            "/metrics",
            |endpoint: web::Data<MetricsEndpoint>| async move {
                probes::exposition(&endpoint).await
            },
        ))
        .default_service(web::to(routes::not_found))
}

//! `GET /livez`, `GET /readyz` and `GET /metrics`: what an orchestrator and Prometheus ask.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use application::{ports::DependencyStatus, telemetry::Sampler};
use serde_json::json;

use crate::{AppState, error::ApiError};

/// The Prometheus scrape: the gauges sampled from the stores, then everything rendered.
#[derive(Clone)]
pub struct MetricsEndpoint {
    sampler: Sampler,
    render: Arc<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint").finish_non_exhaustive()
    }
}

impl MetricsEndpoint {
    /// An endpoint sampling `sampler` before it calls `render` for the exposition text.
    pub fn new(sampler: Sampler, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self {
            sampler,
            render: Arc::new(render),
        }
    }

    /// The exposition text, its gauges just sampled.
    pub async fn scrape(&self) -> String {
        self.sampler.sample().await;
        (self.render)()
    }
}

/// The content type of the Prometheus text format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /livez`: the process runs and answers; no dependency is asked, so a database outage
/// never gets a process restarted.
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "data": { "status": "ok" } }))
}

/// `GET /readyz`: 200 when PostgreSQL (if configured) answers with every migration applied;
/// Redis not answering is reported as `degraded` but stays ready, since reads go on without
/// it. Otherwise 503 with the reason.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let readiness = state.health.readiness().await;
    if let Some(blocker) = readiness.blocker {
        return Err(ApiError::ServiceUnavailable {
            message: format!("not ready: {blocker}"),
            details: None,
            cause: None,
        });
    }
    let status = if readiness.redis == DependencyStatus::Unavailable {
        "degraded"
    } else {
        "ready"
    };
    Ok(HttpResponse::Ok().json(json!({ "data": { "status": status, "redis": readiness.redis } })))
}

/// `GET /metrics`: the Prometheus exposition, unless metrics are off or served on
/// `METRICS_ADDR` (then 404).
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(endpoint) = &state.metrics else {
        return Err(ApiError::NotFound(
            "metrics are not served on this address".to_owned(),
        ));
    };
    Ok(exposition(endpoint).await)
}

/// The scrape as a response.
pub async fn exposition(endpoint: &MetricsEndpoint) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(EXPOSITION)
        .body(endpoint.scrape().await)
}

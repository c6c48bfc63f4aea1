//! `serve`: the HTTP API with its recompute workers, and a graceful shutdown.

use std::{net::SocketAddr, time::Instant};

use actix_web::HttpServer;
use anyhow::Context;
use domain::TenantId;
use tracing::{info, warn};

use crate::{
    config::{Config, ManagementKeySource},
    wiring,
};

/// Fails with a clear message when the configuration asks for a database, which this build
/// cannot use yet.
pub fn require_embedded(config: &Config) -> anyhow::Result<()> {
    if config.is_embedded() {
        Ok(())
    } else {
        anyhow::bail!(
            "DATABASE_URL is set, but this build has no PostgreSQL adapter yet; unset it to run on the embedded in-memory default"
        )
    }
}

/// Serves until SIGINT or SIGTERM, then drains: in-flight requests finish (up to the shutdown
/// timeout), workers finish the run they hold and stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    require_embedded(&config)?;
    if config.redis_url.is_some() {
        warn!(
            "REDIS_URL is set, but this build has no Redis adapter yet; using the in-process cache and locks"
        );
    }
    warn!("embedded mode: no DATABASE_URL, so every store is in memory and nothing is persisted");
    match config.management_key_source {
        ManagementKeySource::Generated => warn!(
            management_key = config.management_key.expose(),
            "generated a management key for this process; send it as X-Management-Key (set MANAGEMENT_API_KEY to choose one)"
        ),
        ManagementKeySource::Environment => info!("management key taken from MANAGEMENT_API_KEY"),
    }

    let services = wiring::embedded(&config, wiring::system_clock());
    let started = Instant::now();
    let seeded = services
        .seeder
        .seed(TenantId::DEFAULT, config.seed_events, false)
        .await
        .context("seeding the embedded demo data")?;
    info!(
        events = seeded.events_inserted,
        runs = seeded.runs.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo data seeded and snapshots precomputed"
    );

    let workers: Vec<_> = (0..config.recompute.workers)
        .map(|_| {
            let worker = services.worker.clone();
            tokio::spawn(async move { worker.run().await })
        })
        .collect();
    if workers.is_empty() {
        info!("RECOMPUTE_WORKERS=0: this process serves but runs no recomputes");
    }

    let address = SocketAddr::new(config.http.host, config.http.port);
    let state = services.state.clone();
    let server = HttpServer::new(move || http_api::build_app(state.clone()))
        .workers(config.http.workers)
        .client_request_timeout(config.http.request_timeout)
        .keep_alive(config.http.keep_alive)
        .shutdown_timeout(config.http.shutdown_timeout.as_secs())
        .bind(address)
        .with_context(|| format!("could not listen on {address} (APP_HOST/APP_PORT)"))?;
    info!(%address, version = %config.version, "pg-analytics listening; try GET /api/v1/health");
    server.run().await.context("the HTTP server failed")?;

    info!("HTTP server stopped; letting recompute workers finish their current run");
    services.queue.close().await;
    for worker in workers {
        if let Err(err) = worker.await {
            warn!(error = %err, "a recompute worker ended abnormally");
        }
    }
    info!("pg-analytics stopped");
    Ok(())
}

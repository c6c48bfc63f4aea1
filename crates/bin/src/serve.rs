//! `serve`: the HTTP API with its recompute workers, and a graceful shutdown.

use std::{
    net::{SocketAddr, TcpListener},
    time::Instant,
};

use anyhow::Context;
use application::Services;
use domain::{Scope, TenantId};
use http_api::ServerSettings;
use secrecy::ExposeSecret;
use tracing::{info, warn};

use crate::{
    config::{Config, ManagementKeySource},
    wiring,
};

/// Serves until SIGINT or SIGTERM, then drains: in-flight requests finish (up to the shutdown
/// timeout) and each worker finishes the run it holds before the process exits.
///
/// # Errors
/// When the storage cannot be prepared, seeding fails, or the address cannot be bound.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Serving needs the operator's key (with a database it must be configured).
    config.management_key()?;
    announce(&config);
    // Before the services exist, so that what they record at start-up is kept.
    let recorder = crate::metrics::install(&config)?;
    let wired = wiring::build(&config, wiring::system_clock()).await?;
    let services = &wired.services;
    seed_at_start(&config, services).await?;
    if config.is_embedded() {
        issue_embedded_key(services).await?;
    }

    let workers: Vec<_> = (0..config.recompute.recompute_workers)
        .map(|_| {
            let worker = services.worker.clone();
            tokio::spawn(async move { worker.run().await })
        })
        .collect();
    // Every process with workers schedules refreshes; the queue keeps each one single.
    let scheduler = (!workers.is_empty()).then(|| {
        let scheduler = services.scheduler.clone();
        tokio::spawn(async move { scheduler.run().await })
    });
    if workers.is_empty() && config.is_embedded() {
        warn!(
            "RECOMPUTE_WORKERS=0 in embedded mode: triggered recomputes stay pending, since no other process shares this memory"
        );
    } else if workers.is_empty() {
        info!("RECOMPUTE_WORKERS=0: this process serves but runs no recomputes");
    }

    let consumers = match crate::stream::settings(&config) {
        Some(settings) => Some(crate::stream::Consumers::start(&config, settings, services).await?),
        None => None,
    };
    let metrics = recorder
        .map(|handle| crate::metrics::endpoint(&config, services, wired.pool.clone(), handle));
    let metrics_server = match (&metrics, config.metrics.metrics_addr) {
        (Some(endpoint), Some(address)) => {
            Some(crate::metrics::serve_on(address, endpoint.clone())?)
        }
        _ => None,
    };
    let api_metrics = metrics.filter(|_| config.metrics.metrics_addr.is_none());

    let stopping_since = stop_signal();
    let address = SocketAddr::new(config.http.app_host, config.http.app_port);
    let listener = TcpListener::bind(address)
        .with_context(|| format!("could not listen on {address} (APP_HOST/APP_PORT)"))?;
    let server = http_api::serve(
        listener,
        wiring::app_state(&config, services, api_metrics),
        ServerSettings {
            workers: config.http.workers(),
            keep_alive: config.http.http_keep_alive_secs,
            request_timeout: config.http.http_request_timeout_secs,
            shutdown_timeout: config.http.shutdown_timeout_secs,
            max_connections_per_client: config.http.http_max_connections_per_client,
        },
    )
    .with_context(|| format!("could not serve on {address}"))?;
    info!(%address, version = %config.app_version, "pg-analytics listening; try GET /api/v1/health");
    server.await.context("the HTTP server failed")?;
    // The budget of the whole shutdown starts with the signal the HTTP server stopped on.
    let deadline = stopping_since
        .get()
        .copied()
        .unwrap_or_else(tokio::time::Instant::now)
        + config.http.shutdown_timeout_secs;
    if let Some(metrics_server) = metrics_server {
        metrics_server.stop(false).await;
    }

    if let Some(consumers) = consumers {
        info!("HTTP server stopped; letting stream consumers settle the messages they hold");
        consumers.stop().await;
    }
    info!("HTTP server stopped; letting recompute workers finish their current run");
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    services.ports.queue.close().await;
    let drained = tokio::time::timeout_at(deadline, async {
        for worker in workers {
            if let Err(err) = worker.await {
                warn!(error = %err, "a recompute worker ended abnormally");
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            lease_secs = config.recompute.recompute_lease_secs.as_secs(),
            "SHUTDOWN_TIMEOUT_SECS is up with runs still going: stopping them; each goes back to the queue once its lease expires (RECOMPUTE_LEASE_SECS)"
        );
    }
    if let Some(pool) = &wired.pool {
        pool.close();
    }
    info!("pg-analytics stopped");
    Ok(())
}

/// When SIGTERM or SIGINT arrived, once one has (the HTTP server hears the same signal and
/// starts draining).
fn stop_signal() -> std::sync::Arc<std::sync::OnceLock<tokio::time::Instant>> {
    let since = std::sync::Arc::new(std::sync::OnceLock::new());
    let set = since.clone();
    tokio::spawn(async move {
        stopped().await;
        let _ = set.set(tokio::time::Instant::now());
    });
    since
}

/// Resolves at SIGINT or SIGTERM.
pub(crate) async fn stopped() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The first log lines: which storage, and which management key.
fn announce(config: &Config) {
    if config.is_embedded() {
        warn!(
            "embedded mode: no DATABASE_URL, so every store is in memory and nothing is persisted"
        );
    } else {
        info!(
            max_connections = config.database.database_max_connections,
            ingest_writers = config.database.ingest_writers,
            "storage: PostgreSQL (DATABASE_URL)"
        );
    }
    if config.cache.redis_url.is_some() {
        info!(
            command_timeout_ms = config.cache.redis_command_timeout_ms.as_millis() as u64,
            "cache and scope locks: Redis (REDIS_URL)"
        );
    } else if !config.is_embedded() {
        warn!(
            "no REDIS_URL: each process keeps its own response cache and versions, so a recompute run elsewhere reaches this process's cached results only when they expire"
        );
    }
    match config.management_key_source {
        ManagementKeySource::Generated => warn!(
            management_key = config
                .management_key()
                .map(ExposeSecret::expose_secret)
                .unwrap_or_default(),
            "generated a management key for this process; send it as X-Management-Key (set MANAGEMENT_API_KEY to choose one)"
        ),
        ManagementKeySource::Environment => info!("management key taken from MANAGEMENT_API_KEY"),
        // `run` refuses to serve without one before announcing anything.
        ManagementKeySource::Missing => {}
    }
}

/// Gives the embedded default a key of the `default` tenant with every scope, logged once, so
/// that ingestion can be tried without a database (keys are otherwise created with
/// `pg-analytics api-keys create`, which needs one).
async fn issue_embedded_key(services: &Services) -> anyhow::Result<()> {
    let issued = services
        .tenancy
        .issue_key(TenantId::DEFAULT, &Scope::ALL, "embedded demo key")
        .await
        .context("issuing the embedded demo API key")?;
    warn!(
        api_key = issued.secret.expose_secret(),
        "issued an API key of the default tenant (ingest, read, manage) for this process; send it as X-API-Key"
    );
    Ok(())
}

/// Seeds before the first request is accepted: always in embedded mode, and an empty database
/// when `APP_AUTO_SEED` is on.
async fn seed_at_start(config: &Config, services: &Services) -> anyhow::Result<()> {
    if !config.is_embedded() && !config.database.app_auto_seed {
        return Ok(());
    }
    let started = Instant::now();
    let seeded = services
        .seeder
        .seed_if_empty(TenantId::DEFAULT, config.database.app_seed_events)
        .await
        .context("seeding the demo data at start-up")?;
    match seeded {
        Some(outcome) => info!(
            events = outcome.events_inserted,
            runs = outcome.runs.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "demo data seeded and snapshots precomputed"
        ),
        None => info!("APP_AUTO_SEED: the database already has events; not seeding"),
    }
    Ok(())
}

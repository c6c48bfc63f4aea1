//! The one-shot subcommands: `migrate`, `seed` and `recompute`.

use std::io::Write;

use anyhow::Context;
use application::TriggerRequest;
use domain::{RunStatus, TenantId, dates::format_date};
use tracing::{info, warn};

use crate::{config::Config, wiring};

/// `migrate`: applies pending migrations.
///
/// # Errors
/// Without `DATABASE_URL`, or when a migration fails.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.is_embedded(),
        "migrate needs DATABASE_URL: the embedded default has no schema"
    );
    let pool = wiring::postgres_pool(config)?;
    let applied = postgres_adapter::migrate(&pool).await?;
    writeln!(
        std::io::stdout().lock(),
        "applied {applied} migration(s); the schema is up to date"
    )?;
    Ok(())
}

/// `seed`: writes the demo data set and precomputes its snapshots through completed runs.
/// In embedded mode it seeds a throw-away store and reports what the data set looks like.
///
/// # Errors
/// When a store fails or a precompute run does not complete.
pub async fn seed(config: &Config, events: u64, reset: bool) -> anyhow::Result<()> {
    if config.is_embedded() {
        warn!(
            "no DATABASE_URL: seeding an in-memory store that is discarded when this command exits"
        );
    }
    let services = wiring::build(config, wiring::system_clock()).await?;
    let outcome = services
        .seeder
        .seed(TenantId::DEFAULT, events, reset)
        .await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "seeded {} new demo events ({} events and {} snapshot rows removed first)",
        outcome.events_inserted, outcome.events_removed, outcome.snapshot_rows_removed
    )?;
    for run in &outcome.runs {
        let summary = run.summary.as_ref();
        writeln!(
            out,
            "  run {} {:<16} {:<4} {} rows over {} buckets",
            run.id,
            run.report_slug,
            run.window,
            summary.map_or(0, |s| s.rows_inserted),
            summary.map_or(0, |s| s.bucket_count),
        )?;
    }
    Ok(())
}

/// What `recompute` is asked to rebuild.
#[derive(Debug, Clone)]
pub struct RecomputeArgs {
    pub report: String,
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub requested_by: Option<String>,
}

/// `recompute`: admits a run exactly as the API would (same checks, lock, audit) and executes
/// it in this process, printing the finished run. For schedulers and operators.
///
/// # Errors
/// Without `DATABASE_URL`, when the request is refused, or when the run fails.
pub async fn recompute(config: &Config, args: RecomputeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.is_embedded(),
        "recompute needs DATABASE_URL: the embedded default lives only inside a serving process"
    );
    let services = wiring::build(config, wiring::system_clock()).await?;
    let recompute = &services.state.recompute;
    let request = TriggerRequest {
        report_slug: Some(args.report),
        window: args.window,
        date_from: args.from,
        date_to: args.to,
        requested_by: Some(args.requested_by.unwrap_or_else(|| "cli".to_owned())),
        actor_header: None,
    };
    let parsed = recompute.parse(TenantId::DEFAULT, &request).await?;
    let admitted = recompute.admit(&parsed).await?;
    let now = services.clock.now();
    let running = services
        .ports
        .runs
        .start(TenantId::DEFAULT, admitted.id, now)
        .await?;
    info!(run_id = %running.id, "recompute running in this process");
    let finished = services.worker.execute(running).await;
    let mut out = std::io::stdout().lock();
    match (finished.status, finished.summary) {
        (RunStatus::Completed, Some(summary)) => {
            writeln!(
                out,
                "run {} completed: {} rows deleted, {} inserted over {} buckets ({} to {})",
                finished.id,
                summary.rows_deleted,
                summary.rows_inserted,
                summary.bucket_count,
                format_date(summary.effective_date_from),
                format_date(summary.effective_date_to)
            )?;
            Ok(())
        }
        _ => Err(anyhow::anyhow!(
            "run {} {}: {}",
            finished.id,
            finished.status,
            finished.error_message.unwrap_or_default()
        ))
        .context("the recompute did not complete"),
    }
}

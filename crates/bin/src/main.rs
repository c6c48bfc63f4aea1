//! The `pg-analytics` binary: reads the configuration, sets up logging, wires the adapters into
//! the use cases and runs the command line (`serve` by default, `seed`).
//!
//! This is the only crate that knows every adapter; the others meet only through the ports.

mod config;
mod serve;
mod telemetry;
mod wiring;

use std::{io::Write, process::ExitCode};

use clap::{Parser, Subcommand};
use domain::{TenantId, demo};

use crate::config::Config;

/// PostgreSQL-first analytics: snapshot-backed reports, audited recomputes.
#[derive(Debug, Parser)]
#[command(name = "pg-analytics", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Write the deterministic demo data set and precompute its snapshots.
    Seed {
        /// How many demo events to write.
        #[arg(long, default_value_t = demo::DEFAULT_EVENT_COUNT, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        events: u64,
        /// Delete the tenant's events and snapshots first.
        #[arg(long)]
        reset: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("pg-analytics: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = telemetry::init(config.log_format) {
        eprintln!("pg-analytics: {err:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pg-analytics: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve::run(config).await,
            Command::Seed { events, reset } => seed(config, events, reset).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(
                error = format!("{err:#}"),
                "pg-analytics stopped with an error"
            );
            eprintln!("pg-analytics: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `seed`: in embedded mode it seeds a throw-away in-memory store and reports what the data set
/// looks like; with a database it writes there.
async fn seed(config: Config, events: u64, reset: bool) -> anyhow::Result<()> {
    serve::require_embedded(&config)?;
    tracing::warn!(
        "no DATABASE_URL: seeding an in-memory store that is discarded when this command exits"
    );
    let services = wiring::embedded(&config, wiring::system_clock());
    let outcome = services
        .seeder
        .seed(TenantId::DEFAULT, events, reset)
        .await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "seeded {} demo events ({} removed first)",
        outcome.events_inserted, outcome.events_removed
    )?;
    for run in &outcome.runs {
        let summary = run.summary.as_ref();
        writeln!(
            out,
            "  {} {:<16} {:<4} {} rows over {} buckets",
            run.id,
            run.report_slug,
            run.window,
            summary.map_or(0, |s| s.rows_inserted),
            summary.map_or(0, |s| s.bucket_count),
        )?;
    }
    Ok(())
}

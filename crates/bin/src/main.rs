//! The `pg-analytics` command line.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use domain::demo;
use pg_analytics::{
    commands::{self, RecomputeArgs},
    config::{self, Config},
    serve, telemetry,
};

/// PostgreSQL-first analytics: snapshot-backed reports, audited recomputes.
///
/// Every setting below is read from its environment variable; the flag, when given, wins.
#[derive(Debug, Parser)]
#[command(name = "pg-analytics", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Ingest events from the NATS JetStream stream until SIGTERM (needs DATABASE_URL and
    /// NATS_URL).
    Consume,
    /// Apply pending database migrations (needs DATABASE_URL).
    Migrate,
    /// Write the deterministic demo data set and precompute its snapshots.
    Seed {
        /// How many demo events to write.
        #[arg(long, default_value_t = demo::data().default_event_count, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        events: u64,
        /// Delete the default tenant's events and snapshots first.
        #[arg(long)]
        reset: bool,
    },
    /// Manage tenants (needs DATABASE_URL).
    Tenants {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage a tenant's event sources (needs DATABASE_URL).
    Sources {
        #[command(subcommand)]
        command: SourceCommand,
    },
    /// Manage a tenant's API keys (needs DATABASE_URL).
    #[command(name = "api-keys")]
    ApiKeys {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Rebuild one report's snapshots now, in this process, as an audited run (needs DATABASE_URL).
    Recompute {
        /// The report slug, e.g. status-counts.
        #[arg(long)]
        report: String,
        /// day, week or month, one of the report's windows (default day).
        #[arg(long)]
        window: Option<String>,
        /// First day, YYYY-MM-DD (default: 29 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (default: today, UTC).
        #[arg(long)]
        to: Option<String>,
        /// full (every bucket of the range, the default) or incremental (its dirty buckets).
        #[arg(long)]
        mode: Option<String>,
        /// Who asks, for the audit trail (default: cli).
        #[arg(long)]
        requested_by: Option<String>,
    },
    /// Rebuild one report over a range of any length, window by window, in audited runs of a
    /// few dozen buckets, with a progress bar on a terminal (needs DATABASE_URL).
    Backfill {
        /// The report slug, e.g. traffic.
        #[arg(long)]
        report: String,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD.
        #[arg(long)]
        to: String,
        /// full (every bucket, the default) or incremental (only the dirty ones).
        #[arg(long)]
        mode: Option<String>,
        /// One of the report's windows (default: every one).
        #[arg(long)]
        window: Option<String>,
        /// The tenant's slug (default: default).
        #[arg(long)]
        tenant: Option<String>,
        /// Who asks, for the audit trail (default: cli).
        #[arg(long)]
        requested_by: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// The tenant's slug: lowercase letters, digits and hyphens.
        slug: String,
        /// A display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the tenants.
    List,
}

#[derive(Debug, Subcommand)]
enum SourceCommand {
    /// Add an event source to a tenant.
    Create {
        #[arg(long)]
        tenant: String,
        /// The source's slug, as events name it.
        slug: String,
        /// The provider's display name (default: the slug).
        #[arg(long)]
        provider_name: Option<String>,
    },
    /// List a tenant's sources.
    List {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create a key; it is printed once, alone on the last line.
    Create {
        #[arg(long)]
        tenant: String,
        /// ingest, read or manage; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A note to recognise the key by.
        #[arg(long)]
        name: Option<String>,
        /// Print a JSON object (with the key under "key") instead.
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's keys (prefixes, never the keys).
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its prefix; it stops working at once.
    Revoke {
        #[arg(long)]
        tenant: String,
        prefix: String,
    },
}

fn main() -> ExitCode {
    let matches = config::blank_variables_unset(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let config = match cli.config.finish() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("pg-analytics: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    // Declared before the runtime, so dropped after it: the spans its tasks left are exported.
    let _telemetry = match telemetry::init(&config.log) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("pg-analytics: {err:#}");
            return ExitCode::from(2);
        }
    };
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
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Serve)
        && let Err(err) = config.management_key()
    {
        eprintln!("pg-analytics: invalid configuration: {err}");
        return ExitCode::from(2);
    }
    let outcome = runtime.block_on(async {
        match command {
            Command::Serve => serve::run(config).await,
            Command::Consume => pg_analytics::stream::consume(config).await,
            Command::Migrate => commands::migrate(&config).await,
            Command::Seed { events, reset } => commands::seed(&config, events, reset).await,
            Command::Tenants { command } => match command {
                TenantCommand::Create { slug, name } => {
                    commands::create_tenant(&config, &slug, name.as_deref()).await
                }
                TenantCommand::List => commands::list_tenants(&config).await,
            },
            Command::Sources { command } => match command {
                SourceCommand::Create {
                    tenant,
                    slug,
                    provider_name,
                } => {
                    commands::create_source(&config, &tenant, &slug, provider_name.as_deref()).await
                }
                SourceCommand::List { tenant } => commands::list_sources(&config, &tenant).await,
            },
            Command::ApiKeys { command } => match command {
                ApiKeyCommand::Create {
                    tenant,
                    scopes,
                    name,
                    json,
                } => {
                    commands::create_api_key(&config, &tenant, &scopes, name.as_deref(), json).await
                }
                ApiKeyCommand::List { tenant, json } => {
                    commands::list_api_keys(&config, &tenant, json).await
                }
                ApiKeyCommand::Revoke { tenant, prefix } => {
                    commands::revoke_api_key(&config, &tenant, &prefix).await
                }
            },
            Command::Recompute {
                report,
                window,
                from,
                to,
                mode,
                requested_by,
            } => {
                let args = RecomputeArgs {
                    report,
                    window,
                    from,
                    to,
                    mode,
                    requested_by,
                };
                commands::recompute(&config, args).await
            }
            Command::Backfill {
                report,
                from,
                to,
                mode,
                window,
                tenant,
                requested_by,
            } => {
                let args = pg_analytics::backfill::BackfillArgs {
                    report,
                    from,
                    to,
                    mode,
                    window,
                    tenant,
                    requested_by,
                };
                commands::backfill(&config, args).await
            }
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

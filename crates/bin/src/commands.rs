//! The one-shot subcommands: `migrate`, `seed`, `recompute`, and the administration of tenants,
//! sources and API keys (`tenants`, `sources`, `api-keys`).

use std::io::Write;

use anyhow::Context;
use application::TriggerRequest;
use domain::{RunStatus, TenantId, dates::format_date};
use tracing::warn;

use application::Services;
use secrecy::ExposeSecret;

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
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
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
    pub mode: Option<String>,
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
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
    let recompute = &services.recompute;
    let request = TriggerRequest {
        report_slug: Some(args.report),
        window: args.window,
        date_from: args.from,
        date_to: args.to,
        mode: args.mode,
        requested_by: Some(args.requested_by.unwrap_or_else(|| "cli".to_owned())),
        on_behalf_of: None,
    };
    let parsed = recompute.parse(TenantId::DEFAULT, &request).await?;
    let spinner = crate::backfill::spinner(&format!(
        "{} {} {} ({})",
        parsed.report_slug,
        parsed.window,
        format_date(parsed.range.from()),
        parsed.mode
    ));
    let finished = recompute.run_now(&parsed).await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let finished = finished?;
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

/// `backfill`: see [`crate::backfill`].
///
/// # Errors
/// Without `DATABASE_URL`, or as [`crate::backfill::backfill`].
pub async fn backfill(config: &Config, args: crate::backfill::BackfillArgs) -> anyhow::Result<()> {
    require_database(config, "backfill")?;
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
    crate::backfill::backfill(&services, args).await
}

/// Fails unless the process has a database: administration of an in-memory store would vanish
/// with this command.
fn require_database(config: &Config, command: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.is_embedded(),
        "{command} needs DATABASE_URL: the embedded default lives only inside a serving process"
    );
    Ok(())
}

async fn tenant_id(services: &Services, slug: &str) -> anyhow::Result<TenantId> {
    Ok(services.tenancy.resolve(Some(slug)).await?.id)
}

/// `tenants create SLUG [--name NAME]`: prints the new tenant.
///
/// # Errors
/// Without `DATABASE_URL`, for a bad or taken slug, or when the database fails.
pub async fn create_tenant(config: &Config, slug: &str, name: Option<&str>) -> anyhow::Result<()> {
    require_database(config, "tenants create")?;
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
    let tenant = services.tenancy.create_tenant(slug, name).await?;
    writeln!(
        std::io::stdout().lock(),
        "created tenant {} ({}), id {}",
        tenant.slug,
        tenant.name,
        tenant.id
    )?;
    Ok(())
}

/// `tenants list`.
///
/// # Errors
/// Without `DATABASE_URL`, or when the database fails.
pub async fn list_tenants(config: &Config) -> anyhow::Result<()> {
    require_database(config, "tenants list")?;
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
    let mut out = std::io::stdout().lock();
    for tenant in services.tenancy.tenants().await? {
        writeln!(out, "{}\t{}\t{}", tenant.id, tenant.slug, tenant.name)?;
    }
    Ok(())
}

/// `sources create --tenant SLUG SOURCE_SLUG [--provider-name NAME]`.
///
/// # Errors
/// Without `DATABASE_URL`, for an unknown tenant, a bad or taken slug, or a database failure.
pub async fn create_source(
    config: &Config,
    tenant: &str,
    slug: &str,
    provider_name: Option<&str>,
) -> anyhow::Result<()> {
    require_database(config, "sources create")?;
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
    let tenant_id = tenant_id(&services, tenant).await?;
    let source = services
        .tenancy
        .create_source(
            tenant_id,
            slug,
            provider_name,
            None,
            &domain::Actor::builtin("cli"),
        )
        .await?;
    writeln!(
        std::io::stdout().lock(),
        "created source {} ({}) for tenant {tenant}",
        source.slug,
        source.provider_name
    )?;
    Ok(())
}

/// `sources list --tenant SLUG`.
///
/// # Errors
/// Without `DATABASE_URL`, for an unknown tenant, or a database failure.
pub async fn list_sources(config: &Config, tenant: &str) -> anyhow::Result<()> {
    require_database(config, "sources list")?;
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
    let tenant_id = tenant_id(&services, tenant).await?;
    let mut out = std::io::stdout().lock();
    for source in services.tenancy.sources(tenant_id).await? {
        writeln!(out, "{}\t{}", source.slug, source.provider_name)?;
    }
    Ok(())
}

fn key_json(key: &domain::ApiKey, tenant: &str) -> serde_json::Value {
    serde_json::json!({
        "tenant": tenant,
        "prefix": key.prefix,
        "scopes": key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "name": key.name,
        "created_at": key.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "revoked": key.revoked_at.is_some(),
    })
}

/// `api-keys create --tenant SLUG --scope S [--scope S ...] [--name NAME] [--json]`: prints the
/// new key once, alone on the last line (or as the `key` of a JSON object with `--json`).
///
/// # Errors
/// Without `DATABASE_URL`, for an unknown tenant, a bad scope, or a database failure.
pub async fn create_api_key(
    config: &Config,
    tenant: &str,
    scopes: &[String],
    name: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    require_database(config, "api-keys create")?;
    let scopes = scopes
        .iter()
        .map(|s| s.parse::<domain::Scope>())
        .collect::<Result<Vec<_>, _>>()?;
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
    let tenant_id = tenant_id(&services, tenant).await?;
    let issued = services
        .tenancy
        .issue_key(tenant_id, &scopes, name.unwrap_or_default())
        .await?;
    let mut out = std::io::stdout().lock();
    if json {
        let mut object = key_json(&issued.key, tenant);
        object["key"] = serde_json::Value::String(issued.secret.expose_secret().to_owned());
        writeln!(out, "{object}")?;
    } else {
        let scopes: Vec<&str> = issued.key.scopes.iter().map(|s| s.as_str()).collect();
        writeln!(
            out,
            "created key {} for tenant {tenant} with scopes {}",
            issued.key.prefix,
            scopes.join(", ")
        )?;
        writeln!(out, "the key is shown once; store it now:")?;
        writeln!(out, "{}", issued.secret.expose_secret())?;
    }
    Ok(())
}

/// `api-keys list --tenant SLUG [--json]`: prefixes and scopes, never keys.
///
/// # Errors
/// Without `DATABASE_URL`, for an unknown tenant, or a database failure.
pub async fn list_api_keys(config: &Config, tenant: &str, json: bool) -> anyhow::Result<()> {
    require_database(config, "api-keys list")?;
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
    let tenant_id = tenant_id(&services, tenant).await?;
    let keys = services.tenancy.keys(tenant_id).await?;
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<serde_json::Value> = keys.iter().map(|k| key_json(k, tenant)).collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    } else {
        for key in keys {
            let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
            let state = if key.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            };
            writeln!(
                out,
                "{}\t{}\t{}\t{}",
                key.prefix,
                scopes.join(","),
                state,
                key.name
            )?;
        }
    }
    Ok(())
}

/// `api-keys revoke --tenant SLUG PREFIX`: the key stops working at once.
///
/// # Errors
/// Without `DATABASE_URL`, for an unknown tenant or key, or a database failure.
pub async fn revoke_api_key(config: &Config, tenant: &str, prefix: &str) -> anyhow::Result<()> {
    require_database(config, "api-keys revoke")?;
    let services = wiring::build(config, wiring::system_clock())
        .await?
        .services;
    let tenant_id = tenant_id(&services, tenant).await?;
    let key = services.tenancy.revoke_key(tenant_id, prefix).await?;
    writeln!(
        std::io::stdout().lock(),
        "revoked key {} of tenant {tenant}",
        key.prefix
    )?;
    Ok(())
}

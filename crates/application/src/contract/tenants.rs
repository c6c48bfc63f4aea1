//! [`TenantStore`]: tenants are created once per slug and found by slug; `default` is there
//! from the start; every tenant has the `default` source from its creation.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use domain::{SourceSlug, Tenant, TenantId, TenantSlug};

use crate::ports::{SourceStore, TenancyError, TenantStore};

/// A tenant store holding `default` and no tenant `acme`, and the source store beside it.
pub struct Fixture {
    pub tenants: Arc<dyn TenantStore>,
    pub sources: Arc<dyn SourceStore>,
}

fn acme() -> Result<TenantSlug> {
    Ok(TenantSlug::parse("tenant", "acme")?)
}

/// Creates `acme`.
async fn acme_created(f: &Fixture) -> Result<Tenant> {
    Ok(f.tenants.create(&acme()?, &super::name("Acme")?).await?)
}

pub async fn the_default_tenant_is_there_from_the_start(f: &Fixture) -> Result<()> {
    let default = f
        .tenants
        .find(&TenantSlug::default_tenant())
        .await?
        .context("default exists")?;
    ensure!(default.id == TenantId::DEFAULT, "default is tenant 1");
    Ok(())
}

pub async fn an_unknown_slug_is_not_found(f: &Fixture) -> Result<()> {
    ensure!(
        f.tenants.find(&acme()?).await?.is_none(),
        "acme does not exist yet"
    );
    Ok(())
}

pub async fn a_created_tenant_has_a_new_id_and_its_name(f: &Fixture) -> Result<()> {
    let acme = acme_created(f).await?;
    ensure!(
        acme.id != TenantId::DEFAULT && acme.name == "Acme",
        "a new tenant: {acme:?}"
    );
    Ok(())
}

pub async fn a_created_tenant_is_found_by_slug(f: &Fixture) -> Result<()> {
    let created = acme_created(f).await?;
    ensure!(
        f.tenants.find(&acme()?).await?.map(|t| t.id) == Some(created.id),
        "found by slug"
    );
    Ok(())
}

pub async fn a_second_create_with_the_same_slug_is_already_exists(f: &Fixture) -> Result<()> {
    acme_created(f).await?;
    ensure!(
        matches!(
            f.tenants.create(&acme()?, &super::name("Again")?).await,
            Err(TenancyError::AlreadyExists(_))
        ),
        "a slug is taken once"
    );
    Ok(())
}

pub async fn a_created_tenant_is_listed(f: &Fixture) -> Result<()> {
    let acme = acme_created(f).await?;
    ensure!(
        f.tenants.list().await?.iter().any(|t| t.id == acme.id),
        "listed"
    );
    Ok(())
}

pub async fn a_created_tenant_has_the_default_source(f: &Fixture) -> Result<()> {
    let acme = acme_created(f).await?;
    let sources = f.sources.list(acme.id).await?;
    ensure!(
        sources.len() == 1
            && sources[0].slug == SourceSlug::default_source()
            && sources[0].is_active
            && sources[0].provider_name == SourceSlug::DEFAULT_PROVIDER_NAME,
        "only the default source, active: {sources:?}"
    );
    Ok(())
}

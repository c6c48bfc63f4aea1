//! [`SourceStore`]: sources belong to one tenant; the reference tenant has the demo sources.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use domain::{EventSource, SourceSlug, TenantId};

use crate::ports::{SourceStore, TenancyError};

/// A source store where `tenant` has the demo sources and `other` has no source `klarna`.
pub struct Fixture {
    pub sources: Arc<dyn SourceStore>,
    pub tenant: TenantId,
    pub other: TenantId,
}

fn slugs(list: Vec<EventSource>) -> Vec<String> {
    list.into_iter().map(|s| s.slug.to_string()).collect()
}

fn klarna() -> Result<SourceSlug> {
    Ok(SourceSlug::parse("source", "klarna")?)
}

/// Creates `klarna` for the tenant.
async fn klarna_created(f: &Fixture) -> Result<EventSource> {
    Ok(f.sources
        .create(
            f.tenant,
            &klarna()?,
            &super::name("Klarna")?,
            &super::text("Pay later")?,
        )
        .await?)
}

pub async fn the_reference_tenant_has_the_default_and_demo_sources_by_slug(
    f: &Fixture,
) -> Result<()> {
    ensure!(
        slugs(f.sources.list(f.tenant).await?) == ["adyen", "default", "paypal", "stripe"],
        "the default and demo sources, by slug"
    );
    Ok(())
}

pub async fn a_created_source_is_active_in_its_tenant(f: &Fixture) -> Result<()> {
    let created = klarna_created(f).await?;
    ensure!(
        created.provider_name == "Klarna" && created.is_active && created.tenant == f.tenant,
        "{created:?}"
    );
    Ok(())
}

pub async fn a_slug_is_taken_once_per_tenant(f: &Fixture) -> Result<()> {
    klarna_created(f).await?;
    ensure!(
        matches!(
            f.sources
                .create(
                    f.tenant,
                    &klarna()?,
                    &super::name("Klarna")?,
                    &super::text("")?
                )
                .await,
            Err(TenancyError::AlreadyExists(_))
        ),
        "a slug is taken once per tenant"
    );
    Ok(())
}

pub async fn another_tenant_does_not_see_a_source(f: &Fixture) -> Result<()> {
    klarna_created(f).await?;
    ensure!(
        !slugs(f.sources.list(f.other).await?).contains(&"klarna".to_owned()),
        "another tenant does not see it"
    );
    Ok(())
}

pub async fn another_tenant_may_use_the_same_slug(f: &Fixture) -> Result<()> {
    klarna_created(f).await?;
    f.sources
        .create(
            f.other,
            &klarna()?,
            &super::name("Klarna")?,
            &super::text("")?,
        )
        .await
        .context("the same slug in another tenant")?;
    Ok(())
}

//! The rollups every tenant has, beside the definitions a store holds.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use application::{
    ports::{DefinitionError, RollupDefinitions},
    standard::WithStandardRollups,
};
use domain::{ReportSlug, TenantId};
use memory_adapter::InMemoryRollupDefinitions;
use time::macros::datetime;

const AT: time::OffsetDateTime = datetime!(2026-12-02 12:00 UTC);

#[tokio::test]
async fn every_tenant_has_the_standard_rollups_and_cannot_take_their_slugs() -> Result<()> {
    let inner = Arc::new(InMemoryRollupDefinitions::default());
    let definitions = WithStandardRollups::new(inner.clone());
    let tenant = TenantId::new(42);
    let traffic = definitions
        .get(tenant, &ReportSlug::parse("traffic")?)
        .await?
        .context("every tenant has traffic")?;
    ensure!(traffic.tenant == tenant, "as the tenant's own");

    let mut mine = traffic.definition.clone();
    mine.slug = ReportSlug::parse("mine")?;
    definitions.create(tenant, &mine, 1, AT).await?;
    let listed: Vec<String> = definitions
        .list(tenant)
        .await?
        .iter()
        .map(|s| s.definition.slug.to_string())
        .collect();
    ensure!(
        listed == ["events-by-name", "mine", "top-paths", "traffic"],
        "listed by slug, with the tenant's own: {listed:?}"
    );
    ensure!(
        inner.list(tenant).await?.len() == 1,
        "nothing stored but the tenant's own, which counts alone against the limit of 1"
    );

    ensure!(
        matches!(
            definitions
                .create(tenant, &traffic.definition, 20, AT)
                .await,
            Err(DefinitionError::SlugTaken(_))
        ),
        "a standard slug is taken"
    );
    ensure!(
        !definitions
            .delete(tenant, &ReportSlug::parse("traffic")?)
            .await?,
        "a standard rollup is not deleted"
    );
    ensure!(
        matches!(
            definitions.replace(tenant, &traffic.definition, AT).await,
            Err(DefinitionError::NotFound(_))
        ),
        "a standard rollup is not replaced"
    );
    ensure!(
        definitions
            .get(TenantId::new(7), &ReportSlug::parse("mine")?)
            .await?
            .is_none(),
        "another tenant's own reports are not this one's"
    );
    Ok(())
}

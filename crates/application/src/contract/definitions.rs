//! [`RollupDefinitions`](crate::ports::RollupDefinitions): a tenant's definitions read back as
//! they were written, one per slug, at most the limit, and invisible to other tenants.

use std::sync::Arc;

use anyhow::{Result, ensure};
use domain::{ReportSlug, RollupDefinition, TenantId};
use serde_json::json;
use time::{OffsetDateTime, macros::datetime};

use crate::ports::{DefinitionError, RollupDefinitions};

/// A store with no definitions for `tenant` and `other`.
pub struct Fixture {
    pub definitions: Arc<dyn RollupDefinitions>,
    pub tenant: TenantId,
    pub other: TenantId,
}

const CREATED: OffsetDateTime = datetime!(2026-03-10 06:00 UTC);
const CHANGED: OffsetDateTime = datetime!(2026-03-11 06:00 UTC);
const LIMIT: u32 = 20;

fn definition(slug: &str, channel_dimension: bool) -> Result<RollupDefinition> {
    let mut value = json!({
        "slug": slug,
        "name": format!("Report {slug}"),
        "measures": [{"name": "events", "kind": "count"},
                     {"name": "revenue", "kind": "sum", "field": "properties.revenue"}],
        "filters": {"event_name": "purchase"},
        "windows": [{"window": "day", "retention_days": 90}, {"window": "month", "is_default": true}],
        "cache_ttl_seconds": 30
    });
    if channel_dimension {
        value["dimensions"] = json!([{"field": "properties.channel"}, {"field": "source"}]);
    }
    RollupDefinition::parse(&value).map_err(|errors| anyhow::anyhow!("test definition: {errors:?}"))
}

fn slug(raw: &str) -> Result<ReportSlug> {
    Ok(ReportSlug::parse(raw)?)
}

pub async fn a_created_definition_reads_back_unchanged(f: &Fixture) -> Result<()> {
    let written = definition("by-channel", true)?;
    let created = f
        .definitions
        .create(f.tenant, &written, LIMIT, CREATED)
        .await?;
    ensure!(
        created.definition == written
            && created.tenant == f.tenant
            && created.created_at == CREATED
            && created.updated_at == CREATED,
        "create answered {created:?}"
    );
    let read = f.definitions.get(f.tenant, &slug("by-channel")?).await?;
    ensure!(read.as_ref() == Some(&created), "get answered {read:?}");
    let listed = f.definitions.list(f.tenant).await?;
    ensure!(listed == [created], "list answered {listed:?}");
    Ok(())
}

pub async fn a_second_create_with_the_same_slug_is_refused_and_changes_nothing(
    f: &Fixture,
) -> Result<()> {
    let first = f
        .definitions
        .create(f.tenant, &definition("dup", true)?, LIMIT, CREATED)
        .await?;
    let again = f
        .definitions
        .create(f.tenant, &definition("dup", false)?, LIMIT, CHANGED)
        .await;
    ensure!(
        matches!(again, Err(DefinitionError::SlugTaken(ref s)) if s == "dup"),
        "a second create answered {again:?}"
    );
    let read = f.definitions.get(f.tenant, &slug("dup")?).await?;
    ensure!(
        read == Some(first),
        "the first definition changed: {read:?}"
    );
    Ok(())
}

pub async fn the_limit_counts_the_tenants_own_definitions_only(f: &Fixture) -> Result<()> {
    for name in ["a", "b"] {
        f.definitions
            .create(f.tenant, &definition(name, false)?, 2, CREATED)
            .await?;
    }
    let third = f
        .definitions
        .create(f.tenant, &definition("c", false)?, 2, CREATED)
        .await;
    ensure!(
        matches!(third, Err(DefinitionError::LimitReached(2))),
        "a third of two answered {third:?}"
    );
    ensure!(
        f.definitions.get(f.tenant, &slug("c")?).await?.is_none(),
        "the refused definition was stored"
    );
    f.definitions
        .create(f.other, &definition("a", false)?, 2, CREATED)
        .await?;
    Ok(())
}

pub async fn replace_changes_the_definition_and_keeps_created_at(f: &Fixture) -> Result<()> {
    f.definitions
        .create(f.tenant, &definition("r", true)?, LIMIT, CREATED)
        .await?;
    let changed = definition("r", false)?;
    let replaced = f.definitions.replace(f.tenant, &changed, CHANGED).await?;
    ensure!(
        replaced.definition == changed
            && replaced.created_at == CREATED
            && replaced.updated_at == CHANGED,
        "replace answered {replaced:?}"
    );
    let read = f.definitions.get(f.tenant, &slug("r")?).await?;
    ensure!(read == Some(replaced), "get answered {read:?}");
    Ok(())
}

pub async fn replacing_a_definition_the_tenant_lacks_is_not_found(f: &Fixture) -> Result<()> {
    f.definitions
        .create(f.other, &definition("theirs", true)?, LIMIT, CREATED)
        .await?;
    let replaced = f
        .definitions
        .replace(f.tenant, &definition("theirs", false)?, CHANGED)
        .await;
    ensure!(
        matches!(replaced, Err(DefinitionError::NotFound(ref s)) if s == "theirs"),
        "replace answered {replaced:?}"
    );
    let expected = definition("theirs", true)?;
    let theirs = f.definitions.get(f.other, &slug("theirs")?).await?;
    ensure!(
        theirs.is_some_and(|s| s.definition == expected),
        "the other tenant's definition changed"
    );
    Ok(())
}

pub async fn delete_removes_that_definition_only(f: &Fixture) -> Result<()> {
    for tenant in [f.tenant, f.other] {
        f.definitions
            .create(tenant, &definition("gone", true)?, LIMIT, CREATED)
            .await?;
    }
    f.definitions
        .create(f.tenant, &definition("kept", true)?, LIMIT, CREATED)
        .await?;
    ensure!(
        f.definitions.delete(f.tenant, &slug("gone")?).await?,
        "delete found nothing"
    );
    ensure!(
        !f.definitions.delete(f.tenant, &slug("gone")?).await?,
        "a second delete found something"
    );
    let left: Vec<String> = f
        .definitions
        .list(f.tenant)
        .await?
        .into_iter()
        .map(|s| s.definition.slug.to_string())
        .collect();
    ensure!(left == ["kept"], "left {left:?}");
    ensure!(
        f.definitions.get(f.other, &slug("gone")?).await?.is_some(),
        "the other tenant lost its definition of the same slug"
    );
    Ok(())
}

pub async fn the_list_is_the_tenants_own_by_slug(f: &Fixture) -> Result<()> {
    for name in ["zeta", "alpha", "m-1"] {
        f.definitions
            .create(f.tenant, &definition(name, false)?, LIMIT, CREATED)
            .await?;
    }
    f.definitions
        .create(f.other, &definition("beta", false)?, LIMIT, CREATED)
        .await?;
    let listed: Vec<String> = f
        .definitions
        .list(f.tenant)
        .await?
        .into_iter()
        .map(|s| s.definition.slug.to_string())
        .collect();
    ensure!(listed == ["alpha", "m-1", "zeta"], "listed {listed:?}");
    ensure!(
        f.definitions.get(f.tenant, &slug("beta")?).await?.is_none(),
        "another tenant's definition is visible"
    );
    Ok(())
}

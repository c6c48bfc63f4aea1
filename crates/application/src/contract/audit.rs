//! [`AuditLog`]: entries are appended with ids and times, listed newest first with exact
//! filters.
//!
//! Every promise looks at the same trail: three entries of the tenant (`ops` triggers r1, the
//! worker completes it, `ops` triggers r2) and one of the other tenant.

use std::sync::Arc;

use anyhow::{Result, ensure};
use domain::{Actor, AuditAction, AuditEntry, AuditFilter, NewAuditEntry, PageRequest, TenantId};
use serde_json::json;

use crate::ports::AuditLog;

/// An audit log with no entries for `tenant` and `other`.
pub struct Fixture {
    pub log: Arc<dyn AuditLog>,
    pub tenant: TenantId,
    pub other: TenantId,
}

fn audit_entry(
    tenant: TenantId,
    actor: &str,
    action: AuditAction,
    resource: &str,
) -> Result<NewAuditEntry> {
    Ok(NewAuditEntry {
        tenant,
        actor: Actor::parse(actor)?,
        action,
        resource_type: "recompute_run".to_owned(),
        resource_id: resource.to_owned(),
        metadata: json!({ "report_slug": "status-counts", "nested": { "n": 1 } }),
    })
}

/// The tenant's three entries as recorded, oldest first.
struct Trail {
    first: AuditEntry,
    second: AuditEntry,
    third: AuditEntry,
}

/// Records the trail: three entries of the tenant, then one of the other tenant.
async fn recorded(f: &Fixture) -> Result<Trail> {
    let log = f.log.as_ref();
    let first = log
        .record(audit_entry(
            f.tenant,
            "ops",
            AuditAction::RecomputeTriggered,
            "r1",
        )?)
        .await?;
    let second = log
        .record(audit_entry(
            f.tenant,
            "recompute-worker",
            AuditAction::RecomputeCompleted,
            "r1",
        )?)
        .await?;
    let third = log
        .record(audit_entry(
            f.tenant,
            "ops",
            AuditAction::RecomputeTriggered,
            "r2",
        )?)
        .await?;
    log.record(audit_entry(
        f.other,
        "ops",
        AuditAction::RecomputeTriggered,
        "r3",
    )?)
    .await?;
    Ok(Trail {
        first,
        second,
        third,
    })
}

/// The entries of the tenant matching `filter`, one `page`.
async fn list(
    f: &Fixture,
    filter: &AuditFilter,
    page: PageRequest,
) -> Result<domain::Page<AuditEntry>> {
    Ok(f.log.list(f.tenant, filter, page).await?)
}

pub async fn ids_increase(f: &Fixture) -> Result<()> {
    let Trail {
        first,
        second,
        third,
    } = recorded(f).await?;
    ensure!(first.id < second.id && second.id < third.id, "ids increase");
    Ok(())
}

pub async fn metadata_is_kept_as_json(f: &Fixture) -> Result<()> {
    let trail = recorded(f).await?;
    ensure!(
        trail.first.metadata["nested"]["n"] == 1,
        "metadata is kept as JSON"
    );
    Ok(())
}

pub async fn fields_are_kept(f: &Fixture) -> Result<()> {
    let trail = recorded(f).await?;
    ensure!(
        trail.first.actor.as_str() == "ops" && trail.first.resource_id == "r1",
        "fields are kept"
    );
    Ok(())
}

pub async fn entries_are_listed_newest_first_for_their_tenant_only(f: &Fixture) -> Result<()> {
    let trail = recorded(f).await?;
    let all = list(f, &AuditFilter::default(), PageRequest::new(20, 0)).await?;
    let ids: Vec<i64> = all.items.iter().map(|e| e.id).collect();
    ensure!(
        ids == [trail.third.id, trail.second.id, trail.first.id],
        "newest first, only this tenant: {ids:?}"
    );
    Ok(())
}

pub async fn the_total_counts_the_entries_of_the_tenant(f: &Fixture) -> Result<()> {
    recorded(f).await?;
    let all = list(f, &AuditFilter::default(), PageRequest::new(20, 0)).await?;
    ensure!(all.total == 3, "total of this tenant");
    Ok(())
}

pub async fn the_action_filter_keeps_that_action(f: &Fixture) -> Result<()> {
    recorded(f).await?;
    let triggered = AuditFilter {
        action: Some(AuditAction::RecomputeTriggered),
        actor: None,
    };
    ensure!(
        list(f, &triggered, PageRequest::new(20, 0)).await?.total == 2,
        "action filter"
    );
    Ok(())
}

pub async fn the_actor_filter_is_exact(f: &Fixture) -> Result<()> {
    let trail = recorded(f).await?;
    let worker = AuditFilter {
        action: None,
        actor: Some(Actor::parse("recompute-worker")?),
    };
    let page = list(f, &worker, PageRequest::new(20, 0)).await?;
    ensure!(
        page.total == 1 && page.items.first().map(|e| e.id) == Some(trail.second.id),
        "actor filter is exact"
    );
    Ok(())
}

pub async fn the_actor_filter_is_not_a_prefix_match(f: &Fixture) -> Result<()> {
    recorded(f).await?;
    let prefix = AuditFilter {
        action: None,
        actor: Some(Actor::parse("op")?),
    };
    ensure!(
        list(f, &prefix, PageRequest::new(20, 0)).await?.total == 0,
        "actor filter is not a prefix match"
    );
    Ok(())
}

pub async fn a_page_is_a_slice_of_the_newest_first_list_with_the_full_total(
    f: &Fixture,
) -> Result<()> {
    let trail = recorded(f).await?;
    let paged = list(f, &AuditFilter::default(), PageRequest::new(2, 1)).await?;
    ensure!(
        paged.items.len() == 2 && paged.items[0].id == trail.second.id && paged.total == 3,
        "pagination"
    );
    Ok(())
}

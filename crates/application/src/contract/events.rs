//! [`EventStore`]: events stored once per id and tenant, counted, seeded and cleared per tenant.

use std::sync::Arc;

use anyhow::{Result, ensure};
use domain::TenantId;
use time::macros::datetime;

use super::{fixture_events, store};
use crate::ports::EventStore;

/// An event store with no events for `tenant` and `other`.
pub struct Fixture {
    pub events: Arc<dyn EventStore>,
    pub tenant: TenantId,
    pub other: TenantId,
}

/// When the demo events are seeded.
const SEEDED_AT: time::OffsetDateTime = datetime!(2026-11-21 17:42 UTC);

/// The fixture events stored for the tenant, and the first of them for the other tenant.
async fn stored_for_both(f: &Fixture) -> Result<()> {
    let fixture = fixture_events()?;
    store(f.events.as_ref(), f.tenant, &fixture).await?;
    store(f.events.as_ref(), f.other, &fixture[..1]).await?;
    Ok(())
}

/// As [`stored_for_both`], then 50 and 60 demo events seeded for the other tenant.
async fn seeded_twice(f: &Fixture) -> Result<()> {
    stored_for_both(f).await?;
    f.events.load_demo(f.other, 50, SEEDED_AT).await?;
    f.events.load_demo(f.other, 60, SEEDED_AT).await?;
    Ok(())
}

/// As [`seeded_twice`], then the other tenant cleared.
async fn other_cleared(f: &Fixture) -> Result<()> {
    seeded_twice(f).await?;
    f.events.clear(f.other).await?;
    Ok(())
}

pub async fn every_new_event_is_stored(f: &Fixture) -> Result<()> {
    ensure!(
        store(f.events.as_ref(), f.tenant, &fixture_events()?).await? == 8,
        "every new event is stored"
    );
    Ok(())
}

pub async fn a_known_event_id_is_not_stored_twice(f: &Fixture) -> Result<()> {
    let fixture = fixture_events()?;
    store(f.events.as_ref(), f.tenant, &fixture).await?;
    ensure!(
        store(f.events.as_ref(), f.tenant, &fixture[..2]).await? == 0,
        "a known event id is not stored twice"
    );
    ensure!(f.events.count(f.tenant).await? == 8, "count after a replay");
    Ok(())
}

pub async fn event_ids_are_unique_per_tenant_not_globally(f: &Fixture) -> Result<()> {
    let fixture = fixture_events()?;
    store(f.events.as_ref(), f.tenant, &fixture).await?;
    ensure!(
        store(f.events.as_ref(), f.other, &fixture[..1]).await? == 1,
        "event ids are unique per tenant, not globally"
    );
    Ok(())
}

pub async fn tenants_are_counted_apart(f: &Fixture) -> Result<()> {
    stored_for_both(f).await?;
    ensure!(
        f.events.count(f.other).await? == 1,
        "tenants are counted apart"
    );
    Ok(())
}

pub async fn demo_events_are_new(f: &Fixture) -> Result<()> {
    stored_for_both(f).await?;
    ensure!(
        f.events.load_demo(f.other, 50, SEEDED_AT).await? == 50,
        "demo events are new"
    );
    Ok(())
}

pub async fn demo_seeding_skips_the_ids_it_already_wrote(f: &Fixture) -> Result<()> {
    stored_for_both(f).await?;
    f.events.load_demo(f.other, 50, SEEDED_AT).await?;
    ensure!(
        f.events.load_demo(f.other, 60, SEEDED_AT).await? == 10,
        "demo seeding skips the ids it already wrote"
    );
    Ok(())
}

pub async fn clear_reports_what_it_removed(f: &Fixture) -> Result<()> {
    seeded_twice(f).await?;
    ensure!(
        f.events.clear(f.other).await? == 61,
        "clear reports what it removed"
    );
    Ok(())
}

pub async fn clear_empties_the_tenant(f: &Fixture) -> Result<()> {
    other_cleared(f).await?;
    ensure!(
        f.events.count(f.other).await? == 0,
        "clear empties the tenant"
    );
    Ok(())
}

pub async fn clear_leaves_other_tenants_alone(f: &Fixture) -> Result<()> {
    other_cleared(f).await?;
    ensure!(
        f.events.count(f.tenant).await? == 8,
        "clear leaves other tenants alone"
    );
    Ok(())
}

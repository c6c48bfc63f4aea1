//! [`EventStore::ingest`]: ingestion stores new ids, tells replays from conflicts by
//! fingerprint (also within one call), keeps tenants apart and records which days changed.
//!
//! The promises share one sequence of calls, all at `AT`, all of events of 20 November: `a` and
//! `b` created, `a` replayed, `a` with other content, `c` three times in one call, and `a` for
//! the other tenant. Each makes the calls before the one it checks.

use std::sync::Arc;

use anyhow::{Result, ensure};
use domain::{
    IngestOutcome,
    IngestStatus::{self, Conflict, Created, Duplicate},
    TenantId,
};
use time::{
    OffsetDateTime,
    macros::{date, datetime},
};

use super::{event, range};
use crate::ports::{EventStore, IngestEvent};

/// An event store with no events for `tenant` and `other`.
pub struct Fixture {
    pub events: Arc<dyn EventStore>,
    pub tenant: TenantId,
    pub other: TenantId,
}

/// When the calls are made.
const AT: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
/// When every event occurred.
const DAY: OffsetDateTime = datetime!(2026-11-20 08:00 UTC);

fn item(id: &str, fingerprint: &str) -> Result<IngestEvent> {
    Ok(IngestEvent {
        event: event(id, "stripe", "entity-i", domain::EventStatus::Success, DAY)?,
        fingerprint: fingerprint.to_owned(),
    })
}

fn statuses(outcomes: Vec<IngestOutcome>) -> Vec<IngestStatus> {
    outcomes.into_iter().map(|o| o.status).collect()
}

/// The first call: `a` and `b`, new.
async fn first_call(f: &Fixture) -> Result<Vec<IngestOutcome>> {
    Ok(f.events
        .ingest(f.tenant, vec![item("a", "fp-a")?, item("b", "fp-b")?], AT)
        .await?)
}

/// `a` again, with its content.
async fn replay(f: &Fixture) -> Result<Vec<IngestOutcome>> {
    Ok(f.events
        .ingest(f.tenant, vec![item("a", "fp-a")?], AT)
        .await?)
}

/// `a` again, with other content.
async fn changed(f: &Fixture) -> Result<Vec<IngestOutcome>> {
    Ok(f.events
        .ingest(f.tenant, vec![item("a", "fp-other")?], AT)
        .await?)
}

/// `c`, its replay and other content under it, in one call.
async fn within_one_call(f: &Fixture) -> Result<Vec<IngestOutcome>> {
    Ok(f.events
        .ingest(
            f.tenant,
            vec![item("c", "fp-c")?, item("c", "fp-c")?, item("c", "fp-x")?],
            AT,
        )
        .await?)
}

/// Every call of the sequence made: the tenant's, then `a` for the other tenant.
async fn all_calls(f: &Fixture) -> Result<()> {
    first_call(f).await?;
    replay(f).await?;
    changed(f).await?;
    within_one_call(f).await?;
    f.events
        .ingest(f.other, vec![item("a", "fp-z")?], AT)
        .await?;
    Ok(())
}

pub async fn outcomes_come_in_request_order(f: &Fixture) -> Result<()> {
    let first = first_call(f).await?;
    ensure!(
        first
            .iter()
            .map(|o| o.event_id.as_str())
            .collect::<Vec<_>>()
            == ["a", "b"],
        "outcomes in order"
    );
    Ok(())
}

pub async fn new_ids_are_created(f: &Fixture) -> Result<()> {
    ensure!(
        statuses(first_call(f).await?) == [Created, Created],
        "new ids are created"
    );
    Ok(())
}

pub async fn the_same_content_again_is_a_duplicate(f: &Fixture) -> Result<()> {
    first_call(f).await?;
    ensure!(
        statuses(replay(f).await?) == [Duplicate],
        "the same content again is a duplicate"
    );
    Ok(())
}

pub async fn other_content_under_a_known_id_is_a_conflict(f: &Fixture) -> Result<()> {
    first_call(f).await?;
    replay(f).await?;
    ensure!(
        statuses(changed(f).await?) == [Conflict],
        "other content under a known id is a conflict"
    );
    Ok(())
}

pub async fn one_call_decides_in_order(f: &Fixture) -> Result<()> {
    first_call(f).await?;
    replay(f).await?;
    changed(f).await?;
    ensure!(
        statuses(within_one_call(f).await?) == [Created, Duplicate, Conflict],
        "one call decides in order"
    );
    Ok(())
}

pub async fn duplicates_and_conflicts_store_nothing(f: &Fixture) -> Result<()> {
    first_call(f).await?;
    replay(f).await?;
    changed(f).await?;
    within_one_call(f).await?;
    ensure!(
        f.events.count(f.tenant).await? == 3,
        "only a, b and c are stored"
    );
    Ok(())
}

pub async fn ids_are_unique_per_tenant(f: &Fixture) -> Result<()> {
    first_call(f).await?;
    replay(f).await?;
    changed(f).await?;
    within_one_call(f).await?;
    let foreign = f
        .events
        .ingest(f.other, vec![item("a", "fp-z")?], AT)
        .await?;
    ensure!(statuses(foreign) == [Created], "ids are unique per tenant");
    Ok(())
}

pub async fn the_days_of_created_events_changed_when_they_were_ingested(f: &Fixture) -> Result<()> {
    all_calls(f).await?;
    let around = range(date!(2026 - 11 - 19), date!(2026 - 11 - 21))?;
    ensure!(
        f.events.changed_since(f.tenant, around).await? == Some(AT),
        "the day of created events changed at `at`"
    );
    Ok(())
}

pub async fn other_days_did_not_change(f: &Fixture) -> Result<()> {
    all_calls(f).await?;
    let elsewhere = range(date!(2026 - 10 - 01), date!(2026 - 10 - 31))?;
    ensure!(
        f.events.changed_since(f.tenant, elsewhere).await?.is_none(),
        "other days did not change"
    );
    Ok(())
}

pub async fn a_duplicate_changes_nothing(f: &Fixture) -> Result<()> {
    all_calls(f).await?;
    let later = AT + time::Duration::minutes(5);
    f.events
        .ingest(f.tenant, vec![item("a", "fp-a")?], later)
        .await?;
    let around = range(date!(2026 - 11 - 19), date!(2026 - 11 - 21))?;
    ensure!(
        f.events.changed_since(f.tenant, around).await? == Some(AT),
        "a duplicate changes nothing"
    );
    Ok(())
}

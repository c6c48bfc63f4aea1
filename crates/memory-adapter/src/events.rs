//! Raw events in memory.

use std::{
    collections::{BTreeMap, HashMap},
    sync::RwLock,
};

use application::ports::{EventAdmin, EventChanges, EventIngestion, IngestEvent, StoreError};
use async_trait::async_trait;
use domain::{DateRange, IngestOutcome, IngestStatus, NewEvent, TenantId, demo};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::{FailSwitch, read, write};

#[derive(Debug, Default)]
pub(crate) struct TenantEvents {
    /// The fingerprint of every stored id; empty for events written without one.
    fingerprints: HashMap<String, String>,
    pub(crate) events: Vec<NewEvent>,
    /// When events dated on each UTC day were last ingested.
    changed: BTreeMap<Date, OffsetDateTime>,
}

impl TenantEvents {
    fn insert(&mut self, event: &NewEvent) -> bool {
        self.insert_with(event, "")
    }

    fn insert_with(&mut self, event: &NewEvent, fingerprint: &str) -> bool {
        if self.fingerprints.contains_key(&event.event_id) {
            return false;
        }
        self.fingerprints
            .insert(event.event_id.clone(), fingerprint.to_owned());
        self.events.push(event.clone());
        true
    }
}

/// The events of every tenant; an event id is stored once per tenant.
#[derive(Debug, Default)]
pub struct InMemoryEventStore {
    pub(crate) tenants: RwLock<HashMap<TenantId, TenantEvents>>,
    failure: FailSwitch,
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }
}

#[async_trait]
impl EventIngestion for InMemoryEventStore {
    async fn ingest(
        &self,
        tenant: TenantId,
        events: Vec<IngestEvent>,
        at: OffsetDateTime,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        self.failure
            .check("event store")
            .map_err(StoreError::Unavailable)?;
        let mut tenants = write(&self.tenants);
        let stored = tenants.entry(tenant).or_default();
        let outcomes = events
            .iter()
            .map(|item| {
                let id = &item.event.event_id;
                let status = match stored.fingerprints.get(id) {
                    None => {
                        stored.insert_with(&item.event, &item.fingerprint);
                        let day = item.event.occurred_at.to_offset(UtcOffset::UTC).date();
                        stored.changed.insert(day, at);
                        IngestStatus::Created
                    }
                    Some(known) if *known == item.fingerprint => IngestStatus::Duplicate,
                    Some(_) => IngestStatus::Conflict,
                };
                IngestOutcome {
                    event_id: id.clone(),
                    status,
                }
            })
            .collect();
        Ok(outcomes)
    }
}

#[async_trait]
impl EventChanges for InMemoryEventStore {
    async fn changed_since(
        &self,
        tenant: TenantId,
        range: DateRange,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        self.failure
            .check("event store")
            .map_err(StoreError::Unavailable)?;
        Ok(self.latest_change(tenant, range))
    }
}

impl InMemoryEventStore {
    /// When events of `tenant` dated in `range` last changed.
    pub(crate) fn latest_change(
        &self,
        tenant: TenantId,
        range: DateRange,
    ) -> Option<OffsetDateTime> {
        read(&self.tenants).get(&tenant).and_then(|t| {
            t.changed
                .range(range.from()..=range.to())
                .map(|(_, at)| *at)
                .max()
        })
    }
}

#[async_trait]
impl EventAdmin for InMemoryEventStore {
    async fn load_demo(
        &self,
        tenant: TenantId,
        count: u64,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        self.failure
            .check("event store")
            .map_err(StoreError::Unavailable)?;
        let mut tenants = write(&self.tenants);
        let stored = tenants.entry(tenant).or_default();
        Ok((1..=count)
            .filter(|i| stored.insert(&demo::event(*i, now)))
            .count() as u64)
    }

    async fn count(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.failure
            .check("event store")
            .map_err(StoreError::Unavailable)?;
        Ok(read(&self.tenants)
            .get(&tenant)
            .map_or(0, |t| t.events.len() as u64))
    }

    async fn clear(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.failure
            .check("event store")
            .map_err(StoreError::Unavailable)?;
        Ok(write(&self.tenants)
            .remove(&tenant)
            .map_or(0, |t| t.events.len() as u64))
    }
}

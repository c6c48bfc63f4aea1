//! Raw events in memory.

use std::{
    collections::{HashMap, HashSet},
    sync::RwLock,
};

use application::ports::{EventStore, StoreError};
use async_trait::async_trait;
use domain::{NewEvent, TenantId, demo};
use time::OffsetDateTime;

use crate::{FailSwitch, read, write};

#[derive(Debug, Default)]
pub(crate) struct TenantEvents {
    ids: HashSet<String>,
    pub(crate) events: Vec<NewEvent>,
}

impl TenantEvents {
    fn insert(&mut self, event: &NewEvent) -> bool {
        if self.ids.insert(event.event_id.clone()) {
            self.events.push(event.clone());
            true
        } else {
            false
        }
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
impl EventStore for InMemoryEventStore {
    async fn append(&self, tenant: TenantId, events: &[NewEvent]) -> Result<u64, StoreError> {
        self.failure
            .check("event store")
            .map_err(StoreError::Unavailable)?;
        let mut tenants = write(&self.tenants);
        let stored = tenants.entry(tenant).or_default();
        Ok(events.iter().filter(|event| stored.insert(event)).count() as u64)
    }

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

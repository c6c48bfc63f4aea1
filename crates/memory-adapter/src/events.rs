//! Raw events in memory.

use std::{
    collections::{BTreeMap, HashMap},
    sync::RwLock,
};

use application::ports::{
    EventAdmin, EventChanges, EventIngestion, IngestEvent, StoreError, StoredRollup,
};
use async_trait::async_trait;
use domain::{
    DateRange, DirtyBucket, DirtyReason, IngestOutcome, IngestStatus, NewEvent, ReportSlug,
    TenantId, Window, demo,
    freshness::{Mark, marks_of, tenant_rollups},
};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::{FailSwitch, read, write};

#[derive(Debug, Default)]
pub(crate) struct TenantEvents {
    /// The fingerprint of every stored id; empty for events written without one.
    fingerprints: HashMap<String, String>,
    /// The events, each with its place in the order they were stored.
    pub(crate) events: Vec<(u64, NewEvent)>,
    /// The place of the next event stored.
    pub(crate) next: u64,
    /// When events dated on each UTC day were last ingested.
    changed: BTreeMap<Date, OffsetDateTime>,
    /// The dirty buckets of the tenant's rollups, by rollup, window and bucket.
    pub(crate) marks: BTreeMap<(ReportSlug, Window, Date), Dirty>,
    /// The watermark of each rollup's window (see migration V14 of the PostgreSQL adapter):
    /// its kept buckets count exactly the events stored before this place.
    pub(crate) counted: BTreeMap<(ReportSlug, Window), u64>,
    /// The tenant's own rollup definitions, by slug.
    pub(crate) definitions: BTreeMap<ReportSlug, StoredRollup>,
}

/// A dirty bucket's mark: see the `dirty_buckets` table of the PostgreSQL adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dirty {
    /// Taken from one counter for every mark, so a mark changed after a rebuild read it has
    /// a greater version than the rebuild saw.
    pub(crate) version: u64,
    pub(crate) first_marked_at: OffsetDateTime,
    pub(crate) reason: DirtyReason,
}

impl Dirty {
    /// The mark as a dirty bucket of `window` starting on `bucket_start`.
    pub(crate) fn bucket(&self, window: Window, bucket_start: Date) -> DirtyBucket {
        DirtyBucket {
            window,
            bucket_start,
            reason: self.reason,
            first_marked_at: self.first_marked_at,
        }
    }
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
        self.events.push((self.next, event.clone()));
        self.next += 1;
        true
    }

    /// Marks dirty, at `at` for `reason`, each of `marks` with a version from `versions`.
    pub(crate) fn mark(
        &mut self,
        marks: impl IntoIterator<Item = Mark>,
        at: OffsetDateTime,
        reason: DirtyReason,
        versions: &std::sync::atomic::AtomicU64,
    ) {
        for mark in marks {
            let version = versions.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            self.marks
                .entry((mark.report, mark.window, mark.bucket_start))
                .and_modify(|dirty| {
                    dirty.version = version;
                    dirty.reason = dirty.reason.max(reason);
                })
                .or_insert(Dirty {
                    version,
                    first_marked_at: at,
                    reason,
                });
        }
    }

    /// The buckets `events` change among the tenant's rollups.
    fn marks_of<'a>(
        &self,
        events: impl IntoIterator<Item = &'a NewEvent>,
        today: Date,
    ) -> std::collections::BTreeSet<Mark> {
        let rollups = tenant_rollups(self.definitions.values().map(|stored| &stored.definition));
        marks_of(&rollups, events, today)
    }

    /// The UTC days the tenant has events on.
    pub(crate) fn days(&self) -> impl Iterator<Item = Date> + '_ {
        self.changed.keys().copied()
    }
}

/// The events of every tenant; an event id is stored once per tenant. Beside them, as in one
/// database, the tenants' rollup definitions and the dirty marks of their buckets.
#[derive(Debug, Default)]
pub struct InMemoryEventStore {
    pub(crate) tenants: RwLock<HashMap<TenantId, TenantEvents>>,
    /// The last version given to a dirty mark.
    pub(crate) versions: std::sync::atomic::AtomicU64,
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

    /// The events stored for `tenant`, in the order they were stored.
    pub fn stored(&self, tenant: TenantId) -> Vec<NewEvent> {
        read(&self.tenants)
            .get(&tenant)
            .map(|events| events.events.iter().map(|(_, e)| e.clone()).collect())
            .unwrap_or_default()
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
        let mut created = Vec::new();
        let outcomes = events
            .iter()
            .map(|item| {
                let id = &item.event.event_id;
                let status = match stored.fingerprints.get(id) {
                    None => {
                        stored.insert_with(&item.event, &item.fingerprint);
                        let day = item.event.occurred_at.to_offset(UtcOffset::UTC).date();
                        stored.changed.insert(day, at);
                        created.push(&item.event);
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
        let marks = stored.marks_of(created, at.date());
        stored.mark(marks, at, DirtyReason::Events, &self.versions);
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
        let created: Vec<NewEvent> = (1..=count)
            .map(|i| demo::event(i, now))
            .filter(|event| stored.insert(event))
            .collect();
        for event in &created {
            let day = event.occurred_at.to_offset(UtcOffset::UTC).date();
            stored.changed.insert(day, now);
        }
        let marks = stored.marks_of(&created, now.date());
        stored.mark(marks, now, DirtyReason::Events, &self.versions);
        Ok(created.len() as u64)
    }

    async fn count(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.failure
            .check("event store")
            .map_err(StoreError::Unavailable)?;
        Ok(read(&self.tenants)
            .get(&tenant)
            .map_or(0, |t| t.events.len() as u64))
    }

    async fn purge(&self, tenant: TenantId, before: Date, _batch: u32) -> Result<u64, StoreError> {
        self.failure
            .check("event store")
            .map_err(StoreError::Unavailable)?;
        let cutoff = before.midnight().assume_utc();
        let mut tenants = write(&self.tenants);
        let Some(held) = tenants.get_mut(&tenant) else {
            return Ok(0);
        };
        let before_count = held.events.len();
        let mut gone = Vec::new();
        held.events.retain(|(_, event)| {
            let keep = event.occurred_at >= cutoff;
            if !keep {
                gone.push(event.event_id.clone());
            }
            keep
        });
        for id in gone {
            held.fingerprints.remove(&id);
        }
        held.changed = held.changed.split_off(&before);
        Ok((before_count - held.events.len()) as u64)
    }

    async fn clear(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.failure
            .check("event store")
            .map_err(StoreError::Unavailable)?;
        // The tenant's definitions stay; its events, and what they made dirty, go.
        Ok(write(&self.tenants).get_mut(&tenant).map_or(0, |t| {
            t.fingerprints.clear();
            t.changed.clear();
            t.marks.clear();
            t.counted.clear();
            std::mem::take(&mut t.events).len() as u64
        }))
    }
}

//! Rollup snapshot rows in memory, and their rebuild from the event store.
//!
//! Each event is read as the domain defines (`Field::value_of`, `NumericField::addend`,
//! `FieldFilter::matches`) and rows are ordered by `rollup::compare_rows`: the semantics the
//! SQL of the PostgreSQL adapter must match, which the contract suite checks on both.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use application::ports::{
    DefinitionError, RollupDefinitions, RollupRebuild, RollupRebuildOutcome, RollupStore,
    SourceSystem, StoreError, StoredRollup,
};
use async_trait::async_trait;
use domain::{
    ReportSlug, RollupDefinition, RollupPage, RollupQuery, RollupRow, RunId, TenantId, Window,
    rollup::{MeasureValue, MergedPage, MergedRow, Overflow, SpanQuery, compare_rows},
};
use time::{Date, OffsetDateTime};

use crate::{FailSwitch, InMemoryEventStore, read, write};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    measures: Vec<MeasureValue>,
    computed_at: OffsetDateTime,
    run_id: RunId,
}

/// A row's bucket (its first day, and its hour for the `hour` window, else 0) and dimension
/// values.
type Key = ((Date, u8), Vec<Option<String>>);

/// The rows of one tenant, rollup and window, keyed by bucket and dimension values.
type Series = BTreeMap<Key, Stored>;

/// A read row's bucket (when by period) and grouped dimension values.
type RowKey = (Option<(Date, u8)>, Vec<Option<String>>);

/// Rollup snapshot rows, rebuilt from an [`InMemoryEventStore`].
#[derive(Debug)]
pub struct InMemoryRollupStore {
    events: Arc<InMemoryEventStore>,
    series: RwLock<HashMap<(TenantId, ReportSlug, Window), Series>>,
    failure: FailSwitch,
}

impl InMemoryRollupStore {
    /// A store rebuilding from `events`.
    pub fn new(events: Arc<InMemoryEventStore>) -> Self {
        Self {
            events,
            series: RwLock::default(),
            failure: FailSwitch::default(),
        }
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }

    fn check(&self) -> Result<(), StoreError> {
        self.failure
            .check("rollup store")
            .map_err(StoreError::Unavailable)
    }

    /// Every row of `query`, ordered, with its mergeable measures. A tiled read merges the
    /// coarser windows' buckets only when each was computed after the latest change to the
    /// events it counts; otherwise it reads `query.window` alone.
    fn merged(&self, query: &RollupQuery) -> Result<MergedPage, StoreError> {
        self.check()?;
        let tiles = query.tiles();
        // Read before the rows' lock: the event store's lock is never taken while it is held.
        let changed_at = self
            .events
            .latest_change(query.tenant, query.window.widen(query.range));
        // Each bucket of a coarser window in the tiles, with the latest change to its days.
        let mut changed: Vec<(Window, Date, OffsetDateTime)> = Vec::new();
        for (window, range) in tiles.iter().filter(|(w, _)| *w != query.window) {
            let mut bucket = range.from();
            while bucket <= range.to() {
                let end = window.bucket_end(bucket);
                if let Ok(days) = domain::DateRange::new(bucket, end)
                    && let Some(latest) = self.events.latest_change(query.tenant, days)
                {
                    changed.push((*window, bucket, latest));
                }
                let Some(next) = end.next_day() else { break };
                bucket = next;
            }
        }
        let series = read(&self.series);
        let mut grouped: HashMap<RowKey, Vec<MeasureValue>> = HashMap::new();
        let mut refreshed: BTreeMap<Window, OffsetDateTime> = BTreeMap::new();
        for (window, range) in &tiles {
            let selected = series
                .get(&(query.tenant, query.report.clone(), *window))
                .into_iter()
                .flat_map(|rows| rows.iter())
                .filter(|(((day, _), values), _)| {
                    range.contains(*day)
                        && query.filters.iter().all(|(position, wanted)| {
                            values.get(*position).and_then(Option::as_deref)
                                == Some(wanted.as_str())
                        })
                });
            for ((bucket, values), stored) in selected {
                let newest = refreshed.entry(*window).or_insert(stored.computed_at);
                *newest = (*newest).max(stored.computed_at);
                let key = (
                    query.by_period.then_some(*bucket),
                    query
                        .dimensions
                        .iter()
                        .map(|position| values.get(*position).cloned().flatten())
                        .collect(),
                );
                let combined = grouped
                    .entry(key)
                    .or_insert_with(|| query.measures.iter().map(|c| c.empty()).collect());
                for (value, more) in combined.iter_mut().zip(&stored.measures) {
                    value.combine(more).map_err(overflow)?;
                }
            }
        }
        // A coarser bucket whose events changed after it was computed (or never computed).
        let consistent = changed.iter().all(|(window, bucket, latest)| {
            series
                .get(&(query.tenant, query.report.clone(), *window))
                .into_iter()
                .flat_map(|rows| rows.range(((*bucket, 0), Vec::new())..))
                .take_while(|(((day, _), _), _)| day == bucket)
                .map(|(_, stored)| stored.computed_at)
                .max()
                .is_some_and(|computed| computed >= *latest)
        });
        drop(series);
        if !consistent {
            let mut alone = query.clone();
            alone.coarser.clear();
            return self.merged(&alone);
        }
        // As fresh as its least fresh window (untiled, there is one).
        let last_refreshed_at = refreshed.values().min().copied();
        let mut rows: Vec<MergedRow> = grouped
            .into_iter()
            .map(|((bucket, dimensions), values)| MergedRow {
                row: RollupRow {
                    bucket_date: bucket.map(|(day, _)| day),
                    bucket_hour: bucket
                        .filter(|_| query.window.is_hourly())
                        .map(|(_, hour)| hour),
                    dimensions,
                    measures: values.iter().map(MeasureValue::number).collect(),
                },
                values,
            })
            .collect();
        rows.sort_by(|a, b| compare_rows(query.order, &a.row, &b.row));
        Ok(MergedPage {
            rows,
            last_refreshed_at,
            changed_at,
        })
    }
}

/// A total beyond the 64-bit range, as a store error.
fn overflow(err: Overflow) -> StoreError {
    StoreError::Unexpected(err.into())
}

#[async_trait]
impl RollupStore for InMemoryRollupStore {
    fn system(&self) -> SourceSystem {
        SourceSystem::Memory
    }

    async fn rebuild(
        &self,
        request: &RollupRebuild,
    ) -> Result<Vec<RollupRebuildOutcome>, StoreError> {
        self.check()?;
        request.check()?;
        let rollup = &request.rollup;
        let mut built = Vec::new();
        for part in &request.windows {
            let mut groups: BTreeMap<Key, Vec<MeasureValue>> = BTreeMap::new();
            let mut values_skipped = 0_u64;
            let tenants = read(&self.events.tenants);
            for event in tenants
                .get(&request.tenant)
                .iter()
                .flat_map(|t| t.events.iter())
            {
                let bucket = part.window.bucket_of(event.occurred_at);
                if !part.range.contains(bucket.0)
                    || !rollup.filters.iter().all(|filter| filter.matches(event))
                {
                    continue;
                }
                let Some(values) = rollup.dimension_values(event) else {
                    continue;
                };
                let key = (bucket, values);
                let values = groups.entry(key).or_insert_with(|| {
                    rollup
                        .measures
                        .iter()
                        .map(|m| m.kind.combine().empty())
                        .collect()
                });
                for (value, measure) in values.iter_mut().zip(&rollup.measures) {
                    if measure.add(value, event).map_err(overflow)? {
                        values_skipped += 1;
                    }
                }
            }
            built.push((part, groups, values_skipped));
        }

        // One write lock over every delete and insert: readers see the old rows or the new.
        let mut series = write(&self.series);
        let mut outcomes = Vec::new();
        for (part, groups, values_skipped) in built {
            let rows = series
                .entry((request.tenant, request.report.clone(), part.window))
                .or_default();
            let before = rows.len();
            rows.retain(|((day, _), _), _| !part.range.contains(*day));
            let rows_deleted = (before - rows.len()) as u64;
            let rows_inserted = groups.len() as u64;
            for (key, measures) in groups {
                rows.insert(
                    key,
                    Stored {
                        measures,
                        computed_at: request.computed_at,
                        run_id: part.run_id,
                    },
                );
            }
            outcomes.push(RollupRebuildOutcome {
                rows_deleted,
                rows_inserted,
                values_skipped,
            });
        }
        Ok(outcomes)
    }

    async fn read(&self, query: &RollupQuery) -> Result<RollupPage, StoreError> {
        let merged = self.merged(query)?;
        let total_rows = merged.rows.len() as u64;
        let rows = merged.rows.into_iter().map(|merged| merged.row).collect();
        Ok(RollupPage {
            rows: query.page.slice(rows),
            total_rows,
            last_refreshed_at: merged.last_refreshed_at,
            changed_at: merged.changed_at,
        })
    }

    async fn read_merged(&self, query: &RollupQuery) -> Result<MergedPage, StoreError> {
        self.merged(query)
    }

    async fn aggregate_span(&self, span: &SpanQuery) -> Result<Vec<MeasureValue>, StoreError> {
        self.check()?;
        span.check()
            .map_err(|e| StoreError::Unexpected(anyhow::anyhow!(e)))?;
        let measures = &span.rollup.measures;
        let mut values: Vec<MeasureValue> =
            measures.iter().map(|m| m.kind.combine().empty()).collect();
        let tenants = read(&self.events.tenants);
        for event in tenants
            .get(&span.tenant)
            .iter()
            .flat_map(|t| t.events.iter())
            .filter(|event| span.counts(event))
        {
            for (value, measure) in values.iter_mut().zip(measures) {
                measure.add(value, event).map_err(overflow)?;
            }
        }
        Ok(values)
    }

    async fn remove(&self, tenant: TenantId, report: &ReportSlug) -> Result<u64, StoreError> {
        self.check()?;
        let mut series = write(&self.series);
        let mut removed = 0;
        series.retain(|(t, r, _), rows| {
            if *t == tenant && r == report {
                removed += rows.len() as u64;
                false
            } else {
                true
            }
        });
        Ok(removed)
    }

    async fn clear(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.check()?;
        let mut series = write(&self.series);
        let mut removed = 0;
        series.retain(|(t, _, _), rows| {
            if *t == tenant {
                removed += rows.len() as u64;
                false
            } else {
                true
            }
        });
        Ok(removed)
    }
}

#[cfg(feature = "test-support")]
#[async_trait]
impl application::ports::SnapshotRows for InMemoryRollupStore {
    async fn rows(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        _dimensions: usize,
        window: Window,
        range: domain::DateRange,
    ) -> Result<Vec<application::ports::SnapshotRow>, StoreError> {
        self.check()?;
        let series = read(&self.series);
        Ok(series
            .get(&(tenant, report.clone(), window))
            .into_iter()
            .flat_map(|rows| rows.iter())
            .filter(|(((day, _), _), _)| range.contains(*day))
            .map(
                |(((day, hour), values), stored)| application::ports::SnapshotRow {
                    bucket_start: *day,
                    bucket_hour: *hour,
                    dimension_values: values.clone(),
                    measure_values: stored.measures.iter().map(MeasureValue::number).collect(),
                    computed_at: stored.computed_at,
                    run_id: stored.run_id,
                },
            )
            .collect())
    }
}

/// Tenants' rollup definitions in memory.
#[derive(Debug, Default)]
pub struct InMemoryRollupDefinitions {
    definitions: RwLock<BTreeMap<(TenantId, ReportSlug), StoredRollup>>,
    failure: FailSwitch,
}

impl InMemoryRollupDefinitions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }

    fn check(&self) -> Result<(), StoreError> {
        self.failure
            .check("rollup definitions")
            .map_err(StoreError::Unavailable)
    }
}

#[async_trait]
impl RollupDefinitions for InMemoryRollupDefinitions {
    async fn create(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        limit: u32,
        at: OffsetDateTime,
    ) -> Result<StoredRollup, DefinitionError> {
        self.check()?;
        let mut definitions = write(&self.definitions);
        let key = (tenant, definition.slug.clone());
        if definitions.contains_key(&key) {
            return Err(DefinitionError::SlugTaken(definition.slug.to_string()));
        }
        let held = definitions.keys().filter(|(t, _)| *t == tenant).count();
        if held >= limit as usize {
            return Err(DefinitionError::LimitReached(limit));
        }
        let stored = StoredRollup {
            tenant,
            definition: definition.clone(),
            created_at: at,
            updated_at: at,
        };
        definitions.insert(key, stored.clone());
        Ok(stored)
    }

    async fn replace(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        at: OffsetDateTime,
    ) -> Result<StoredRollup, DefinitionError> {
        self.check()?;
        let mut definitions = write(&self.definitions);
        let stored = definitions
            .get_mut(&(tenant, definition.slug.clone()))
            .ok_or_else(|| DefinitionError::NotFound(definition.slug.to_string()))?;
        stored.definition = definition.clone();
        stored.updated_at = at;
        Ok(stored.clone())
    }

    async fn delete(&self, tenant: TenantId, slug: &ReportSlug) -> Result<bool, StoreError> {
        self.check()?;
        Ok(write(&self.definitions)
            .remove(&(tenant, slug.clone()))
            .is_some())
    }

    async fn get(
        &self,
        tenant: TenantId,
        slug: &ReportSlug,
    ) -> Result<Option<StoredRollup>, StoreError> {
        self.check()?;
        Ok(read(&self.definitions)
            .get(&(tenant, slug.clone()))
            .cloned())
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<StoredRollup>, StoreError> {
        self.check()?;
        Ok(read(&self.definitions)
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|(_, stored)| stored.clone())
            .collect())
    }
}

//! Rollup snapshot rows in memory, and their rebuild from the event store.
//!
//! Each event is read as the domain defines (`Field::value_of`, `NumericField::addend`,
//! `FieldFilter::matches`) and rows are ordered by `rollup::compare_rows`: the semantics the
//! SQL of the PostgreSQL adapter must match, which the contract suite checks on both.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, RwLock},
};

use application::ports::{
    DefinitionError, RollupDefinitions, RollupRebuild, RollupRebuildOutcome, RollupStore,
    SourceSystem, StoreError, StoredRollup,
};
use async_trait::async_trait;
use domain::{
    DirtyBucket, DirtyReason, DirtyScope, ReportSlug, RollupDefinition, RollupPage, RollupQuery,
    RollupRow, RunId, RunMode, TenantId, Window,
    freshness::Mark,
    rollup::{MeasureValue, MergedPage, MergedRow, Overflow, SpanQuery, compare_rows},
};
use time::{Date, OffsetDateTime};

use crate::{
    FailSwitch, InMemoryEventStore,
    events::{Dirty, TenantEvents},
    read, write,
};

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
    rebuilding: std::sync::Mutex<()>,
    failure: FailSwitch,
}

/// What a rebuild read and aggregated for one window, before it writes.
struct Built<'a> {
    part: &'a application::ports::WindowRebuild,
    groups: BTreeMap<Key, Vec<MeasureValue>>,
    values_skipped: u64,
    /// The marks of the window's range.
    seen: Vec<(Date, Dirty)>,
    /// The buckets replaced, when not all of the range's (an incremental rebuild's).
    only: Option<BTreeSet<Date>>,
    bucket_count: u32,
    /// Whether the groups add to the stored rows instead of replacing buckets.
    delta: bool,
    /// The window's watermark after the rebuild, if it takes one.
    watermark: Option<u64>,
}

impl InMemoryRollupStore {
    /// A store rebuilding from `events`.
    pub fn new(events: Arc<InMemoryEventStore>) -> Self {
        Self {
            events,
            series: RwLock::default(),
            rebuilding: std::sync::Mutex::default(),
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
    /// coarser windows' buckets only when none of them is dirty; otherwise it reads
    /// `query.window` alone.
    fn merged(&self, query: &RollupQuery) -> Result<MergedPage, StoreError> {
        self.check()?;
        let tiles = query.tiles();
        // Read before the rows' lock: the event store's lock is never taken while it is held.
        let (uncounted_since, lagging) = {
            let tenants = read(&self.events.tenants);
            let marks = tenants.get(&query.tenant).map(|t| &t.marks);
            let in_range = |window: Window, range: domain::DateRange| {
                let key = move |day| (query.report.clone(), window, day);
                marks
                    .into_iter()
                    .flat_map(move |marks| marks.range(key(range.from())..=key(range.to())))
                    .map(|(_, dirty)| dirty.first_marked_at)
            };
            let uncounted_since = in_range(query.window, query.range).min();
            let lagging = tiles
                .iter()
                .filter(|(w, _)| *w != query.window)
                .any(|(window, range)| in_range(*window, *range).next().is_some());
            (uncounted_since, lagging)
        };
        if lagging {
            let mut alone = query.clone();
            alone.coarser.clear();
            return self.merged(&alone);
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
        drop(series);
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
            uncounted_since,
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
        // One rebuild at a time, as the PostgreSQL store's rebuild lock keeps them per window:
        // two deltas from one watermark would count the same events twice.
        let _one = self
            .rebuilding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut built = Vec::new();
        for part in &request.windows {
            let mut groups: BTreeMap<Key, Vec<MeasureValue>> = BTreeMap::new();
            let mut values_skipped = 0_u64;
            let tenants = read(&self.events.tenants);
            let held = tenants.get(&request.tenant);
            // The marks and the watermark, read with the events they stand for: the marks
            // inside the range are its dirty buckets; one outside keeps the window from taking
            // a watermark.
            let key = |day| (request.report.clone(), part.window, day);
            let (seen, outside): (Vec<(Date, Dirty)>, Vec<(Date, Dirty)>) = held
                .into_iter()
                .flat_map(|t| {
                    t.marks
                        .range(key(Date::MIN)..=key(Date::MAX))
                        .map(|((_, _, day), dirty)| (*day, *dirty))
                })
                .partition(|(day, _)| part.range.contains(*day));
            let snapshot = held.map_or(0, |t| t.next);
            let redefined = seen
                .iter()
                .any(|(_, dirty)| dirty.reason == DirtyReason::Definition);
            // An incremental window with a watermark, and no bucket dirty for a change of its
            // definition, adds the events stored since to its rows (a delta).
            let delta = (part.mode == RunMode::Incremental && !redefined)
                .then(|| {
                    held.and_then(|t| {
                        t.counted
                            .get(&(request.report.clone(), part.window))
                            .copied()
                    })
                })
                .flatten();
            let only: Option<BTreeSet<Date>> = match part.mode {
                RunMode::Full => None,
                RunMode::Incremental => Some(seen.iter().map(|(day, _)| *day).collect()),
            };
            let counted = |stored: u64, day: Date| match delta {
                Some(from) => stored >= from && part.range.contains(day),
                None => {
                    part.range.contains(day) && only.as_ref().is_none_or(|only| only.contains(&day))
                }
            };
            for (stored, event) in held.iter().flat_map(|t| t.events.iter()) {
                let bucket = part.window.bucket_of(event.occurred_at);
                if !counted(*stored, bucket.0)
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
            drop(tenants);
            let bucket_count = match &only {
                None => part.window.bucket_count(part.range),
                Some(only) => {
                    let per_day = if part.window.is_hourly() { 24 } else { 1 };
                    u32::try_from(only.len())
                        .unwrap_or(u32::MAX)
                        .saturating_mul(per_day)
                }
            };
            built.push(Built {
                part,
                groups,
                values_skipped,
                seen,
                only: only.filter(|_| delta.is_none()),
                bucket_count,
                delta: delta.is_some(),
                watermark: outside.is_empty().then_some(snapshot),
            });
        }

        // One write lock over every delete and insert: readers see the old rows or the new.
        let mut series = write(&self.series);
        let mut writes = Vec::new();
        for built in &mut built {
            let rows = series.get(&(request.tenant, request.report.clone(), built.part.window));
            let stored = |measures| Stored {
                measures,
                computed_at: request.computed_at,
                run_id: built.part.run_id,
            };
            let groups = std::mem::take(&mut built.groups);
            let mut written = Vec::with_capacity(groups.len());
            if built.delta {
                // Each group adds to its stored row, or is a new one; all are merged before
                // any is written, so an overflow leaves the rows as they were.
                for (key, mut measures) in groups {
                    if let Some(old) = rows.and_then(|rows| rows.get(&key)) {
                        let mut merged = old.measures.clone();
                        for (value, more) in merged.iter_mut().zip(&measures) {
                            value.combine(more).map_err(overflow)?;
                        }
                        measures = merged;
                    }
                    written.push((key, stored(measures)));
                }
            } else {
                written.extend(groups.into_iter().map(|(key, m)| (key, stored(m))));
            }
            writes.push(written);
        }
        let mut outcomes = Vec::new();
        for (built, written) in built.iter().zip(writes) {
            let part = built.part;
            let rows = series
                .entry((request.tenant, request.report.clone(), part.window))
                .or_default();
            let before = rows.len();
            if !built.delta {
                rows.retain(|((day, _), _), _| {
                    !(part.range.contains(*day)
                        && built.only.as_ref().is_none_or(|only| only.contains(day)))
                });
            }
            let rows_deleted = (before - rows.len()) as u64;
            let rows_inserted = written.len() as u64;
            rows.extend(written);
            outcomes.push(RollupRebuildOutcome {
                rows_deleted,
                rows_inserted,
                values_skipped: built.values_skipped,
                bucket_count: built.bucket_count,
                dirty: built
                    .seen
                    .iter()
                    .map(|(day, dirty)| dirty.bucket(part.window, *day))
                    .collect(),
            });
        }
        drop(series);
        // The marks seen are cleared, unless they changed since they were read; a window
        // whose every mark was seen in its range counts exactly the events read: its watermark.
        let mut tenants = write(&self.events.tenants);
        if let Some(held) = tenants.get_mut(&request.tenant) {
            for built in &built {
                let window = built.part.window;
                for (day, dirty) in &built.seen {
                    let key = (request.report.clone(), window, *day);
                    match held.marks.get_mut(&key) {
                        Some(now) if now.version <= dirty.version => {
                            held.marks.remove(&key);
                        }
                        // Changed since it was read: what changed before the rebuild is
                        // counted now.
                        Some(now) => {
                            now.first_marked_at = now.first_marked_at.max(request.computed_at);
                        }
                        None => {}
                    }
                }
                let key = (request.report.clone(), window);
                match built.watermark {
                    Some(snapshot) => held.counted.insert(key, snapshot),
                    None => held.counted.remove(&key),
                };
            }
        }
        Ok(outcomes)
    }

    async fn expire(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        window: Window,
        before: Date,
        _batch: u32,
    ) -> Result<u64, StoreError> {
        self.check()?;
        let deleted = write(&self.series)
            .get_mut(&(tenant, report.clone(), window))
            .map_or(0, |rows| {
                let kept = rows.split_off(&((before, 0), Vec::new()));
                std::mem::replace(rows, kept).len() as u64
            });
        if let Some(held) = write(&self.events.tenants).get_mut(&tenant) {
            held.marks
                .retain(|(r, w, day), _| !(r == report && *w == window && *day < before));
        }
        Ok(deleted)
    }

    async fn dirty(
        &self,
        tenant: TenantId,
        report: &ReportSlug,
        window: Window,
        range: domain::DateRange,
    ) -> Result<Vec<DirtyBucket>, StoreError> {
        self.check()?;
        let key = |day| (report.clone(), window, day);
        Ok(read(&self.events.tenants)
            .get(&tenant)
            .into_iter()
            .flat_map(|t| {
                t.marks
                    .range(key(range.from())..=key(range.to()))
                    .map(|((_, window, day), dirty)| dirty.bucket(*window, *day))
            })
            .collect())
    }

    async fn dirty_scopes(&self, since: Date, today: Date) -> Result<Vec<DirtyScope>, StoreError> {
        self.check()?;
        let tenants = read(&self.events.tenants);
        let mut scopes: BTreeMap<(TenantId, ReportSlug, Window), DirtyScope> = BTreeMap::new();
        for (tenant, held) in tenants.iter() {
            for ((report, window, day), dirty) in &held.marks {
                if *day < since {
                    continue;
                }
                let current = *day <= today && today <= window.bucket_end(*day);
                let scope = scopes
                    .entry((*tenant, report.clone(), *window))
                    .or_insert_with(|| DirtyScope {
                        tenant: *tenant,
                        report: report.clone(),
                        window: *window,
                        buckets: 0,
                        oldest: dirty.first_marked_at,
                        oldest_current: None,
                    });
                scope.buckets += 1;
                scope.oldest = scope.oldest.min(dirty.first_marked_at);
                if current {
                    scope.oldest_current = Some(
                        scope
                            .oldest_current
                            .map_or(dirty.first_marked_at, |t| t.min(dirty.first_marked_at)),
                    );
                }
            }
        }
        Ok(scopes.into_values().collect())
    }

    async fn read(&self, query: &RollupQuery) -> Result<RollupPage, StoreError> {
        let merged = self.merged(query)?;
        let total_rows = merged.rows.len() as u64;
        let rows = merged.rows.into_iter().map(|merged| merged.row).collect();
        Ok(RollupPage {
            rows: query.page.slice(rows),
            total_rows,
            last_refreshed_at: merged.last_refreshed_at,
            uncounted_since: merged.uncounted_since,
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
            .flat_map(|t| t.events.iter().map(|(_, event)| event))
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
        drop(series);
        if let Some(held) = write(&self.events.tenants).get_mut(&tenant) {
            held.counted.retain(|(r, _), _| r != report);
        }
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
        drop(series);
        if let Some(held) = write(&self.events.tenants).get_mut(&tenant) {
            held.counted.clear();
        }
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

/// Tenants' rollup definitions in memory, kept beside the events in an
/// [`InMemoryEventStore`] as in one database: ingestion marks the buckets of the definitions
/// as they are, and a definition stored or replaced marks its buckets under the same lock.
#[derive(Debug)]
pub struct InMemoryRollupDefinitions {
    events: Arc<InMemoryEventStore>,
    failure: FailSwitch,
}

impl Default for InMemoryRollupDefinitions {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl InMemoryRollupDefinitions {
    /// The definitions kept beside `events`.
    pub fn new(events: Arc<InMemoryEventStore>) -> Self {
        Self {
            events,
            failure: FailSwitch::default(),
        }
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

/// Marks dirty, for a change of `definition` at `at`, every bucket of each of its windows
/// within the window's retention that holds days `tenant` has events on.
fn mark_definition(
    tenant: &mut TenantEvents,
    definition: &RollupDefinition,
    at: OffsetDateTime,
    versions: &std::sync::atomic::AtomicU64,
) {
    let today = at.date();
    tenant
        .counted
        .retain(|(report, _), _| *report != definition.slug);
    let marks: BTreeSet<Mark> = definition
        .windows
        .iter()
        .flat_map(|w| {
            // Days after `today` too: events may be dated ahead of the clock that stores the
            // definition, and their buckets count the old definition as much as any.
            let kept_from = w.kept(today).from();
            tenant
                .days()
                .filter(move |day| *day >= kept_from)
                .map(move |day| Mark {
                    report: definition.slug.clone(),
                    window: w.window,
                    bucket_start: w.window.bucket_start(day),
                })
        })
        .collect();
    tenant.mark(marks, at, DirtyReason::Definition, versions);
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
        let mut tenants = write(&self.events.tenants);
        let held = tenants.entry(tenant).or_default();
        if held.definitions.contains_key(&definition.slug) {
            return Err(DefinitionError::SlugTaken(definition.slug.to_string()));
        }
        if held.definitions.len() >= limit as usize {
            return Err(DefinitionError::LimitReached(limit));
        }
        let stored = StoredRollup {
            tenant,
            definition: definition.clone(),
            created_at: at,
            updated_at: at,
        };
        held.definitions
            .insert(definition.slug.clone(), stored.clone());
        mark_definition(held, definition, at, &self.events.versions);
        Ok(stored)
    }

    async fn replace(
        &self,
        tenant: TenantId,
        definition: &RollupDefinition,
        at: OffsetDateTime,
    ) -> Result<StoredRollup, DefinitionError> {
        self.check()?;
        let mut tenants = write(&self.events.tenants);
        let not_found = || DefinitionError::NotFound(definition.slug.to_string());
        let held = tenants.get_mut(&tenant).ok_or_else(not_found)?;
        let stored = held
            .definitions
            .get_mut(&definition.slug)
            .ok_or_else(not_found)?;
        stored.definition = definition.clone();
        stored.updated_at = at.max(stored.created_at);
        let stored = stored.clone();
        mark_definition(held, definition, at, &self.events.versions);
        Ok(stored)
    }

    async fn delete(&self, tenant: TenantId, slug: &ReportSlug) -> Result<bool, StoreError> {
        self.check()?;
        let mut tenants = write(&self.events.tenants);
        let Some(held) = tenants.get_mut(&tenant) else {
            return Ok(false);
        };
        held.marks.retain(|(report, _, _), _| report != slug);
        held.counted.retain(|(report, _), _| report != slug);
        Ok(held.definitions.remove(slug).is_some())
    }

    async fn get(
        &self,
        tenant: TenantId,
        slug: &ReportSlug,
    ) -> Result<Option<StoredRollup>, StoreError> {
        self.check()?;
        Ok(read(&self.events.tenants)
            .get(&tenant)
            .and_then(|held| held.definitions.get(slug))
            .cloned())
    }

    async fn list(&self, tenant: TenantId) -> Result<Vec<StoredRollup>, StoreError> {
        self.check()?;
        Ok(read(&self.events.tenants)
            .get(&tenant)
            .map(|held| held.definitions.values().cloned().collect())
            .unwrap_or_default())
    }
}

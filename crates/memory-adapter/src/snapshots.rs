//! Snapshot rows in memory, and their rebuild from the event store.
//!
//! The aggregation here is the reference semantics the SQL of the PostgreSQL adapter must match:
//! an event belongs to the bucket of its UTC date, every (bucket, dimension value) with events
//! gets one `event_count` row, and report rows are grouped and ordered as the domain defines.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use application::ports::{RebuildOutcome, RebuildRequest, SnapshotStore, SourceSystem, StoreError};
use async_trait::async_trait;
use domain::{
    Breakdown, NewEvent, ReportKind, ReportQuery, ReportRow, RunId, SnapshotPage, TenantId, Window,
    report::EVENT_COUNT_METRIC,
};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::{FailSwitch, InMemoryEventStore, read, write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoredValue {
    value: i64,
    computed_at: OffsetDateTime,
    run_id: RunId,
}

/// The rows of one tenant, report and window, keyed by (bucket, dimension value, metric).
type Series = BTreeMap<(Date, String, String), StoredValue>;

/// Snapshot rows, rebuilt from an [`InMemoryEventStore`].
#[derive(Debug)]
pub struct InMemorySnapshotStore {
    events: Arc<InMemoryEventStore>,
    series: RwLock<HashMap<(TenantId, ReportKind, Window), Series>>,
    failure: FailSwitch,
}

impl InMemorySnapshotStore {
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
            .check("snapshot store")
            .map_err(StoreError::Unavailable)
    }
}

/// The dimension value of `event` for a `kind` report; an event without one is not counted.
fn dimension_value(kind: ReportKind, event: &NewEvent) -> Option<&str> {
    match kind {
        ReportKind::VolumeByPeriod => Some(event.source.as_str()),
        ReportKind::StatusCounts => event.status.map(domain::EventStatus::as_str),
        ReportKind::TopEntities => event.entity_id.as_deref(),
    }
}

/// Rows grouped by a key, with their summed counts.
fn group<K: Ord>(rows: impl Iterator<Item = (K, i64)>) -> Vec<(K, i64)> {
    let mut grouped: BTreeMap<K, i64> = BTreeMap::new();
    for (key, value) in rows {
        *grouped.entry(key).or_default() += value;
    }
    grouped.into_iter().collect()
}

/// Sorts by count descending, then by name.
fn ranked(mut rows: Vec<(String, i64)>) -> Vec<(String, i64)> {
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

#[async_trait]
impl SnapshotStore for InMemorySnapshotStore {
    fn system(&self) -> SourceSystem {
        SourceSystem::Memory
    }

    async fn query(&self, query: &ReportQuery) -> Result<SnapshotPage, StoreError> {
        self.check()?;
        // Read before the rows' lock: the event store's lock is never taken while it is held.
        let changed_at = self
            .events
            .latest_change(query.tenant, query.window.widen(query.range));
        let series = read(&self.series);
        let empty = Series::new();
        let rows = series
            .get(&(query.tenant, query.kind, query.window))
            .unwrap_or(&empty);
        let selected: Vec<(&Date, &str, &StoredValue)> = rows
            .range((query.range.from(), String::new(), String::new())..)
            .take_while(|((bucket, _, _), _)| *bucket <= query.range.to())
            .filter(|((_, _, metric), _)| metric == EVENT_COUNT_METRIC)
            .filter(|((_, value, _), _)| query.filter.as_ref().is_none_or(|f| f.value() == value))
            .map(|((bucket, value, _), stored)| (bucket, value.as_str(), stored))
            .collect();
        let last_refreshed_at = selected
            .iter()
            .map(|(_, _, stored)| stored.computed_at)
            .max();

        let values = || {
            selected
                .iter()
                .map(|(bucket, value, stored)| (**bucket, *value, stored.value))
        };
        let all_rows: Vec<ReportRow> = match (query.kind, query.breakdown) {
            (ReportKind::VolumeByPeriod, Breakdown::Source) => {
                group(values().map(|(b, v, n)| ((b, v.to_owned()), n)))
                    .into_iter()
                    .map(
                        |((bucket_date, source), event_count)| ReportRow::PeriodSource {
                            bucket_date,
                            source,
                            event_count,
                        },
                    )
                    .collect()
            }
            (ReportKind::StatusCounts, Breakdown::Period) => {
                group(values().map(|(b, v, n)| ((b, v.to_owned()), n)))
                    .into_iter()
                    .map(
                        |((bucket_date, status), event_count)| ReportRow::PeriodStatus {
                            bucket_date,
                            status,
                            event_count,
                        },
                    )
                    .collect()
            }
            (ReportKind::VolumeByPeriod, _) => group(values().map(|(b, _, n)| (b, n)))
                .into_iter()
                .map(|(bucket_date, event_count)| ReportRow::Period {
                    bucket_date,
                    event_count,
                })
                .collect(),
            (ReportKind::StatusCounts, _) => {
                ranked(group(values().map(|(_, v, n)| (v.to_owned(), n))))
                    .into_iter()
                    .map(|(status, event_count)| ReportRow::Status {
                        status,
                        event_count,
                    })
                    .collect()
            }
            (ReportKind::TopEntities, _) => {
                ranked(group(values().map(|(_, v, n)| (v.to_owned(), n))))
                    .into_iter()
                    .map(|(entity_id, event_count)| ReportRow::Entity {
                        entity_id,
                        event_count,
                    })
                    .collect()
            }
        };
        let total_rows = all_rows.len() as u64;
        Ok(SnapshotPage {
            rows: query.page.slice(all_rows),
            total_rows,
            last_refreshed_at,
            changed_at,
        })
    }

    async fn rebuild(&self, request: &RebuildRequest) -> Result<RebuildOutcome, StoreError> {
        self.check()?;
        let range = request.range;
        let mut counts: BTreeMap<(Date, String), i64> = BTreeMap::new();
        {
            let tenants = read(&self.events.tenants);
            for event in tenants
                .get(&request.tenant)
                .iter()
                .flat_map(|t| t.events.iter())
            {
                let date = event.occurred_at.to_offset(UtcOffset::UTC).date();
                if let (true, Some(value)) =
                    (range.contains(date), dimension_value(request.kind, event))
                {
                    let bucket = request.window.bucket_start(date);
                    *counts.entry((bucket, value.to_owned())).or_default() += 1;
                }
            }
        }

        // One write lock over delete and insert: readers see the old rows or the new ones.
        let mut series = write(&self.series);
        let rows = series
            .entry((request.tenant, request.kind, request.window))
            .or_default();
        let before = rows.len();
        rows.retain(|(bucket, _, _), _| !range.contains(*bucket));
        let rows_deleted = (before - rows.len()) as u64;
        let rows_inserted = counts.len() as u64;
        for ((bucket, value), count) in counts {
            rows.insert(
                (bucket, value, EVENT_COUNT_METRIC.to_owned()),
                StoredValue {
                    value: count,
                    computed_at: request.computed_at,
                    run_id: request.run_id,
                },
            );
        }
        Ok(RebuildOutcome {
            rows_deleted,
            rows_inserted,
        })
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
impl application::ports::SnapshotRows for InMemorySnapshotStore {
    async fn rows(
        &self,
        tenant: TenantId,
        kind: ReportKind,
        window: Window,
        range: domain::DateRange,
    ) -> Result<Vec<application::ports::SnapshotRow>, StoreError> {
        self.check()?;
        let series = read(&self.series);
        Ok(series
            .get(&(tenant, kind, window))
            .into_iter()
            .flat_map(|rows| rows.iter())
            .filter(|((bucket, _, _), _)| range.contains(*bucket))
            .map(
                |((bucket, value, metric), stored)| application::ports::SnapshotRow {
                    bucket_start: *bucket,
                    dimension_key: kind.dimension_key().to_owned(),
                    dimension_value: value.clone(),
                    metric_name: metric.clone(),
                    metric_value: stored.value,
                    computed_at: stored.computed_at,
                    run_id: Some(stored.run_id),
                },
            )
            .collect())
    }
}

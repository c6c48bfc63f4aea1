//! Reports: their slugs, their kinds and the shape of a snapshot read.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::{
    Breakdown, DateRange, EventStatus, PageRequest, RollupOrder, RollupQuery, RollupRow,
    SourceSlug, TenantId, ValidationError, Window,
};

crate::event::slug_type!(
    /// The slug of a report definition (`volume-by-period`, ...).
    ReportSlug,
    "report_slug"
);

impl ReportSlug {
    /// Parses a report slug.
    ///
    /// # Errors
    /// A [`ValidationError`] on `report_slug` when `raw` is not a slug.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::parse_for("report_slug", raw)
    }
}

/// What a report computes. Each kind aggregates event counts along one dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// Event counts per bucket, by source.
    VolumeByPeriod,
    /// Event counts by status.
    StatusCounts,
    /// Event counts by entity, ranked.
    TopEntities,
}

impl ReportKind {
    /// Every kind, in catalog order.
    pub const ALL: [ReportKind; 3] = [
        ReportKind::VolumeByPeriod,
        ReportKind::StatusCounts,
        ReportKind::TopEntities,
    ];

    /// The slug of the report of this kind.
    pub const fn slug(self) -> &'static str {
        match self {
            ReportKind::VolumeByPeriod => "volume-by-period",
            ReportKind::StatusCounts => "status-counts",
            ReportKind::TopEntities => "top-entities",
        }
    }

    /// The kind of the report called `slug`, if it is one this service can compute.
    pub fn from_slug(slug: &ReportSlug) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.slug() == slug.as_str())
    }

    /// The event attribute the snapshot rows of this kind are keyed by (`dimension_key`).
    pub const fn dimension_key(self) -> &'static str {
        match self {
            ReportKind::VolumeByPeriod => "source",
            ReportKind::StatusCounts => "status",
            ReportKind::TopEntities => "entity_id",
        }
    }

    /// The report slug as a parsed value.
    pub fn report_slug(self) -> ReportSlug {
        ReportSlug(self.slug().to_owned())
    }
}

/// The name of the one metric snapshots hold today.
pub const EVENT_COUNT_METRIC: &str = "event_count";

/// A filter on the dimension of a report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DimensionFilter {
    /// Only events of this source (volume-by-period).
    Source(SourceSlug),
    /// Only events of this status (status-counts).
    Status(EventStatus),
}

impl DimensionFilter {
    /// Parses the `source` and `status` query filters of a `kind` report.
    ///
    /// # Errors
    /// A [`ValidationError`] when a filter is malformed or not supported by `kind`.
    pub fn parse(
        kind: ReportKind,
        source: Option<&str>,
        status: Option<&str>,
    ) -> Result<Option<Self>, ValidationError> {
        let unsupported = |field: &str| {
            let supported = match kind {
                ReportKind::VolumeByPeriod => "source",
                ReportKind::StatusCounts => "status",
                ReportKind::TopEntities => "none",
            };
            ValidationError::new(
                field,
                format!(
                    "is not a filter of {} (its filters: {supported})",
                    kind.slug()
                ),
            )
        };
        match (kind, source, status) {
            (_, None, None) => Ok(None),
            (ReportKind::VolumeByPeriod, Some(source), None) => {
                Ok(Some(Self::Source(SourceSlug::parse("source", source)?)))
            }
            (ReportKind::StatusCounts, None, Some(status)) => {
                Ok(Some(Self::Status(EventStatus::parse("status", status)?)))
            }
            (ReportKind::VolumeByPeriod, _, Some(_)) => Err(unsupported("status")),
            (_, Some(_), _) => Err(unsupported("source")),
            (_, None, Some(_)) => Err(unsupported("status")),
        }
    }

    /// The dimension value the filter keeps.
    pub fn value(&self) -> &str {
        match self {
            DimensionFilter::Source(source) => source.as_str(),
            DimensionFilter::Status(status) => status.as_str(),
        }
    }
}

/// A read of a built-in report: everything its rollup read ([`ReportQuery::rollup_query`])
/// is made from.
///
/// A bucket is included when its first day (the Monday, for weeks) lies in `range`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportQuery {
    pub tenant: TenantId,
    pub kind: ReportKind,
    pub window: Window,
    pub range: DateRange,
    pub breakdown: Breakdown,
    pub filter: Option<DimensionFilter>,
    pub page: PageRequest,
}

impl ReportQuery {
    /// The read of the rollup the report is (its one measure, `event_count`, by its one
    /// dimension) that answers this query: the breakdown chooses the grouping and the order,
    /// the filter keeps one value of the dimension.
    pub fn rollup_query(&self) -> RollupQuery {
        let (by_period, dimensions, order) = match (self.kind, self.breakdown) {
            (ReportKind::VolumeByPeriod, Breakdown::Source)
            | (ReportKind::StatusCounts, Breakdown::Period) => (true, vec![0], RollupOrder::Period),
            (ReportKind::VolumeByPeriod, _) => (true, Vec::new(), RollupOrder::Period),
            (ReportKind::StatusCounts | ReportKind::TopEntities, _) => {
                (false, vec![0], RollupOrder::MeasureDescending(0))
            }
        };
        RollupQuery {
            tenant: self.tenant,
            report: self.kind.report_slug(),
            window: self.window,
            range: self.range,
            measures: vec![crate::rollup::Combine::Sum],
            by_period,
            dimensions,
            filters: self
                .filter
                .iter()
                .map(|filter| (0, filter.value().to_owned()))
                .collect(),
            order,
            page: self.page,
            coarser: Vec::new(),
        }
    }
}

/// One row of a report result. Which variant a query yields follows from its kind and breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReportRow {
    /// volume-by-period with `breakdown=source`, ordered by date then source.
    PeriodSource {
        #[serde(serialize_with = "crate::dates::serialize_date")]
        bucket_date: Date,
        source: String,
        event_count: i64,
    },
    /// status-counts with `breakdown=period`, ordered by date then status.
    PeriodStatus {
        #[serde(serialize_with = "crate::dates::serialize_date")]
        bucket_date: Date,
        status: String,
        event_count: i64,
    },
    /// volume-by-period totals, ordered by date.
    Period {
        #[serde(serialize_with = "crate::dates::serialize_date")]
        bucket_date: Date,
        event_count: i64,
    },
    /// status-counts totals, ordered by count descending then status.
    Status { status: String, event_count: i64 },
    /// top-entities, ordered by count descending then entity id.
    Entity { entity_id: String, event_count: i64 },
}

impl ReportRow {
    /// The row of a `kind` report with `breakdown` from the flat form stores keep rows in
    /// (bucket date, dimension value, count); `None` when a column the shape needs is missing.
    pub fn from_parts(
        kind: ReportKind,
        breakdown: Breakdown,
        bucket_date: Option<Date>,
        name: Option<String>,
        event_count: i64,
    ) -> Option<Self> {
        Some(match (kind, breakdown) {
            (ReportKind::VolumeByPeriod, Breakdown::Source) => ReportRow::PeriodSource {
                bucket_date: bucket_date?,
                source: name?,
                event_count,
            },
            (ReportKind::StatusCounts, Breakdown::Period) => ReportRow::PeriodStatus {
                bucket_date: bucket_date?,
                status: name?,
                event_count,
            },
            (ReportKind::VolumeByPeriod, _) => ReportRow::Period {
                bucket_date: bucket_date?,
                event_count,
            },
            (ReportKind::StatusCounts, _) => ReportRow::Status {
                status: name?,
                event_count,
            },
            (ReportKind::TopEntities, _) => ReportRow::Entity {
                entity_id: name?,
                event_count,
            },
        })
    }
}

impl ReportRow {
    /// The row of a `kind` report with `breakdown` from a row of its [`ReportQuery::rollup_query`];
    /// `None` when a column the shape needs is missing or null.
    pub fn from_rollup(kind: ReportKind, breakdown: Breakdown, row: RollupRow) -> Option<Self> {
        let count = *row.measures.first()?;
        let name = row.dimensions.into_iter().next().flatten();
        Self::from_parts(kind, breakdown, row.bucket_date, name, count)
    }
}

/// The answer to a [`ReportQuery`], in the report's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPage {
    /// The rows of the requested page, in the report's order.
    pub rows: Vec<ReportRow>,
    /// How many rows the whole result has.
    pub total_rows: u64,
    /// When the newest snapshot row the query read was computed; `None` when it read none.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refreshed_at: Option<OffsetDateTime>,
    /// When the oldest change the page's buckets do not count yet was committed (see
    /// [`crate::DirtyBucket::first_marked_at`]); `None` when they count every event.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub uncounted_since: Option<OffsetDateTime>,
}

impl SnapshotPage {
    /// Whether some event the page should count is not counted yet.
    pub fn is_stale(&self) -> bool {
        self.uncounted_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_built_from_their_flat_form() {
        let day = time::macros::date!(2026 - 11 - 02);
        for (kind, breakdown, row) in [
            (
                ReportKind::VolumeByPeriod,
                Breakdown::Source,
                ReportRow::PeriodSource {
                    bucket_date: day,
                    source: "stripe".into(),
                    event_count: 3,
                },
            ),
            (
                ReportKind::StatusCounts,
                Breakdown::Period,
                ReportRow::PeriodStatus {
                    bucket_date: day,
                    status: "failed".into(),
                    event_count: 4,
                },
            ),
            (
                ReportKind::VolumeByPeriod,
                Breakdown::Period,
                ReportRow::Period {
                    bucket_date: day,
                    event_count: 5,
                },
            ),
            (
                ReportKind::StatusCounts,
                Breakdown::Status,
                ReportRow::Status {
                    status: "success".into(),
                    event_count: 6,
                },
            ),
            (
                ReportKind::TopEntities,
                Breakdown::EntityId,
                ReportRow::Entity {
                    entity_id: "e-1".into(),
                    event_count: 7,
                },
            ),
        ] {
            let (bucket, name, count) = match &row {
                ReportRow::PeriodSource {
                    bucket_date,
                    source: name,
                    event_count,
                }
                | ReportRow::PeriodStatus {
                    bucket_date,
                    status: name,
                    event_count,
                } => (Some(*bucket_date), Some(name.clone()), *event_count),
                ReportRow::Period {
                    bucket_date,
                    event_count,
                } => (Some(*bucket_date), None, *event_count),
                ReportRow::Status {
                    status: name,
                    event_count,
                }
                | ReportRow::Entity {
                    entity_id: name,
                    event_count,
                } => (None, Some(name.clone()), *event_count),
            };
            assert_eq!(
                ReportRow::from_parts(kind, breakdown, bucket, name, count),
                Some(row)
            );
        }
        assert_eq!(
            ReportRow::from_parts(ReportKind::TopEntities, Breakdown::EntityId, None, None, 1),
            None,
            "a missing column is no row"
        );
    }

    #[test]
    fn known_slugs_map_to_kinds() {
        for kind in ReportKind::ALL {
            assert_eq!(ReportKind::from_slug(&kind.report_slug()), Some(kind));
        }
        let other = ReportSlug::parse("revenue").unwrap();
        assert_eq!(ReportKind::from_slug(&other), None);
    }

    #[test]
    fn report_slug_rejects_non_slugs() {
        assert!(ReportSlug::parse("Volume").is_err());
        assert!(ReportSlug::parse("../etc").is_err());
    }

    #[test]
    fn filters_are_accepted_only_by_their_report() {
        let source =
            DimensionFilter::parse(ReportKind::VolumeByPeriod, Some("stripe"), None).unwrap();
        assert_eq!(source.as_ref().map(DimensionFilter::value), Some("stripe"));
        let status =
            DimensionFilter::parse(ReportKind::StatusCounts, None, Some("failed")).unwrap();
        assert_eq!(status, Some(DimensionFilter::Status(EventStatus::Failed)));

        let err =
            DimensionFilter::parse(ReportKind::StatusCounts, Some("stripe"), None).unwrap_err();
        assert_eq!(err.field(), "source");
        let err =
            DimensionFilter::parse(ReportKind::VolumeByPeriod, None, Some("failed")).unwrap_err();
        assert_eq!(err.field(), "status");
        let err =
            DimensionFilter::parse(ReportKind::TopEntities, None, Some("failed")).unwrap_err();
        assert_eq!(err.field(), "status");
    }

    #[test]
    fn status_filter_must_be_a_known_status() {
        let err = DimensionFilter::parse(ReportKind::StatusCounts, None, Some("lost")).unwrap_err();
        assert_eq!(err.field(), "status");
    }

    #[test]
    fn rows_round_trip_through_json() {
        let rows = vec![
            ReportRow::PeriodSource {
                bucket_date: time::macros::date!(2026 - 01 - 05),
                source: "adyen".into(),
                event_count: 3,
            },
            ReportRow::Period {
                bucket_date: time::macros::date!(2026 - 01 - 05),
                event_count: 9,
            },
            ReportRow::Status {
                status: "failed".into(),
                event_count: 2,
            },
            ReportRow::Entity {
                entity_id: "entity-1".into(),
                event_count: 7,
            },
        ];
        let json = serde_json::to_string(&rows).unwrap();
        let back: Vec<ReportRow> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rows);
    }
}

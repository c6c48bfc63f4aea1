//! The domain of pg-analytics: parsed value types and the rules that govern them.
//!
//! Everything here is pure: no I/O, no async runtime, no database or HTTP crates. Values are
//! constructed through fallible parsers (`ReportSlug::parse`, `DateRange::new`,
//! `Window::from_str`) so that every other layer only ever holds values that are already valid.

pub mod audit;
pub mod breakdown;
pub mod catalog;
pub mod dates;
pub mod demo;
pub mod error;
pub mod event;
pub mod freshness;
pub mod ingest;
pub mod pagination;
pub mod report;
pub mod rollup;
pub mod run;
pub mod sketch;
pub mod tenancy;
pub mod tenant;
pub mod window;

pub use audit::{Actor, AuditAction, AuditEntry, AuditFilter, NewAuditEntry};
pub use breakdown::Breakdown;
pub use catalog::{
    CatalogQuery, CatalogSort, Listed, ReportDefinition, SortOrder, WindowDefinition,
};
pub use dates::{DateRange, parse_date};
pub use error::ValidationError;
pub use event::{EventStatus, NewEvent, SourceSlug};
pub use freshness::{DirtyBucket, DirtyReason, DirtyScope, RunMode};
pub use ingest::{IngestOutcome, IngestStatus, IngestWindow, ParsedEvent};
pub use pagination::{Page, PageRequest};
pub use report::{DimensionFilter, ReportKind, ReportQuery, ReportRow, ReportSlug, SnapshotPage};
pub use rollup::{
    Combine, Dimension, Field, FieldFilter, Measure, MeasureKind, MeasureValue, NumericField,
    PropertyKey, Rollup, RollupDefinition, RollupOrder, RollupPage, RollupQuery, RollupRow,
};
pub use run::{
    LockToken, RecomputeRun, RecomputeScope, RunFilter, RunId, RunStatus, RunSummary,
    TransitionError,
};
pub use tenancy::{
    ApiKey, Description, DisplayName, EventSource, KeyHash, KeyPrefix, Scope, Tenant, TenantSlug,
};
pub use tenant::TenantId;
pub use window::Window;

//! The report catalog in memory.

use std::sync::RwLock;

use application::ports::{ReportCatalog, StoreError};
use async_trait::async_trait;
use domain::{CatalogQuery, Page, ReportDefinition, ReportKind, ReportSlug};
use time::OffsetDateTime;

use crate::{FailSwitch, read, write};

/// The catalog, holding the reference reports unless told otherwise.
#[derive(Debug)]
pub struct InMemoryCatalog {
    reports: RwLock<Vec<ReportDefinition>>,
    failure: FailSwitch,
}

impl InMemoryCatalog {
    /// The three reference reports, as the first migration installs them, updated at `at`.
    pub fn reference(at: OffsetDateTime) -> Self {
        Self::with_reports(
            ReportKind::ALL
                .into_iter()
                .map(|kind| ReportDefinition::reference(kind, at))
                .collect(),
        )
    }

    /// A catalog of exactly `reports`.
    pub fn with_reports(reports: Vec<ReportDefinition>) -> Self {
        Self {
            reports: RwLock::new(reports),
            failure: FailSwitch::default(),
        }
    }

    /// Adds or replaces a definition (by slug).
    pub fn upsert(&self, report: ReportDefinition) {
        let mut reports = write(&self.reports);
        reports.retain(|r| r.slug != report.slug);
        reports.push(report);
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }
}

#[async_trait]
impl ReportCatalog for InMemoryCatalog {
    async fn list_public(
        &self,
        query: &CatalogQuery,
    ) -> Result<Page<ReportDefinition>, StoreError> {
        self.failure
            .check("catalog")
            .map_err(StoreError::Unavailable)?;
        let mut matches: Vec<ReportDefinition> = read(&self.reports)
            .iter()
            .filter(|r| r.is_public && query.matches(r))
            .cloned()
            .collect();
        matches.sort_by(|a, b| query.compare(a, b));
        let total = matches.len() as u64;
        Ok(Page::new(query.page.slice(matches), total, query.page))
    }

    async fn get(&self, slug: &ReportSlug) -> Result<Option<ReportDefinition>, StoreError> {
        self.failure
            .check("catalog")
            .map_err(StoreError::Unavailable)?;
        Ok(read(&self.reports)
            .iter()
            .find(|r| &r.slug == slug)
            .cloned())
    }
}

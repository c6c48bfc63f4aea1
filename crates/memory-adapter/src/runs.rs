//! Recompute runs in memory.

use std::{collections::HashMap, sync::RwLock};

use application::ports::{RunStore, RunStoreError};
use async_trait::async_trait;
use domain::{
    Page, PageRequest, RecomputeRun, RunFilter, RunId, RunStatus, RunSummary, TenantId,
    TransitionError,
};
use time::OffsetDateTime;

use crate::{FailSwitch, read, write};

/// Runs by id; at most one active run per scope, as the database's partial unique index
/// guarantees.
#[derive(Debug, Default)]
pub struct InMemoryRunStore {
    runs: RwLock<HashMap<RunId, RecomputeRun>>,
    failure: FailSwitch,
}

impl InMemoryRunStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every pending run, of every tenant, in no particular order.
    pub(crate) fn pending(&self) -> Vec<RecomputeRun> {
        read(&self.runs)
            .values()
            .filter(|run| run.status == RunStatus::Pending)
            .cloned()
            .collect()
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }

    /// Makes the next `calls` calls fail, as during a short outage.
    pub fn fail_next_calls(&self, calls: u32) {
        self.failure.fail_next(calls);
    }

    fn check(&self) -> Result<(), RunStoreError> {
        self.failure
            .check("run store")
            .map_err(RunStoreError::Unavailable)
    }

    /// Applies `change` to run `id` of `tenant` under the write lock and returns the result.
    fn update(
        &self,
        tenant: TenantId,
        id: RunId,
        change: impl FnOnce(&mut RecomputeRun) -> Result<(), TransitionError>,
    ) -> Result<RecomputeRun, RunStoreError> {
        self.check()?;
        let mut runs = write(&self.runs);
        let run = runs
            .get_mut(&id)
            .filter(|run| run.tenant == tenant)
            .ok_or(RunStoreError::NotFound(id))?;
        // Change a copy so a refused transition leaves the stored run untouched.
        let mut changed = run.clone();
        change(&mut changed)?;
        *run = changed.clone();
        Ok(changed)
    }
}

#[async_trait]
impl RunStore for InMemoryRunStore {
    async fn create(&self, run: &RecomputeRun) -> Result<(), RunStoreError> {
        self.check()?;
        let mut runs = write(&self.runs);
        let scope = run.scope();
        if runs
            .values()
            .any(|other| other.status.is_active() && other.scope().excludes(&scope))
        {
            return Err(RunStoreError::ActiveScope);
        }
        if runs.contains_key(&run.id) {
            return Err(RunStoreError::Unexpected(anyhow::anyhow!(
                "run {} already exists",
                run.id
            )));
        }
        runs.insert(run.id, run.clone());
        Ok(())
    }

    async fn get(
        &self,
        tenant: TenantId,
        id: RunId,
    ) -> Result<Option<RecomputeRun>, RunStoreError> {
        self.check()?;
        Ok(read(&self.runs)
            .get(&id)
            .filter(|run| run.tenant == tenant)
            .cloned())
    }

    async fn list(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        page: PageRequest,
    ) -> Result<Page<RecomputeRun>, RunStoreError> {
        self.check()?;
        let mut matches: Vec<RecomputeRun> = read(&self.runs)
            .values()
            .filter(|run| run.tenant == tenant && filter.matches(run))
            .cloned()
            .collect();
        matches.sort_by(|a, b| {
            b.requested_at
                .cmp(&a.requested_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        let total = matches.len() as u64;
        Ok(Page::new(page.slice(matches), total, page))
    }

    async fn start(
        &self,
        tenant: TenantId,
        id: RunId,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        self.update(tenant, id, |run| run.start(at))
    }

    async fn complete(
        &self,
        tenant: TenantId,
        id: RunId,
        summary: RunSummary,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        self.update(tenant, id, |run| run.complete(summary, at))
    }

    async fn fail(
        &self,
        tenant: TenantId,
        id: RunId,
        error: &str,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        self.update(tenant, id, |run| run.fail(error, at))
    }

    async fn abandon(
        &self,
        tenant: TenantId,
        id: RunId,
        error: &str,
        at: OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        self.update(tenant, id, |run| run.abandon(error, at))
    }

    async fn renew_lease(&self, tenant: TenantId, id: RunId) -> Result<bool, RunStoreError> {
        // Runs in memory end with their process, so there is no lease to extend; the answer
        // still says whether the run is running, as the contract asks.
        self.check()?;
        Ok(read(&self.runs)
            .get(&id)
            .is_some_and(|run| run.tenant == tenant && run.status == RunStatus::Running))
    }
}

//! A bounded in-process run queue.

use std::{
    collections::VecDeque,
    pin::pin,
    sync::{Arc, Mutex},
};

use application::ports::{
    Backlog, Clock, EnqueueError, Recovered, RunQueue, RunStore, RunStoreError, StoreError,
};
use async_trait::async_trait;
use domain::{
    PageRequest, RecomputeRun, RunFilter, RunId, RunStatus, TenantId, pagination::MAX_LIMIT,
};
use tokio::sync::Notify;

use crate::{FailSwitch, InMemoryRunStore, lock};

#[derive(Debug, Default)]
struct State {
    queued: VecDeque<(TenantId, RunId)>,
    closed: bool,
}

/// A FIFO of run ids in front of an [`InMemoryRunStore`], holding at most `capacity` runs.
/// Queued runs do not survive the process; the PostgreSQL queue is the durable one.
pub struct InMemoryRunQueue {
    runs: Arc<InMemoryRunStore>,
    clock: Arc<dyn Clock>,
    capacity: usize,
    state: Mutex<State>,
    wake: Notify,
    failure: FailSwitch,
}

impl std::fmt::Debug for InMemoryRunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryRunQueue")
            .field("capacity", &self.capacity)
            .field("queued", &self.len())
            .finish_non_exhaustive()
    }
}

impl InMemoryRunQueue {
    /// A queue of at most `capacity` runs claiming from `runs`, stamping claims with `clock`.
    pub fn new(runs: Arc<InMemoryRunStore>, capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            runs,
            clock,
            capacity,
            state: Mutex::default(),
            wake: Notify::new(),
            failure: FailSwitch::default(),
        }
    }

    /// How many runs wait in the queue.
    pub fn len(&self) -> usize {
        lock(&self.state).queued.len()
    }

    /// Whether no run waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every claim fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }
}

#[async_trait]
impl RunQueue for InMemoryRunQueue {
    async fn enqueue(&self, run: &RecomputeRun) -> Result<(), EnqueueError> {
        self.failure
            .check("run queue")
            .map_err(EnqueueError::Unavailable)?;
        {
            let mut state = lock(&self.state);
            if state.closed {
                return Err(EnqueueError::Closed);
            }
            if state.queued.len() >= self.capacity {
                return Err(EnqueueError::Full);
            }
            state.queued.push_back((run.tenant, run.id));
        }
        self.wake.notify_one();
        Ok(())
    }

    async fn claim_next(&self) -> Result<Option<RecomputeRun>, StoreError> {
        loop {
            // Register interest before looking, so a wake-up between the look and the wait is
            // not lost.
            let mut woken = pin!(self.wake.notified());
            woken.as_mut().enable();
            self.failure
                .check("run queue")
                .map_err(StoreError::Unavailable)?;
            let next = {
                let mut state = lock(&self.state);
                if state.closed {
                    return Ok(None);
                }
                state.queued.pop_front()
            };
            match next {
                Some((tenant, id)) => match self.runs.start(tenant, id, self.clock.now()).await {
                    Ok(run) => return Ok(Some(run)),
                    // Failed or claimed meanwhile: nothing to do for this one.
                    Err(RunStoreError::Transition(_) | RunStoreError::NotFound(_)) => {}
                    Err(RunStoreError::Unavailable(err)) => {
                        return Err(StoreError::Unavailable(err));
                    }
                    Err(other) => return Err(StoreError::Unexpected(other.into())),
                },
                None => woken.await,
            }
        }
    }

    async fn claim_companions(&self, run: &RecomputeRun) -> Result<Vec<RecomputeRun>, StoreError> {
        self.failure
            .check("run queue")
            .map_err(StoreError::Unavailable)?;
        if lock(&self.state).closed {
            return Ok(Vec::new());
        }
        // Like a queue that is its run table, every pending run of the report counts, queued
        // yet or not: a backfill admits all its windows before it queues any.
        let filter = RunFilter {
            report_slug: Some(run.report_slug.clone()),
            status: Some(RunStatus::Pending),
        };
        let mut pending = match self
            .runs
            .list(run.tenant, &filter, PageRequest::new(MAX_LIMIT, 0))
            .await
        {
            Ok(page) => page.items,
            Err(RunStoreError::Unavailable(err)) => return Err(StoreError::Unavailable(err)),
            Err(other) => return Err(StoreError::Unexpected(other.into())),
        };
        pending.sort_by(|a, b| a.requested_at.cmp(&b.requested_at).then(a.id.cmp(&b.id)));
        let queued: Vec<(TenantId, RunId)> = pending
            .iter()
            .filter(|candidate| candidate.id != run.id)
            .map(|candidate| (candidate.tenant, candidate.id))
            .collect();
        let scope = run.scope().range;
        let mut claimed: Vec<RecomputeRun> = Vec::new();
        for (tenant, id) in queued {
            let candidate = match self.runs.get(tenant, id).await {
                Ok(Some(candidate)) => candidate,
                Ok(None) => continue,
                // Those claimed so far are running: hand them back with the run.
                Err(_) if !claimed.is_empty() => return Ok(claimed),
                Err(RunStoreError::Unavailable(err)) => return Err(StoreError::Unavailable(err)),
                Err(other) => return Err(StoreError::Unexpected(other.into())),
            };
            let range = candidate.scope().range;
            // The queue is oldest first: the first pending run of each other window whose
            // range meets the run's (a day apart at most), so one pass serves both.
            if candidate.report_slug != run.report_slug
                || candidate.window == run.window
                || candidate.status != RunStatus::Pending
                || claimed.iter().any(|c| c.window == candidate.window)
                || range.from() > scope.to().next_day().unwrap_or(scope.to())
                || range.to() < scope.from().previous_day().unwrap_or(scope.from())
            {
                continue;
            }
            {
                // Out of the queue if it was queued; starting it below settles who has it.
                let mut state = lock(&self.state);
                if let Some(position) = state.queued.iter().position(|q| *q == (tenant, id)) {
                    state.queued.remove(position);
                }
            }
            match self.runs.start(tenant, id, self.clock.now()).await {
                Ok(started) => claimed.push(started),
                Err(RunStoreError::Transition(_) | RunStoreError::NotFound(_)) => {}
                Err(_) if !claimed.is_empty() => return Ok(claimed),
                Err(RunStoreError::Unavailable(err)) => return Err(StoreError::Unavailable(err)),
                Err(other) => return Err(StoreError::Unexpected(other.into())),
            }
        }
        Ok(claimed)
    }

    async fn recover(&self) -> Result<Recovered, StoreError> {
        // A run in memory cannot outlive the process that works on it: nothing to recover.
        self.failure
            .check("run queue")
            .map_err(StoreError::Unavailable)?;
        Ok(Recovered::default())
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        self.failure
            .check("run queue")
            .map_err(StoreError::Unavailable)?;
        // Like the PostgreSQL queue, whose table is the queue, every pending run counts.
        let pending = self.runs.pending();
        Ok(Backlog {
            pending: pending.len() as u64,
            oldest_requested_at: pending.iter().map(|run| run.requested_at).min(),
        })
    }

    async fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_waiters();
    }
}

//! [`RunQueue`]: the queue hands out runs first in, first out, claims them (stamping
//! `started_at`, the time the queue's clock reads), refuses work past its capacity and stops
//! after close.
//!
//! The promises share one scenario: the queue filled with day runs of status counts, one run
//! more refused and failed, then runs claimed and the queue closed. Each replays the scenario up
//! to the [`Stage`] it checks, then looks.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use domain::{RecomputeRun, RunId, RunStatus, TenantId, Window};
use time::{
    OffsetDateTime,
    macros::{date, datetime},
};

use super::run_of;
use crate::ports::{EnqueueError, Recovered, RunQueue, RunStore};

/// An empty queue of `capacity` runs (at least four) over a run store with no runs for
/// `tenant`; its clock reads `started_at`.
pub struct Fixture {
    pub queue: Arc<dyn RunQueue>,
    pub runs: Arc<dyn RunStore>,
    pub tenant: TenantId,
    pub capacity: usize,
    pub started_at: OffsetDateTime,
}

/// When the first run is requested; each next one a second later.
const T0: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);

/// How far the scenario has gone, each stage after the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// The queue filled to capacity; one more run created, refused by the queue and failed.
    Filled,
    /// Then the first run claimed.
    FirstClaimed,
    /// Then the second run failed while queued, and the third claimed.
    NextClaimed,
    /// Then the queue closed.
    Closed,
}

/// The `n`th run the queue takes.
fn queued_run(f: &Fixture, n: usize) -> Result<RecomputeRun> {
    let n = i64::try_from(n)?;
    run_of(
        f.tenant,
        "status-counts",
        Window::Day,
        date!(2026 - 01 - 01) + time::Duration::days(n),
        T0 + time::Duration::seconds(n),
    )
}

/// The run one past the queue's capacity.
fn overflow_run(f: &Fixture) -> Result<RecomputeRun> {
    run_of(
        f.tenant,
        "status-counts",
        Window::Week,
        date!(2026 - 06 - 01),
        T0 + time::Duration::hours(1),
    )
}

/// Creates and queues a full queue's worth of runs; they are returned in queue order.
async fn fill(f: &Fixture) -> Result<Vec<RecomputeRun>> {
    let mut queued = Vec::new();
    for n in 0..f.capacity {
        let run = queued_run(f, n)?;
        f.runs.create(&run).await?;
        f.queue
            .enqueue(&run)
            .await
            .with_context(|| format!("run {n} fits the queue"))?;
        queued.push(run);
    }
    Ok(queued)
}

/// The scenario run up to `stage`; the queued runs, in queue order.
async fn at(f: &Fixture, stage: Stage) -> Result<Vec<RecomputeRun>> {
    ensure!(
        f.capacity >= 3,
        "the queue's scenario needs a capacity of at least three runs"
    );
    let queued = fill(f).await?;
    let overflow = overflow_run(f)?;
    f.runs.create(&overflow).await?;
    // Refused, as `a_full_queue_refuses_a_run` checks; failed, as the trigger does then.
    let _refused = f.queue.enqueue(&overflow).await;
    f.runs.fail(f.tenant, overflow.id, "queue full", T0).await?;
    if stage >= Stage::FirstClaimed {
        f.queue.claim_next().await?;
    }
    if stage >= Stage::NextClaimed {
        f.runs.fail(f.tenant, queued[1].id, "cancelled", T0).await?;
        f.queue.claim_next().await?;
    }
    if stage >= Stage::Closed {
        f.queue.close().await;
    }
    Ok(queued)
}

pub async fn a_queue_takes_runs_up_to_its_capacity(f: &Fixture) -> Result<()> {
    fill(f).await?;
    Ok(())
}

pub async fn a_full_queue_refuses_a_run(f: &Fixture) -> Result<()> {
    fill(f).await?;
    let overflow = overflow_run(f)?;
    f.runs.create(&overflow).await?;
    ensure!(
        matches!(f.queue.enqueue(&overflow).await, Err(EnqueueError::Full)),
        "a full queue refuses the run"
    );
    Ok(())
}

pub async fn runs_are_claimed_first_in_first_out(f: &Fixture) -> Result<()> {
    let queued = at(f, Stage::Filled).await?;
    let first = f
        .queue
        .claim_next()
        .await?
        .context("a queued run is claimed")?;
    ensure!(first.id == queued[0].id, "first in, first out");
    Ok(())
}

pub async fn claiming_starts_the_run(f: &Fixture) -> Result<()> {
    at(f, Stage::Filled).await?;
    let first = f
        .queue
        .claim_next()
        .await?
        .context("a queued run is claimed")?;
    ensure!(
        first.status == RunStatus::Running && first.started_at == Some(f.started_at),
        "claiming starts the run"
    );
    Ok(())
}

pub async fn a_run_claimed_within_its_lease_is_not_recovered(f: &Fixture) -> Result<()> {
    at(f, Stage::FirstClaimed).await?;
    ensure!(
        f.queue.recover().await? == Recovered::default(),
        "a run claimed within its lease is not recovered"
    );
    Ok(())
}

pub async fn a_run_failed_while_queued_is_skipped(f: &Fixture) -> Result<()> {
    let queued = at(f, Stage::FirstClaimed).await?;
    f.runs.fail(f.tenant, queued[1].id, "cancelled", T0).await?;
    let next = f
        .queue
        .claim_next()
        .await?
        .context("the next live run is claimed")?;
    ensure!(next.id == queued[2].id, "a failed queued run is skipped");
    Ok(())
}

pub async fn a_closed_queue_hands_out_nothing(f: &Fixture) -> Result<()> {
    at(f, Stage::NextClaimed).await?;
    f.queue.close().await;
    ensure!(
        f.queue.claim_next().await?.is_none(),
        "a closed queue hands out nothing"
    );
    Ok(())
}

pub async fn a_closed_queue_accepts_nothing(f: &Fixture) -> Result<()> {
    at(f, Stage::Closed).await?;
    let late = run_of(
        f.tenant,
        "top-entities",
        Window::Day,
        date!(2026 - 01 - 01),
        T0,
    )?;
    f.runs.create(&late).await?;
    ensure!(
        matches!(f.queue.enqueue(&late).await, Err(EnqueueError::Closed)),
        "a closed queue accepts nothing"
    );
    Ok(())
}

pub async fn the_backlog_counts_the_pending_runs_and_dates_the_oldest(f: &Fixture) -> Result<()> {
    let empty = f.queue.backlog().await?;
    ensure!(
        empty.pending == 0 && empty.oldest_requested_at.is_none(),
        "an empty queue has no backlog, got {empty:?}"
    );
    let queued = at(f, Stage::Filled).await?;
    let filled = f.queue.backlog().await?;
    ensure!(
        filled.pending == f.capacity as u64
            && filled.oldest_requested_at == Some(queued[0].requested_at),
        "a full queue's backlog is its runs (not the failed overflow), dated by the first, got {filled:?}"
    );
    // The first claimed, the second failed, the third claimed: the fourth is the oldest.
    f.queue.claim_next().await?;
    f.runs.fail(f.tenant, queued[1].id, "cancelled", T0).await?;
    f.queue.claim_next().await?;
    let drained = f.queue.backlog().await?;
    ensure!(
        drained.pending == f.capacity as u64 - 3
            && drained.oldest_requested_at == queued.get(3).map(|run| run.requested_at),
        "claimed and failed runs leave the backlog, got {drained:?}"
    );
    Ok(())
}

/// A run of `report` in `window` for the day `from`, requested `n` seconds after [`T0`].
fn rollup_run(
    f: &Fixture,
    report: &str,
    window: Window,
    from: time::Date,
    n: i64,
) -> Result<RecomputeRun> {
    run_of(
        f.tenant,
        report,
        window,
        from,
        T0 + time::Duration::seconds(n),
    )
}

/// Claims the oldest queued run, then the runs claimed with it: the ids of those.
async fn claim_with_companions(f: &Fixture) -> Result<Vec<RunId>> {
    let first = f
        .queue
        .claim_next()
        .await?
        .context("a queued run is claimed")?;
    let companions = f.queue.claim_companions(&first).await?;
    Ok(companions.iter().map(|run| run.id).collect())
}

/// Creates and queues `runs`, in order.
async fn queue_all(f: &Fixture, runs: &[&RecomputeRun]) -> Result<()> {
    for run in runs {
        f.runs.create(run).await?;
        f.queue.enqueue(run).await?;
    }
    Ok(())
}

pub async fn the_pending_runs_of_a_reports_other_windows_are_claimed_with_it(
    f: &Fixture,
) -> Result<()> {
    ensure!(
        f.capacity >= 4,
        "the companions' scenario needs a capacity of at least four runs"
    );
    let day = rollup_run(f, "my-rollup", Window::Day, date!(2026 - 01 - 05), 0)?;
    let week = rollup_run(f, "my-rollup", Window::Week, date!(2026 - 01 - 05), 1)?;
    let later_week = rollup_run(f, "my-rollup", Window::Week, date!(2026 - 01 - 12), 2)?;
    let other = rollup_run(f, "other-rollup", Window::Month, date!(2026 - 01 - 01), 3)?;
    queue_all(f, &[&day, &week, &later_week, &other]).await?;
    let first = f
        .queue
        .claim_next()
        .await?
        .context("a queued run is claimed")?;
    ensure!(first.id == day.id, "first in, first out");
    let companions = f.queue.claim_companions(&first).await?;
    let ids: Vec<_> = companions.iter().map(|run| run.id).collect();
    ensure!(
        ids == vec![week.id],
        "the oldest run of each other window of the report is claimed with it: {companions:?}"
    );
    ensure!(
        companions[0].status == RunStatus::Running
            && companions[0].started_at == Some(f.started_at),
        "a companion is claimed as claim_next claims: {:?}",
        companions[0]
    );
    let stored = f
        .runs
        .get(f.tenant, week.id)
        .await?
        .context("the week run")?;
    ensure!(
        stored.status == RunStatus::Running,
        "stored as running: {stored:?}"
    );
    let next = f
        .queue
        .claim_next()
        .await?
        .context("a queued run is claimed")?;
    ensure!(
        next.id == later_week.id,
        "the claimed companion is skipped, the later week run is next"
    );
    let none = f.queue.claim_companions(&next).await?;
    ensure!(
        none.is_empty(),
        "the report has no other pending run: {none:?}"
    );
    let last = f
        .queue
        .claim_next()
        .await?
        .context("a queued run is claimed")?;
    ensure!(
        last.id == other.id,
        "another report's run is left for its own claim"
    );
    Ok(())
}

pub async fn a_pending_run_whose_range_is_far_from_the_claimed_ones_is_left(
    f: &Fixture,
) -> Result<()> {
    let day = rollup_run(f, "my-rollup", Window::Day, date!(2026 - 01 - 05), 0)?;
    let far = rollup_run(f, "my-rollup", Window::Month, date!(2026 - 06 - 01), 1)?;
    let near = rollup_run(f, "my-rollup", Window::Week, date!(2026 - 01 - 06), 2)?;
    queue_all(f, &[&day, &far, &near]).await?;
    let ids = claim_with_companions(f).await?;
    ensure!(
        ids == vec![near.id],
        "only a run whose range meets the claimed one's: {ids:?}"
    );
    let stored = f.runs.get(f.tenant, far.id).await?.context("the far run")?;
    ensure!(
        stored.status == RunStatus::Pending,
        "left pending: {stored:?}"
    );
    Ok(())
}

pub async fn a_pending_run_not_queued_yet_is_claimed_with_its_reports_run(
    f: &Fixture,
) -> Result<()> {
    let day = rollup_run(f, "my-rollup", Window::Day, date!(2026 - 01 - 05), 0)?;
    let week = rollup_run(f, "my-rollup", Window::Week, date!(2026 - 01 - 05), 1)?;
    queue_all(f, &[&day]).await?;
    // Stored as pending, its enqueue still to come: a backfill admits every window first.
    f.runs.create(&week).await?;
    let ids = claim_with_companions(f).await?;
    ensure!(ids == vec![week.id], "the admitted run is claimed: {ids:?}");
    Ok(())
}

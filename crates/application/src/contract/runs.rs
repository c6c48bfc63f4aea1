//! [`RunStore`]: runs are stored, looked up per tenant, listed newest first and moved only
//! through legal transitions; at most one run per scope is active.
//!
//! The promises share one scenario: a day run (`first`), a second day run of the same scope
//! (`duplicate`), a week run of the same days (`weekly`) and the other tenant's day run of the
//! same days (`foreign`). Each replays the scenario up to the [`Stage`] it checks, then looks.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use domain::{
    PageRequest, RecomputeRun, RunFilter, RunId, RunStatus, RunSummary, TenantId, Window,
};
use time::{
    OffsetDateTime,
    macros::{date, datetime},
};

use super::{run_of, slug};
use crate::ports::{RunStore, RunStoreError};

/// A run store with no runs for `tenant` and `other`.
pub struct Fixture {
    pub runs: Arc<dyn RunStore>,
    pub tenant: TenantId,
    pub other: TenantId,
}

/// When `first` is requested; the others are a minute later.
const T0: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);
const STARTED_AT: OffsetDateTime = datetime!(2026-11-21 10:02 UTC);
const FINISHED_AT: OffsetDateTime = datetime!(2026-11-21 10:03 UTC);

const SUMMARY: RunSummary = RunSummary {
    rows_deleted: 3,
    rows_inserted: 4,
    bucket_count: 1,
    effective_date_from: date!(2026 - 11 - 01),
    effective_date_to: date!(2026 - 11 - 01),
    values_skipped: 0,
    rebuilt: Vec::new(),
};

/// How far the scenario has gone, each stage after the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// `first` created.
    FirstCreated,
    /// Then `weekly` and `foreign` created.
    OtherScopesCreated,
    /// Then `first` started.
    FirstStarted,
    /// Then `first` completed.
    FirstCompleted,
    /// Then `duplicate` created and failed.
    DuplicateFailed,
}

struct Scenario {
    first: RecomputeRun,
    duplicate: RecomputeRun,
    weekly: RecomputeRun,
    foreign: RecomputeRun,
    /// `first` as its completion returned it.
    completed: Option<RecomputeRun>,
}

impl Scenario {
    /// The runs of the scenario, none stored yet.
    fn new(f: &Fixture) -> Result<Self> {
        let minute = time::Duration::minutes(1);
        let day = date!(2026 - 11 - 01);
        Ok(Self {
            first: run_of(f.tenant, "volume-by-period", Window::Day, day, T0)?,
            duplicate: run_of(f.tenant, "volume-by-period", Window::Day, day, T0 + minute)?,
            weekly: run_of(f.tenant, "volume-by-period", Window::Week, day, T0 + minute)?,
            foreign: run_of(f.other, "volume-by-period", Window::Day, day, T0 + minute)?,
            completed: None,
        })
    }

    /// The scenario run up to `stage`.
    async fn at(f: &Fixture, stage: Stage) -> Result<Self> {
        let mut scenario = Self::new(f)?;
        let runs = f.runs.as_ref();
        runs.create(&scenario.first).await?;
        if stage >= Stage::OtherScopesCreated {
            runs.create(&scenario.weekly).await?;
            runs.create(&scenario.foreign).await?;
        }
        if stage >= Stage::FirstStarted {
            runs.start(f.tenant, scenario.first.id, STARTED_AT).await?;
        }
        if stage >= Stage::FirstCompleted {
            scenario.completed = Some(
                runs.complete(f.tenant, scenario.first.id, SUMMARY, FINISHED_AT)
                    .await?,
            );
        }
        if stage >= Stage::DuplicateFailed {
            runs.create(&scenario.duplicate).await?;
            runs.fail(f.tenant, scenario.duplicate.id, "queue full", FINISHED_AT)
                .await?;
        }
        Ok(scenario)
    }
}

pub async fn a_created_run_reads_back_unchanged(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCreated).await?;
    ensure!(
        f.runs.get(f.tenant, s.first.id).await?.as_ref() == Some(&s.first),
        "a created run reads back unchanged"
    );
    Ok(())
}

pub async fn another_tenant_cannot_see_a_run(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCreated).await?;
    ensure!(
        f.runs.get(f.other, s.first.id).await?.is_none(),
        "another tenant cannot see the run"
    );
    Ok(())
}

pub async fn getting_an_unknown_id_is_none(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::FirstCreated).await?;
    ensure!(
        f.runs.get(f.tenant, RunId::generate()).await?.is_none(),
        "an unknown id is None"
    );
    Ok(())
}

pub async fn a_second_active_run_of_one_scope_is_refused(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCreated).await?;
    ensure!(
        matches!(
            f.runs.create(&s.duplicate).await,
            Err(RunStoreError::ActiveScope)
        ),
        "a second active run of one scope is refused"
    );
    Ok(())
}

pub async fn a_refused_run_is_not_stored(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCreated).await?;
    // Refused, as `a_second_active_run_of_one_scope_is_refused` checks.
    let _refused = f.runs.create(&s.duplicate).await;
    ensure!(
        f.runs.get(f.tenant, s.duplicate.id).await?.is_none(),
        "a refused run is not stored"
    );
    Ok(())
}

pub async fn one_incremental_run_per_report_and_window_is_active_whatever_its_range(
    f: &Fixture,
) -> Result<()> {
    let minute = time::Duration::minutes(1);
    let refresh = |day, at| -> Result<RecomputeRun> {
        Ok(run_of(f.tenant, "volume-by-period", Window::Day, day, at)?
            .with_mode(domain::RunMode::Incremental))
    };
    f.runs.create(&refresh(date!(2026 - 11 - 01), T0)?).await?;
    ensure!(
        matches!(
            f.runs
                .create(&refresh(date!(2026 - 11 - 02), T0 + minute)?)
                .await,
            Err(RunStoreError::ActiveScope)
        ),
        "a second active refresh of the report's window, over another range, is refused"
    );
    // A full run of another range, and a refresh of another window, go ahead.
    f.runs
        .create(&run_of(
            f.tenant,
            "volume-by-period",
            Window::Day,
            date!(2026 - 11 - 02),
            T0,
        )?)
        .await
        .context("a full run beside a refresh")?;
    f.runs
        .create(
            &run_of(
                f.tenant,
                "volume-by-period",
                Window::Week,
                date!(2026 - 11 - 02),
                T0,
            )?
            .with_mode(domain::RunMode::Incremental),
        )
        .await
        .context("a refresh of another window")?;
    let stored = f
        .runs
        .list(f.tenant, &RunFilter::default(), PageRequest::new(10, 0))
        .await?;
    ensure!(
        stored
            .items
            .iter()
            .filter(|r| r.mode == domain::RunMode::Incremental)
            .count()
            == 2,
        "the refreshes read back with their mode: {:?}",
        stored.items
    );
    Ok(())
}

pub async fn a_week_run_of_the_same_days_is_another_scope(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCreated).await?;
    f.runs
        .create(&s.weekly)
        .await
        .context("a week run of the same days is a different scope")?;
    Ok(())
}

pub async fn another_tenants_run_of_the_same_scope_is_another_scope(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCreated).await?;
    f.runs.create(&s.weekly).await?;
    f.runs
        .create(&s.foreign)
        .await
        .context("another tenant's run of the same days is a different scope")?;
    Ok(())
}

pub async fn start_claims_a_pending_run(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::OtherScopesCreated).await?;
    let started = f.runs.start(f.tenant, s.first.id, STARTED_AT).await?;
    ensure!(
        started.status == RunStatus::Running && started.started_at == Some(STARTED_AT),
        "start claims the run"
    );
    Ok(())
}

pub async fn a_running_run_cannot_be_claimed_twice(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstStarted).await?;
    ensure!(
        matches!(
            f.runs.start(f.tenant, s.first.id, STARTED_AT).await,
            Err(RunStoreError::Transition(_))
        ),
        "a running run cannot be claimed twice"
    );
    Ok(())
}

pub async fn another_tenant_cannot_claim_a_run(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstStarted).await?;
    ensure!(
        matches!(
            f.runs.start(f.other, s.first.id, STARTED_AT).await,
            Err(RunStoreError::NotFound(_))
        ),
        "another tenant cannot claim the run"
    );
    Ok(())
}

pub async fn a_running_runs_lease_is_renewed(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstStarted).await?;
    ensure!(
        f.runs.renew_lease(f.tenant, s.first.id).await?,
        "a running run's lease is renewed"
    );
    Ok(())
}

pub async fn another_tenant_cannot_renew_a_run(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstStarted).await?;
    ensure!(
        !f.runs.renew_lease(f.other, s.first.id).await?,
        "another tenant cannot renew the run"
    );
    Ok(())
}

pub async fn a_pending_run_has_no_lease_to_renew(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstStarted).await?;
    ensure!(
        !f.runs.renew_lease(f.tenant, s.weekly.id).await?,
        "a pending run has no lease to renew"
    );
    Ok(())
}

pub async fn complete_stores_the_summary(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstStarted).await?;
    let completed = f
        .runs
        .complete(f.tenant, s.first.id, SUMMARY, FINISHED_AT)
        .await?;
    ensure!(
        completed.status == RunStatus::Completed
            && completed.summary == Some(SUMMARY)
            && completed.finished_at == Some(FINISHED_AT),
        "complete stores the summary: {completed:?}"
    );
    Ok(())
}

pub async fn a_completed_run_reads_back(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCompleted).await?;
    let completed = s.completed.context("first completed")?;
    ensure!(
        f.runs.get(f.tenant, s.first.id).await?.as_ref() == Some(&completed),
        "the completed run reads back"
    );
    Ok(())
}

pub async fn a_finished_run_is_not_renewed(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCompleted).await?;
    ensure!(
        !f.runs.renew_lease(f.tenant, s.first.id).await?,
        "a finished run is not renewed"
    );
    Ok(())
}

pub async fn completed_is_final(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCompleted).await?;
    ensure!(
        matches!(
            f.runs.fail(f.tenant, s.first.id, "late", FINISHED_AT).await,
            Err(RunStoreError::Transition(_))
        ),
        "completed is final"
    );
    Ok(())
}

pub async fn a_finished_scope_accepts_a_new_run(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCompleted).await?;
    f.runs
        .create(&s.duplicate)
        .await
        .context("a finished scope accepts a new run")?;
    Ok(())
}

pub async fn a_pending_run_can_fail_with_its_error(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstCompleted).await?;
    f.runs.create(&s.duplicate).await?;
    let failed = f
        .runs
        .fail(f.tenant, s.duplicate.id, "queue full", FINISHED_AT)
        .await?;
    ensure!(
        failed.status == RunStatus::Failed && failed.error_message.as_deref() == Some("queue full"),
        "a pending run can fail with its error"
    );
    Ok(())
}

pub async fn only_a_pending_run_can_be_abandoned(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::FirstStarted).await?;
    ensure!(
        matches!(
            f.runs
                .abandon(f.tenant, s.first.id, "queue full", FINISHED_AT)
                .await,
            Err(RunStoreError::Transition(_))
        ),
        "a claimed run cannot be abandoned"
    );
    let running = f.runs.get(f.tenant, s.first.id).await?.context("the run")?;
    ensure!(
        running.status == RunStatus::Running && running.error_message.is_none(),
        "a refused abandon changes nothing: {running:?}"
    );
    let abandoned = f
        .runs
        .abandon(f.tenant, s.weekly.id, "queue full", FINISHED_AT)
        .await?;
    ensure!(
        abandoned.status == RunStatus::Failed
            && abandoned.error_message.as_deref() == Some("queue full"),
        "a pending run is abandoned with its error: {abandoned:?}"
    );
    Ok(())
}

pub async fn a_pending_run_cannot_complete(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::DuplicateFailed).await?;
    ensure!(
        matches!(
            f.runs
                .complete(f.tenant, s.weekly.id, SUMMARY, FINISHED_AT)
                .await,
            Err(RunStoreError::Transition(_))
        ),
        "a pending run cannot complete"
    );
    Ok(())
}

pub async fn starting_an_unknown_id_is_not_found(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DuplicateFailed).await?;
    ensure!(
        matches!(
            f.runs.start(f.tenant, RunId::generate(), STARTED_AT).await,
            Err(RunStoreError::NotFound(_))
        ),
        "unknown ids are NotFound"
    );
    Ok(())
}

pub async fn the_list_counts_every_run_of_the_tenant(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DuplicateFailed).await?;
    let all = f
        .runs
        .list(f.tenant, &RunFilter::default(), PageRequest::new(20, 0))
        .await?;
    ensure!(
        all.total == 3,
        "three runs of this tenant, got {}",
        all.total
    );
    Ok(())
}

pub async fn runs_are_listed_newest_request_first(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::DuplicateFailed).await?;
    let all = f
        .runs
        .list(f.tenant, &RunFilter::default(), PageRequest::new(20, 0))
        .await?;
    let ids: Vec<RunId> = all.items.iter().map(|r| r.id).collect();
    ensure!(
        ids.get(2) == Some(&s.first.id),
        "newest request first: {ids:?}"
    );
    Ok(())
}

pub async fn a_status_filter_keeps_only_that_status(f: &Fixture) -> Result<()> {
    let s = Scenario::at(f, Stage::DuplicateFailed).await?;
    let completed_only = RunFilter {
        report_slug: None,
        status: Some(RunStatus::Completed),
    };
    let page = f
        .runs
        .list(f.tenant, &completed_only, PageRequest::new(20, 0))
        .await?;
    ensure!(
        page.total == 1 && page.items.first().map(|r| r.id) == Some(s.first.id),
        "status filter"
    );
    Ok(())
}

pub async fn a_report_filter_keeps_only_that_report(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DuplicateFailed).await?;
    let other_report = RunFilter {
        report_slug: Some(slug("status-counts")?),
        status: None,
    };
    ensure!(
        f.runs
            .list(f.tenant, &other_report, PageRequest::new(20, 0))
            .await?
            .total
            == 0,
        "report filter"
    );
    Ok(())
}

pub async fn a_page_keeps_the_total(f: &Fixture) -> Result<()> {
    Scenario::at(f, Stage::DuplicateFailed).await?;
    let second = f
        .runs
        .list(f.tenant, &RunFilter::default(), PageRequest::new(1, 1))
        .await?;
    ensure!(
        second.items.len() == 1 && second.total == 3,
        "pagination keeps the total"
    );
    Ok(())
}

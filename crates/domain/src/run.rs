//! Recompute runs: their identity, scope, lifecycle and summary.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::{
    Actor, DateRange, DirtyBucket, ReportSlug, RunMode, TenantId, ValidationError, Window,
    dates::format_date,
};

/// The identifier of a recompute run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(Uuid);

impl RunId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a stored id.
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    pub const fn as_uuid(self) -> Uuid {
        self.0
    }

    /// Parses an id from a URL; anything but a UUID is `None` (and so a 404, not a 400).
    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw.trim()).ok().map(Self)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a run is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl RunStatus {
    const ALL: [RunStatus; 4] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
    ];

    /// The lowercase name stored and served.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }

    /// Whether a run may move from `self` to `next`:
    /// pending → running (a worker claims it), pending → failed (it could not be queued),
    /// running → completed | failed (the rebuild ended), running → pending (its worker stopped
    /// and handed it back). Completed and failed are final.
    pub const fn can_transition_to(self, next: RunStatus) -> bool {
        matches!(
            (self, next),
            (RunStatus::Pending, RunStatus::Running)
                | (RunStatus::Pending, RunStatus::Failed)
                | (RunStatus::Running, RunStatus::Completed)
                | (RunStatus::Running, RunStatus::Failed)
                | (RunStatus::Running, RunStatus::Pending)
        )
    }

    /// Whether the run is still to finish.
    pub const fn is_active(self) -> bool {
        matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = ValidationError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == raw.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                ValidationError::new(
                    "status",
                    format!("must be one of: pending, running, completed, failed; got {raw:?}"),
                )
            })
    }
}

/// A transition the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} run cannot become {to}")]
pub struct TransitionError {
    pub from: RunStatus,
    pub to: RunStatus,
}

/// What a completed run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub rows_deleted: u64,
    pub rows_inserted: u64,
    pub bucket_count: u32,
    pub effective_date_from: Date,
    pub effective_date_to: Date,
    /// Values a rollup's `sum` of a property skipped because they were not integers (always 0
    /// for the built-in reports; absent from summaries stored before rollups existed).
    #[serde(default)]
    pub values_skipped: u64,
    /// For an incremental run, the dirty buckets it rebuilt and why, oldest bucket first, at
    /// most [`crate::freshness::MAX_LISTED_BUCKETS`] of them (`bucket_count` counts them all);
    /// empty for a full run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebuilt: Vec<DirtyBucket>,
}

/// The random token that proves ownership of a scope lock.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockToken(String);

impl LockToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        Self(Uuid::new_v4().simple().to_string())
    }

    /// Wraps a stored token.
    pub fn from_stored(token: String) -> Self {
        Self(token)
    }

    /// The token text, for the lock store only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockToken(..)")
    }
}

/// What a recompute rebuilds: one report and window over whole buckets, for one tenant.
/// At most one run per scope may be active, and at most one incremental run per tenant,
/// report and window whatever its range (see [`RecomputeScope::lock_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecomputeScope {
    pub tenant: TenantId,
    pub report_slug: ReportSlug,
    pub window: Window,
    /// The range widened to whole buckets of `window`.
    pub range: DateRange,
    pub mode: RunMode,
}

impl RecomputeScope {
    /// The scope of a request for `range`, widened to whole buckets of `window`.
    pub fn new(
        tenant: TenantId,
        report_slug: ReportSlug,
        window: Window,
        range: DateRange,
    ) -> Self {
        Self {
            tenant,
            report_slug,
            window,
            range: window.widen(range),
            mode: RunMode::Full,
        }
    }

    /// The scope in `mode`.
    #[must_use]
    pub fn with_mode(mut self, mode: RunMode) -> Self {
        self.mode = mode;
        self
    }

    /// Whether a run of this scope may not be active beside an active run of `other`: the
    /// same tenant, report and window, and the same range or both incremental.
    pub fn excludes(&self, other: &RecomputeScope) -> bool {
        self.tenant == other.tenant
            && self.report_slug == other.report_slug
            && self.window == other.window
            && (self.range == other.range
                || (self.mode == RunMode::Incremental && other.mode == RunMode::Incremental))
    }

    /// The lock key: `recompute:lock:{tenant}:{slug}:{window}:{from}:{to}` for a full
    /// rebuild, `refresh:lock:{tenant}:{slug}:{window}` for an incremental one (one refresh of
    /// a rollup's window at a time, whatever its range).
    pub fn lock_key(&self) -> String {
        match self.mode {
            RunMode::Full => format!(
                "recompute:lock:{}:{}:{}:{}:{}",
                self.tenant,
                self.report_slug,
                self.window,
                format_date(self.range.from()),
                format_date(self.range.to())
            ),
            RunMode::Incremental => format!(
                "refresh:lock:{}:{}:{}",
                self.tenant, self.report_slug, self.window
            ),
        }
    }
}

/// A recompute run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecomputeRun {
    pub id: RunId,
    pub tenant: TenantId,
    pub report_slug: ReportSlug,
    pub window: Window,
    /// The range as requested; the rebuild covers it widened to whole buckets.
    pub range: DateRange,
    /// Every bucket of the range, or only its dirty ones.
    pub mode: RunMode,
    pub requested_by: Actor,
    pub status: RunStatus,
    pub requested_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub error_message: Option<String>,
    pub summary: Option<RunSummary>,
    /// The token of the scope lock the run holds while active, so any worker can release it.
    pub lock_token: Option<LockToken>,
}

impl RecomputeRun {
    /// A new pending run.
    pub fn pending(
        tenant: TenantId,
        report_slug: ReportSlug,
        window: Window,
        range: DateRange,
        requested_by: Actor,
        requested_at: OffsetDateTime,
        lock_token: Option<LockToken>,
    ) -> Self {
        Self {
            id: RunId::generate(),
            tenant,
            report_slug,
            window,
            range,
            mode: RunMode::Full,
            requested_by,
            status: RunStatus::Pending,
            requested_at,
            started_at: None,
            finished_at: None,
            error_message: None,
            summary: None,
            lock_token,
        }
    }

    /// The run in `mode`.
    #[must_use]
    pub fn with_mode(mut self, mode: RunMode) -> Self {
        self.mode = mode;
        self
    }

    /// The scope the run rebuilds.
    pub fn scope(&self) -> RecomputeScope {
        RecomputeScope::new(
            self.tenant,
            self.report_slug.clone(),
            self.window,
            self.range,
        )
        .with_mode(self.mode)
    }

    fn transition(&mut self, to: RunStatus) -> Result<(), TransitionError> {
        if !self.status.can_transition_to(to) {
            return Err(TransitionError {
                from: self.status,
                to,
            });
        }
        self.status = to;
        Ok(())
    }

    /// A worker claims the run.
    ///
    /// # Errors
    /// [`TransitionError`] unless the run is pending.
    pub fn start(&mut self, at: OffsetDateTime) -> Result<(), TransitionError> {
        self.transition(RunStatus::Running)?;
        self.started_at = Some(at);
        Ok(())
    }

    /// The rebuild succeeded.
    ///
    /// # Errors
    /// [`TransitionError`] unless the run is running.
    pub fn complete(
        &mut self,
        summary: RunSummary,
        at: OffsetDateTime,
    ) -> Result<(), TransitionError> {
        self.transition(RunStatus::Completed)?;
        self.summary = Some(summary);
        self.finished_at = Some(at);
        Ok(())
    }

    /// The run failed with `error`.
    ///
    /// # Errors
    /// [`TransitionError`] unless the run is pending or running.
    pub fn fail(
        &mut self,
        error: impl Into<String>,
        at: OffsetDateTime,
    ) -> Result<(), TransitionError> {
        self.transition(RunStatus::Failed)?;
        self.error_message = Some(error.into());
        self.finished_at = Some(at);
        Ok(())
    }

    /// A run that never reached a worker is given up: pending → failed.
    ///
    /// # Errors
    /// [`TransitionError`] unless the run is pending.
    pub fn abandon(
        &mut self,
        error: impl Into<String>,
        at: OffsetDateTime,
    ) -> Result<(), TransitionError> {
        if self.status != RunStatus::Pending {
            return Err(TransitionError {
                from: self.status,
                to: RunStatus::Failed,
            });
        }
        self.fail(error, at)
    }

    /// A stopping worker hands the run back to the queue.
    ///
    /// # Errors
    /// [`TransitionError`] unless the run is running.
    pub fn requeue(&mut self) -> Result<(), TransitionError> {
        self.transition(RunStatus::Pending)?;
        self.started_at = None;
        Ok(())
    }
}

/// Which runs a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RunFilter {
    pub report_slug: Option<ReportSlug>,
    pub status: Option<RunStatus>,
}

impl RunFilter {
    /// Whether `run` passes the filter.
    pub fn matches(&self, run: &RecomputeRun) -> bool {
        self.report_slug
            .as_ref()
            .is_none_or(|slug| &run.report_slug == slug)
            && self.status.is_none_or(|status| run.status == status)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    fn run() -> RecomputeRun {
        RecomputeRun::pending(
            TenantId::DEFAULT,
            ReportSlug::parse("status-counts").unwrap(),
            Window::Week,
            DateRange::new(date!(2026 - 11 - 18), date!(2026 - 11 - 19)).unwrap(),
            Actor::parse("ops").unwrap(),
            datetime!(2026-11-21 10:00 UTC),
            None,
        )
    }

    #[test]
    fn lifecycle_allows_only_legal_transitions() {
        use RunStatus::*;
        let legal = [
            (Pending, Running),
            (Pending, Failed),
            (Running, Completed),
            (Running, Failed),
            (Running, Pending),
        ];
        for from in RunStatus::ALL {
            for to in RunStatus::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn a_run_goes_pending_running_completed() {
        let mut run = run();
        let at = datetime!(2026-11-21 10:01 UTC);
        run.start(at).unwrap();
        assert_eq!(run.started_at, Some(at));
        let summary = RunSummary {
            rows_deleted: 1,
            rows_inserted: 2,
            bucket_count: 1,
            effective_date_from: date!(2026 - 11 - 16),
            effective_date_to: date!(2026 - 11 - 22),
            values_skipped: 0,
            rebuilt: Vec::new(),
        };
        run.complete(summary, at).unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(
            run.fail("late", at),
            Err(TransitionError {
                from: RunStatus::Completed,
                to: RunStatus::Failed
            }),
            "completed is final"
        );
    }

    #[test]
    fn pending_run_cannot_complete_without_starting() {
        let mut run = run();
        let summary = RunSummary {
            rows_deleted: 0,
            rows_inserted: 0,
            bucket_count: 0,
            effective_date_from: date!(2026 - 11 - 16),
            effective_date_to: date!(2026 - 11 - 22),
            values_skipped: 0,
            rebuilt: Vec::new(),
        };
        assert!(
            run.complete(summary, datetime!(2026-11-21 10:01 UTC))
                .is_err()
        );
    }

    #[test]
    fn scope_is_widened_and_keyed() {
        let scope = run().scope();
        assert_eq!(scope.range.from(), date!(2026 - 11 - 16));
        assert_eq!(
            scope.lock_key(),
            "recompute:lock:1:status-counts:week:2026-11-16:2026-11-22"
        );
    }

    #[test]
    fn run_status_parses_and_malformed_run_ids_are_none() {
        assert_eq!("Completed".parse::<RunStatus>(), Ok(RunStatus::Completed));
        assert!("done".parse::<RunStatus>().is_err());
        assert!(RunId::parse("not-a-uuid").is_none());
        let id = RunId::generate();
        assert_eq!(RunId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn lock_tokens_are_not_printed() {
        assert_eq!(format!("{:?}", LockToken::generate()), "LockToken(..)");
    }
}

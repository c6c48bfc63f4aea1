//! The operational audit trail.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{TenantId, ValidationError};

/// Who performed an action: an operator, an automation or a worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Actor(String);

/// The longest actor name accepted.
pub const MAX_ACTOR_LEN: usize = 128;

impl Actor {
    /// The actor of a trigger that names none.
    pub const MANAGEMENT_API: &str = "management-api";
    /// The actor of worker outcomes.
    pub const RECOMPUTE_WORKER: &str = "recompute-worker";
    /// The actor of runs requested by seeding.
    pub const SEED: &str = "seed";
    /// The actor of refreshes and retention the scheduler carries out.
    pub const SCHEDULER: &str = "scheduler";

    /// Parses an actor name: 1 to 128 characters after trimming, no control characters.
    ///
    /// # Errors
    /// A [`ValidationError`] on `requested_by` when the name is empty, too long or has control
    /// characters.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let name = raw.trim();
        if name.is_empty()
            || name.chars().count() > MAX_ACTOR_LEN
            || name.chars().any(char::is_control)
        {
            return Err(ValidationError::new(
                "requested_by",
                format!("must be 1 to {MAX_ACTOR_LEN} printable characters"),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// A built-in actor name known to be valid.
    pub fn builtin(name: &'static str) -> Self {
        Self(name.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Actor {
    type Error = ValidationError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Actor> for String {
    fn from(actor: Actor) -> Self {
        actor.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditAction {
    #[serde(rename = "recompute.triggered")]
    RecomputeTriggered,
    #[serde(rename = "recompute.completed")]
    RecomputeCompleted,
    #[serde(rename = "recompute.failed")]
    RecomputeFailed,
    #[serde(rename = "source.created")]
    SourceCreated,
    #[serde(rename = "report.created")]
    ReportCreated,
    #[serde(rename = "report.updated")]
    ReportUpdated,
    #[serde(rename = "report.deleted")]
    ReportDeleted,
    /// Snapshot buckets past their window's retention were deleted.
    #[serde(rename = "snapshots.expired")]
    SnapshotsExpired,
    /// Raw events past the event retention were deleted.
    #[serde(rename = "events.purged")]
    EventsPurged,
}

impl AuditAction {
    const ALL: [AuditAction; 9] = [
        AuditAction::RecomputeTriggered,
        AuditAction::RecomputeCompleted,
        AuditAction::RecomputeFailed,
        AuditAction::SourceCreated,
        AuditAction::ReportCreated,
        AuditAction::ReportUpdated,
        AuditAction::ReportDeleted,
        AuditAction::SnapshotsExpired,
        AuditAction::EventsPurged,
    ];

    /// The dotted name stored and served.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::RecomputeTriggered => "recompute.triggered",
            AuditAction::RecomputeCompleted => "recompute.completed",
            AuditAction::RecomputeFailed => "recompute.failed",
            AuditAction::SourceCreated => "source.created",
            AuditAction::ReportCreated => "report.created",
            AuditAction::ReportUpdated => "report.updated",
            AuditAction::ReportDeleted => "report.deleted",
            AuditAction::SnapshotsExpired => "snapshots.expired",
            AuditAction::EventsPurged => "events.purged",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = ValidationError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                ValidationError::new(
                    "action",
                    format!("must be one of: {}; got {raw:?}", names.join(", ")),
                )
            })
    }
}

/// The resource type of audit entries about recompute runs.
pub const RESOURCE_RECOMPUTE_RUN: &str = "recompute_run";

/// The resource type of audit entries about event sources.
pub const RESOURCE_EVENT_SOURCE: &str = "event_source";

/// The resource type of audit entries about a tenant's reports (rollup definitions).
pub const RESOURCE_REPORT: &str = "report";

/// The resource type of audit entries about a tenant's raw events.
pub const RESOURCE_EVENTS: &str = "events";

/// An audit entry to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub tenant: TenantId,
    pub actor: Actor,
    pub action: AuditAction,
    pub resource_type: String,
    pub resource_id: String,
    pub metadata: serde_json::Value,
}

/// A recorded audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub tenant: TenantId,
    pub actor: Actor,
    pub action: AuditAction,
    pub resource_type: String,
    pub resource_id: String,
    pub metadata: serde_json::Value,
    pub created_at: OffsetDateTime,
}

/// Which entries a listing returns: exact matches on action and actor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AuditFilter {
    pub action: Option<AuditAction>,
    pub actor: Option<Actor>,
}

impl AuditFilter {
    /// Whether `entry` passes the filter.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.action.is_none_or(|action| entry.action == action)
            && self
                .actor
                .as_ref()
                .is_none_or(|actor| &entry.actor == actor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_is_trimmed_and_bounded() {
        assert_eq!(Actor::parse("  ops-bot ").unwrap().as_str(), "ops-bot");
        assert!(Actor::parse("   ").is_err());
        assert!(Actor::parse(&"a".repeat(129)).is_err());
        assert!(Actor::parse("a\nb").is_err());
    }

    #[test]
    fn audit_actions_parse_whole_and_in_any_case() {
        assert_eq!(
            "recompute.failed".parse::<AuditAction>(),
            Ok(AuditAction::RecomputeFailed)
        );
        assert_eq!(
            " Source.Created ".parse::<AuditAction>(),
            Ok(AuditAction::SourceCreated),
            "every enumerated parameter of the API is case-insensitive"
        );
        let err = "recompute".parse::<AuditAction>().unwrap_err();
        assert!(
            err.message().contains("recompute.triggered"),
            "message: {err}"
        );
    }
}

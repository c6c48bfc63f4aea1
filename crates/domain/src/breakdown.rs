//! How a report's rows are grouped.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ReportKind, ValidationError};

/// The grouping of a report's rows. Which groupings a report offers depends on its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breakdown {
    /// One row per bucket.
    Period,
    /// One row per bucket and source.
    Source,
    /// One row per status over the whole range.
    Status,
    /// One row per entity over the whole range.
    EntityId,
}

impl Breakdown {
    /// The name used in the `breakdown` parameter.
    pub const fn as_str(self) -> &'static str {
        match self {
            Breakdown::Period => "period",
            Breakdown::Source => "source",
            Breakdown::Status => "status",
            Breakdown::EntityId => "entity_id",
        }
    }

    /// The breakdowns `kind` offers, its default first.
    pub const fn allowed_for(kind: ReportKind) -> &'static [Breakdown] {
        match kind {
            ReportKind::VolumeByPeriod => &[Breakdown::Period, Breakdown::Source],
            ReportKind::StatusCounts => &[Breakdown::Status, Breakdown::Period],
            ReportKind::TopEntities => &[Breakdown::EntityId],
        }
    }

    /// Parses the `breakdown` parameter of a `kind` report; `None` gives its default.
    ///
    /// # Errors
    /// A [`ValidationError`] on `breakdown` naming the values `kind` allows.
    pub fn for_report(kind: ReportKind, raw: Option<&str>) -> Result<Self, ValidationError> {
        let allowed = Self::allowed_for(kind);
        let Some(raw) = raw else {
            return Ok(allowed[0]);
        };
        allowed
            .iter()
            .copied()
            .find(|breakdown| breakdown.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|b| b.as_str()).collect();
                ValidationError::new(
                    "breakdown",
                    format!(
                        "must be one of: {} (the breakdowns of {}); got {raw:?}",
                        names.join(", "),
                        kind.slug()
                    ),
                )
            })
    }
}

impl fmt::Display for Breakdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_report_has_its_default_breakdown() {
        assert_eq!(
            Breakdown::for_report(ReportKind::VolumeByPeriod, None),
            Ok(Breakdown::Period)
        );
        assert_eq!(
            Breakdown::for_report(ReportKind::StatusCounts, None),
            Ok(Breakdown::Status)
        );
        assert_eq!(
            Breakdown::for_report(ReportKind::TopEntities, None),
            Ok(Breakdown::EntityId)
        );
    }

    #[test]
    fn allowed_breakdowns_parse_per_report() {
        assert_eq!(
            Breakdown::for_report(ReportKind::VolumeByPeriod, Some("source")),
            Ok(Breakdown::Source)
        );
        assert_eq!(
            Breakdown::for_report(ReportKind::StatusCounts, Some("period")),
            Ok(Breakdown::Period)
        );
    }

    #[test]
    fn a_breakdown_of_another_report_names_the_allowed_values() {
        let err = Breakdown::for_report(ReportKind::VolumeByPeriod, Some("status")).unwrap_err();
        assert_eq!(err.field(), "breakdown");
        assert!(err.message().contains("period, source"), "message: {err}");
        let err = Breakdown::for_report(ReportKind::StatusCounts, Some("source")).unwrap_err();
        assert!(err.message().contains("status, period"), "message: {err}");
        let err = Breakdown::for_report(ReportKind::TopEntities, Some("period")).unwrap_err();
        assert!(err.message().contains("entity_id"), "message: {err}");
    }
}

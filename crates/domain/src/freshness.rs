//! Freshness: which buckets of a rollup no longer count every event they should (dirty
//! buckets), why, and what a refresh of them rebuilt.

use std::{collections::BTreeSet, fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::{NewEvent, ReportSlug, RollupDefinition, ValidationError, Window};

/// How a run rebuilds its range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// Every bucket of the range: today's recompute.
    #[default]
    Full,
    /// Only the buckets of the range that are dirty when the run reads the events.
    Incremental,
}

impl RunMode {
    /// The lowercase name used in the API and in storage.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunMode::Full => "full",
            RunMode::Incremental => "incremental",
        }
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunMode {
    type Err = ValidationError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(RunMode::Full),
            "incremental" => Ok(RunMode::Incremental),
            _ => Err(ValidationError::new(
                "mode",
                format!("must be one of: full, incremental; got {raw:?}"),
            )),
        }
    }
}

/// Why a bucket is dirty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirtyReason {
    /// Events dated inside it were stored after it was built (new or late events).
    Events,
    /// The rollup's definition was created or changed after it was built.
    Definition,
}

impl DirtyReason {
    /// The lowercase name used in the API and in storage.
    pub const fn as_str(self) -> &'static str {
        match self {
            DirtyReason::Events => "events",
            DirtyReason::Definition => "definition",
        }
    }

    /// The reason stored as `raw`.
    pub fn from_stored(raw: &str) -> Option<Self> {
        match raw {
            "events" => Some(DirtyReason::Events),
            "definition" => Some(DirtyReason::Definition),
            _ => None,
        }
    }

    /// The reason that explains both `self` and `other`: a definition change rebuilds
    /// everything an event would.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        std::cmp::max(self, other)
    }
}

/// A dirty bucket of one tenant's rollup and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirtyBucket {
    pub window: Window,
    /// The bucket's first day (an hour bucket's day: the hours of a day are rebuilt together).
    pub bucket_start: Date,
    pub reason: DirtyReason,
    /// When the oldest change the bucket does not count yet was committed (an upper bound on
    /// its age: a change made while a rebuild ran keeps the first time).
    #[serde(with = "time::serde::rfc3339")]
    pub first_marked_at: OffsetDateTime,
}

/// The dirty buckets of one tenant's rollup and window, summed up: what a scheduler decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyScope {
    pub tenant: crate::TenantId,
    pub report: ReportSlug,
    pub window: Window,
    /// How many buckets are dirty.
    pub buckets: u64,
    /// The oldest `first_marked_at` of them.
    pub oldest: OffsetDateTime,
    /// The oldest `first_marked_at` of the dirty buckets that contain the current day, if any.
    pub oldest_current: Option<OffsetDateTime>,
}

/// A bucket to mark dirty: what storing one event changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mark {
    pub report: ReportSlug,
    pub window: Window,
    pub bucket_start: Date,
}

/// The buckets that storing `events` on `today` changes among `rollups` (those of their
/// tenant), sorted and each once: for every rollup that counts an event (its filters pass and
/// its required dimensions have values), the bucket of each of its windows containing the
/// event's UTC day, unless that bucket is past the window's retention (it is not kept, so
/// nothing would rebuild it).
pub fn marks_of<'a>(
    rollups: &[&RollupDefinition],
    events: impl IntoIterator<Item = &'a NewEvent>,
    today: Date,
) -> BTreeSet<Mark> {
    let mut counted: BTreeSet<(Date, usize)> = BTreeSet::new();
    for event in events {
        let day = event.occurred_at.to_offset(UtcOffset::UTC).date();
        for (i, definition) in rollups.iter().enumerate() {
            if !counted.contains(&(day, i)) && definition.rollup.counts(event) {
                counted.insert((day, i));
            }
        }
    }
    counted
        .into_iter()
        .flat_map(|(day, i)| {
            let definition = rollups[i];
            definition
                .windows
                .iter()
                .filter(move |w| day >= w.kept(today).from())
                .map(move |w| Mark {
                    report: definition.slug.clone(),
                    window: w.window,
                    bucket_start: w.window.bucket_start(day),
                })
        })
        .collect()
}

/// The rollups every tenant has whatever it defines: the built-in reports and the standard
/// rollups, each built into the binary.
pub fn shared_rollups() -> impl Iterator<Item = &'static RollupDefinition> {
    crate::ReportKind::ALL
        .into_iter()
        .map(crate::rollup::builtin)
        .chain(crate::rollup::standard_rollups())
}

/// Every rollup of a tenant whose own definitions are `own`: the shared ones, then those.
pub fn tenant_rollups<'a>(
    own: impl IntoIterator<Item = &'a RollupDefinition>,
) -> Vec<&'a RollupDefinition> {
    shared_rollups()
        .map(|shared| -> &'a RollupDefinition { shared })
        .chain(own)
        .collect()
}

/// What an incremental refresh rebuilt: the dirty buckets it saw, at most this many listed in
/// a run's summary (the count is always exact).
pub const MAX_LISTED_BUCKETS: usize = 100;

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn definition(filters: serde_json::Value) -> RollupDefinition {
        RollupDefinition::parse(&json!({
            "slug": "purchases",
            "name": "Purchases",
            "measures": [{"name": "events", "kind": "count"}],
            "dimensions": [{"name": "channel", "field": "properties.channel", "required": true}],
            "filters": filters,
            "windows": [{"window": "day", "is_default": true}, {"window": "week"}, {"window": "month"}],
        }))
        .expect("a valid definition")
    }

    fn event(name: &str, channel: Option<&str>) -> NewEvent {
        let mut event = crate::demo::event(1, datetime!(2026-11-20 10:00 UTC));
        event.event_name = name.to_owned();
        event.occurred_at = datetime!(2026-11-18 23:30 UTC);
        event.properties = match channel {
            Some(channel) => json!({"channel": channel}),
            None => json!({}),
        };
        event
    }

    #[test]
    fn an_event_marks_the_bucket_of_each_window_of_each_rollup_counting_it() {
        let purchases = definition(json!({"event_name": "purchase"}));
        let late = event("purchase", Some("web"));
        let marks = marks_of(
            &[&purchases],
            [&late, &late],
            time::macros::date!(2026 - 11 - 20),
        );
        let starts: Vec<(Window, Date)> =
            marks.iter().map(|m| (m.window, m.bucket_start)).collect();
        assert_eq!(
            starts,
            vec![
                (Window::Day, time::macros::date!(2026 - 11 - 18)),
                (Window::Week, time::macros::date!(2026 - 11 - 16)),
                (Window::Month, time::macros::date!(2026 - 11 - 01)),
            ]
        );
    }

    #[test]
    fn an_event_a_rollup_does_not_count_marks_nothing_of_it() {
        let purchases = definition(json!({"event_name": "purchase"}));
        let today = time::macros::date!(2026 - 11 - 20);
        assert!(marks_of(&[&purchases], [&event("page_view", Some("web"))], today).is_empty());
        // A required dimension without a value leaves the event out as well.
        assert!(marks_of(&[&purchases], [&event("purchase", None)], today).is_empty());
    }

    #[test]
    fn an_event_before_a_windows_retention_marks_nothing_of_that_window() {
        let purchases = definition(json!({"event_name": "purchase"}));
        let late = event("purchase", Some("web"));
        // Day buckets are kept 365 days by default, weeks 730 and months 1825.
        let later = time::macros::date!(2028 - 03 - 01);
        let windows: Vec<Window> = marks_of(&[&purchases], [&late], later)
            .into_iter()
            .map(|m| m.window)
            .collect();
        assert_eq!(windows, [Window::Week, Window::Month]);
    }

    #[test]
    fn every_tenant_shares_the_built_in_and_standard_rollups() {
        let slugs: Vec<&str> = shared_rollups().map(|d| d.slug.as_str()).collect();
        assert_eq!(slugs.len(), 6);
        assert!(slugs.contains(&"traffic") && slugs.contains(&"volume-by-period"));
    }

    #[test]
    fn modes_and_reasons_parse_and_print() {
        assert_eq!(
            "Incremental".parse::<RunMode>().ok(),
            Some(RunMode::Incremental)
        );
        assert_eq!(RunMode::default().as_str(), "full");
        assert!("fast".parse::<RunMode>().is_err());
        assert_eq!(
            DirtyReason::from_stored("definition"),
            Some(DirtyReason::Definition)
        );
        assert_eq!(
            DirtyReason::Events.max(DirtyReason::Definition),
            DirtyReason::Definition
        );
    }
}

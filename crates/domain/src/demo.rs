//! The deterministic demo data set, described by `seeds/demo.json` (built into the binary).
//!
//! Event `i` (1-based) is a pure function of `i`, the description and the moment of seeding,
//! so every adapter (and the SQL generator of the PostgreSQL adapter, which takes the
//! description's lists as parameters) produces exactly the same events. The file's
//! `description` states the rules; [`event`] is them in code.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::json;
use time::{Duration, OffsetDateTime, Time};

use crate::{DateRange, EventStatus, NewEvent, SourceSlug};

/// The text of the description.
const SEED: &str = include_str!("../../../seeds/demo.json");

/// A demo source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSource {
    pub slug: SourceSlug,
    /// Its provider's name.
    pub name: String,
}

/// What the demo data set is made of: its counts and the values its events pick from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoData {
    /// What the rules are, in words.
    pub description: String,
    /// How many events a seed writes unless told otherwise.
    pub default_event_count: u64,
    /// How many days back the events reach (event `i` lies `i % days_back` days back).
    pub days_back: u64,
    /// How many distinct entities there are.
    pub entity_count: u64,
    /// How many distinct users there are.
    pub user_count: u64,
    /// Picked by `i % len`.
    pub sources: Vec<DemoSource>,
    /// Picked by `(i / 5) % len`.
    pub event_names: Vec<String>,
    /// Picked by `(i / 2) % len`.
    pub paths: Vec<String>,
    /// Picked by `(i / 7) % len`.
    pub channels: Vec<String>,
    /// Picked by `i % len`.
    pub regions: Vec<String>,
}

impl DemoData {
    /// Parses and checks a description.
    ///
    /// # Errors
    /// What is wrong with it: not the shape above, a count of zero, an empty list, a source
    /// slug that is not a slug.
    pub fn parse(text: &str) -> Result<Self, String> {
        let data: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (name, count) in [
            ("default_event_count", data.default_event_count),
            ("days_back", data.days_back),
            ("entity_count", data.entity_count),
            ("user_count", data.user_count),
        ] {
            if count == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if data.days_back > 3_650 {
            return Err("days_back must be at most 3650".to_owned());
        }
        for (name, empty) in [
            ("sources", data.sources.is_empty()),
            ("event_names", data.event_names.is_empty()),
            ("paths", data.paths.is_empty()),
            ("channels", data.channels.is_empty()),
            ("regions", data.regions.is_empty()),
        ] {
            if empty {
                return Err(format!("{name} must not be empty"));
            }
        }
        Ok(data)
    }
}

/// The description of `seeds/demo.json`.
pub fn data() -> &'static DemoData {
    static DATA: OnceLock<DemoData> = OnceLock::new();
    DATA.get_or_init(|| DemoData::parse(SEED).unwrap_or_else(|e| invalid_seed(&e)))
}

#[cold]
fn invalid_seed(error: &str) -> DemoData {
    // The file is built into the binary and checked by this module's tests.
    panic!("seeds/demo.json is not a valid demo description: {error}")
}

/// The element of `items` at `n` modulo their number (never empty: see [`DemoData::parse`]).
fn pick<T>(items: &[T], n: u64) -> &T {
    &items[(n % items.len() as u64) as usize]
}

/// The status of event `i`: failed every 17th, else pending every 11th, else success.
pub const fn status(i: u64) -> EventStatus {
    if i.is_multiple_of(17) {
        EventStatus::Failed
    } else if i.is_multiple_of(11) {
        EventStatus::Pending
    } else {
        EventStatus::Success
    }
}

/// The moment of event `i`: the UTC hour of `now - (i % days_back) days - (i % 24) hours`.
pub fn occurred_at(i: u64, now: OffsetDateTime) -> OffsetDateTime {
    let back = Duration::days((i % data().days_back) as i64) + Duration::hours((i % 24) as i64);
    let at = now.to_offset(time::UtcOffset::UTC) - back;
    let hour = Time::from_hms(at.hour(), 0, 0).unwrap_or(Time::MIDNIGHT);
    at.replace_time(hour)
}

/// Demo event `i` (1-based) seeded at `now`.
pub fn event(i: u64, now: OffsetDateTime) -> NewEvent {
    let d = data();
    NewEvent {
        event_id: format!("demo-{i}"),
        event_name: pick(&d.event_names, i / 5).clone(),
        user_id: Some(format!("user-{}", (i * 7_919) % d.user_count + 1)),
        source: pick(&d.sources, i).slug.clone(),
        entity_id: Some(format!("entity-{}", (i % d.entity_count) + 1)),
        status: Some(status(i)),
        processing_ms: 80 + (i % 700) as i64,
        amount_cents: 100 + ((i * 37) % 100_000) as i64,
        occurred_at: occurred_at(i, now),
        properties: json!({
            "path": pick(&d.paths, i / 2),
            "channel": pick(&d.channels, i / 7),
            "region": pick(&d.regions, i),
            "batch": i / 1000,
            "provider_rank": (i % d.sources.len() as u64) + 1,
        }),
    }
}

/// The UTC dates the demo events seeded at `now` fall on, widened by a day each side so that a
/// seed recompute covers every event whatever the hour.
pub fn date_range(now: OffsetDateTime) -> DateRange {
    let today = now.to_offset(time::UtcOffset::UTC).date();
    let from = today - Duration::days(data().days_back as i64);
    DateRange::resolve(Some(from), Some(today), today).unwrap_or_else(|_| {
        // from is strictly before today by construction.
        DateRange::resolve(None, None, today).unwrap_or_else(|_| unreachable_range())
    })
}

#[cold]
fn unreachable_range() -> DateRange {
    panic!("a range ending today is always valid")
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-21 17:42:13 UTC);

    #[test]
    fn event_fields_follow_the_formula() {
        let e = event(17 * 11, NOW);
        assert_eq!(e.event_id, "demo-187");
        assert_eq!(e.source.as_str(), data().sources[187 % 3].slug.as_str());
        assert_eq!(e.entity_id.as_deref(), Some("entity-188"));
        assert_eq!(
            e.status,
            Some(EventStatus::Failed),
            "failed wins over pending"
        );
        assert_eq!(e.event_name, "page_view", "(187 / 5) % 4 = 1");
        assert_eq!(
            e.user_id.as_deref(),
            Some("user-854"),
            "(187 * 7919) % 1000 + 1"
        );
        assert_eq!(e.properties["path"], "/blog", "(187 / 2) % 6 = 3");
        assert_eq!(e.properties["channel"], "android", "(187 / 7) % 4 = 2");
        assert_eq!(status(11), EventStatus::Pending);
        assert_eq!(status(1), EventStatus::Success);
        assert_eq!(e.processing_ms, 267);
        assert_eq!(e.amount_cents, 7_019, "100 + (187 * 37) % 100000");
    }

    #[test]
    fn the_seed_file_is_a_valid_description() {
        let data = DemoData::parse(SEED).expect("seeds/demo.json");
        assert_eq!(data.sources.len(), 3);
        assert_eq!(data.default_event_count, 25_000);
        assert!(DemoData::parse(&SEED.replace("\"days_back\": 90", "\"days_back\": 0")).is_err());
        assert!(DemoData::parse(&SEED.replace("\"regions\"", "\"regionz\"")).is_err());
        assert!(DemoData::parse(&SEED.replace("\"stripe\"", "\"Not A Slug\"")).is_err());
    }

    #[test]
    fn occurred_at_is_truncated_to_the_hour() {
        // i = 25: 25 days and 1 hour back from 17:42 is 16:00 on 2026-10-27.
        assert_eq!(occurred_at(25, NOW), datetime!(2026-10-27 16:00 UTC));
        // i = 18: 18 hours back crosses midnight.
        assert_eq!(occurred_at(18, NOW), datetime!(2026-11-02 23:00 UTC));
    }

    #[test]
    fn every_event_falls_inside_the_seed_range() {
        let range = date_range(NOW);
        assert!((1..=2_000).all(|i| range.contains(event(i, NOW).occurred_at.date())));
    }
}

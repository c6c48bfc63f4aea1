//! The deterministic demo data set.
//!
//! Event `i` (1-based) is a pure function of `i` and the moment of seeding, so every adapter
//! (and the SQL generator of the PostgreSQL adapter) produces exactly the same events.

use serde_json::json;
use time::{Duration, OffsetDateTime, Time};

use crate::{DateRange, EventStatus, NewEvent, SourceSlug};

/// How many events a seed writes unless told otherwise.
pub const DEFAULT_EVENT_COUNT: u64 = 25_000;

/// The demo sources as (slug, provider name), in the order event `i` picks them by `i % 3`.
pub const SOURCES: [(&str, &str); 3] = [
    ("stripe", "Stripe"),
    ("adyen", "Adyen"),
    ("paypal", "PayPal"),
];

/// How many distinct entities the demo data has.
pub const ENTITY_COUNT: u64 = 240;

/// How many days back the demo events reach (event `i` lies `i % 90` days back).
pub const DAYS_BACK: u64 = 90;

/// How many distinct users the demo data has.
pub const USER_COUNT: u64 = 1_000;

const REGIONS: [&str; 4] = ["eu-west", "us-east", "ap-south", "sa-east"];

/// The demo event names, picked by `(i / 5) % 4`: half of the events are page views.
pub const EVENT_NAMES: [&str; 4] = ["page_view", "page_view", "add_to_cart", "purchase"];

/// The demo paths, picked by `(i / 2) % 6`.
pub const PATHS: [&str; 6] = ["/", "/pricing", "/docs", "/blog", "/checkout", "/signup"];

/// The demo channels, picked by `(i / 7) % 4`.
pub const CHANNELS: [&str; 4] = ["web", "ios", "android", "email"];

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

/// The moment of event `i`: the UTC hour of `now - (i % 90) days - (i % 24) hours`.
pub fn occurred_at(i: u64, now: OffsetDateTime) -> OffsetDateTime {
    let back = Duration::days((i % DAYS_BACK) as i64) + Duration::hours((i % 24) as i64);
    let at = now.to_offset(time::UtcOffset::UTC) - back;
    let hour = Time::from_hms(at.hour(), 0, 0).unwrap_or(Time::MIDNIGHT);
    at.replace_time(hour)
}

/// Demo event `i` (1-based) seeded at `now`.
pub fn event(i: u64, now: OffsetDateTime) -> NewEvent {
    let (source, _) = SOURCES[(i % 3) as usize];
    NewEvent {
        event_id: format!("demo-{i}"),
        event_name: EVENT_NAMES[((i / 5) % 4) as usize].to_owned(),
        user_id: Some(format!("user-{}", (i * 7_919) % USER_COUNT + 1)),
        // The demo slugs are constants known to be valid.
        source: SourceSlug::parse("source", source).unwrap_or_else(|_| unreachable_source()),
        entity_id: Some(format!("entity-{}", (i % ENTITY_COUNT) + 1)),
        status: Some(status(i)),
        processing_ms: 80 + (i % 700) as i64,
        amount_cents: 100 + ((i * 37) % 100_000) as i64,
        occurred_at: occurred_at(i, now),
        properties: json!({
            "path": PATHS[((i / 2) % 6) as usize],
            "channel": CHANNELS[((i / 7) % 4) as usize],
            "region": REGIONS[(i % 4) as usize],
            "batch": i / 1000,
            "provider_rank": (i % 3) + 1,
        }),
    }
}

#[cold]
fn unreachable_source() -> SourceSlug {
    // SOURCES holds literal slugs; this can only run if someone edits them into non-slugs.
    panic!("demo source slugs must be valid slugs")
}

/// The UTC dates the demo events seeded at `now` fall on, widened by a day each side so that a
/// seed recompute covers every event whatever the hour.
pub fn date_range(now: OffsetDateTime) -> DateRange {
    let today = now.to_offset(time::UtcOffset::UTC).date();
    let from = today - Duration::days(DAYS_BACK as i64);
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
        assert_eq!(e.source.as_str(), SOURCES[187 % 3].0);
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

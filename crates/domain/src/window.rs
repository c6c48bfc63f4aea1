//! Aggregation windows: the bucket size of a snapshot.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, UtcOffset};

use crate::{DateRange, ValidationError};

/// The size of a snapshot bucket. Buckets are UTC hours, UTC days, ISO weeks starting on
/// Monday, or calendar months.
///
/// Every bucket lies inside one day (an hour) or is made of whole days, so a range of days
/// selects and rebuilds whole buckets of any window: the hours of a day are the buckets of the
/// `hour` window that [`Window::bucket_start`] maps to that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Hour,
    Day,
    Week,
    Month,
}

impl Window {
    /// Every window, in catalog order.
    pub const ALL: [Window; 4] = [Window::Hour, Window::Day, Window::Week, Window::Month];

    /// The lowercase name used in URLs, keys and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
        }
    }

    /// Whether buckets are hours, several to a day.
    pub const fn is_hourly(self) -> bool {
        matches!(self, Window::Hour)
    }

    /// The first day of the bucket that contains `date`: the date itself for `day` (and for
    /// `hour`, whose buckets lie inside their day), the Monday on or before it for `week`, the
    /// first of its month for `month`.
    pub fn bucket_start(self, date: Date) -> Date {
        match self {
            Window::Hour | Window::Day => date,
            Window::Week => {
                date - Duration::days(i64::from(date.weekday().number_days_from_monday()))
            }
            Window::Month => date - Duration::days(i64::from(date.day()) - 1),
        }
    }

    /// The bucket of this window holding an event that occurred `at`: its first day (UTC) and,
    /// for `hour`, its hour of day (UTC); the hour is 0 for every other window.
    pub fn bucket_of(self, at: OffsetDateTime) -> (Date, u8) {
        let at = at.to_offset(UtcOffset::UTC);
        let hour = if self.is_hourly() { at.hour() } else { 0 };
        (self.bucket_start(at.date()), hour)
    }

    /// The last day of the bucket that contains `date`.
    pub fn bucket_end(self, date: Date) -> Date {
        match self {
            Window::Hour | Window::Day => date,
            Window::Week => self.bucket_start(date) + Duration::days(6),
            Window::Month => {
                let length = date.month().length(date.year());
                date + Duration::days(i64::from(length) - i64::from(date.day()))
            }
        }
    }

    /// The range widened to whole buckets: for `week`, from the Monday on or before `from` to the
    /// Sunday on or after `to`; for `month`, from the first of `from`'s month to the last day of
    /// `to`'s. A recompute rebuilds exactly the buckets of this range.
    pub fn widen(self, range: DateRange) -> DateRange {
        DateRange::from_ordered(self.bucket_start(range.from()), self.bucket_end(range.to()))
    }

    /// How many buckets of this window start inside `range`.
    pub fn bucket_count(self, range: DateRange) -> u32 {
        match self {
            Window::Hour => range.days().saturating_mul(24),
            Window::Day => range.days(),
            Window::Week => {
                let first = self.bucket_start(range.from());
                let first = if first < range.from() {
                    first + Duration::days(7)
                } else {
                    first
                };
                if first > range.to() {
                    0
                } else {
                    let span = (range.to() - first).whole_days();
                    u32::try_from(span / 7 + 1).unwrap_or(u32::MAX)
                }
            }
            Window::Month => {
                let months =
                    |date: Date| i64::from(date.year()) * 12 + i64::from(u8::from(date.month()));
                let first = months(range.from()) + i64::from(range.from().day() > 1);
                u32::try_from((months(range.to()) - first + 1).max(0)).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Window {
    type Err = ValidationError;

    /// Parses `day`, `week` or `month`, ignoring ASCII case.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Window::ALL
            .into_iter()
            .find(|window| window.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| ValidationError::new("window", "must be one of: hour, day, week, month"))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn window_parses_case_insensitively() {
        assert_eq!("DAY".parse::<Window>(), Ok(Window::Day));
        assert_eq!("Week".parse::<Window>(), Ok(Window::Week));
    }

    #[test]
    fn unknown_window_names_the_allowed_values() {
        let err = "year".parse::<Window>().unwrap_err();
        assert_eq!(err.field(), "window");
        assert!(err.message().contains("day, week, month"), "message: {err}");
    }

    #[test]
    fn week_bucket_starts_on_the_monday_on_or_before() {
        // 2026-11-18 is a Wednesday; 2026-11-16 the Monday before it.
        assert_eq!(
            Window::Week.bucket_start(date!(2026 - 11 - 18)),
            date!(2026 - 11 - 16)
        );
        assert_eq!(
            Window::Week.bucket_start(date!(2026 - 11 - 16)),
            date!(2026 - 11 - 16)
        );
        assert_eq!(
            Window::Week.bucket_start(date!(2026 - 11 - 22)),
            date!(2026 - 11 - 16)
        );
        assert_eq!(
            Window::Day.bucket_start(date!(2026 - 11 - 18)),
            date!(2026 - 11 - 18)
        );
    }

    #[test]
    fn week_widening_covers_whole_weeks() {
        let range = DateRange::new(date!(2026 - 11 - 18), date!(2026 - 11 - 24)).unwrap();
        let widened = Window::Week.widen(range);
        assert_eq!(
            widened.from(),
            date!(2026 - 11 - 16),
            "from widens to Monday"
        );
        assert_eq!(widened.to(), date!(2026 - 11 - 29), "to widens to Sunday");
        assert_eq!(
            Window::Day.widen(range),
            range,
            "day ranges are already whole"
        );
    }

    #[test]
    fn bucket_count_counts_buckets_starting_in_the_range() {
        let range = DateRange::new(date!(2026 - 11 - 16), date!(2026 - 11 - 29)).unwrap();
        assert_eq!(Window::Day.bucket_count(range), 14);
        assert_eq!(Window::Week.bucket_count(range), 2);
        let no_monday = DateRange::new(date!(2026 - 11 - 17), date!(2026 - 11 - 22)).unwrap();
        assert_eq!(Window::Week.bucket_count(no_monday), 0);
        assert_eq!(Window::Hour.bucket_count(range), 14 * 24);
    }

    #[test]
    fn hour_buckets_lie_inside_their_day() {
        let range = DateRange::new(date!(2026 - 11 - 18), date!(2026 - 11 - 19)).unwrap();
        assert_eq!(Window::Hour.widen(range), range);
        assert_eq!(
            Window::Hour.bucket_start(date!(2026 - 11 - 18)),
            date!(2026 - 11 - 18)
        );
        assert!(Window::Hour.is_hourly() && !Window::Day.is_hourly());
        assert_eq!("hour".parse::<Window>(), Ok(Window::Hour));
    }

    #[test]
    fn month_buckets_are_calendar_months() {
        assert_eq!(
            Window::Month.bucket_start(date!(2026 - 11 - 18)),
            date!(2026 - 11 - 01)
        );
        assert_eq!(
            Window::Month.bucket_end(date!(2024 - 02 - 10)),
            date!(2024 - 02 - 29),
            "a leap February"
        );
        assert_eq!(
            Window::Month.bucket_end(date!(2026 - 12 - 31)),
            date!(2026 - 12 - 31)
        );
        let range = DateRange::new(date!(2026 - 01 - 15), date!(2026 - 03 - 02)).unwrap();
        let widened = Window::Month.widen(range);
        assert_eq!(
            (widened.from(), widened.to()),
            (date!(2026 - 01 - 01), date!(2026 - 03 - 31))
        );
        assert_eq!(
            Window::Month.bucket_count(range),
            2,
            "February and March start inside"
        );
        let inside = DateRange::new(date!(2026 - 01 - 02), date!(2026 - 01 - 31)).unwrap();
        assert_eq!(Window::Month.bucket_count(inside), 0);
        let year = DateRange::new(date!(2025 - 12 - 01), date!(2026 - 11 - 30)).unwrap();
        assert_eq!(Window::Month.bucket_count(year), 12);
    }
}

//! Inclusive UTC date ranges and the rules for defaulting and limiting them.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, format_description::BorrowedFormatItem, macros::format_description};

use crate::ValidationError;

const ISO_DATE: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// How many days a range covers when the caller gives no start date.
pub const DEFAULT_RANGE_DAYS: u32 = 30;

/// Parses a `YYYY-MM-DD` calendar date for `field`.
///
/// # Errors
/// A [`ValidationError`] on `field` when `raw` is not an existing date in that exact format.
pub fn parse_date(field: &str, raw: &str) -> Result<Date, ValidationError> {
    Date::parse(raw.trim(), ISO_DATE).map_err(|_| {
        ValidationError::new(field, format!("must be a date as YYYY-MM-DD, got {raw:?}"))
    })
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    match digits(date) {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        // Years beyond four digits: the format has only numeric components, which cannot fail.
        None => date.format(ISO_DATE).unwrap_or_default(),
    }
}

/// Serializes a date as `YYYY-MM-DD` (for `#[serde(serialize_with)]`), without allocating
/// for years of four digits: report rows carry one date each.
///
/// # Errors
/// Those of the serializer.
pub fn serialize_date<S: serde::Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
    match digits(*date) {
        Some(bytes) => serializer.serialize_str(std::str::from_utf8(&bytes).unwrap_or_default()),
        None => serializer.serialize_str(&format_date(*date)),
    }
}

/// `YYYY-MM-DD` as ASCII bytes, for years 0 to 9999.
fn digits(date: Date) -> Option<[u8; 10]> {
    let year = u16::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    let (month, day) = (u8::from(date.month()), date.day());
    let digit = |n: u16| b'0' + u8::try_from(n % 10).unwrap_or(0);
    Some([
        digit(year / 1000),
        digit(year / 100),
        digit(year / 10),
        digit(year),
        b'-',
        digit(u16::from(month / 10)),
        digit(u16::from(month)),
        b'-',
        digit(u16::from(day / 10)),
        digit(u16::from(day)),
    ])
}

/// An inclusive range of UTC calendar dates with `from <= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawRange", into = "RawRange")]
pub struct DateRange {
    from: Date,
    to: Date,
}

impl DateRange {
    /// A range from `from` to `to`, both inclusive.
    ///
    /// # Errors
    /// A [`ValidationError`] on `date_from` when `from` is after `to`.
    pub fn new(from: Date, to: Date) -> Result<Self, ValidationError> {
        if from > to {
            return Err(ValidationError::new(
                "date_from",
                format!(
                    "must not be after date_to ({} > {})",
                    format_date(from),
                    format_date(to)
                ),
            ));
        }
        Ok(Self { from, to })
    }

    /// Resolves the optional bounds of a request against `today` (UTC):
    /// no dates gives the 30 days ending today, only `to` the 30 days ending then, only `from`
    /// the days from then up to today.
    ///
    /// # Errors
    /// A [`ValidationError`] when the resolved start is after the resolved end.
    pub fn resolve(
        from: Option<Date>,
        to: Option<Date>,
        today: Date,
    ) -> Result<Self, ValidationError> {
        let back = Duration::days(i64::from(DEFAULT_RANGE_DAYS) - 1);
        match (from, to) {
            (Some(from), Some(to)) => Self::new(from, to),
            (Some(from), None) => Self::new(from, today),
            (None, Some(to)) => Self::new(to.saturating_sub(back), to),
            (None, None) => Self::new(today.saturating_sub(back), today),
        }
    }

    /// Builds a range whose order the caller has already established.
    pub(crate) fn from_ordered(from: Date, to: Date) -> Self {
        debug_assert!(from <= to, "from_ordered needs from <= to");
        Self { from, to }
    }

    /// Checks that the range covers at most `max_days` days.
    ///
    /// # Errors
    /// A [`ValidationError`] on `date_to` when the range is longer than `max_days` days.
    pub fn within_limit(self, max_days: u32) -> Result<Self, ValidationError> {
        if self.days() > max_days {
            return Err(ValidationError::new(
                "date_to",
                format!(
                    "the range covers {} days; at most {max_days} days are allowed",
                    self.days()
                ),
            ));
        }
        Ok(self)
    }

    /// The first day, inclusive.
    pub const fn from(self) -> Date {
        self.from
    }

    /// The last day, inclusive.
    pub const fn to(self) -> Date {
        self.to
    }

    /// How many calendar days the range covers (at least 1).
    pub fn days(self) -> u32 {
        u32::try_from((self.to - self.from).whole_days() + 1).unwrap_or(u32::MAX)
    }

    /// Whether `date` lies within the range.
    pub fn contains(self, date: Date) -> bool {
        self.from <= date && date <= self.to
    }

    /// The range cut to its last `days` days (the whole range when it is shorter; at least
    /// its last day).
    pub fn last_days(self, days: u32) -> Self {
        let back = Duration::days(i64::from(days.max(1)) - 1);
        Self {
            from: self.from.max(self.to.saturating_sub(back)),
            to: self.to,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RawRange {
    date_from: Date,
    date_to: Date,
}

impl TryFrom<RawRange> for DateRange {
    type Error = ValidationError;

    fn try_from(raw: RawRange) -> Result<Self, Self::Error> {
        DateRange::new(raw.date_from, raw.date_to)
    }
}

impl From<DateRange> for RawRange {
    fn from(range: DateRange) -> Self {
        RawRange {
            date_from: range.from,
            date_to: range.to,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    const TODAY: Date = date!(2026 - 11 - 21);

    #[test]
    fn formats_dates_as_iso_days() {
        assert_eq!(format_date(date!(2026 - 03 - 09)), "2026-03-09");
        assert_eq!(format_date(date!(0001 - 12 - 31)), "0001-12-31");
        assert_eq!(format_date(date!(9999 - 01 - 01)), "9999-01-01");
        assert_eq!(
            serde_json::to_string(&Stamp(date!(2026 - 11 - 21)))
                .ok()
                .as_deref(),
            Some("\"2026-11-21\"")
        );
    }

    #[derive(Serialize)]
    struct Stamp(#[serde(serialize_with = "serialize_date")] Date);

    #[test]
    fn dates_parse_only_in_iso_format() {
        assert_eq!(
            parse_date("date_from", "2026-02-28"),
            Ok(date!(2026 - 02 - 28))
        );
        for bad in ["2026-02-30", "26-02-01", "2026/02/01", "yesterday", ""] {
            let err = parse_date("date_from", bad).unwrap_err();
            assert_eq!(
                err.field(),
                "date_from",
                "{bad} should be rejected on its field"
            );
        }
    }

    #[test]
    fn from_after_to_is_rejected() {
        let err = DateRange::new(date!(2026 - 03 - 02), date!(2026 - 03 - 01)).unwrap_err();
        assert_eq!(err.field(), "date_from");
        assert!(
            DateRange::new(date!(2026 - 03 - 01), date!(2026 - 03 - 01)).is_ok(),
            "a one-day range is valid"
        );
    }

    #[test]
    fn no_dates_resolve_to_the_thirty_days_ending_today() {
        let range = DateRange::resolve(None, None, TODAY).unwrap();
        assert_eq!((range.from(), range.to()), (date!(2026 - 10 - 23), TODAY));
        assert_eq!(range.days(), 30);
    }

    #[test]
    fn only_to_resolves_to_the_thirty_days_ending_then() {
        let range = DateRange::resolve(None, Some(date!(2026 - 01 - 30)), TODAY).unwrap();
        assert_eq!(
            (range.from(), range.to()),
            (date!(2026 - 01 - 01), date!(2026 - 01 - 30))
        );
    }

    #[test]
    fn only_from_resolves_up_to_today() {
        let range = DateRange::resolve(Some(date!(2026 - 11 - 01)), None, TODAY).unwrap();
        assert_eq!((range.from(), range.to()), (date!(2026 - 11 - 01), TODAY));
        let future = DateRange::resolve(Some(date!(2026 - 12 - 01)), None, TODAY);
        assert!(future.is_err(), "a start after today has no valid end");
    }

    #[test]
    fn range_limit_counts_both_ends() {
        let year = DateRange::new(date!(2025 - 01 - 01), date!(2025 - 12 - 31)).unwrap();
        assert_eq!(year.days(), 365);
        assert!(
            year.within_limit(365).is_ok(),
            "exactly the limit is allowed"
        );
        let err = year.within_limit(364).unwrap_err();
        assert_eq!(err.field(), "date_to");
        assert!(err.message().contains("365 days"), "message: {err}");
    }

    #[test]
    fn last_days_keep_the_end_of_the_range() {
        let range = DateRange::new(date!(2026 - 01 - 01), date!(2026 - 01 - 31)).unwrap();
        let last = range.last_days(14);
        assert_eq!(
            (last.from(), last.to()),
            (date!(2026 - 01 - 18), date!(2026 - 01 - 31))
        );
        assert_eq!(last.days(), 14);
        assert_eq!(range.last_days(365), range);
        assert_eq!(range.last_days(0).days(), 1);
    }

    #[test]
    fn range_serializes_as_named_dates() {
        let range = DateRange::new(date!(2026 - 01 - 01), date!(2026 - 01 - 31)).unwrap();
        let json = serde_json::to_value(range).unwrap();
        assert_eq!(json["date_from"], "2026-01-01");
        let back: DateRange = serde_json::from_value(json).unwrap();
        assert_eq!(back, range);
    }
}

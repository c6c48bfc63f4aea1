//! Limit/offset pagination, with the two policies the API uses.

use serde::Serialize;

use crate::ValidationError;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    limit: u32,
    offset: u64,
}

/// The largest page any listing serves.
pub const MAX_LIMIT: u32 = 100;

/// The largest `offset` accepted: PostgreSQL's `OFFSET` is a signed 64-bit integer.
pub const MAX_OFFSET: u64 = i64::MAX as u64;

impl PageRequest {
    /// A page whose `limit` must lie in `1..=MAX_LIMIT` (report rows): out of range is an error.
    ///
    /// # Errors
    /// A [`ValidationError`] on `limit` or `offset` when either is not a non-negative integer or
    /// `limit` is out of range.
    pub fn strict(
        limit: Option<&str>,
        offset: Option<&str>,
        default_limit: u32,
    ) -> Result<Self, ValidationError> {
        Self::parse(limit, offset, default_limit, |value| {
            if (1..=i128::from(MAX_LIMIT)).contains(&value) {
                Ok(value)
            } else {
                Err(ValidationError::new(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}, got {value}"),
                ))
            }
        })
    }

    /// A page whose `limit` is clamped into `1..=MAX_LIMIT` (catalog, runs, audit).
    ///
    /// # Errors
    /// A [`ValidationError`] on `limit` or `offset` when either is not an integer, or `offset`
    /// is negative.
    pub fn clamped(
        limit: Option<&str>,
        offset: Option<&str>,
        default_limit: u32,
    ) -> Result<Self, ValidationError> {
        Self::parse(limit, offset, default_limit, |value| {
            Ok(value.clamp(1, i128::from(MAX_LIMIT)))
        })
    }

    /// Parses both parameters, applying `policy` to an integer `limit`.
    fn parse(
        limit: Option<&str>,
        offset: Option<&str>,
        default_limit: u32,
        policy: impl FnOnce(i128) -> Result<i128, ValidationError>,
    ) -> Result<Self, ValidationError> {
        let limit = match limit {
            None => default_limit,
            Some(raw) => {
                let value = policy(parse_integer("limit", raw)?)?;
                u32::try_from(value).unwrap_or(MAX_LIMIT)
            }
        };
        Ok(Self {
            limit,
            offset: parse_offset(offset)?,
        })
    }

    /// A page built from values already known to be valid; `limit` is clamped.
    pub fn new(limit: u32, offset: u64) -> Self {
        Self {
            limit: limit.clamp(1, MAX_LIMIT),
            offset,
        }
    }

    /// How many items the page holds at most.
    pub const fn limit(self) -> u32 {
        self.limit
    }

    /// How many items precede the page.
    pub const fn offset(self) -> u64 {
        self.offset
    }

    /// The slice of `items` this page selects.
    pub fn slice<T>(self, items: Vec<T>) -> Vec<T> {
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        items
            .into_iter()
            .skip(offset)
            .take(self.limit as usize)
            .collect()
    }
}

/// An integer literal (digits with an optional sign, white space around), saturated to the
/// bounds of `i128` when it is longer than that.
fn parse_integer(field: &str, raw: &str) -> Result<i128, ValidationError> {
    let text = raw.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValidationError::new(
            field,
            format!("must be an integer, got {raw:?}"),
        ));
    }
    Ok(text.parse::<i128>().unwrap_or(if text.starts_with('-') {
        i128::MIN
    } else {
        i128::MAX
    }))
}

fn parse_offset(raw: Option<&str>) -> Result<u64, ValidationError> {
    let Some(raw) = raw else { return Ok(0) };
    let value = parse_integer("offset", raw)?;
    u64::try_from(value)
        .ok()
        .filter(|offset| *offset <= MAX_OFFSET)
        .ok_or_else(|| {
            ValidationError::new(
                "offset",
                format!(
                    "must be an integer from 0 to {MAX_OFFSET}, got {}",
                    raw.trim()
                ),
            )
        })
}
/// One page of a listing with the total number of matching items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub request: PageRequestView,
}

/// The page parameters actually used, as reported back to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PageRequestView {
    pub limit: u32,
    pub offset: u64,
}

impl<T> Page<T> {
    /// A page of `items` out of `total` selected by `request`.
    pub fn new(items: Vec<T>, total: u64, request: PageRequest) -> Self {
        Self {
            items,
            total,
            request: PageRequestView {
                limit: request.limit,
                offset: request.offset,
            },
        }
    }

    /// Applies `f` to every item, keeping the page bounds.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            request: self.request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_beyond_a_signed_64_bit_integer_is_refused_whatever_its_size() {
        assert_eq!(
            PageRequest::clamped(None, Some("9223372036854775807"), 20).map(PageRequest::offset),
            Ok(MAX_OFFSET)
        );
        for raw in [
            "9223372036854775808",
            "18446744073709551616",
            "99999999999999999999999999999999999999999",
            "-1",
        ] {
            let err = PageRequest::clamped(None, Some(raw), 20).expect_err(raw);
            assert_eq!(err.field(), "offset");
            assert!(
                err.message().contains("from 0 to 9223372036854775807"),
                "{raw}: {}",
                err.message()
            );
        }
        let err = PageRequest::strict(None, Some("ten"), 50).expect_err("not a number");
        assert!(err.message().contains("must be an integer"), "{err}");
        assert_eq!(
            PageRequest::clamped(Some("99999999999999999999999999999999999999999"), None, 20)
                .map(PageRequest::limit),
            Ok(MAX_LIMIT),
            "any integer is clamped, however long"
        );
    }

    #[test]
    fn strict_limit_rejects_out_of_range_values() {
        assert_eq!(PageRequest::strict(None, None, 50).unwrap().limit(), 50);
        assert_eq!(
            PageRequest::strict(Some("100"), None, 50).unwrap().limit(),
            100
        );
        for bad in ["0", "101", "-1", "ten", "1.5"] {
            let err = PageRequest::strict(Some(bad), None, 50).unwrap_err();
            assert_eq!(err.field(), "limit", "limit={bad} must be rejected");
        }
    }

    #[test]
    fn clamped_limit_is_pulled_into_range() {
        assert_eq!(
            PageRequest::clamped(Some("0"), None, 20).unwrap().limit(),
            1
        );
        assert_eq!(
            PageRequest::clamped(Some("500"), None, 20).unwrap().limit(),
            100
        );
        assert_eq!(
            PageRequest::clamped(Some("-3"), None, 20).unwrap().limit(),
            1
        );
        assert_eq!(PageRequest::clamped(None, None, 20).unwrap().limit(), 20);
        assert!(
            PageRequest::clamped(Some("many"), None, 20).is_err(),
            "non-integers are still rejected"
        );
    }

    #[test]
    fn offset_must_be_a_non_negative_integer() {
        assert_eq!(
            PageRequest::clamped(None, Some("40"), 20).unwrap().offset(),
            40
        );
        for bad in ["-1", "x"] {
            let err = PageRequest::clamped(None, Some(bad), 20).unwrap_err();
            assert_eq!(err.field(), "offset", "offset={bad} must be rejected");
        }
    }

    #[test]
    fn slice_selects_the_page() {
        let page = PageRequest::new(2, 1);
        assert_eq!(page.slice(vec![1, 2, 3, 4]), vec![2, 3]);
        assert_eq!(PageRequest::new(2, 10).slice(vec![1, 2]), Vec::<i32>::new());
    }
}

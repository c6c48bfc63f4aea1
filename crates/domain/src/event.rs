//! Raw analytics events and the values they carry.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ValidationError;

/// The outcome an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Success,
    Failed,
    Pending,
}

impl EventStatus {
    /// Every status.
    pub const ALL: [EventStatus; 3] = [
        EventStatus::Success,
        EventStatus::Failed,
        EventStatus::Pending,
    ];

    /// The lowercase name stored and served.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventStatus::Success => "success",
            EventStatus::Failed => "failed",
            EventStatus::Pending => "pending",
        }
    }

    /// Parses a status for `field`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` naming the known statuses.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        EventStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| {
                ValidationError::new(
                    field,
                    format!("must be one of: success, failed, pending; got {raw:?}"),
                )
            })
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventStatus {
    type Err = ValidationError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse("status", raw)
    }
}

/// Checks the shape shared by every slug: 1 to 64 characters of `a-z`, `0-9` and `-`, starting
/// and ending with a letter or digit.
pub(crate) fn is_valid_slug(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// Declares a slug newtype: parsed with [`is_valid_slug`] after trimming, serialized as its
/// text, and refused during deserialization with an error on `$field`.
macro_rules! slug_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses a slug for `field`.
            ///
            /// # Errors
            /// A [`ValidationError`](crate::ValidationError) on `field` when `raw` is not a slug.
            pub fn parse_for(field: &str, raw: &str) -> Result<Self, crate::ValidationError> {
                let raw = raw.trim();
                if crate::event::is_valid_slug(raw) {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(crate::ValidationError::new(
                        field,
                        "must be a slug of 1 to 64 characters: lowercase letters, digits and hyphens",
                    ))
                }
            }

            /// The slug text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = crate::ValidationError;

            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse_for($field, &raw)
            }
        }

        impl From<$name> for String {
            fn from(slug: $name) -> Self {
                slug.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use slug_type;

slug_type!(
    /// The slug of an event source (`stripe`, `adyen`, ...).
    SourceSlug,
    "source"
);

impl SourceSlug {
    /// The slug of the source every tenant has, used when an event names none.
    pub const DEFAULT: &str = "default";
    /// The provider name of the default source.
    pub const DEFAULT_PROVIDER_NAME: &str = "Default source";
    /// The description of the default source.
    pub const DEFAULT_DESCRIPTION: &str = "Events that name no source.";

    /// The tenant's default source.
    pub fn default_source() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// Parses a source slug for `field`.
    ///
    /// # Errors
    /// A [`ValidationError`] on `field` when `raw` is not a slug.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        Self::parse_for(field, raw)
    }
}

/// An event to be stored, already validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The idempotency key, unique per tenant.
    pub event_id: String,
    /// What happened (`purchase`, `page_view`); [`NewEvent::DEFAULT_NAME`] when not said.
    pub event_name: String,
    /// Who did it, when known: the subject of distinct counts.
    pub user_id: Option<String>,
    pub source: SourceSlug,
    /// The thing the event is about (an order, a customer), when there is one.
    pub entity_id: Option<String>,
    /// The outcome the event reports, when it reports one.
    pub status: Option<EventStatus>,
    pub processing_ms: i64,
    pub amount_cents: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Free dimensions (`path`, `channel`, ...): always a JSON object.
    pub properties: serde_json::Value,
}

impl NewEvent {
    /// The name of an event sent without one.
    pub const DEFAULT_NAME: &str = "event";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parses_known_values_only() {
        assert_eq!(
            EventStatus::parse("status", "failed"),
            Ok(EventStatus::Failed)
        );
        assert_eq!(
            EventStatus::parse("status", " FAILED "),
            Ok(EventStatus::Failed)
        );
        let err = EventStatus::parse("status", "lost").unwrap_err();
        assert!(
            err.message().contains("success, failed, pending"),
            "message: {err}"
        );
    }

    #[test]
    fn slugs_are_lowercase_words_joined_by_hyphens() {
        assert!(SourceSlug::parse("source", "stripe").is_ok());
        assert!(SourceSlug::parse("source", "pay-pal-2").is_ok());
        for bad in [
            "",
            "Stripe",
            "-stripe",
            "stripe-",
            "str ipe",
            &"x".repeat(65),
        ] {
            assert!(
                SourceSlug::parse("source", bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }
}

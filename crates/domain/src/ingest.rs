//! Parsing events sent by producers, with an error for every offending field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{EventStatus, NewEvent, SourceSlug, ValidationError};

/// The longest `event_id` or `entity_id` accepted.
pub const MAX_ID_LEN: usize = 128;
/// The largest `payload`, serialized.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// How far in the future `occurred_at` may be, for clock skew.
pub const MAX_FUTURE: Duration = Duration::minutes(5);
/// The most events one bulk request carries.
pub const MAX_BULK_EVENTS: usize = 1_000;

/// The fields an event may have; any other field is an error.
const FIELDS: [&str; 8] = [
    "event_id",
    "source",
    "entity_id",
    "status",
    "occurred_at",
    "processing_ms",
    "amount_cents",
    "payload",
];

/// The time rules an event is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestWindow {
    /// The latest `occurred_at` accepted.
    pub latest: OffsetDateTime,
    /// The earliest `occurred_at` accepted: the longest retention of any report window.
    pub earliest: OffsetDateTime,
}

impl IngestWindow {
    /// The window at `now` for data kept `retention_days`.
    pub fn at(now: OffsetDateTime, retention_days: u32) -> Self {
        Self {
            latest: now + MAX_FUTURE,
            earliest: now - Duration::days(i64::from(retention_days)),
        }
    }
}

/// An event that passed every field rule; its idempotency key is settled later.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent {
    /// The `event_id` the producer sent, if any.
    pub event_id: Option<String>,
    pub source: SourceSlug,
    pub entity_id: String,
    pub status: EventStatus,
    pub occurred_at: OffsetDateTime,
    pub processing_ms: i64,
    pub amount_cents: i64,
    pub payload: Value,
}

impl ParsedEvent {
    /// The event to store under `event_id`.
    pub fn into_event(self, event_id: String) -> NewEvent {
        NewEvent {
            event_id,
            source: self.source,
            entity_id: self.entity_id,
            status: self.status,
            processing_ms: self.processing_ms,
            amount_cents: self.amount_cents,
            occurred_at: self.occurred_at,
            payload: self.payload,
        }
    }
}

/// Checks an idempotency key (an `event_id` or an `Idempotency-Key` header) for `field`.
///
/// # Errors
/// A [`ValidationError`] when it is empty, longer than 128 characters or has control characters.
pub fn parse_event_id(field: &str, raw: &str) -> Result<String, ValidationError> {
    let id = raw.trim();
    if id.is_empty() || id.chars().count() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            format!("must be 1 to {MAX_ID_LEN} printable characters"),
        ));
    }
    Ok(id.to_owned())
}

/// Parses one event at `path` (`""` for a single event, `events[3]` in a bulk request),
/// collecting an error for every field that breaks a rule.
///
/// # Errors
/// Every [`ValidationError`] found, each on its full field path.
pub fn parse_event(
    value: &Value,
    path: &str,
    window: IngestWindow,
) -> Result<ParsedEvent, Vec<ValidationError>> {
    let field = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let Some(object) = value.as_object() else {
        let at = if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        };
        return Err(vec![ValidationError::new(at, "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    for name in object.keys() {
        if !FIELDS.contains(&name.as_str()) {
            errors.push(ValidationError::new(
                field(name),
                "is not a field of an event (fields: event_id, source, entity_id, status, occurred_at, processing_ms, amount_cents, payload)",
            ));
        }
    }
    let mut check = |name: &str, result: Result<(), String>| {
        if let Err(message) = result {
            errors.push(ValidationError::new(field(name), message));
        }
    };

    let text = |name: &str| -> Result<Option<&str>, String> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err("must be a string".to_owned()),
        }
    };
    let required = |name: &str| -> Result<&str, String> {
        text(name)?.ok_or_else(|| "is required".to_owned())
    };

    let mut event_id = None;
    check(
        "event_id",
        match text("event_id") {
            Ok(Some(raw)) => parse_event_id("event_id", raw)
                .map(|id| event_id = Some(id))
                .map_err(|e| e.message().to_owned()),
            Ok(None) => Ok(()),
            Err(message) => Err(message),
        },
    );
    let mut source = None;
    check(
        "source",
        required("source").and_then(|raw| {
            SourceSlug::parse("source", raw)
                .map(|s| source = Some(s))
                .map_err(|e| e.message().to_owned())
        }),
    );
    let mut entity_id = None;
    check(
        "entity_id",
        required("entity_id").and_then(|raw| {
            parse_event_id("entity_id", raw)
                .map(|e| entity_id = Some(e))
                .map_err(|e| e.message().to_owned())
        }),
    );
    let mut status = None;
    check(
        "status",
        required("status").and_then(|raw| {
            EventStatus::parse("status", raw)
                .map(|s| status = Some(s))
                .map_err(|e| e.message().to_owned())
        }),
    );
    let mut occurred_at = None;
    check(
        "occurred_at",
        required("occurred_at").and_then(|raw| {
            let at = OffsetDateTime::parse(raw.trim(), &Rfc3339).map_err(|_| {
                format!("must be an RFC 3339 timestamp such as 2026-11-21T17:42:00Z, got {raw:?}")
            })?;
            if at > window.latest {
                return Err("must not be more than 5 minutes in the future".to_owned());
            }
            if at < window.earliest {
                return Err("is older than the longest retention of any report".to_owned());
            }
            occurred_at = Some(at.to_offset(time::UtcOffset::UTC));
            Ok(())
        }),
    );
    let count = |name: &str| -> Result<i64, String> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|n| *n >= 0)
                .ok_or_else(|| "must be an integer of 0 or more".to_owned()),
            Some(_) => Err("must be an integer of 0 or more".to_owned()),
        }
    };
    let mut processing_ms = 0;
    check(
        "processing_ms",
        count("processing_ms").map(|n| processing_ms = n),
    );
    let mut amount_cents = 0;
    check(
        "amount_cents",
        count("amount_cents").map(|n| amount_cents = n),
    );
    let mut payload = Value::Object(Map::new());
    check(
        "payload",
        match object.get("payload") {
            None | Some(Value::Null) => Ok(()),
            Some(value @ Value::Object(_)) => {
                let size = serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len());
                if has_nul(value) {
                    // PostgreSQL's jsonb cannot hold U+0000: refuse it here, not at commit.
                    Err("must not contain the character U+0000".to_owned())
                } else if size > MAX_PAYLOAD_BYTES {
                    Err(format!(
                        "must be at most {MAX_PAYLOAD_BYTES} bytes of JSON, got {size}"
                    ))
                } else {
                    payload = value.clone();
                    Ok(())
                }
            }
            Some(_) => Err("must be a JSON object".to_owned()),
        },
    );

    match (errors.is_empty(), source, entity_id, status, occurred_at) {
        (true, Some(source), Some(entity_id), Some(status), Some(occurred_at)) => Ok(ParsedEvent {
            event_id,
            source,
            entity_id,
            status,
            occurred_at,
            processing_ms,
            amount_cents,
            payload,
        }),
        _ => Err(errors),
    }
}

/// Whether any key or string inside `value` contains U+0000.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// What became of one event of an ingestion request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngestStatus {
    /// Stored now.
    Created,
    /// Stored before with the same content: nothing written.
    Duplicate,
    /// Stored before with different content under the same key: refused.
    Conflict,
}

/// The outcome of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    pub event_id: String,
    pub status: IngestStatus,
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);

    fn window() -> IngestWindow {
        IngestWindow::at(NOW, 730)
    }

    #[test]
    fn a_valid_event_parses_with_defaults() {
        let event = parse_event(
            &json!({"source": "stripe", "entity_id": "cus_1", "status": "success", "occurred_at": "2026-11-21T13:00:00+01:00"}),
            "",
            window(),
        )
        .unwrap();
        assert_eq!(
            event.occurred_at,
            datetime!(2026-11-21 12:00 UTC),
            "normalized to UTC"
        );
        assert_eq!((event.processing_ms, event.amount_cents), (0, 0));
        assert_eq!(event.payload, json!({}));
        assert_eq!(event.event_id, None);
    }

    #[test]
    fn every_bad_field_is_reported_on_its_path() {
        let errors = parse_event(
            &json!({"source": "Stripe!", "status": "lost", "occurred_at": "yesterday", "processing_ms": -1,
                    "amount_cents": 1.5, "payload": [1], "extra": true, "event_id": ""}),
            "events[3]",
            window(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(ValidationError::field).collect();
        for expected in [
            "events[3].extra",
            "events[3].event_id",
            "events[3].source",
            "events[3].entity_id",
            "events[3].status",
            "events[3].occurred_at",
            "events[3].processing_ms",
            "events[3].amount_cents",
            "events[3].payload",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn occurred_at_must_lie_in_the_accepted_window() {
        let at = |t: &str| json!({"source": "s", "entity_id": "e", "status": "success", "occurred_at": t});
        assert!(
            parse_event(&at("2026-11-21T12:04:59Z"), "", window()).is_ok(),
            "4:59 ahead is clock skew"
        );
        assert!(
            parse_event(&at("2026-11-21T12:05:01Z"), "", window()).is_err(),
            "beyond 5 minutes"
        );
        assert!(
            parse_event(&at("2024-11-20T12:00:00Z"), "", window()).is_err(),
            "older than retention"
        );
    }

    #[test]
    fn payload_size_is_bounded() {
        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        let value = json!({"source": "s", "entity_id": "e", "status": "success", "occurred_at": "2026-11-21T12:00:00Z", "payload": {"blob": big}});
        let errors = parse_event(&value, "", window()).unwrap_err();
        assert_eq!(errors[0].field(), "payload");
    }

    #[test]
    fn a_payload_with_a_nul_character_is_refused() {
        let value = json!({"source": "s", "entity_id": "e", "status": "success",
                           "occurred_at": "2026-11-21T12:00:00Z", "payload": {"note": ["a\u{0}b"]}});
        let errors = parse_event(&value, "", window()).unwrap_err();
        assert_eq!(errors[0].field(), "payload");
    }

    #[test]
    fn a_non_object_is_refused_whole() {
        let errors = parse_event(&json!([1, 2]), "events[0]", window()).unwrap_err();
        assert_eq!(errors[0].field(), "events[0]");
    }
}

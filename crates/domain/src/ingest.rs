//! Parsing events sent by producers, with an error for every offending field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{EventStatus, NewEvent, SourceSlug, ValidationError};

/// The longest `event_id`, `event_name`, `user_id` or `entity_id` accepted.
pub const MAX_ID_LEN: usize = 128;
/// The largest `properties`, serialized, once every field it gathers is in it.
pub const MAX_PROPERTIES_BYTES: usize = 16 * 1024;
/// How far in the future `occurred_at` may be, for clock skew.
pub const MAX_FUTURE: Duration = Duration::minutes(5);
/// The most events one bulk request carries.
pub const MAX_BULK_EVENTS: usize = 1_000;

/// The fields of an event, each with the names producers send it under (the first is ours;
/// the others come from the Segment Track spec and from earlier event shapes).
const FIELDS: [(&str, &[&str]); 10] = [
    ("event_id", &["event_id", "messageId"]),
    ("event_name", &["event_name", "event"]),
    ("user_id", &["user_id", "userId"]),
    ("source", &["source"]),
    ("entity_id", &["entity_id"]),
    ("status", &["status"]),
    ("occurred_at", &["occurred_at", "timestamp"]),
    ("processing_ms", &["processing_ms"]),
    ("amount_cents", &["amount_cents"]),
    ("properties", &["properties", "payload", "metadata"]),
];

/// Fields that are not ours but are accepted as sent and kept under the same key in
/// `properties`: those of the seed-style and Segment Track payloads.
const INTO_PROPERTIES: [&str; 4] = ["channel", "campaign_id", "tags", "context"];

/// Accepted top-level fields that carry no value of their own: Segment's `type` (which must be
/// `track`) and `anonymousId` (the `user_id` when `userId` is absent, else a property).
const ANONYMOUS_ID: &str = "anonymousId";
const TYPE: &str = "type";

/// Every name an event's field may have, for the message on an unknown one.
const KNOWN_FIELDS: &str = "event_id (messageId), event_name (event), user_id (userId, anonymousId), \
     source, entity_id, status, occurred_at (timestamp), processing_ms, amount_cents, \
     properties (payload, metadata), channel, campaign_id, tags, context, type";

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
    pub event_name: String,
    pub user_id: Option<String>,
    pub source: SourceSlug,
    pub entity_id: Option<String>,
    pub status: Option<EventStatus>,
    pub occurred_at: OffsetDateTime,
    pub processing_ms: i64,
    pub amount_cents: i64,
    pub properties: Value,
}

impl ParsedEvent {
    /// The event to store under `event_id`.
    pub fn into_event(self, event_id: String) -> NewEvent {
        NewEvent {
            event_id,
            event_name: self.event_name,
            user_id: self.user_id,
            source: self.source,
            entity_id: self.entity_id,
            status: self.status,
            processing_ms: self.processing_ms,
            amount_cents: self.amount_cents,
            occurred_at: self.occurred_at,
            properties: self.properties,
        }
    }
}

/// Checks an idempotency key (an `event_id` or an `Idempotency-Key` header) for `field`.
///
/// # Errors
/// A [`ValidationError`] when it is empty, longer than 128 characters or has control characters.
pub fn parse_event_id(field: &str, raw: &str) -> Result<String, ValidationError> {
    parse_label(raw).map_err(|message| ValidationError::new(field, message))
}

/// Checks an identifier or a name: 1 to 128 printable characters once trimmed.
fn parse_label(raw: &str) -> Result<String, String> {
    let id = raw.trim();
    if id.is_empty() || id.chars().count() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(format!("must be 1 to {MAX_ID_LEN} printable characters"));
    }
    Ok(id.to_owned())
}

/// The fields of one event object, each found under exactly one of its names.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    path: &'a str,
    errors: Vec<ValidationError>,
}

impl<'a> Fields<'a> {
    /// The full path of a field named `name`.
    fn at(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn fail(&mut self, name: &str, message: impl Into<String>) {
        let at = self.at(name);
        self.errors.push(ValidationError::new(at, message));
    }

    /// The value of `field` under whichever of its names was sent (a JSON `null` is absent),
    /// with the name used; two of its names at once is an error on the second.
    fn value(&mut self, field: &str) -> Option<(&'a str, &'a Value)> {
        let names = FIELDS
            .iter()
            .find(|(name, _)| *name == field)
            .map_or(&[][..], |(_, names)| *names);
        let object = self.object;
        let mut sent = names.iter().filter_map(|name| {
            object
                .get_key_value(*name)
                .filter(|(_, value)| !value.is_null())
                .map(|(name, value)| (name.as_str(), value))
        });
        let first = sent.next();
        if let (Some((name, _)), Some((again, _))) = (first, sent.next()) {
            self.fail(
                again,
                format!("is another name of `{name}`: send one of them"),
            );
        }
        first
    }

    /// A text field, parsed by `parse`; a non-string is an error.
    fn text<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.value(field) {
            None => Some(None),
            Some((name, Value::String(raw))) => match parse(raw) {
                Ok(parsed) => Some(Some(parsed)),
                Err(message) => {
                    self.fail(name, message);
                    None
                }
            },
            Some((name, _)) => {
                self.fail(name, "must be a string");
                None
            }
        }
    }

    /// A count of 0 or more, 0 when absent.
    fn count(&mut self, field: &str) -> i64 {
        match self.value(field) {
            None => 0,
            Some((name, value)) => match value.as_i64().filter(|n| *n >= 0) {
                Some(n) if value.is_number() => n,
                _ => {
                    self.fail(name, "must be an integer of 0 or more");
                    0
                }
            },
        }
    }
}

/// Parses one event at `path` (`""` for a single event, `events[3]` in a bulk request),
/// collecting an error for every field that breaks a rule.
///
/// Producers' own names are accepted for each field (`event`, `userId`, `messageId`,
/// `timestamp`, `payload`, `metadata`), and the top-level fields of the seed-style and Segment
/// Track payloads that have no column of their own land in `properties` under their own key.
///
/// # Errors
/// Every [`ValidationError`] found, each on its full field path.
pub fn parse_event(
    value: &Value,
    path: &str,
    window: IngestWindow,
) -> Result<ParsedEvent, Vec<ValidationError>> {
    let Some(object) = value.as_object() else {
        let at = if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        };
        return Err(vec![ValidationError::new(at, "must be a JSON object")]);
    };
    let mut fields = Fields {
        object,
        path,
        errors: Vec::new(),
    };
    for name in object.keys() {
        let known = FIELDS
            .iter()
            .any(|(_, names)| names.contains(&name.as_str()))
            || INTO_PROPERTIES.contains(&name.as_str())
            || name == ANONYMOUS_ID
            || name == TYPE;
        if !known {
            fields.fail(
                name,
                format!("is not a field of an event (fields: {KNOWN_FIELDS})"),
            );
        }
    }
    match object.get(TYPE) {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind == "track" => {}
        Some(_) => fields.fail(
            TYPE,
            "must be \"track\", the only Segment call stored as an event",
        ),
    }

    let event_id = fields.text("event_id", parse_label);
    let event_name = fields.text("event_name", parse_label);
    let mut user_id = fields.text("user_id", parse_label);
    // Segment sends `anonymousId` for visitors not yet identified: it is the user until a
    // `userId` is known, and a property beside one.
    let mut anonymous = None;
    match object.get(ANONYMOUS_ID) {
        None | Some(Value::Null) => {}
        Some(Value::String(raw)) => match parse_label(raw) {
            Ok(id) if matches!(user_id, Some(None)) => user_id = Some(Some(id)),
            Ok(id) => anonymous = Some(Value::String(id)),
            Err(message) => fields.fail(ANONYMOUS_ID, message),
        },
        Some(_) => fields.fail(ANONYMOUS_ID, "must be a string"),
    }
    let source = fields.text("source", |raw| {
        SourceSlug::parse("source", raw).map_err(|e| e.message().to_owned())
    });
    let entity_id = fields.text("entity_id", parse_label);
    let status = fields.text("status", |raw| {
        EventStatus::parse("status", raw).map_err(|e| e.message().to_owned())
    });
    let occurred_at = match fields.value("occurred_at") {
        None => {
            fields.fail("occurred_at", "is required");
            None
        }
        Some((name, value)) => match parse_time(value, window) {
            Ok(at) => Some(at),
            Err(message) => {
                fields.fail(name, message);
                None
            }
        },
    };
    let processing_ms = fields.count("processing_ms");
    let amount_cents = fields.count("amount_cents");
    let properties = gather_properties(&mut fields, anonymous);

    let Fields { errors, .. } = fields;
    match (
        errors.is_empty(),
        event_id,
        event_name,
        user_id,
        source,
        entity_id,
        status,
        occurred_at,
        properties,
    ) {
        (
            true,
            Some(event_id),
            Some(event_name),
            Some(user_id),
            Some(source),
            Some(entity_id),
            Some(status),
            Some(occurred_at),
            Some(properties),
        ) => Ok(ParsedEvent {
            event_id,
            event_name: event_name.unwrap_or_else(|| NewEvent::DEFAULT_NAME.to_owned()),
            user_id,
            source: source.unwrap_or_else(SourceSlug::default_source),
            entity_id,
            status,
            occurred_at,
            processing_ms,
            amount_cents,
            properties,
        }),
        _ => Err(errors),
    }
}

/// `occurred_at` as an RFC 3339 string or integer Unix seconds, inside `window`, in UTC.
fn parse_time(value: &Value, window: IngestWindow) -> Result<OffsetDateTime, String> {
    const FORMS: &str =
        "must be an RFC 3339 timestamp such as 2026-11-21T17:42:00Z or integer Unix seconds";
    let at = match value {
        Value::String(raw) => OffsetDateTime::parse(raw.trim(), &Rfc3339)
            .map_err(|_| format!("{FORMS}, got {raw:?}"))?,
        Value::Number(n) => n
            .as_i64()
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
            .ok_or_else(|| format!("{FORMS}, got {n}"))?,
        _ => return Err(FORMS.to_owned()),
    };
    if at > window.latest {
        return Err("must not be more than 5 minutes in the future".to_owned());
    }
    if at < window.earliest {
        return Err("is older than the longest retention of any report".to_owned());
    }
    Ok(at.to_offset(time::UtcOffset::UTC))
}

/// The event's `properties`: the object sent under one of its names, plus the accepted
/// top-level fields that have no column, each under its own key (a key already in the object
/// is an error rather than a silent overwrite).
fn gather_properties(fields: &mut Fields<'_>, anonymous: Option<Value>) -> Option<Value> {
    let (name, mut properties) = match fields.value("properties") {
        None => ("properties", Map::new()),
        Some((name, Value::Object(map))) => (name, map.clone()),
        Some((name, _)) => {
            fields.fail(name, "must be a JSON object");
            return None;
        }
    };
    let extra = INTO_PROPERTIES
        .iter()
        .filter_map(|key| {
            fields
                .object
                .get(*key)
                .filter(|value| !value.is_null())
                .map(|value| (*key, value.clone()))
        })
        .chain(anonymous.map(|value| (ANONYMOUS_ID, value)))
        .collect::<Vec<_>>();
    let mut ok = true;
    for (key, value) in extra {
        if properties.contains_key(key) {
            fields.fail(key, format!("is also a key of `{name}`: send it once"));
            ok = false;
        } else {
            properties.insert(key.to_owned(), value);
        }
    }
    let properties = Value::Object(properties);
    let size = serde_json::to_vec(&properties).map_or(usize::MAX, |bytes| bytes.len());
    if has_nul(&properties) {
        // PostgreSQL's jsonb cannot hold U+0000: refuse it here, not at commit.
        fields.fail(name, "must not contain the character U+0000");
        return None;
    }
    if size > MAX_PROPERTIES_BYTES {
        fields.fail(
            name,
            format!("must be at most {MAX_PROPERTIES_BYTES} bytes of JSON with every field it gathers, got {size}"),
        );
        return None;
    }
    ok.then_some(properties)
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
        IngestWindow::at(NOW, 1825)
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
        assert_eq!(event.properties, json!({}));
        assert_eq!(event.event_id, None);
        assert_eq!(event.event_name, "event");
        assert_eq!(event.user_id, None);
        assert_eq!(event.entity_id.as_deref(), Some("cus_1"));
        assert_eq!(event.status, Some(EventStatus::Success));
    }

    #[test]
    fn only_occurred_at_is_required() {
        let event = parse_event(
            &json!({"occurred_at": "2026-11-21T12:00:00Z"}),
            "",
            window(),
        )
        .unwrap();
        assert_eq!(
            event.source.as_str(),
            "default",
            "the tenant's default source"
        );
        assert_eq!((event.entity_id, event.status), (None, None));
        let errors = parse_event(&json!({}), "", window()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].field(), errors[0].message()),
            ("occurred_at", "is required")
        );
    }

    #[test]
    fn every_bad_field_is_reported_on_its_path() {
        let errors = parse_event(
            &json!({"source": "Stripe!", "status": "lost", "occurred_at": "yesterday", "processing_ms": -1,
                    "amount_cents": 1.5, "payload": [1], "extra": true, "event_id": "", "entity_id": 7,
                    "event": "", "userId": " ", "anonymousId": 3, "type": "identify"}),
            "events[3]",
            window(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(ValidationError::field).collect();
        for expected in [
            "events[3].extra",
            "events[3].event_id",
            "events[3].event",
            "events[3].userId",
            "events[3].anonymousId",
            "events[3].type",
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
        assert_eq!(fields.len(), 13, "one error per field: {fields:?}");
    }

    #[test]
    fn an_unknown_field_names_itself_and_the_known_ones() {
        let errors = parse_event(
            &json!({"occurred_at": "2026-11-21T12:00:00Z", "colour": "red"}),
            "",
            window(),
        )
        .unwrap_err();
        assert_eq!(errors[0].field(), "colour");
        assert!(errors[0].message().contains("messageId"), "{}", errors[0]);
    }

    #[test]
    fn a_seed_style_payload_is_accepted_as_sent() {
        let event = parse_event(
            &json!({"event_name": "purchase", "user_id": "u-42", "timestamp": 1_763_726_400,
                    "channel": "ios", "campaign_id": "black-friday", "tags": ["a", "b"],
                    "metadata": {"path": "/checkout", "value": 3}}),
            "",
            window(),
        )
        .unwrap();
        assert_eq!(event.event_name, "purchase");
        assert_eq!(event.user_id.as_deref(), Some("u-42"));
        assert_eq!(event.occurred_at, datetime!(2025-11-21 12:00 UTC));
        assert_eq!(
            event.properties,
            json!({"path": "/checkout", "value": 3, "channel": "ios",
                   "campaign_id": "black-friday", "tags": ["a", "b"]})
        );
    }

    #[test]
    fn a_segment_track_call_is_accepted_as_sent() {
        let track = json!({
            "type": "track", "event": "Order Completed", "userId": "u-1", "anonymousId": "anon-9",
            "messageId": "ajs-next-1", "timestamp": "2026-11-21T11:59:00.120Z",
            "properties": {"revenue": 25, "path": "/thanks"},
            "context": {"ip": "203.0.113.7", "library": {"name": "analytics.js"}}
        });
        let event = parse_event(&track, "", window()).unwrap();
        assert_eq!(event.event_id.as_deref(), Some("ajs-next-1"));
        assert_eq!(event.event_name, "Order Completed");
        assert_eq!(event.user_id.as_deref(), Some("u-1"));
        assert_eq!(
            event.properties["context"]["library"]["name"],
            "analytics.js"
        );
        assert_eq!(
            event.properties["anonymousId"], "anon-9",
            "kept beside userId"
        );
        assert_eq!(event.properties["revenue"], 25);

        let anonymous = json!({"type": "track", "event": "Signed Up", "anonymousId": "anon-9",
                               "timestamp": "2026-11-21T11:00:00Z"});
        let event = parse_event(&anonymous, "", window()).unwrap();
        assert_eq!(
            event.user_id.as_deref(),
            Some("anon-9"),
            "the user until one is identified"
        );
        assert_eq!(event.properties, json!({}));
    }

    #[test]
    fn two_names_of_one_field_are_refused() {
        let errors = parse_event(
            &json!({"occurred_at": "2026-11-21T12:00:00Z", "timestamp": 1_763_726_400,
                    "event_name": "a", "event": "b", "payload": {}, "properties": {}}),
            "",
            window(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(ValidationError::field).collect();
        assert_eq!(fields, ["event", "timestamp", "payload"]);
    }

    #[test]
    fn a_gathered_field_may_not_overwrite_a_property() {
        let errors = parse_event(
            &json!({"occurred_at": "2026-11-21T12:00:00Z", "channel": "web",
                    "properties": {"channel": "ios"}}),
            "",
            window(),
        )
        .unwrap_err();
        assert_eq!(errors[0].field(), "channel");
    }

    #[test]
    fn unix_seconds_and_rfc_3339_name_the_same_moment() {
        let a = parse_event(&json!({"occurred_at": 1_763_726_400}), "", window()).unwrap();
        let b = parse_event(&json!({"timestamp": "2025-11-21T12:00:00Z"}), "", window()).unwrap();
        assert_eq!(a.occurred_at, b.occurred_at);
        for bad in [json!(1.5), json!(-99_999_999_999_999_i64), json!(true)] {
            let errors = parse_event(&json!({"timestamp": bad}), "", window()).unwrap_err();
            assert_eq!(errors[0].field(), "timestamp", "{bad}");
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
            parse_event(&at("2021-11-20T12:00:00Z"), "", window()).is_err(),
            "older than retention"
        );
    }

    #[test]
    fn properties_size_is_bounded_with_what_they_gather() {
        let big = "x".repeat(MAX_PROPERTIES_BYTES);
        let value = json!({"occurred_at": "2026-11-21T12:00:00Z", "payload": {"blob": big}});
        let errors = parse_event(&value, "", window()).unwrap_err();
        assert_eq!(errors[0].field(), "payload");

        let half = "x".repeat(MAX_PROPERTIES_BYTES / 2);
        let value = json!({"occurred_at": "2026-11-21T12:00:00Z", "metadata": {"a": half},
                           "tags": [half]});
        let errors = parse_event(&value, "", window()).unwrap_err();
        assert_eq!(
            errors[0].field(),
            "metadata",
            "the merged object is too big"
        );
    }

    #[test]
    fn properties_with_a_nul_character_are_refused() {
        let value =
            json!({"occurred_at": "2026-11-21T12:00:00Z", "properties": {"note": ["a\u{0}b"]}});
        let errors = parse_event(&value, "", window()).unwrap_err();
        assert_eq!(errors[0].field(), "properties");
    }

    #[test]
    fn a_non_object_is_refused_whole() {
        let errors = parse_event(&json!([1, 2]), "events[0]", window()).unwrap_err();
        assert_eq!(errors[0].field(), "events[0]");
    }
}

//! Event ingestion: validation, idempotency keys and fingerprints, durable storage.

use std::{collections::BTreeSet, sync::Arc};

use domain::{
    IngestOutcome, IngestWindow, NewEvent, TenantId, ValidationError,
    ingest::{MAX_BULK_EVENTS, parse_event, parse_event_id},
};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use crate::digest::sha256_hex;
use crate::ports::{Clock, EventIngestion, IngestEvent, SourceStore, StoreError, TenancyError};
use crate::telemetry;

/// The longest retention a report window may have (five years, for monthly rollups): older
/// events could never be reported.
pub const MAX_RETENTION_DAYS: u32 = domain::rollup::MAX_RETENTION_DAYS;

/// The failure of an ingestion request.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Fields broke rules; nothing was stored.
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<ValidationError>),
    /// The store could not be reached; nothing was stored.
    #[error("event storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<StoreError> for IngestError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(e) => IngestError::Unavailable(e),
            StoreError::Unexpected(e) => IngestError::Unexpected(e),
        }
    }
}

impl From<TenancyError> for IngestError {
    fn from(err: TenancyError) -> Self {
        match err {
            TenancyError::Unavailable(e) => IngestError::Unavailable(e),
            other => IngestError::Unexpected(other.into()),
        }
    }
}

/// The SHA-256 (hex) of an event's content, everything but its id, in a canonical form:
/// the timestamp in UTC RFC 3339 and every object's keys sorted, so that the same event sent
/// twice, however its JSON was laid out, has the same fingerprint.
///
/// The fields of the first event shape keep their names (`payload` for the properties) and
/// `event_name` and `user_id` join only when they differ from an event of that shape, so an
/// event stored before them answers a replay of itself as a duplicate, not as a conflict.
pub fn fingerprint(event: &NewEvent) -> String {
    let occurred_at = event
        .occurred_at
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default();
    let mut content = serde_json::json!({
        "source": event.source.as_str(),
        "entity_id": event.entity_id,
        "status": event.status.map(domain::EventStatus::as_str),
        "occurred_at": occurred_at,
        "processing_ms": event.processing_ms,
        "amount_cents": event.amount_cents,
        "payload": event.properties,
    });
    if let Value::Object(fields) = &mut content {
        if event.event_name != NewEvent::DEFAULT_NAME {
            fields.insert("event_name".into(), event.event_name.clone().into());
        }
        if let Some(user) = &event.user_id {
            fields.insert("user_id".into(), user.clone().into());
        }
    }
    let mut canonical = String::new();
    write_canonical(&content, &mut canonical);
    sha256_hex(canonical.as_bytes())
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let keys: BTreeSet<&String> = map.keys().collect();
            out.push('{');
            for (n, key) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(inner) = map.get(key) {
                    write_canonical(inner, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The ports an [`IngestService`] works with.
#[derive(Clone)]
pub struct IngestPorts {
    pub events: Arc<dyn EventIngestion>,
    /// The tenants' sources, which events must name.
    pub sources: Arc<dyn SourceStore>,
    pub clock: Arc<dyn Clock>,
}

/// Validates events and stores them idempotently.
#[derive(Clone)]
pub struct IngestService {
    events: Arc<dyn EventIngestion>,
    sources: Arc<dyn SourceStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestService").finish_non_exhaustive()
    }
}

impl IngestService {
    /// A service storing into `ports.events`, checking sources against `ports.sources`.
    pub fn new(ports: IngestPorts) -> Self {
        Self {
            events: ports.events,
            sources: ports.sources,
            clock: ports.clock,
        }
    }

    /// Ingests one event. Its idempotency key is `idempotency_key` (the `Idempotency-Key`
    /// header), else its `event_id`, else a new one.
    ///
    /// # Errors
    /// [`IngestError::Invalid`] naming every bad field (nothing stored); storage failures.
    pub async fn ingest_one(
        &self,
        tenant: TenantId,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<IngestOutcome, IngestError> {
        self.ingest_one_keyed(tenant, body, idempotency_key, generate_id)
            .await
    }

    /// As [`IngestService::ingest_one`], an event with neither key taking `fallback()` as its
    /// id: a key derived from where it came from, so that a redelivery stores nothing new.
    ///
    /// # Errors
    /// As [`IngestService::ingest_one`].
    #[tracing::instrument(skip_all, fields(tenant = %tenant), err(level = "info"))]
    pub async fn ingest_one_keyed(
        &self,
        tenant: TenantId,
        body: &Value,
        idempotency_key: Option<&str>,
        fallback: impl FnOnce() -> String,
    ) -> Result<IngestOutcome, IngestError> {
        let header = idempotency_key
            .map(|raw| parse_event_id("Idempotency-Key", raw))
            .transpose()
            .map_err(|e| IngestError::Invalid(vec![e]))
            .inspect_err(|err| counted_rejection(err, 1))?;
        let mut events = self
            .validate(tenant, std::slice::from_ref(body), "")
            .await
            .inspect_err(|err| counted_rejection(err, 1))?;
        let event = events
            .pop()
            .ok_or_else(|| IngestError::Unexpected(anyhow::anyhow!("no event parsed")))?;
        let (parsed_id, event) = event;
        let id = match (header, parsed_id) {
            (Some(header), Some(body)) if header != body => {
                telemetry::rejected(1);
                return Err(IngestError::Invalid(vec![ValidationError::new(
                    "event_id",
                    "must match the Idempotency-Key header when both are given",
                )]));
            }
            (Some(key), _) | (None, Some(key)) => key,
            (None, None) => fallback(),
        };
        let mut outcomes = self.store(tenant, vec![event.into_event(id)]).await?;
        outcomes
            .pop()
            .ok_or_else(|| IngestError::Unexpected(anyhow::anyhow!("no outcome for the event")))
    }

    /// Ingests `{"events": [...]}` (1 to 1,000): all or nothing for validation, then each event
    /// created, duplicate or conflict on its own. The body is dropped once parsed, before the
    /// wait for the commit.
    ///
    /// # Errors
    /// [`IngestError::Invalid`] naming every bad field as `events[i].field` (nothing stored);
    /// storage failures.
    pub async fn ingest_bulk(
        &self,
        tenant: TenantId,
        body: Value,
    ) -> Result<Vec<IngestOutcome>, IngestError> {
        self.ingest_bulk_keyed(tenant, body, |_| generate_id())
            .await
    }

    /// As [`IngestService::ingest_bulk`], the `i`th event without an `event_id` taking
    /// `fallback(i)` as its id.
    ///
    /// # Errors
    /// As [`IngestService::ingest_bulk`].
    #[tracing::instrument(skip_all, fields(tenant = %tenant), err(level = "info"))]
    pub async fn ingest_bulk_keyed(
        &self,
        tenant: TenantId,
        body: Value,
        fallback: impl Fn(usize) -> String,
    ) -> Result<Vec<IngestOutcome>, IngestError> {
        // A body that is not a list of events counts as one rejected event.
        let invalid = |field: &str, message: String| {
            telemetry::rejected(1);
            IngestError::Invalid(vec![ValidationError::new(field, message)])
        };
        let Some(object) = body.as_object() else {
            return Err(invalid(
                "body",
                "must be a JSON object with an `events` array".to_owned(),
            ));
        };
        if let Some(extra) = object.keys().find(|k| k.as_str() != "events") {
            return Err(invalid(
                extra,
                "is not a field of a bulk request (fields: events)".to_owned(),
            ));
        }
        let Some(Value::Array(items)) = object.get("events") else {
            return Err(invalid(
                "events",
                "is required and must be an array".to_owned(),
            ));
        };
        if items.is_empty() || items.len() > MAX_BULK_EVENTS {
            return Err(invalid(
                "events",
                format!(
                    "must hold 1 to {MAX_BULK_EVENTS} events, got {}",
                    items.len()
                ),
            ));
        }
        let parsed = self
            .validate(tenant, items, "events")
            .await
            .inspect_err(|err| counted_rejection(err, items.len()))?;
        drop(body);
        let events = parsed
            .into_iter()
            .enumerate()
            .map(|(n, (id, event))| event.into_event(id.unwrap_or_else(|| fallback(n))))
            .collect();
        self.store(tenant, events).await
    }

    /// Parses every item at `events[i]` (or the bare body) and checks its source belongs to
    /// the tenant; all errors are collected.
    async fn validate(
        &self,
        tenant: TenantId,
        items: &[Value],
        list: &str,
    ) -> Result<Vec<(Option<String>, domain::ParsedEvent)>, IngestError> {
        let window = IngestWindow::at(self.clock.now(), MAX_RETENTION_DAYS);
        let known = self.sources.list(tenant).await?;
        let mut errors = Vec::new();
        let mut parsed = Vec::with_capacity(items.len());
        for (n, item) in items.iter().enumerate() {
            let path = if list.is_empty() {
                String::new()
            } else {
                format!("{list}[{n}]")
            };
            match parse_event(item, &path, window) {
                Ok(event) => {
                    if known.iter().any(|s| s.slug == event.source && s.is_active) {
                        parsed.push((event.event_id.clone(), event));
                    } else {
                        let names: Vec<&str> = known
                            .iter()
                            .filter(|s| s.is_active)
                            .map(|s| s.slug.as_str())
                            .collect();
                        let names = if names.is_empty() {
                            vec!["none yet"]
                        } else {
                            names
                        };
                        let field = if path.is_empty() {
                            "source".to_owned()
                        } else {
                            format!("{path}.source")
                        };
                        errors.push(ValidationError::new(
                            field,
                            format!(
                                "is not a source of this tenant (sources: {})",
                                names.join(", ")
                            ),
                        ));
                    }
                }
                Err(mut found) => errors.append(&mut found),
            }
        }
        if errors.is_empty() {
            Ok(parsed)
        } else {
            Err(IngestError::Invalid(errors))
        }
    }

    async fn store(
        &self,
        tenant: TenantId,
        events: Vec<NewEvent>,
    ) -> Result<Vec<IngestOutcome>, IngestError> {
        let items: Vec<IngestEvent> = events
            .into_iter()
            .map(|event| IngestEvent {
                fingerprint: fingerprint(&event),
                event,
            })
            .collect();
        let outcomes = self.events.ingest(tenant, items, self.clock.now()).await?;
        telemetry::ingested(&outcomes);
        Ok(outcomes)
    }
}

/// Counts `events` as rejected when `err` refused them as invalid (a storage failure is not
/// the events' fault, and shows in the HTTP status counts).
fn counted_rejection(err: &IngestError, events: usize) {
    if matches!(err, IngestError::Invalid(_)) {
        telemetry::rejected(events);
    }
}

/// A server-assigned idempotency key: a UUIDv7, which starts with the time, so that new ids
/// land at the end of the (tenant, event id) index rather than at random leaves of it.
fn generate_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn base() -> NewEvent {
        NewEvent {
            event_id: "a".into(),
            event_name: NewEvent::DEFAULT_NAME.into(),
            user_id: None,
            source: domain::SourceSlug::parse("source", "stripe").unwrap(),
            entity_id: Some("e".into()),
            status: Some(domain::EventStatus::Success),
            processing_ms: 1,
            amount_cents: 2,
            occurred_at: datetime!(2026-11-21 12:00 UTC),
            properties: json!({"b": 1, "a": {"y": 2, "x": [3, {"k": 1, "j": 2}]}}),
        }
    }

    #[test]
    fn the_fingerprint_ignores_layout_and_id_but_not_content() {
        let base = base();
        let same = NewEvent {
            event_id: "other-id".into(),
            occurred_at: datetime!(2026-11-21 13:00 +1),
            properties: json!({"a": {"x": [3, {"j": 2, "k": 1}], "y": 2}, "b": 1}),
            ..base.clone()
        };
        assert_eq!(
            fingerprint(&base),
            fingerprint(&same),
            "key order, offset and id do not matter"
        );
        for different in [
            NewEvent {
                amount_cents: 3,
                ..base.clone()
            },
            NewEvent {
                event_name: "purchase".into(),
                ..base.clone()
            },
            NewEvent {
                user_id: Some("u-1".into()),
                ..base.clone()
            },
            NewEvent {
                status: None,
                ..base.clone()
            },
        ] {
            assert_ne!(fingerprint(&base), fingerprint(&different), "content does");
        }
    }

    #[test]
    fn an_event_of_the_first_shape_keeps_its_fingerprint() {
        // The fingerprint stored for this event before events had names and users: a replay
        // of it must still be a duplicate.
        assert_eq!(
            fingerprint(&base()),
            "503c4610a9701b127ad92231a030173783960f677e33b4e9df82b08589a499fd"
        );
    }
}

//! Ingestion from a durable stream: a message holds one event or a bulk body, exactly as the
//! HTTP routes take them, for the tenant (and optionally the source) its subject names. It goes
//! through [`IngestService`], the same validation, idempotency and group commit as HTTP, and
//! the answer says what the stream should do with the message: acknowledge it once its events
//! are committed, deliver it again later, or set it aside as one that can never be stored.
//!
//! Redelivery never stores an event twice: an event's key is its `event_id`, else the
//! message's own id (for a bulk message, with the event's index), else the message's place in
//! its stream, which a redelivery keeps.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use tracing::{Instrument, info, info_span, warn};

use crate::{
    ingest::{IngestError, IngestService},
    ports::{Clock, EventFeed, FeedDelivery},
    tenancy::{TenancyService, TenancyServiceError},
};

/// Messages by what became of them: `stored`, `retried` (delivered again later),
/// `dead_lettered`.
pub const MESSAGES: &str = "pg_analytics_stream_messages_total";
/// Deliveries of a message seen before (after a retry, a crash or a lost acknowledgement).
pub const REDELIVERED: &str = "pg_analytics_stream_redelivered_total";
/// Messages of the stream not delivered yet.
pub const PENDING: &str = "pg_analytics_stream_pending_messages";
/// Messages delivered and not settled yet.
pub const IN_FLIGHT: &str = "pg_analytics_stream_in_flight_messages";
/// How long the oldest message not settled yet has waited since it was published.
pub const OLDEST_AGE: &str = "pg_analytics_stream_oldest_pending_age_seconds";

/// Gives the stream consumer's metrics their help text.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        MESSAGES,
        Unit::Count,
        "Stream messages by outcome: stored (acknowledged), retried, dead_lettered."
    );
    describe_counter!(
        REDELIVERED,
        Unit::Count,
        "Deliveries of a stream message delivered before."
    );
    describe_gauge!(
        PENDING,
        Unit::Count,
        "Stream messages not delivered to a consumer yet."
    );
    describe_gauge!(
        IN_FLIGHT,
        Unit::Count,
        "Stream messages delivered and not settled yet."
    );
    describe_gauge!(
        OLDEST_AGE,
        Unit::Seconds,
        "How long the oldest stream message not settled yet has waited since it was published; 0 when none waits."
    );
}

/// The largest message body taken, as the largest HTTP ingestion body.
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// A message of the stream, as the feed read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMessage {
    /// The tenant's slug, from the subject.
    pub tenant: String,
    /// The source the subject names, given to the events that name none.
    pub source: Option<String>,
    /// The message's own id (`Nats-Msg-Id`): the idempotency key of a single event, and with
    /// its index, of a bulk's events that carry no `event_id`.
    pub message_id: Option<String>,
    /// The stream and the message's sequence in it: the key of events with no other.
    pub stream: String,
    pub sequence: u64,
    pub body: Vec<u8>,
}

impl StreamMessage {
    /// The key of the `index`th event (`None`: the only one) when it has no other.
    fn derived_key(&self, index: Option<usize>) -> String {
        let base = match &self.message_id {
            Some(id) => id.clone(),
            None => format!("{}:{}", self.stream, self.sequence),
        };
        match index {
            Some(index) => format!("{base}:{index}"),
            None => base,
        }
    }
}

/// What became of a message, and so what the stream does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Every event is committed, new or a duplicate: acknowledge.
    Stored { created: usize, duplicates: usize },
    /// Nothing could be stored now (PostgreSQL unavailable): deliver it again later.
    Retry { reason: String },
    /// It can never be stored as it is (malformed, unknown tenant or source, an event id
    /// reused with another body): set it aside with the reason, and acknowledge. Events of a
    /// bulk that could be stored were.
    Reject { reason: String },
}

/// Ingests the messages of a stream.
#[derive(Clone)]
pub struct StreamIngestion {
    ingest: IngestService,
    tenancy: TenancyService,
}

impl std::fmt::Debug for StreamIngestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamIngestion").finish_non_exhaustive()
    }
}

impl StreamIngestion {
    /// Ingestion through `ingest`, tenants resolved by `tenancy`.
    pub fn new(ingest: IngestService, tenancy: TenancyService) -> Self {
        Self { ingest, tenancy }
    }

    /// Stores the events of `message` and says what the stream should do with it.
    pub async fn handle(&self, message: &StreamMessage) -> Disposition {
        if message.body.len() > MAX_MESSAGE_BYTES {
            return reject(format!(
                "the body is {} bytes, more than {MAX_MESSAGE_BYTES}",
                message.body.len()
            ));
        }
        let tenant = match self.tenancy.resolve(Some(&message.tenant)).await {
            Ok(tenant) => tenant.id,
            Err(TenancyServiceError::Unavailable(err)) => {
                return Disposition::Retry {
                    reason: format!("tenants cannot be read: {err:#}"),
                };
            }
            Err(err) => return reject(format!("tenant {:?}: {err}", message.tenant)),
        };
        let mut body: Value = match serde_json::from_slice(&message.body) {
            Ok(body) => body,
            Err(err) => return reject(format!("the body is not JSON: {err}")),
        };
        let bulk = body.as_object().is_some_and(|o| o.contains_key("events"));
        if let Some(source) = &message.source {
            give_source(&mut body, source, bulk);
        }
        let outcome = if bulk {
            self.ingest
                .ingest_bulk_keyed(tenant, body, |index| message.derived_key(Some(index)))
                .await
        } else {
            self.ingest
                .ingest_one_keyed(tenant, &body, message.message_id.as_deref(), || {
                    message.derived_key(None)
                })
                .await
                .map(|outcome| vec![outcome])
        };
        match outcome {
            Ok(outcomes) => settle(&outcomes),
            Err(IngestError::Unavailable(err)) => Disposition::Retry {
                reason: format!("event storage is unavailable: {err:#}"),
            },
            Err(IngestError::Invalid(errors)) => reject(
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field(), e.message()))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Err(IngestError::Unexpected(err)) => reject(format!("{err:#}")),
        }
    }
}

fn reject(reason: String) -> Disposition {
    Disposition::Reject { reason }
}

/// Stored, unless an event id was reused with another body.
fn settle(outcomes: &[domain::IngestOutcome]) -> Disposition {
    use domain::IngestStatus;
    let conflicts: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.status == IngestStatus::Conflict)
        .map(|o| o.event_id.as_str())
        .collect();
    if !conflicts.is_empty() {
        return reject(format!(
            "event id(s) already stored with another body: {}",
            conflicts.join(", ")
        ));
    }
    let created = outcomes
        .iter()
        .filter(|o| o.status == IngestStatus::Created)
        .count();
    Disposition::Stored {
        created,
        duplicates: outcomes.len() - created,
    }
}

/// Gives `source` to the events of `body` that name none.
fn give_source(body: &mut Value, source: &str, bulk: bool) {
    let events: Vec<&mut Value> = if bulk {
        match body.get_mut("events") {
            Some(Value::Array(items)) => items.iter_mut().collect(),
            _ => Vec::new(),
        }
    } else {
        vec![body]
    };
    for event in events {
        if let Some(object) = event.as_object_mut() {
            object
                .entry("source")
                .or_insert_with(|| Value::String(source.to_owned()));
        }
    }
}

/// Reads a feed and settles each message as [`StreamIngestion::handle`] says. A process runs
/// several at once (`run` in tasks of their own) for as many messages in flight.
#[derive(Clone)]
pub struct StreamConsumer {
    ingestion: StreamIngestion,
    feed: Arc<dyn EventFeed>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StreamConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConsumer").finish_non_exhaustive()
    }
}

/// The longest wait before a message that could not be stored is delivered again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The pause after the feed itself could not be read.
const FEED_PAUSE: Duration = Duration::from_secs(1);

impl StreamConsumer {
    /// A consumer of `feed` ingesting through `ingestion`.
    pub fn new(
        ingestion: StreamIngestion,
        feed: Arc<dyn EventFeed>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            ingestion,
            feed,
            clock,
        }
    }

    /// Consumes, one message at a time, until the feed is closed ([`EventFeed::close`]); the
    /// message it holds then is settled before it returns.
    pub async fn run(&self) {
        loop {
            match self.feed.next().await {
                Ok(Some(delivery)) => self.settle(delivery).await,
                Ok(None) => break,
                Err(err) => {
                    warn!(error = %err, "the stream cannot be read; retrying");
                    self.clock.pause(FEED_PAUSE).await;
                }
            }
        }
        info!("stream consumer stopped");
    }

    /// Ingests one delivery and settles it.
    async fn settle(&self, delivery: Box<dyn FeedDelivery>) {
        let message = delivery.message();
        let span = info_span!(
            "stream_message",
            tenant = %message.tenant,
            stream = %message.stream,
            sequence = message.sequence,
            delivered = delivery.delivered(),
        );
        async move {
            let attempt = delivery.delivered();
            if attempt > 1 {
                metrics::counter!(REDELIVERED).increment(1);
            }
            let disposition = match delivery.unreadable() {
                Some(reason) => Disposition::Reject {
                    reason: reason.to_owned(),
                },
                None => self.ingestion.handle(delivery.message()).await,
            };
            let (outcome, settled) = match &disposition {
                Disposition::Stored { .. } => ("stored", delivery.ack().await),
                Disposition::Retry { reason } => {
                    let after = retry_delay(attempt);
                    warn!(%reason, retry_in_ms = after.as_millis() as u64, "message not stored; it will be delivered again");
                    ("retried", delivery.retry(after).await)
                }
                Disposition::Reject { reason } => {
                    warn!(%reason, "message can never be stored; dead-lettered");
                    ("dead_lettered", delivery.dead_letter(reason).await)
                }
            };
            match settled {
                Ok(()) => metrics::counter!(MESSAGES, "outcome" => outcome).increment(1),
                // Unsettled, the message comes back after the stream's wait; its events are
                // found stored then.
                Err(err) => warn!(error = %err, outcome, "the message could not be settled"),
            }
        }
        .instrument(span)
        .await;
    }

    /// Reads how far consumers are behind into the lag gauges.
    pub async fn sample(&self) {
        if let Ok(lag) = self.feed.lag().await {
            metrics::gauge!(PENDING).set(lag.pending as f64);
            metrics::gauge!(IN_FLIGHT).set(lag.in_flight as f64);
            let age = lag.oldest_published_at.map_or(0.0, |oldest| {
                (self.clock.now() - oldest).as_seconds_f64().max(0.0)
            });
            metrics::gauge!(OLDEST_AGE).set(age);
        }
    }
}

/// The wait before the `attempt`th delivery's message is delivered again: a second, doubled
/// at each further attempt, at most [`MAX_RETRY_DELAY`].
fn retry_delay(attempt: u64) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1).min(5)).unwrap_or(5);
    (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_half_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(4), Duration::from_secs(8));
        assert_eq!(retry_delay(6), Duration::from_secs(30));
        assert_eq!(retry_delay(1_000), Duration::from_secs(30));
    }
}

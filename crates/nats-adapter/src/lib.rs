//! The event feed on NATS JetStream: a durable pull consumer on a stream of event messages,
//! shared by every process that consumes (they split the messages between them), with its
//! unsettled deliveries bounded by `max_ack_pending`.
//!
//! Subjects are `<prefix>.<tenant-slug>[.<source>]` (`events.acme`, `events.acme.shop`). A
//! message settled as dead is published to `dlq.<prefix>.<tenant-slug>` (captured by a stream
//! of its own, outside the consumed subjects) with the reason in its headers and its body
//! unchanged, then terminated so it is never delivered again.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use application::{
    StreamMessage,
    ports::{EventFeed, FeedDelivery, FeedLag, StoreError},
};
use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, PullConsumer, pull},
        stream,
    },
};
use async_trait::async_trait;
use futures_core::Stream as _;
use tokio::sync::{Mutex, watch};

/// The header a producer sets to give a message its id (JetStream's own deduplication key).
pub const MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";
/// The headers of a dead letter: why it can never be stored, and where it was.
pub const REASON_HEADER: &str = "Pg-Analytics-Reason";
pub const SUBJECT_HEADER: &str = "Pg-Analytics-Subject";
pub const SEQUENCE_HEADER: &str = "Pg-Analytics-Stream-Sequence";

/// The longest reason a dead letter's header carries.
const MAX_REASON_BYTES: usize = 1024;

/// Where the feed reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// A `nats://` URL.
    pub url: String,
    /// The stream, created when missing.
    pub stream: String,
    /// The first token of the consumed subjects: `<prefix>.>`.
    pub subject_prefix: String,
    /// The durable consumer every process shares.
    pub consumer: String,
    /// Deliveries unsettled at once, across every process: what bounds the memory the
    /// backlog can take.
    pub max_ack_pending: usize,
    /// How long a delivery may stay unsettled before it is delivered again (a consumer that
    /// died holds it that long).
    pub ack_wait: Duration,
}

impl NatsSettings {
    /// The subject dead letters of `tenant` go to.
    pub fn dead_letter_subject(&self, tenant: &str) -> String {
        format!("dlq.{}.{tenant}", self.subject_prefix)
    }

    /// The stream keeping the dead letters.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DLQ", self.stream)
    }
}

/// A [`EventFeed`] on a JetStream pull consumer.
pub struct NatsEventFeed {
    settings: NatsSettings,
    context: jetstream::Context,
    events: stream::Stream,
    consumer: PullConsumer,
    messages: Mutex<pull::Stream>,
    closed: watch::Sender<bool>,
}

impl std::fmt::Debug for NatsEventFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsEventFeed")
            .field("stream", &self.settings.stream)
            .field("consumer", &self.settings.consumer)
            .finish_non_exhaustive()
    }
}

impl NatsEventFeed {
    /// Connects, creates the stream, its dead-letter stream and the durable consumer when
    /// missing, and starts pulling.
    ///
    /// # Errors
    /// When NATS cannot be reached or JetStream refuses the stream or consumer.
    pub async fn connect(settings: NatsSettings) -> anyhow::Result<Self> {
        let client = async_nats::connect(&settings.url)
            .await
            .with_context(|| format!("connecting to NATS at {}", settings.url))?;
        let context = jetstream::new(client);
        let events = context
            .get_or_create_stream(stream::Config {
                name: settings.stream.clone(),
                subjects: vec![format!("{}.>", settings.subject_prefix)],
                ..Default::default()
            })
            .await
            .with_context(|| format!("the JetStream stream {}", settings.stream))?;
        context
            .get_or_create_stream(stream::Config {
                name: settings.dead_letter_stream(),
                subjects: vec![format!("dlq.{}.>", settings.subject_prefix)],
                ..Default::default()
            })
            .await
            .with_context(|| format!("the JetStream stream {}", settings.dead_letter_stream()))?;
        let max_ack_pending = i64::try_from(settings.max_ack_pending).unwrap_or(i64::MAX);
        let consumer: PullConsumer = events
            .get_or_create_consumer(
                &settings.consumer,
                pull::Config {
                    durable_name: Some(settings.consumer.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    max_ack_pending,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("the JetStream consumer {}", settings.consumer))?;
        // Each process asks for a few messages at a time: the others get their share, and
        // what it holds stays small whatever the backlog.
        let batch = settings.max_ack_pending.clamp(1, 64);
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .messages()
            .await
            .context("pulling from the JetStream consumer")?;
        let (closed, _) = watch::channel(false);
        Ok(Self {
            settings,
            context,
            events,
            consumer,
            messages: Mutex::new(messages),
            closed,
        })
    }

    /// The message a delivery carries, or why it cannot be read as one.
    fn read(&self, message: &jetstream::Message) -> Result<StreamMessage, String> {
        let info = message
            .info()
            .map_err(|err| format!("not a JetStream delivery: {err}"))?;
        let subject = message.subject.as_str();
        let rest = subject
            .strip_prefix(&self.settings.subject_prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .ok_or_else(|| {
                format!(
                    "subject {subject} is not under {}",
                    self.settings.subject_prefix
                )
            })?;
        let mut tokens = rest.split('.');
        let tenant = tokens.next().unwrap_or_default().to_owned();
        let source = tokens.next().map(str::to_owned);
        if tenant.is_empty() || tokens.next().is_some() {
            return Err(format!(
                "subject {subject} is not {}.<tenant>[.<source>]",
                self.settings.subject_prefix
            ));
        }
        let message_id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(MESSAGE_ID_HEADER))
            .map(|id| id.as_str().to_owned());
        Ok(StreamMessage {
            tenant,
            source,
            message_id,
            stream: info.stream.to_owned(),
            sequence: info.stream_sequence,
            body: message.payload.to_vec(),
        })
    }
}

#[async_trait]
impl EventFeed for NatsEventFeed {
    async fn next(&self) -> Result<Option<Box<dyn FeedDelivery>>, StoreError> {
        let mut closed = self.closed.subscribe();
        if *closed.borrow() {
            return Ok(None);
        }
        let mut messages = self.messages.lock().await;
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *messages).poll_next(cx));
        let delivered = tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => return Ok(None),
            delivered = next => delivered,
        };
        drop(messages);
        let message = match delivered {
            Some(Ok(message)) => message,
            Some(Err(err)) => return Err(StoreError::Unavailable(anyhow::Error::new(err))),
            None => return Ok(None),
        };
        let delivered = message
            .info()
            .map_or(1, |info| u64::try_from(info.delivered).unwrap_or(1));
        let read = self.read(&message);
        Ok(Some(Box::new(NatsDelivery {
            message,
            read: read.clone().unwrap_or_else(|_| StreamMessage {
                tenant: String::new(),
                source: None,
                message_id: None,
                stream: self.settings.stream.clone(),
                sequence: 0,
                body: Vec::new(),
            }),
            unreadable: read.err(),
            delivered,
            context: self.context.clone(),
            settings: Arc::new(self.settings.clone()),
        })))
    }

    async fn close(&self) {
        self.closed.send_replace(true);
    }

    async fn lag(&self) -> Result<FeedLag, StoreError> {
        let info = self
            .consumer
            .get_info()
            .await
            .map_err(|err| StoreError::Unavailable(anyhow::Error::new(err)))?;
        let in_flight = info.num_ack_pending as u64;
        // Everything up to the acknowledgement floor is settled and the message just past it
        // is not (else the floor would be past it): it is the oldest waiting.
        let oldest_published_at = if info.num_pending + in_flight > 0 {
            self.events
                .get_raw_message(info.ack_floor.stream_sequence + 1)
                .await
                .ok()
                .map(|message| message.time)
        } else {
            None
        };
        Ok(FeedLag {
            pending: info.num_pending,
            in_flight,
            oldest_published_at,
        })
    }
}

/// One delivery of a JetStream message.
struct NatsDelivery {
    message: jetstream::Message,
    read: StreamMessage,
    /// Why the delivery could not be read as a message (a subject out of shape): it is
    /// dead-lettered whatever its body.
    unreadable: Option<String>,
    delivered: u64,
    context: jetstream::Context,
    settings: Arc<NatsSettings>,
}

impl NatsDelivery {
    async fn acknowledge(&self, kind: AckKind) -> Result<(), StoreError> {
        self.message
            .ack_with(kind)
            .await
            .map_err(|err| StoreError::Unavailable(anyhow::anyhow!("acknowledging: {err}")))
    }
}

#[async_trait]
impl FeedDelivery for NatsDelivery {
    fn message(&self) -> &StreamMessage {
        &self.read
    }

    fn unreadable(&self) -> Option<&str> {
        self.unreadable.as_deref()
    }

    fn delivered(&self) -> u64 {
        self.delivered
    }

    async fn ack(self: Box<Self>) -> Result<(), StoreError> {
        // Double acknowledgement: the server confirms it, so a lost one is noticed.
        self.message
            .double_ack()
            .await
            .map_err(|err| StoreError::Unavailable(anyhow::anyhow!("acknowledging: {err}")))
    }

    async fn retry(self: Box<Self>, after: Duration) -> Result<(), StoreError> {
        self.acknowledge(AckKind::Nak(Some(after))).await
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), StoreError> {
        let tenant = if self.read.tenant.is_empty() {
            "unknown"
        } else {
            self.read.tenant.as_str()
        };
        let mut headers = HeaderMap::new();
        headers.insert(REASON_HEADER, header_text(reason).as_str());
        headers.insert(SUBJECT_HEADER, self.message.subject.as_str());
        headers.insert(SEQUENCE_HEADER, self.read.sequence.to_string().as_str());
        if let Some(id) = &self.read.message_id {
            headers.insert(MESSAGE_ID_HEADER, format!("dlq:{id}").as_str());
        }
        let published = self
            .context
            .publish_with_headers(
                self.settings.dead_letter_subject(tenant),
                headers,
                self.message.payload.clone(),
            )
            .await
            .map_err(|err| StoreError::Unavailable(anyhow::anyhow!("dead-lettering: {err}")))?;
        published
            .await
            .map_err(|err| StoreError::Unavailable(anyhow::anyhow!("dead-lettering: {err}")))?;
        self.acknowledge(AckKind::Term).await
    }
}

/// `reason` as a header value: one line of printable text, at most [`MAX_REASON_BYTES`].
fn header_text(reason: &str) -> String {
    let mut text: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_becomes_one_bounded_line() {
        assert_eq!(header_text("a\nb\tc"), "a b c");
        assert_eq!(header_text(&"é".repeat(1000)).len(), 1024);
    }
}

//! `pg-analytics consume` against the real NATS JetStream and PostgreSQL: every published
//! event stored exactly once, across replays, a kill -9 and two consumers sharing the stream;
//! poison messages set aside on the dead-letter subject without blocking the rest. Each test
//! has a stream, subjects and consumer of its own.

use std::{net::TcpStream, time::Duration};

use anyhow::{Context, Result, ensure};
use async_nats::{HeaderMap, jetstream};
use pg_analytics::testing::{self, Process};
use postgres_adapter::testing::TestDatabase;
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_pg-analytics");
const KEY: &str = "stream-test-key-0123456789";
const NATS: &str = "nats://127.0.0.1:4222";

/// NATS, required in CI, else `None` (skipped).
fn nats_reachable() -> Result<bool> {
    if TcpStream::connect("127.0.0.1:4222").is_ok() {
        return Ok(true);
    }
    ensure!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "NATS is required (CI) but unreachable on 127.0.0.1:4222"
    );
    Ok(false)
}

/// A test's own stream, subject prefix and consumer, over a migrated database with a tenant
/// `acme` and its source `shop`.
struct Setup {
    db: TestDatabase,
    stream: String,
    prefix: String,
    context: jetstream::Context,
}

impl Setup {
    async fn new() -> Result<Option<Self>> {
        if !nats_reachable()? {
            return Ok(None);
        }
        let Some(db) = TestDatabase::create().await? else {
            return Ok(None);
        };
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("MANAGEMENT_API_KEY", KEY),
        ];
        for args in [
            vec!["tenants", "create", "acme"],
            vec!["sources", "create", "--tenant", "acme", "shop"],
        ] {
            let output = testing::run(BINARY, &env, &args)?;
            ensure!(
                output.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let context = jetstream::new(async_nats::connect(NATS).await?);
        Ok(Some(Self {
            db,
            stream: format!("EVENTS_{id}"),
            prefix: format!("t{id}"),
            context,
        }))
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("DATABASE_URL", self.db.url.as_str()),
            ("MANAGEMENT_API_KEY", KEY),
            ("NATS_URL", NATS),
            ("NATS_STREAM", self.stream.as_str()),
            ("NATS_SUBJECT_PREFIX", self.prefix.as_str()),
            ("NATS_CONSUMER", "test-consumer"),
            ("NATS_ACK_WAIT_SECS", "2"),
        ]
    }

    /// Starts `consume` (its metrics on `metrics_port` when given).
    fn consume(&self, metrics: Option<&str>) -> Result<Process> {
        let mut env = self.env();
        if let Some(address) = metrics {
            env.push(("METRICS_ADDR", address));
        }
        Process::spawn(BINARY, &env, &["consume"])
    }

    /// Publishes `body` to `<prefix>.<subject>`, with `Nats-Msg-Id` when given, and waits for
    /// JetStream to have it. The stream is created by the consumer, or here when missing.
    async fn publish(&self, subject: &str, body: &Value, message_id: Option<&str>) -> Result<()> {
        self.context
            .get_or_create_stream(jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.prefix)],
                ..Default::default()
            })
            .await?;
        let mut headers = HeaderMap::new();
        if let Some(id) = message_id {
            headers.insert("Nats-Msg-Id", id);
        }
        self.context
            .publish_with_headers(
                format!("{}.{subject}", self.prefix),
                headers,
                body.to_string().into(),
            )
            .await?
            .await?;
        Ok(())
    }

    /// The events stored, and how many distinct ids they have.
    async fn stored(&self) -> Result<(i64, i64)> {
        let row = self
            .db
            .pool
            .get()
            .await?
            .query_one(
                "SELECT count(*), count(DISTINCT event_id) FROM analytics_events",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    async fn wait_stored(&self, expected: i64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (count, distinct) = self.stored().await?;
            ensure!(
                count == distinct,
                "{count} events but {distinct} ids: a duplicate"
            );
            ensure!(
                count <= expected,
                "{count} events stored, {expected} published"
            );
            if count == expected {
                return Ok(());
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "{count} of {expected} events stored in time"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn event(id: Option<String>, n: usize) -> Value {
    let at = format!("{}T00:00:00Z", time::OffsetDateTime::now_utc().date());
    let mut event = json!({"source": "shop", "entity_id": format!("c-{}", n % 7), "status": "success", "occurred_at": at});
    if let Some(id) = id {
        event["event_id"] = json!(id);
    }
    event
}

#[tokio::test]
async fn published_events_are_stored_once_and_replays_store_nothing_new() -> Result<()> {
    let Some(setup) = Setup::new().await? else {
        return Ok(());
    };
    let mut consumer = setup.consume(None)?;
    // Single events with ids, one keyed by its message id, and a bulk with and without ids.
    for n in 0..3 {
        setup
            .publish("acme", &event(Some(format!("one-{n}")), n), None)
            .await?;
    }
    setup.publish("acme.shop", &json!({"entity_id": "c-9", "status": "success", "occurred_at": event(None, 0)["occurred_at"]}), Some("msg-7")).await?;
    let bulk = json!({"events": (0..10).map(|n| event((n % 2 == 0).then(|| format!("bulk-{n}")), n)).collect::<Vec<_>>()});
    setup.publish("acme", &bulk, None).await?;
    setup.wait_stored(14).await?;

    // The same messages again: ids, message ids and JetStream's own deduplication.
    for n in 0..3 {
        setup
            .publish("acme", &event(Some(format!("one-{n}")), n), None)
            .await?;
    }
    setup.publish("acme", &json!({"events": (0..5).map(|n| event(Some(format!("bulk-{}", 2 * n)), 2 * n)).collect::<Vec<_>>()}), None).await?;
    setup.publish("acme.shop", &json!({"entity_id": "c-9", "status": "success", "occurred_at": event(None, 0)["occurred_at"]}), Some("msg-7")).await?;
    // A marker published last: once it is stored, everything before it was consumed.
    setup
        .publish("acme", &event(Some("marker".to_owned()), 0), None)
        .await?;
    setup.wait_stored(15).await?;
    let exit = consumer.terminate()?;
    ensure!(
        exit.success(),
        "consume exits 0 on SIGTERM: {exit}: {}",
        consumer.log()
    );
    Ok(())
}

#[tokio::test]
async fn poison_messages_reach_the_dead_letter_subject_and_do_not_block_the_stream() -> Result<()> {
    let Some(setup) = Setup::new().await? else {
        return Ok(());
    };
    let consumer = setup.consume(None)?;
    let malformed = json!("not an event");
    setup.publish("acme", &malformed, None).await?;
    setup
        .publish("nobody", &event(Some("x".to_owned()), 0), None)
        .await?;
    setup
        .publish("acme", &event(Some("after".to_owned()), 0), None)
        .await?;
    setup.wait_stored(1).await?;

    let dead = setup
        .context
        .get_stream(format!("{}_DLQ", setup.stream))
        .await
        .context("the dead-letter stream")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dead.get_info().await?.state.messages < 2 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "two dead letters in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settled concurrently: in either order.
    let mut letters = Vec::new();
    for sequence in [1, 2] {
        let letter = dead.get_raw_message(sequence).await?;
        let why = letter
            .headers
            .get("Pg-Analytics-Reason")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        letters.push((letter.subject.to_string(), why));
    }
    letters.sort();
    for ((subject, why), (expected, reason)) in letters.iter().zip([
        (format!("dlq.{}.acme", setup.prefix), "body"),
        (format!("dlq.{}.nobody", setup.prefix), "nobody"),
    ]) {
        ensure!(*subject == expected, "{subject}");
        ensure!(why.contains(reason), "the reason names the fault: {why}");
    }
    drop(consumer);
    Ok(())
}

/// Publishes `messages` bulk messages of `per_message` events, half of them without an id.
async fn publish_backlog(setup: &Setup, messages: usize, per_message: usize) -> Result<i64> {
    for m in 0..messages {
        let events: Vec<Value> = (0..per_message)
            .map(|n| event((n % 2 == 0).then(|| format!("m{m}-e{n}")), n))
            .collect();
        setup
            .publish("acme", &json!({ "events": events }), None)
            .await?;
    }
    Ok(i64::try_from(messages * per_message)?)
}

#[tokio::test]
async fn a_consumer_killed_mid_stream_and_restarted_stores_every_event_once() -> Result<()> {
    let Some(setup) = Setup::new().await? else {
        return Ok(());
    };
    let total = publish_backlog(&setup, 200, 50).await?;
    let mut first = setup.consume(None)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (count, _) = setup.stored().await?;
        if count > 0 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "nothing stored in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();
    let (at_kill, _) = setup.stored().await?;
    let _second = setup.consume(None)?;
    setup.wait_stored(total).await?;
    eprintln!("{at_kill} of {total} events were stored when the first consumer was killed");
    Ok(())
}

#[tokio::test]
async fn two_consumers_split_the_stream_and_store_each_event_once() -> Result<()> {
    let Some(setup) = Setup::new().await? else {
        return Ok(());
    };
    let ports = [testing::free_port()?, testing::free_port()?];
    let addresses = ports.map(|port| format!("127.0.0.1:{port}"));
    let consumers = [
        setup.consume(Some(&addresses[0]))?,
        setup.consume(Some(&addresses[1]))?,
    ];
    let total = publish_backlog(&setup, 100, 20).await?;
    setup.wait_stored(total).await?;
    for (port, consumer) in ports.iter().zip(&consumers) {
        let scraped = eventually_scrape(*port)?;
        let stored: f64 = scraped
            .lines()
            .filter(|line| {
                line.starts_with("pg_analytics_stream_messages_total{")
                    && line.contains("outcome=\"stored\"")
            })
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        ensure!(
            stored > 0.0,
            "each consumer did some of the work: {scraped}\n{}",
            consumer.log()
        );
    }
    Ok(())
}

/// The metrics of a consumer (its listener may take a moment to start).
fn eventually_scrape(port: u16) -> Result<String> {
    testing::eventually(
        "the consumer's metrics",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            Ok(testing::exchange(port, "GET", "/metrics", &[], "")
                .ok()
                .filter(|answer| answer.status == 200)
                .map(|answer| answer.body))
        },
    )
}

#[tokio::test]
async fn serve_consumes_the_stream_too_when_nats_is_configured() -> Result<()> {
    let Some(setup) = Setup::new().await? else {
        return Ok(());
    };
    let server = Process::start(BINARY, &setup.env())?;
    setup
        .publish("acme", &event(Some("served-1".to_owned()), 1), None)
        .await?;
    setup.wait_stored(1).await?;
    // The message is counted once acknowledged, just after its events are committed.
    testing::eventually(
        "the stream metrics on /metrics",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let scraped = eventually_scrape(server.port)?;
            Ok([
                "pg_analytics_stream_messages_total{outcome=\"stored\"} 1",
                "pg_analytics_stream_pending_messages",
                "pg_analytics_stream_oldest_pending_age_seconds",
            ]
            .iter()
            .all(|metric| scraped.contains(metric))
            .then_some(()))
        },
    )?;
    Ok(())
}

//! Durable, idempotent ingestion with group commit.
//!
//! Concurrent `ingest` calls are gathered by one background task into a single transaction
//! with a single multi-row insert (at most [`MAX_BATCH_EVENTS`] events, gathered for at most
//! [`MAX_WAIT`] after the first call arrives), so the commit cost is shared and throughput
//! grows with concurrency. Every caller is answered only after that transaction committed. If a
//! gathered transaction fails, each call is retried on its own, so one caller's problem never
//! fails another's events.
//!
//! Up to `writers` gathered transactions are written at once: one PostgreSQL backend inserts
//! at the speed of a single core, and while it inserts, the next batch is already gathering.
//! While every writer is busy, the waiting batch keeps growing to its limit.
//!
//! Each writer has a connection of its own, taken out of the pool (which may then open
//! another in its place) and let go after a failed transaction. A gathered insert is a
//! message of megabytes, and the driver keeps a connection's buffers at the largest message
//! it has carried, so only the writers' connections grow them, rather than every connection
//! of the pool in turn.
//!
//! Two transactions that hold the same new id serialize on the unique index (the later one
//! skips it once the earlier commits), and every transaction takes its locks in key order
//! (events by tenant and id, changed days by tenant and day), so writers never deadlock one
//! another.

use std::{collections::HashMap, time::Duration};

use application::ports::{IngestEvent, StoreError};
use deadpool_postgres::{ClientWrapper, Object, Pool};
use domain::{DirtyReason, IngestOutcome, IngestStatus, TenantId};
use time::{Date, OffsetDateTime, UtcOffset};
use tokio::{
    runtime::Handle,
    sync::{mpsc, oneshot},
};
use tracing::warn;

use crate::{
    error::{Failure, PgResultExt},
    freshness,
};

/// The most events one gathered transaction writes.
pub const MAX_BATCH_EVENTS: usize = 5_000;
/// How long the first call of a batch waits for others to join it.
pub const MAX_WAIT: Duration = Duration::from_millis(2);

/// Inserts new ids in key order, and among the rows of one id the first of the input: a later
/// row with an id already inserted by this statement or stored before is skipped. Key order
/// makes concurrent writers lock ids in the same order.
const INSERT: &str = "
    INSERT INTO analytics_events
        (tenant_id, event_id, event_name, user_id, source_id, entity_id, status, processing_ms, amount_cents,
         occurred_at, properties, fingerprint)
    SELECT e.tenant_id, e.event_id, e.event_name, e.user_id, s.id, e.entity_id, e.status, e.processing_ms,
           e.amount_cents, e.occurred_at, e.properties, e.fingerprint
    FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::int8[], $9::int8[], $10::timestamptz[], $11::jsonb[], $12::text[])
         WITH ORDINALITY AS e(tenant_id, event_id, event_name, user_id, source, entity_id, status,
                              processing_ms, amount_cents, occurred_at, properties, fingerprint, position)
    LEFT JOIN event_sources s ON s.tenant_id = e.tenant_id AND s.slug = e.source
    ORDER BY e.tenant_id, e.event_id COLLATE \"C\", e.position
    ON CONFLICT (tenant_id, event_id) DO NOTHING
    RETURNING tenant_id, event_id";

/// The stored fingerprint of every (tenant, id) of the batch.
const STORED: &str = "
    SELECT a.tenant_id, a.event_id, a.fingerprint
    FROM analytics_events a
    JOIN unnest($1::int8[], $2::text[]) AS k(tenant_id, event_id)
      ON a.tenant_id = k.tenant_id AND a.event_id = k.event_id";

/// Marks the days of created events changed, locking them in key order.
const MARK_CHANGED: &str = "
    INSERT INTO stale_days (tenant_id, day, changed_at)
    SELECT DISTINCT tenant_id, day, $3::timestamptz FROM unnest($1::int8[], $2::date[]) AS d(tenant_id, day)
    ORDER BY tenant_id, day
    ON CONFLICT (tenant_id, day) DO UPDATE SET changed_at = GREATEST(stale_days.changed_at, EXCLUDED.changed_at)";

/// One caller's events.
struct Request {
    tenant: TenantId,
    events: Vec<IngestEvent>,
    at: OffsetDateTime,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, StoreError>>,
}

/// The handle callers send their events through.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    sender: mpsc::Sender<Request>,
}

impl GroupCommit {
    /// Starts the background task that commits for `pool` with at most `writers` transactions
    /// at once (at least one: the caller checks), on `runtime` if given, else on the current
    /// one.
    pub(crate) fn start(pool: Pool, writers: usize, runtime: Option<&Handle>) -> Self {
        let (sender, receiver) = mpsc::channel(1_024);
        let task = run(pool, receiver, writers);
        match runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
        Self { sender }
    }

    /// Ingests `events` in the next gathered transaction and waits for its commit.
    pub(crate) async fn ingest(
        &self,
        tenant: TenantId,
        events: Vec<IngestEvent>,
        at: OffsetDateTime,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped =
            || StoreError::Unavailable(anyhow::anyhow!("the ingestion writer has stopped"));
        self.sender
            .send(Request {
                tenant,
                events,
                at,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Events per group commit.
pub const BATCH_EVENTS: &str = "pg_analytics_ingest_batch_events";
/// How long a group commit took, its connection taken to its transaction committed.
pub const COMMIT_DURATION: &str = "pg_analytics_ingest_commit_duration_seconds";
/// Ingest writers committing a batch.
pub const WRITERS_BUSY: &str = "pg_analytics_ingest_writers_busy";
/// Ingest writers of the process (`INGEST_WRITERS`).
pub const WRITERS: &str = "pg_analytics_ingest_writers";

/// Gives the group commit's metrics their help text and unit.
pub fn describe_metrics() {
    use metrics::{Unit, describe_gauge, describe_histogram};
    describe_histogram!(
        BATCH_EVENTS,
        Unit::Count,
        "Events per group commit of ingestion."
    );
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "How long an ingestion group commit took."
    );
    describe_gauge!(
        WRITERS_BUSY,
        Unit::Count,
        "Ingestion writers committing a batch."
    );
    describe_gauge!(WRITERS, Unit::Count, "Ingestion writers of the process.");
}

/// A writer: its own connection, once it has taken one.
type Writer = Option<ClientWrapper>;

async fn run(pool: Pool, mut receiver: mpsc::Receiver<Request>, writers: usize) {
    // Idle writers wait here; a batch takes one and gives it back when committed.
    let (idle, mut free) = mpsc::channel::<Writer>(writers);
    metrics::gauge!(WRITERS).set(writers as f64);
    for _ in 0..writers {
        let _ = idle.try_send(None);
    }
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        let mut size = batch[0].events.len();
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        while size < MAX_BATCH_EVENTS {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(next)) => {
                    size += next.events.len();
                    batch.push(next);
                }
                Ok(None) | Err(_) => break,
            }
        }
        // While every writer is busy, the batch keeps growing up to its limit.
        let writer = loop {
            tokio::select! {
                biased;
                writer = free.recv() => break writer,
                next = receiver.recv(), if size < MAX_BATCH_EVENTS => match next {
                    Some(next) => {
                        size += next.events.len();
                        batch.push(next);
                    }
                    None => break free.recv().await,
                },
            }
        };
        // `idle` lives as long as this loop, so `free` never closes.
        let Some(mut writer) = writer else { return };
        let (pool, idle) = (pool.clone(), idle.clone());
        metrics::histogram!(BATCH_EVENTS).record(size as f64);
        tokio::spawn(async move {
            let busy = metrics::gauge!(WRITERS_BUSY);
            busy.increment(1.0);
            let started = std::time::Instant::now();
            let committed = tokio::spawn(async move {
                commit(&pool, &mut writer, batch).await;
                writer
            });
            let committed = committed.await;
            metrics::histogram!(COMMIT_DURATION).record(started.elapsed().as_secs_f64());
            busy.decrement(1.0);
            // A commit that panicked loses its connection (its callers hear that the writer
            // stopped), never its writer.
            let _ = idle.send(committed.unwrap_or_default()).await;
        });
    }
}

/// Commits a batch on `writer`'s connection and answers its callers; on failure retries each
/// caller alone, until the database turns out to be unreachable.
async fn commit(pool: &Pool, writer: &mut Writer, batch: Vec<Request>) {
    let items: Vec<(TenantId, &IngestEvent)> = batch
        .iter()
        .flat_map(|r| r.events.iter().map(move |e| (r.tenant, e)))
        .collect();
    let at = batch
        .iter()
        .map(|r| r.at)
        .max()
        .unwrap_or_else(OffsetDateTime::now_utc);
    let outcome = write(pool, writer, &items, at).await;
    drop(items);
    match outcome {
        Ok(mut outcomes) => {
            for request in batch {
                let rest = outcomes.split_off(request.events.len().min(outcomes.len()));
                let _ = request.reply.send(Ok(outcomes));
                outcomes = rest;
            }
        }
        Err(err) if batch.len() == 1 => {
            if let Some(request) = batch.into_iter().next() {
                let _ = request.reply.send(Err(err.into()));
            }
        }
        Err(err) => {
            warn!(error = ?anyhow::Error::from(StoreError::from(err)), callers = batch.len(), "a gathered ingestion failed; retrying each caller alone");
            let mut unreachable = false;
            for request in batch {
                let outcome = if unreachable {
                    Err(StoreError::Unavailable(anyhow::anyhow!(
                        "PostgreSQL could not be reached for an ingestion gathered with this one"
                    )))
                } else {
                    let items: Vec<(TenantId, &IngestEvent)> =
                        request.events.iter().map(|e| (request.tenant, e)).collect();
                    let outcome = write(pool, writer, &items, request.at).await;
                    unreachable = matches!(outcome, Err(Failure::Unavailable(_)));
                    outcome.map_err(StoreError::from)
                };
                let _ = request.reply.send(outcome);
            }
        }
    }
}

/// `writer`'s connection; if it has none, or a closed one, one taken out of `pool`.
async fn connection<'w>(
    pool: &Pool,
    writer: &'w mut Writer,
) -> Result<&'w mut ClientWrapper, Failure> {
    let held = match writer.take() {
        Some(client) if !client.is_closed() => client,
        _ => Object::take(pool.get().await.classify("connecting to ingest events")?),
    };
    Ok(writer.insert(held))
}

/// Writes `items` in one transaction on `writer`'s connection and decides each one's outcome,
/// in order. After a failure the connection is let go, whatever the cause (lost, cancelled,
/// a server turned read-only), and the next write opens another.
async fn write(
    pool: &Pool,
    writer: &mut Writer,
    items: &[(TenantId, &IngestEvent)],
    at: OffsetDateTime,
) -> Result<Vec<IngestOutcome>, Failure> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let client = connection(pool, writer).await?;
    let outcome = insert(client, items, at).await;
    if outcome.is_err() {
        *writer = None;
    }
    outcome
}

/// The transaction of [`write`].
async fn insert(
    client: &mut ClientWrapper,
    items: &[(TenantId, &IngestEvent)],
    at: OffsetDateTime,
) -> Result<Vec<IngestOutcome>, Failure> {
    let tenants: Vec<i64> = items.iter().map(|(t, _)| t.get()).collect();
    let ids: Vec<&str> = items
        .iter()
        .map(|(_, e)| e.event.event_id.as_str())
        .collect();
    let names: Vec<&str> = items
        .iter()
        .map(|(_, e)| e.event.event_name.as_str())
        .collect();
    let users: Vec<Option<&str>> = items
        .iter()
        .map(|(_, e)| e.event.user_id.as_deref())
        .collect();
    let sources: Vec<&str> = items.iter().map(|(_, e)| e.event.source.as_str()).collect();
    let entities: Vec<Option<&str>> = items
        .iter()
        .map(|(_, e)| e.event.entity_id.as_deref())
        .collect();
    let statuses: Vec<Option<&str>> = items
        .iter()
        .map(|(_, e)| e.event.status.map(domain::EventStatus::as_str))
        .collect();
    let processing: Vec<i64> = items.iter().map(|(_, e)| e.event.processing_ms).collect();
    let amounts: Vec<i64> = items.iter().map(|(_, e)| e.event.amount_cents).collect();
    let occurred: Vec<OffsetDateTime> = items.iter().map(|(_, e)| e.event.occurred_at).collect();
    let properties: Vec<&serde_json::Value> =
        items.iter().map(|(_, e)| &e.event.properties).collect();
    let fingerprints: Vec<&str> = items.iter().map(|(_, e)| e.fingerprint.as_str()).collect();

    let tx = client
        .transaction()
        .await
        .classify("starting an ingestion")?;
    let inserted = tx
        .query(
            INSERT,
            &[
                &tenants,
                &ids,
                &names,
                &users,
                &sources,
                &entities,
                &statuses,
                &processing,
                &amounts,
                &occurred,
                &properties,
                &fingerprints,
            ],
        )
        .await
        .classify("inserting events")?;
    // The fingerprint each newly inserted id was inserted with, once its first item is seen.
    let mut created: HashMap<(i64, String), Option<&str>> = HashMap::with_capacity(inserted.len());
    for row in &inserted {
        created.insert((row.get(0), row.get(1)), None);
    }
    // Only ids that were already stored need their stored fingerprint read back.
    let (old_tenants, old_ids): (Vec<i64>, Vec<&str>) = items
        .iter()
        .filter(|(tenant, item)| {
            !created.contains_key(&(tenant.get(), item.event.event_id.clone()))
        })
        .map(|(tenant, item)| (tenant.get(), item.event.event_id.as_str()))
        .unzip();
    let stored: HashMap<(i64, String), String> = if old_ids.is_empty() {
        HashMap::new()
    } else {
        tx.query(STORED, &[&old_tenants, &old_ids])
            .await
            .classify("reading stored fingerprints")?
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect()
    };

    let mut outcomes = Vec::with_capacity(items.len());
    let (mut changed_tenants, mut changed_days): (Vec<i64>, Vec<Date>) = (Vec::new(), Vec::new());
    let mut created_events: Vec<(TenantId, &domain::NewEvent)> = Vec::new();
    for (tenant, item) in items {
        let key = (tenant.get(), item.event.event_id.clone());
        let fingerprint = item.fingerprint.as_str();
        let status = match created.get_mut(&key) {
            // The first item with a newly inserted id is the one that was inserted.
            Some(claimed @ None) => {
                *claimed = Some(fingerprint);
                created_events.push((*tenant, &item.event));
                changed_tenants.push(tenant.get());
                changed_days.push(item.event.occurred_at.to_offset(UtcOffset::UTC).date());
                IngestStatus::Created
            }
            // A later item of the same request with that id.
            Some(Some(first)) if *first == fingerprint => IngestStatus::Duplicate,
            Some(Some(_)) => IngestStatus::Conflict,
            None if stored.get(&key).map(String::as_str) == Some(fingerprint) => {
                IngestStatus::Duplicate
            }
            None => IngestStatus::Conflict,
        };
        outcomes.push(IngestOutcome {
            event_id: key.1,
            status,
        });
    }
    if !changed_days.is_empty() {
        tx.execute(MARK_CHANGED, &[&changed_tenants, &changed_days, &at])
            .await
            .classify("marking changed days")?;
        // The buckets the new events change, of the tenants' rollups as they are now.
        let mut tenants = changed_tenants.clone();
        tenants.sort_unstable();
        tenants.dedup();
        let rollups = freshness::rollups_of(&*tx, &tenants).await?;
        freshness::marks_of_events(&rollups, created_events, at.date())
            .write(&*tx, at, DirtyReason::Events)
            .await?;
    }
    tx.commit().await.classify("committing events")?;
    Ok(outcomes)
}

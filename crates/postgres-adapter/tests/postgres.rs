//! The PostgreSQL adapters against a real server: the shared contract suite (one test per
//! promise, each on a database of its own) and the durable queue across restarts and crashes.
//! (The rebuild against a direct aggregation of the events is checked end to end in the
//! binary's `postgres_api` tests.)

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use application::{
    RecomputeWorker, WorkerPorts,
    contract::{
        Fresh, api_keys, audit, catalog, definitions, events, freshness, ingestion, queue, rollups,
        runs, snapshots, sources, tenants,
    },
    ports::{RunQueue, RunStore, RunStoreError},
};
use domain::{
    Actor, DateRange, LockToken, RecomputeRun, ReportSlug, RunId, RunStatus, TenantId, Window,
};
use postgres_adapter::testing::{OTHER_TENANT, TestDatabase};
use postgres_adapter::{PostgresAdapters, PostgresRunQueue, QueueSettings};
use time::macros::{date, datetime};

const TENANT: TenantId = TenantId::DEFAULT;

macro_rules! database {
    () => {
        match TestDatabase::create().await? {
            Some(db) => db,
            None => return Ok(()),
        }
    };
}

const NOW: time::OffsetDateTime = datetime!(2026-11-21 12:00 UTC);

fn clock() -> Arc<dyn application::ports::Clock> {
    Arc::new(memory_adapter::ManualClock::new(NOW))
}

fn adapters(db: &TestDatabase, settings: QueueSettings) -> PostgresAdapters {
    PostgresAdapters::new(db.pool.clone(), settings, clock())
}

/// The fixture `build` makes of adapters over a database of their own, kept until the test
/// ends, whose queue takes `settings`; `None` when no server is reachable and none is required.
async fn fresh<F>(
    settings: QueueSettings,
    build: impl AsyncFnOnce(PostgresAdapters) -> Result<F>,
) -> Result<Option<Fresh<F>>> {
    let Some(db) = TestDatabase::create().await? else {
        return Ok(None);
    };
    let fixture = build(adapters(&db, settings)).await?;
    Ok(Some(Fresh::new(fixture).keeping(db)))
}

/// What a queue of the contract holds.
const QUEUE_CAPACITY: usize = 4;

application::contract_tests! {
    adapter = "postgres";
    report_catalog => fresh(QueueSettings::default(), async |a| {
        Ok(catalog::Fixture { catalog: a.catalog })
    });
    event_store => fresh(QueueSettings::default(), async |a| {
        Ok(events::Fixture {
            events: a.events,
            tenant: TENANT,
            other: OTHER_TENANT,
        })
    });
    snapshot_store => fresh(QueueSettings::default(), async |a| {
        Ok(snapshots::Fixture {
            events: a.events,
            snapshots: a.rollups,
            runs: a.runs,
            tenant: TENANT,
            other: OTHER_TENANT,
        })
    });
    rollup_store => fresh(QueueSettings::default(), async |a| {
        Ok(rollups::Fixture {
            events: a.events,
            rollups: a.rollups,
            definitions: a.definitions,
            tenant: TENANT,
            other: OTHER_TENANT,
        })
    });
    dirty_buckets => fresh(QueueSettings::default(), async |a| {
        Ok(freshness::Fixture {
            events: a.events,
            rollups: a.rollups,
            definitions: a.definitions,
            tenant: TENANT,
            other: OTHER_TENANT,
        })
    });
    rollup_definitions => fresh(QueueSettings::default(), async |a| {
        Ok(definitions::Fixture {
            definitions: a.definitions,
            tenant: TENANT,
            other: OTHER_TENANT,
        })
    });
    run_store => fresh(QueueSettings::default(), async |a| {
        Ok(runs::Fixture {
            runs: a.runs,
            tenant: TENANT,
            other: OTHER_TENANT,
        })
    });
    run_queue => fresh(
        QueueSettings {
            capacity: QUEUE_CAPACITY,
            ..QueueSettings::default()
        },
        async |a| {
            Ok(queue::Fixture {
                queue: a.queue,
                runs: a.runs,
                tenant: TENANT,
                capacity: QUEUE_CAPACITY,
                started_at: NOW,
            })
        },
    );
    audit_log => fresh(QueueSettings::default(), async |a| {
        Ok(audit::Fixture {
            log: a.audit,
            tenant: TENANT,
            other: OTHER_TENANT,
        })
    });
    event_ingestion => fresh(QueueSettings::default(), async |a| {
        Ok(ingestion::Fixture {
            events: a.events,
            tenant: TENANT,
            other: OTHER_TENANT,
        })
    });
    tenant_store => fresh(QueueSettings::default(), async |a| {
        Ok(tenants::Fixture {
            tenants: a.tenancy.clone(),
            sources: a.tenancy,
        })
    });
    source_store => fresh(QueueSettings::default(), async |a| {
        // The harness gives the second tenant the demo sources too; use a fresh one.
        let fresh = application::ports::TenantStore::create(
            a.tenancy.as_ref(),
            &domain::TenantSlug::parse("tenant", "fresh")?,
            &domain::DisplayName::parse("name", "Fresh")?,
        )
        .await?;
        Ok(sources::Fixture {
            sources: a.tenancy,
            tenant: TENANT,
            other: fresh.id,
        })
    });
    api_key_store => fresh(QueueSettings::default(), async |a| {
        Ok(api_keys::Fixture {
            keys: a.tenancy,
            tenant: TENANT,
            other: OTHER_TENANT,
        })
    });
}

#[tokio::test]
async fn an_unknown_source_stores_none_of_the_batch() -> Result<()> {
    let db = database!();
    let a = adapters(&db, QueueSettings::default());
    let mut event = domain::demo::event(1, datetime!(2026-11-21 12:00 UTC));
    let good = event.clone();
    event.event_id = "x-1".into();
    event.source = domain::SourceSlug::parse("source", "unknown-psp")?;
    let batch = [good, event]
        .into_iter()
        .map(|event| application::ports::IngestEvent {
            fingerprint: application::ingest::fingerprint(&event),
            event,
        })
        .collect();
    let result = application::ports::EventIngestion::ingest(
        a.events.as_ref(),
        TENANT,
        batch,
        datetime!(2026-11-21 12:00 UTC),
    )
    .await;
    ensure!(result.is_err(), "an unknown source fails the whole batch");
    ensure!(
        application::ports::EventAdmin::count(a.events.as_ref(), TENANT).await? == 0,
        "nothing was stored"
    );
    Ok(())
}

/// The server-side seed writes, column for column, the events the domain's description gives.
#[tokio::test]
async fn the_server_side_seed_writes_the_described_demo_events() -> Result<()> {
    let db = database!();
    let a = adapters(&db, QueueSettings::default());
    let now = datetime!(2026-11-21 17:42:13 UTC);
    let count = 500;
    ensure!(
        application::ports::EventAdmin::load_demo(a.events.as_ref(), TENANT, count, now).await?
            == count,
        "every demo event written"
    );
    let client = db.pool.get().await?;
    let rows = client
        .query(
            "SELECT e.event_id, e.event_name, e.user_id, s.slug, e.entity_id, e.status,
                    e.processing_ms, e.amount_cents, e.occurred_at, e.properties
             FROM analytics_events e JOIN event_sources s ON s.id = e.source_id
             WHERE e.tenant_id = $1
             ORDER BY substr(e.event_id, 6)::int8",
            &[&TENANT.get()],
        )
        .await?;
    ensure!(rows.len() as u64 == count, "{} rows", rows.len());
    for (i, row) in (1..=count).zip(&rows) {
        let expected = domain::demo::event(i, now);
        let status: Option<String> = row.get(5);
        let stored = (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, Option<String>>(2),
            row.get::<_, String>(3),
            row.get::<_, Option<String>>(4),
            status.as_deref().map(str::to_owned),
            row.get::<_, i64>(6),
            row.get::<_, i64>(7),
            row.get::<_, time::OffsetDateTime>(8),
            row.get::<_, serde_json::Value>(9),
        );
        let described = (
            expected.event_id,
            expected.event_name,
            expected.user_id,
            expected.source.as_str().to_owned(),
            expected.entity_id,
            expected.status.map(|s| s.as_str().to_owned()),
            expected.processing_ms,
            expected.amount_cents,
            expected.occurred_at,
            expected.properties,
        );
        ensure!(
            stored == described,
            "event {i}: {stored:?} != {described:?}"
        );
    }
    Ok(())
}

fn pending_run(day: time::Date, at: time::OffsetDateTime) -> Result<RecomputeRun> {
    Ok(RecomputeRun::pending(
        TENANT,
        ReportSlug::parse("status-counts")?,
        Window::Day,
        DateRange::new(day, day)?,
        Actor::parse("ops")?,
        at,
        Some(LockToken::generate()),
    ))
}

#[tokio::test]
async fn a_pending_run_survives_a_restart_and_is_claimed_by_another_process() -> Result<()> {
    let db = database!();
    let run = pending_run(date!(2026 - 11 - 01), datetime!(2026-11-21 12:00 UTC))?;
    {
        // The first process stores and queues the run, then goes away.
        let first = adapters(&db, QueueSettings::default());
        first.runs.create(&run).await?;
        first.queue.enqueue(&run).await?;
        first.queue.close().await;
    }
    let second = PostgresRunQueue::new(db.pool.clone(), QueueSettings::default(), clock());
    let claimed = second
        .claim_next()
        .await?
        .context("the run is still queued")?;
    ensure!(
        claimed.id == run.id && claimed.status == RunStatus::Running,
        "the second process claims it"
    );
    Ok(())
}

/// The state a killed worker leaves behind: the run claimed (running, one more attempt) and its
/// lease already expired, with no process left to renew it.
async fn left_running_by_a_dead_worker(db: &TestDatabase, run: &RecomputeRun) -> Result<()> {
    let updated = db
        .pool
        .get()
        .await?
        .execute(
            "UPDATE recompute_runs
             SET status = 'running', started_at = now(), attempts = attempts + 1,
                 lease_expires_at = now() - interval '1 second'
             WHERE id = $1 AND status = 'pending'",
            &[&run.id.as_uuid()],
        )
        .await?;
    ensure!(updated == 1, "the run was pending");
    Ok(())
}

#[tokio::test]
async fn a_run_whose_worker_died_is_retried_then_failed() -> Result<()> {
    let db = database!();
    let settings = QueueSettings {
        lease: Duration::from_millis(300),
        max_attempts: 2,
        ..QueueSettings::default()
    };
    let a = adapters(&db, settings);
    let run = pending_run(date!(2026 - 11 - 02), datetime!(2026-11-21 12:00 UTC))?;
    a.runs.create(&run).await?;
    // A worker claims it and dies: its lease is never renewed.
    left_running_by_a_dead_worker(&db, &run).await?;

    let queue = PostgresRunQueue::new(db.pool.clone(), settings, clock());
    let first = queue.recover().await?;
    ensure!(
        first.retried.len() == 1 && first.failed.is_empty(),
        "the first loss hands the run back: {first:?}"
    );
    let again = a.runs.get(TENANT, run.id).await?.context("run")?;
    ensure!(
        again.status == RunStatus::Pending && again.started_at.is_none(),
        "pending again: {again:?}"
    );
    ensure!(
        first.retried[0] == again,
        "recover returns the run as stored"
    );

    // Claimed a second time and lost again: attempts are used up.
    left_running_by_a_dead_worker(&db, &run).await?;
    let second = queue.recover().await?;
    ensure!(
        second.retried.is_empty() && second.failed.len() == 1,
        "the second loss fails it: {second:?}"
    );
    let lost = a.runs.get(TENANT, run.id).await?.context("run")?;
    ensure!(
        lost.status == RunStatus::Failed,
        "failed, never running forever: {lost:?}"
    );
    ensure!(
        lost.error_message
            .as_deref()
            .is_some_and(|m| m.contains("stopped responding")),
        "{lost:?}"
    );
    ensure!(
        second.failed[0].lock_token == run.lock_token,
        "the failed run comes back with its lock token, so its scope lock can be released"
    );
    // Auditing the loss is the worker's part (see the service tests), not the queue's.
    Ok(())
}

#[tokio::test]
async fn a_renewed_lease_holds_and_a_lease_left_alone_ends() -> Result<()> {
    let db = database!();
    let settings = QueueSettings {
        lease: Duration::from_millis(1_500),
        ..QueueSettings::default()
    };
    let a = adapters(&db, settings);
    let run = pending_run(date!(2026 - 11 - 03), datetime!(2026-11-21 12:00 UTC))?;
    a.runs.create(&run).await?;
    a.queue.enqueue(&run).await?;
    let claimed = a.queue.claim_next().await?.context("claimed")?;

    // Renewed every half second for more than two lease lengths: never recovered.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(
            a.runs.renew_lease(TENANT, claimed.id).await?,
            "a running run's lease is renewed"
        );
        let recovered = a.queue.recover().await?;
        ensure!(
            recovered == application::Recovered::default(),
            "a renewed run is not recovered: {recovered:?}"
        );
    }
    ensure!(
        !a.runs.renew_lease(OTHER_TENANT, claimed.id).await?,
        "another tenant's run is not renewed"
    );

    // Nobody renews it any more: once the lease ends, the queue takes it back.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let recovered = a.queue.recover().await?;
    ensure!(
        recovered.retried.len() == 1 && recovered.retried[0].id == claimed.id,
        "a run left alone for a lease is recovered: {recovered:?}"
    );
    ensure!(
        !a.runs.renew_lease(TENANT, claimed.id).await?,
        "a run that is no longer running is not renewed"
    );
    Ok(())
}

/// A run store whose every outcome write fails as if the database were unreachable, while
/// everything else reaches PostgreSQL.
struct OutcomesUnwritable(Arc<dyn RunStore>);

#[async_trait::async_trait]
impl RunStore for OutcomesUnwritable {
    async fn create(&self, run: &RecomputeRun) -> Result<(), RunStoreError> {
        self.0.create(run).await
    }
    async fn get(
        &self,
        tenant: TenantId,
        id: RunId,
    ) -> Result<Option<RecomputeRun>, RunStoreError> {
        self.0.get(tenant, id).await
    }
    async fn list(
        &self,
        tenant: TenantId,
        filter: &domain::RunFilter,
        page: domain::PageRequest,
    ) -> Result<domain::Page<RecomputeRun>, RunStoreError> {
        self.0.list(tenant, filter, page).await
    }
    async fn start(
        &self,
        tenant: TenantId,
        id: RunId,
        at: time::OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        self.0.start(tenant, id, at).await
    }
    async fn complete(
        &self,
        _: TenantId,
        _: RunId,
        _: domain::RunSummary,
        _: time::OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        Err(RunStoreError::Unavailable(anyhow::anyhow!(
            "connection refused"
        )))
    }
    async fn fail(
        &self,
        _: TenantId,
        _: RunId,
        _: &str,
        _: time::OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        Err(RunStoreError::Unavailable(anyhow::anyhow!(
            "connection refused"
        )))
    }
    async fn abandon(
        &self,
        tenant: TenantId,
        id: RunId,
        error: &str,
        at: time::OffsetDateTime,
    ) -> Result<RecomputeRun, RunStoreError> {
        self.0.abandon(tenant, id, error, at).await
    }
    async fn renew_lease(&self, tenant: TenantId, id: RunId) -> Result<bool, RunStoreError> {
        self.0.renew_lease(tenant, id).await
    }
}

/// A worker over the PostgreSQL adapters of `a` (runs through `runs`), with in-memory cache
/// versions and scope locks, renewing leases of `lease`.
fn worker(a: &PostgresAdapters, runs: Arc<dyn RunStore>, lease: Duration) -> RecomputeWorker {
    RecomputeWorker::new(WorkerPorts {
        runs,
        queue: a.queue.clone(),
        rollups: a.rollups.clone(),
        definitions: a.definitions.clone(),
        versions: Arc::new(memory_adapter::InMemoryCacheVersions::default()),
        audit: a.audit.clone(),
        locks: Arc::new(memory_adapter::InMemoryScopeLock::default()),
        clock: clock(),
    })
    .with_lease(lease)
}

/// Adapters whose runs hold a lease of `lease`, and a run of `day` queued and claimed.
async fn claimed_with_lease(
    db: &TestDatabase,
    lease: Duration,
    day: time::Date,
) -> Result<(PostgresAdapters, RecomputeRun)> {
    let a = adapters(
        db,
        QueueSettings {
            lease,
            ..QueueSettings::default()
        },
    );
    let run = pending_run(day, NOW)?;
    a.runs.create(&run).await?;
    a.queue.enqueue(&run).await?;
    let claimed = a.queue.claim_next().await?.context("claimed")?;
    Ok((a, claimed))
}

#[tokio::test]
async fn a_worker_keeps_its_run_leased_however_long_the_rebuild_waits() -> Result<()> {
    let db = database!();
    let lease = Duration::from_millis(1_500);
    let (a, claimed) = claimed_with_lease(&db, lease, date!(2026 - 11 - 05)).await?;
    // Another transaction holds the lock that serializes rebuilds of this report and window,
    // so the rebuild waits for it.
    let mut blocker = db.pool.get().await?;
    let blocking = blocker.transaction().await?;
    blocking
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("{TENANT}:status-counts:day")],
        )
        .await?;

    let executing = tokio::spawn({
        let worker = worker(&a, a.runs.clone(), lease);
        async move { worker.execute(claimed).await }
    });
    tokio::time::sleep(lease * 3).await;
    let recovered = a.queue.recover().await?;
    blocking.commit().await?;
    let finished = executing.await?;

    ensure!(
        recovered == application::Recovered::default(),
        "an executing run outlives its lease: {recovered:?}"
    );
    ensure!(
        finished.status == RunStatus::Completed,
        "and completes: {finished:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_run_whose_outcome_cannot_be_written_is_recovered_once_its_lease_ends() -> Result<()> {
    let db = database!();
    let lease = Duration::from_millis(1_500);
    let (a, claimed) = claimed_with_lease(&db, lease, date!(2026 - 11 - 06)).await?;
    let run_id = claimed.id;

    // The worker rebuilds, then cannot mark the run completed however often it tries.
    let unwritable: Arc<dyn RunStore> = Arc::new(OutcomesUnwritable(a.runs.clone()));
    let returned = worker(&a, unwritable, lease).execute(claimed).await;
    ensure!(
        returned.status == RunStatus::Running,
        "the worker gives the run up as it was: {returned:?}"
    );

    // Its lease is no longer renewed by anyone: the queue takes the run back.
    let deadline = tokio::time::Instant::now() + lease * 4;
    let recovered = loop {
        let recovered = a.queue.recover().await?;
        if !recovered.retried.is_empty() || tokio::time::Instant::now() > deadline {
            break recovered;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(
        recovered.retried.len() == 1 && recovered.retried[0].id == run_id,
        "the run is queued again within a lease: {recovered:?}"
    );
    Ok(())
}

#[tokio::test]
async fn two_queues_never_claim_the_same_run() -> Result<()> {
    let db = database!();
    let a = adapters(&db, QueueSettings::default());
    for n in 0..6 {
        let run = pending_run(
            date!(2026 - 10 - 01) + time::Duration::days(n),
            datetime!(2026-11-21 12:00 UTC),
        )?;
        a.runs.create(&run).await?;
    }
    let q1 = Arc::new(PostgresRunQueue::new(
        db.pool.clone(),
        QueueSettings::default(),
        clock(),
    ));
    let q2 = Arc::new(PostgresRunQueue::new(
        db.pool.clone(),
        QueueSettings::default(),
        clock(),
    ));
    let mut handles = Vec::new();
    for queue in [q1, q2] {
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..3 {
                if let Ok(Some(run)) = queue.claim_next().await {
                    ids.push(run.id);
                }
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await?);
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    ensure!(
        all.len() == 6 && unique.len() == 6,
        "six distinct claims: {all:?}"
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_ingestion_loses_nothing_and_stores_each_key_once() -> Result<()> {
    let db = database!();
    let a = adapters(&db, QueueSettings::default());
    let events: Arc<dyn application::ports::EventStore> = a.events.clone();
    let day = datetime!(2026-11-20 08:00 UTC);
    let mut tasks = Vec::new();
    for n in 0..200 {
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            // Every fourth request replays the same key with the same content.
            let id = if n % 4 == 0 {
                "shared".to_owned()
            } else {
                format!("e-{n}")
            };
            let item = application::ports::IngestEvent {
                event: domain::NewEvent {
                    event_id: id,
                    ..domain::demo::event(1, day)
                },
                fingerprint: "same".to_owned(),
            };
            events.ingest(TENANT, vec![item], NOW).await
        }));
    }
    let mut created = 0;
    let mut duplicates = 0;
    for task in tasks {
        for outcome in task.await?? {
            match outcome.status {
                domain::IngestStatus::Created => created += 1,
                domain::IngestStatus::Duplicate => duplicates += 1,
                domain::IngestStatus::Conflict => anyhow::bail!("no conflicts expected"),
            }
        }
    }
    ensure!(
        created == 151 && duplicates == 49,
        "150 distinct keys + one shared: {created} created, {duplicates} duplicates"
    );
    ensure!(
        application::ports::EventAdmin::count(a.events.as_ref(), TENANT).await? == 151,
        "exactly one row per key"
    );
    Ok(())
}

/// Several writers at once, callers sending the same ids in opposite orders over several days,
/// in bulks large enough that gathered transactions overlap: every call succeeds, each id is
/// created exactly once, every other sending of it is a duplicate, and the server saw no
/// deadlock. (Inserting in request order instead of key order failed this in 3 runs of 5.)
#[tokio::test]
async fn concurrent_writers_store_each_key_once_whatever_the_order() -> Result<()> {
    const CALLERS: usize = 8;
    const ROUNDS: usize = 6;
    const BULK: usize = 1_000;
    // In each round every caller sends the same keys, so the gathered transactions written at
    // once (5,000 events gather into one, the rest into the next) carry the same ids, in
    // opposite orders.
    let keys = |round: usize| (0..BULK).map(move |n| round * BULK + n);
    let db = database!();
    let a = adapters(&db, QueueSettings::default()).with_ingest_writers(4);
    let events: Arc<dyn application::ports::EventStore> = a.events.clone();
    let day = datetime!(2026-11-20 08:00 UTC);
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for round in 0..ROUNDS {
                let mut items: Vec<_> = keys(round)
                    .map(|k| application::ports::IngestEvent {
                        event: domain::NewEvent {
                            event_id: format!("k-{k}"),
                            ..domain::demo::event(
                                k as u64,
                                day - time::Duration::days((k % 5) as i64),
                            )
                        },
                        fingerprint: format!("content-{k}"),
                    })
                    .collect();
                // Odd callers send their keys backwards.
                if caller % 2 == 1 {
                    items.reverse();
                }
                outcomes.extend(events.ingest(TENANT, items, NOW).await?);
            }
            Ok::<_, application::ports::StoreError>(outcomes)
        }));
    }
    let mut created = std::collections::HashSet::new();
    let mut sent = 0;
    let mut duplicates = 0;
    for task in tasks {
        for outcome in task.await?? {
            sent += 1;
            match outcome.status {
                domain::IngestStatus::Created => {
                    ensure!(
                        created.insert(outcome.event_id.clone()),
                        "{} created twice",
                        outcome.event_id
                    );
                }
                domain::IngestStatus::Duplicate => duplicates += 1,
                domain::IngestStatus::Conflict => anyhow::bail!("{} conflicted", outcome.event_id),
            }
        }
    }
    let distinct = ROUNDS * BULK;
    ensure!(
        sent == CALLERS * distinct && created.len() == distinct && duplicates == sent - distinct,
        "{distinct} keys sent {sent} times: {} created, {duplicates} duplicates",
        created.len()
    );
    ensure!(
        application::ports::EventAdmin::count(a.events.as_ref(), TENANT).await? == distinct as u64,
        "exactly one row per key"
    );
    // A deadlock would not show in the outcomes (PostgreSQL aborts one transaction and its
    // requests are retried alone), so ask the server. A backend reports its statistics by the
    // time it exits, and a termination with a timeout waits for the exit.
    let client = db.pool.get().await?;
    client
        .batch_execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await?;
    let deadlocks: i64 = client
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0);
    ensure!(deadlocks == 0, "{deadlocks} deadlocks between the writers");
    Ok(())
}

/// Ingestion writers hold connections of their own, outside the pool, and a writer whose
/// connection is lost opens another.
#[tokio::test]
async fn ingestion_writers_keep_their_own_connections_and_replace_lost_ones() -> Result<()> {
    use application::ports::EventIngestion as _;
    let db = database!();
    let a = adapters(&db, QueueSettings::default()).with_ingest_writers(2);
    let event = |id: &str| application::ports::IngestEvent {
        event: domain::NewEvent {
            event_id: id.to_owned(),
            ..domain::demo::event(1, datetime!(2026-11-20 08:00 UTC))
        },
        fingerprint: format!("content-{id}"),
    };
    let status = |outcomes: Vec<domain::IngestOutcome>| outcomes.first().map(|o| o.status);
    // One after the other, so that each writer takes a connection.
    for id in ["before-1", "before-2"] {
        ensure!(
            status(a.events.ingest(TENANT, vec![event(id)], NOW).await?)
                == Some(domain::IngestStatus::Created)
        );
    }

    // Every connection of the pool can still be taken at once (a writer's would time out).
    let size = db.pool.status().max_size;
    let mut held = Vec::new();
    for _ in 0..size {
        held.push(db.pool.get().await.context("a pooled connection")?);
    }
    let terminated: i64 = held[0]
        .query_one(
            // Each termination waits up to 5 s for the backend to be gone.
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    // The other pooled connections held here, and the two writers'.
    ensure!(
        terminated >= i64::try_from(size)? - 1 + 2,
        "the writers' connections were among the {terminated} terminated"
    );
    drop(held);

    // A batch on a lost connection may fail, as unavailable and storing nothing, and its writer
    // then lets the connection go; within one attempt per writer and one more, a batch runs
    // on a new connection.
    let mut created = false;
    for _ in 0..3 {
        match a.events.ingest(TENANT, vec![event("after")], NOW).await {
            Ok(outcomes) => {
                created = status(outcomes) == Some(domain::IngestStatus::Created);
                break;
            }
            Err(application::ports::StoreError::Unavailable(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    ensure!(created, "the event was stored on a new connection");
    ensure!(application::ports::EventAdmin::count(a.events.as_ref(), TENANT).await? == 3);
    Ok(())
}

/// Migration V5 moves every snapshot row written under V4 into its report and window's
/// partition, unchanged, and the table refuses what it refused before.
#[tokio::test]
async fn the_snapshot_partitions_keep_every_row_written_before_them() -> Result<()> {
    let Some(db) = TestDatabase::create_at(Some(4)).await? else {
        return Ok(());
    };
    let client = db.pool.get().await?;
    // Every report and window, both tenants, and a report outside the known three.
    client
        .batch_execute(
            "INSERT INTO metric_snapshots (tenant_id, report_slug, window_name, bucket_start,
                 dimension_key, dimension_value, metric_name, metric_value, computed_at, run_id)
             SELECT t, r, w, CASE w WHEN 'week' THEN DATE '2026-11-16' ELSE DATE '2026-11-20' END,
                    'entity_id', 'e-' || n, 'event_count', n * t, TIMESTAMPTZ '2026-11-21 12:00Z',
                    NULL
             FROM unnest(ARRAY[1, 2]) AS t,
                  unnest(ARRAY['volume-by-period', 'status-counts', 'top-entities', 'later-report']) AS r,
                  unnest(ARRAY['day', 'week']) AS w,
                  generate_series(1, 3) AS n",
        )
        .await?;
    // Each row as the text of a record of every column, in key order.
    let rows = "SELECT (tenant_id, report_slug, window_name, bucket_start, dimension_key,
                        dimension_value, metric_name, metric_value, computed_at, run_id,
                        created_at)::text
                FROM metric_snapshots
                ORDER BY tenant_id, report_slug, window_name, bucket_start, dimension_key,
                         dimension_value, metric_name";
    let render = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|row| row.get(0)).collect()
    };
    // The table's shape: each column's type, collation, nullability and default, and each
    // constraint's definition, as text.
    let shape = "SELECT (column_name, data_type, collation_name, is_nullable, column_default)::text
                 FROM information_schema.columns WHERE table_name = 'metric_snapshots'
                 UNION ALL
                 SELECT (conname, pg_get_constraintdef(oid))::text
                 FROM pg_constraint WHERE conrelid = 'metric_snapshots'::regclass
                 ORDER BY 1";
    let before = render(client.query(rows, &[]).await?);
    ensure!(before.len() == 48, "{} rows written", before.len());
    let shape_before = render(client.query(shape, &[]).await?);

    ensure!(db.migrate_to(5).await? == 1, "V5 applied");

    let after = render(client.query(rows, &[]).await?);
    ensure!(after == before, "every row kept as it was");
    let shape_after = render(client.query(shape, &[]).await?);
    ensure!(
        shape_after == shape_before,
        "the same columns and constraints: {shape_before:?} became {shape_after:?}"
    );
    let placed: Vec<(String, String, String)> = client
        .query(
            "SELECT DISTINCT tableoid::regclass::text, report_slug, window_name
             FROM metric_snapshots",
            &[],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    ensure!(
        placed.len() == 8,
        "every report and window placed: {placed:?}"
    );
    for (partition, report, window) in &placed {
        let expected = if report == "later-report" {
            "metric_snapshots_other".to_owned()
        } else {
            format!("metric_snapshots_{}_{window}", report.replace('-', "_"))
        };
        ensure!(
            *partition == expected,
            "{report} {window} went to {partition}, not {expected}"
        );
    }
    // One top-entities row of entity `value`, in `window`, for the bucket starting `start`.
    let insert = |window: &'static str, start: time::Date, value: &'static str| {
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO metric_snapshots (tenant_id, report_slug, window_name,
                         bucket_start, dimension_key, dimension_value, metric_name, metric_value,
                         computed_at)
                     VALUES (1, 'top-entities', $1, $2, 'entity_id', $3, 'event_count', 9, now())",
                    &[&window, &start, &value],
                )
                .await
        }
    };
    ensure!(
        insert("day", date!(2026 - 11 - 20), "e-new").await? == 1,
        "a new row goes in"
    );
    let refused = |outcome: Result<u64, tokio_postgres::Error>| {
        outcome
            .err()
            .and_then(|err| err.code().map(|code| code.code().to_owned()))
    };
    let duplicate = insert("day", date!(2026 - 11 - 20), "e-1").await;
    ensure!(
        refused(duplicate).as_deref() == Some("23505"),
        "the natural key is still unique"
    );
    let tuesday_week = insert("week", date!(2026 - 11 - 17), "e-9").await;
    ensure!(
        refused(tuesday_week).as_deref() == Some("23514"),
        "weeks still start on a Monday"
    );
    Ok(())
}

/// Migrating writes the built-in reports' catalog entries from their seed files: an entry
/// changed in the database is put back, and the others keep their `updated_at`.
#[tokio::test]
async fn migrating_installs_the_catalog_from_the_seed_files() -> Result<()> {
    let db = database!();
    let client = db.pool.get().await?;
    client
        .batch_execute(
            "UPDATE report_definitions SET cache_ttl_seconds = 0, updated_at = '2026-01-01Z'
                 WHERE slug = 'volume-by-period';
             UPDATE report_definitions SET updated_at = '2026-01-02Z' WHERE slug <> 'volume-by-period';
             UPDATE aggregate_windows SET retention_days = 1 WHERE report_slug = 'top-entities';",
        )
        .await?;
    db.migrate().await?;
    use application::ports::ReportCatalog;
    let catalog = postgres_adapter::PostgresCatalog::new(db.pool.clone());
    for kind in domain::ReportKind::ALL {
        let stored = catalog
            .get(&kind.report_slug())
            .await?
            .with_context(|| format!("{kind:?} is in the catalog"))?;
        let reference = domain::ReportDefinition::reference(kind, stored.updated_at);
        ensure!(
            stored == reference,
            "{kind:?}: {stored:?} against {reference:?}"
        );
    }
    let untouched: i64 = client
        .query_one(
            "SELECT count(*) FROM report_definitions WHERE updated_at = '2026-01-02Z'",
            &[],
        )
        .await?
        .get(0);
    // A window put back is not a change of its report's entry.
    ensure!(
        untouched == 2,
        "only entries that differ are written: {untouched} kept their time"
    );
    Ok(())
}

/// Migration V10 moves the built-in reports' snapshot rows into `rollup_snapshots`, each with
/// its bucket, value, count, `computed_at` and run, and drops `metric_snapshots`.
#[tokio::test]
async fn the_builtin_snapshots_move_to_the_rollup_rows() -> Result<()> {
    let Some(db) = TestDatabase::create_at(Some(9)).await? else {
        return Ok(());
    };
    let client = db.pool.get().await?;
    client
        .batch_execute(
            "INSERT INTO metric_snapshots (tenant_id, report_slug, window_name, bucket_start,
                 dimension_key, dimension_value, metric_name, metric_value, computed_at, run_id)
             VALUES (1, 'volume-by-period', 'day', '2026-11-20', 'source', 'stripe', 'event_count', 7,
                     '2026-11-21 12:00Z', '00000000-0000-4000-8000-000000000001'),
                    (1, 'top-entities', 'week', '2026-11-16', 'entity_id', 'e-1', 'event_count', 3,
                     '2026-11-21 12:00Z', '00000000-0000-4000-8000-000000000002'),
                    (1, 'status-counts', 'day', '2026-11-20', 'status', 'failed', 'event_count', 2,
                     '2026-11-21 12:00Z', NULL);
             INSERT INTO rollup_snapshots (tenant_id, report_slug, window_name, bucket_start,
                 dimension_values, measure_values, computed_at, run_id)
             VALUES (1, 'by-name', 'month', '2026-11-01', ARRAY['purchase', NULL, 'web'], ARRAY[4, 9],
                     '2026-11-21 12:00Z', '00000000-0000-4000-8000-000000000003')",
        )
        .await?;
    ensure!(db.migrate_to(10).await? == 1, "V10 applied");
    let moved: Vec<String> = client
        .query(
            "SELECT (tenant_id, report_slug, window_name, bucket_start, d1, d2, d3,
                     measure_values, computed_at AT TIME ZONE 'UTC', run_id)::text
             FROM rollup_snapshots ORDER BY report_slug",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    ensure!(
        moved
            == [
                "(1,by-name,month,2026-11-01,purchase,,web,\"{4,9}\",\"2026-11-21 12:00:00\",00000000-0000-4000-8000-000000000003)",
                "(1,top-entities,week,2026-11-16,e-1,,,{3},\"2026-11-21 12:00:00\",00000000-0000-4000-8000-000000000002)",
                "(1,volume-by-period,day,2026-11-20,stripe,,,{7},\"2026-11-21 12:00:00\",00000000-0000-4000-8000-000000000001)",
            ],
        "a rollup's row keeps its values, and the built-ins' rows with a run moved as they were: {moved:?}"
    );
    let gone: Option<String> = client
        .query_one("SELECT to_regclass('metric_snapshots')::text", &[])
        .await?
        .get(0);
    ensure!(gone.is_none(), "metric_snapshots is dropped");
    Ok(())
}

/// The hll extension builds, in SQL, the very bytes of the service's sketches of the same
/// values, and merges them as the service does.
#[tokio::test]
async fn the_extension_builds_and_merges_the_services_sketches() -> Result<()> {
    use domain::sketch::{Sketch, hash};
    let db = database!();
    let client = db.pool.get().await?;
    let sketch_of = |from: i32, to: i32| {
        Sketch::of_hashes((from..=to).map(|i| hash(format!("user-{i}").as_bytes())))
    };
    const BUILT: &str =
        "SELECT decode(substr(hll_add_agg(hll_hash_text('user-' || i), 15, 5)::text, 3), 'hex')
                         FROM generate_series($1::int, $2::int) i";
    for n in [1, 99, 2_560, 2_561, 30_000] {
        let bytes: Vec<u8> = client.query_one(BUILT, &[&1i32, &n]).await?.get(0);
        ensure!(
            bytes == sketch_of(1, n).to_bytes(),
            "the sketches of {n} values differ"
        );
    }
    const MERGED: &str =
        "SELECT decode(substr(hll_union_agg(decode(substr(h, 3), 'hex')::hll)::text, 3), 'hex')
                          FROM unnest($1::text[]) h";
    for ranges in [
        [(1, 50), (40, 90)],
        [(1, 2_000), (1_500, 3_000)],
        [(1, 100), (50, 40_000)],
    ] {
        let stored: Vec<String> = ranges
            .iter()
            .map(|(from, to)| {
                let bytes = sketch_of(*from, *to).to_bytes();
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                format!("\\x{hex}")
            })
            .collect();
        let bytes: Vec<u8> = client.query_one(MERGED, &[&stored]).await?.get(0);
        let mut merged = sketch_of(ranges[0].0, ranges[0].1);
        merged.merge(&sketch_of(ranges[1].0, ranges[1].1));
        ensure!(
            bytes == merged.to_bytes(),
            "the unions of {ranges:?} differ"
        );
    }
    Ok(())
}

/// Migration V12 renames a tenant's report that has the slug of a standard rollup to
/// `<slug>-custom`, with its rows and runs, and leaves other reports and tenants alone.
#[tokio::test]
async fn a_tenants_report_under_a_standard_slug_is_renamed_with_its_rows_and_runs() -> Result<()> {
    let Some(db) = TestDatabase::create_at(Some(11)).await? else {
        return Ok(());
    };
    let client = db.pool.get().await?;
    client
        .batch_execute(
            r#"INSERT INTO rollup_definitions (tenant_id, slug, definition, created_at, updated_at)
             VALUES (2, 'traffic', '{"slug": "traffic", "measures": [{"name": "n", "kind": "count"}]}',
                     '2026-11-01Z', '2026-11-01Z'),
                    (2, 'mine', '{"slug": "mine", "measures": [{"name": "n", "kind": "count"}]}',
                     '2026-11-01Z', '2026-11-01Z');
             INSERT INTO rollup_snapshots (tenant_id, report_slug, window_name, bucket_start,
                 measure_values, computed_at, run_id)
             VALUES (2, 'traffic', 'day', '2026-11-20', ARRAY[4], '2026-11-21 12:00Z',
                     '00000000-0000-4000-8000-000000000001'),
                    (2, 'mine', 'day', '2026-11-20', ARRAY[5], '2026-11-21 12:00Z',
                     '00000000-0000-4000-8000-000000000002'),
                    (1, 'traffic', 'day', '2026-11-20', ARRAY[6], '2026-11-21 12:00Z',
                     '00000000-0000-4000-8000-000000000003');
             INSERT INTO recompute_runs (id, tenant_id, report_slug, window_name, date_from, date_to,
                 scope_from, scope_to, requested_by, status, requested_at, started_at, finished_at, summary)
             VALUES ('00000000-0000-4000-8000-000000000001', 2, 'traffic', 'day', '2026-11-20',
                     '2026-11-20', '2026-11-20', '2026-11-20', 'ops', 'completed', '2026-11-21 12:00Z',
                     '2026-11-21 12:00Z', '2026-11-21 12:00Z', '{}')"#,
        )
        .await?;
    ensure!(db.migrate_to(12).await? == 1, "V12 applied");
    let slugs: Vec<String> = client
        .query(
            "SELECT tenant_id || ':' || slug || ':' || (definition ->> 'slug')
             FROM rollup_definitions ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    ensure!(
        slugs == ["2:mine:mine", "2:traffic-custom:traffic-custom"],
        "the definition is renamed, slug and body: {slugs:?}"
    );
    let rows: Vec<String> = client
        .query(
            "SELECT tenant_id || ':' || report_slug || ':' || measure_values[1]
             FROM rollup_snapshots ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    ensure!(
        rows == ["1:traffic:6", "2:mine:5", "2:traffic-custom:4"],
        "its rows follow it; another tenant's rows under the slug are not its: {rows:?}"
    );
    let run: String = client
        .query_one("SELECT report_slug FROM recompute_runs", &[])
        .await?
        .get(0);
    ensure!(run == "traffic-custom", "its run follows it: {run}");
    Ok(())
}

/// An event committed while a rebuild runs (after the snapshot the rebuild reads, before its
/// commit) keeps its bucket dirty: the writer re-marked the bucket under the row lock, so the
/// rebuild's clearing waits for it and then sees a newer version than it read. A refresh
/// afterwards counts the event and clears the mark.
#[tokio::test]
async fn an_event_committed_during_a_rebuild_keeps_its_bucket_dirty() -> Result<()> {
    event_committed_during_a_rebuild(false).await
}

/// The same during a refresh that adds the events stored since its window's watermark (a
/// delta): it counts the event stored before it began, not the one committed while it ran,
/// and the next refresh counts that one, once.
#[tokio::test]
async fn an_event_committed_during_a_delta_refresh_is_counted_by_the_next_once() -> Result<()> {
    event_committed_during_a_rebuild(true).await
}

async fn event_committed_during_a_rebuild(delta: bool) -> Result<()> {
    use application::ports::{
        EventIngestion, RollupRebuild, RollupStore, SnapshotRows, WindowRebuild,
    };
    let db = database!();
    let a = adapters(&db, QueueSettings::default());
    let day = date!(2026 - 11 - 18);
    let days = DateRange::new(day, day)?;
    let volume = domain::rollup::builtin(domain::ReportKind::VolumeByPeriod).clone();
    // Stores event `n`, with `id`, on the day at `at` (when it is stored too).
    let ingest = |n: u64, id: &str, at: time::OffsetDateTime| {
        let mut event = domain::demo::event(n, datetime!(2026-11-21 12:00 UTC));
        event.event_id = id.into();
        event.occurred_at = at;
        event.source = domain::SourceSlug::default_source();
        let events = a.events.clone();
        async move {
            events
                .ingest(
                    TENANT,
                    vec![application::ports::IngestEvent {
                        fingerprint: application::ingest::fingerprint(&event),
                        event,
                    }],
                    at,
                )
                .await
        }
    };
    ingest(1, "first", datetime!(2026-11-18 10:00 UTC)).await?;
    let rebuild = |mode: domain::RunMode, run: RunId| RollupRebuild {
        tenant: TENANT,
        report: volume.slug.clone(),
        rollup: volume.rollup.clone(),
        windows: vec![WindowRebuild {
            window: Window::Day,
            range: days,
            mode,
            run_id: run,
        }],
        computed_at: datetime!(2026-11-18 12:00 UTC),
    };
    let counted = |rows: Vec<application::ports::SnapshotRow>| -> i64 {
        rows.iter().map(|r| r.measure_values[0]).sum()
    };
    // For a delta: the day is built (the window takes a watermark), then one more event is
    // stored, which the concurrent refresh counts.
    let before = if delta {
        a.rollups
            .rebuild(&rebuild(domain::RunMode::Full, RunId::generate()))
            .await?;
        ingest(2, "second", datetime!(2026-11-18 10:30 UTC)).await?;
        let watermarks: i64 = db
            .pool
            .get()
            .await?
            .query_one("SELECT count(*) FROM refresh_watermarks", &[])
            .await?
            .get(0);
        ensure!(
            watermarks == 1,
            "the built day's window takes a watermark, so the refresh is a delta"
        );
        2
    } else {
        1
    };

    // The writer: an ingestion that stored its event and re-marked the day, not committed.
    let mut writer = db.pool.get().await?;
    let tx = writer.transaction().await?;
    tx.execute(
        "INSERT INTO analytics_events (tenant_id, event_id, event_name, source_id, occurred_at, properties, fingerprint)
         SELECT $1, 'during', 'order', id, '2026-11-18 11:00Z', '{}', 'x'
         FROM event_sources WHERE tenant_id = $1 AND slug = 'default'",
        &[&TENANT.get()],
    )
    .await?;
    let remarked = tx
        .execute(
            "INSERT INTO dirty_buckets (tenant_id, report_slug, window_name, bucket_start, version, first_marked_at, reason)
             VALUES ($1, 'volume-by-period', 'day', '2026-11-18', nextval('dirty_bucket_versions'), now(), 'events')
             ON CONFLICT (tenant_id, report_slug, window_name, bucket_start) DO UPDATE
             SET version = nextval('dirty_bucket_versions')",
            &[&TENANT.get()],
        )
        .await?;
    ensure!(remarked == 1, "the writer re-marks the day");

    // The rebuild reads its snapshot, then waits on the writer's mark to clear it.
    let rollups = a.rollups.clone();
    let mode = if delta {
        domain::RunMode::Incremental
    } else {
        domain::RunMode::Full
    };
    let request = rebuild(mode, RunId::generate());
    let running = tokio::spawn(async move { rollups.rebuild(&request).await });
    let watcher = db.pool.get().await?;
    let mut waited = 0;
    loop {
        let blocked: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%DELETE FROM dirty_buckets d%'",
                &[],
            )
            .await?
            .get(0);
        if blocked > 0 {
            break;
        }
        ensure!(
            !running.is_finished(),
            "the rebuild finished without waiting on the writer"
        );
        waited += 1;
        ensure!(
            waited < 6_000,
            "the rebuild never reached the writer's mark"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.commit().await?;
    let outcomes = running.await??;
    ensure!(outcomes.len() == 1, "one window rebuilt");

    let rows = a
        .rollups
        .rows(TENANT, &volume.slug, 1, Window::Day, days)
        .await?;
    ensure!(
        counted(rows) == before,
        "the rebuild's snapshot predates the writer's event"
    );
    let dirty = a
        .rollups
        .dirty(TENANT, &volume.slug, Window::Day, days)
        .await?;
    ensure!(
        dirty.len() == 1 && dirty[0].first_marked_at == datetime!(2026-11-18 12:00 UTC),
        "the event committed during the rebuild keeps its day dirty, counted from the \
         rebuild's start: {dirty:?}"
    );

    let refresh = a
        .rollups
        .rebuild(&rebuild(domain::RunMode::Incremental, RunId::generate()))
        .await?;
    ensure!(
        refresh[0].bucket_count == 1,
        "the refresh rebuilds the day: {refresh:?}"
    );
    let rows = a
        .rollups
        .rows(TENANT, &volume.slug, 1, Window::Day, days)
        .await?;
    ensure!(
        counted(rows) == before + 1,
        "the refresh counts the writer's event, once"
    );
    ensure!(
        a.rollups
            .dirty(TENANT, &volume.slug, Window::Day, days)
            .await?
            .is_empty(),
        "and clears the mark"
    );
    Ok(())
}

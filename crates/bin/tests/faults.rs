//! Fault tests (`just test-faults`, feature `fault-tests`): the release of every promise in
//! docs/operations.md about what survives which failure, proved against the real binary.
//!
//! Each test runs a PostgreSQL cluster of its own (`initdb` + `pg_ctl` on a free port) and,
//! where Redis matters, a `redis-server` of its own, and takes them down by their own data
//! directory or process id, never touching the shared servers. Waits are deadlines for a
//! condition to come true, polled; no sleep decides an outcome.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use pg_analytics::testing::{Process, create_key, eventually, request, run};
use postgres_adapter::testing::OwnPostgres;
use redis_adapter::testing::OwnRedis;
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_pg-analytics");
const KEY: &str = "fault-test-management-key-0123";
const MANAGED: [(&str, &str); 1] = [("X-Management-Key", KEY)];

/// A short lease, so that recovery from a lost worker fits in a test.
const LEASE_SECS: u64 = 6;

/// The environment of a process on `pg` (and `redis`), plus `extra`.
fn environment(
    pg: &OwnPostgres,
    redis: Option<&OwnRedis>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", pg.url()),
        ("MANAGEMENT_API_KEY", KEY.to_owned()),
        ("RECOMPUTE_LEASE_SECS", LEASE_SECS.to_string()),
        ("RECOMPUTE_POLL_INTERVAL_MS", "200".to_owned()),
        ("DATABASE_ACQUIRE_TIMEOUT_SECS", "2".to_owned()),
    ];
    if let Some(redis) = redis {
        env.push(("REDIS_URL", redis.url()));
    }
    env.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    env
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

fn start(env: &[(&'static str, String)]) -> Result<Process> {
    Process::start(BINARY, &pairs(env))
}

/// A synchronous handle on a cluster's `postgres` database, for the tests' own checks.
struct Sql {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Sql {
    fn connect(url: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            Ok::<_, anyhow::Error>(client)
        })?;
        Ok(Self { runtime, client })
    }

    fn execute(&self, sql: &str) -> Result<()> {
        self.runtime.block_on(self.client.batch_execute(sql))?;
        Ok(())
    }

    fn count(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<i64> {
        Ok(self
            .runtime
            .block_on(self.client.query_one(sql, params))?
            .get(0))
    }
}

/// `count` events of the default tenant over the 30 days before today, 1 a second hour apart.
fn insert_events(sql: &Sql, count: i64) -> Result<()> {
    sql.execute(&format!(
        "INSERT INTO analytics_events (tenant_id, event_id, source_id, entity_id, status, processing_ms, amount_cents, occurred_at, properties)
         SELECT 1, 'seeded-' || i, s.id, 'entity-' || (i % 50), 'success', 100, 100,
                date_trunc('day', now()) - make_interval(days => (i % 30)::int + 1, hours => (i % 24)::int), '{{}}'::jsonb
         FROM generate_series(1, {count}) AS i
         JOIN event_sources s ON s.tenant_id = 1 AND s.slug = (ARRAY['stripe', 'adyen', 'paypal'])[i % 3 + 1]"
    ))
}

/// Holds the lock that serializes rebuilds of `report` and `window` of the default tenant in a
/// transaction of its own, so a rebuild started meanwhile waits, claimed and running, until
/// the holder lets go (or its server goes away).
struct RebuildBlocker {
    release: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl RebuildBlocker {
    fn hold(url: &str, report: &str, window: &str) -> Result<Self> {
        let (release, released) = mpsc::channel::<()>();
        let (held, is_held) = mpsc::channel::<Result<()>>();
        let (url, key) = (url.to_owned(), format!("rollup:1:{report}:{window}"));
        let thread = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let locked = async {
                    let (client, connection) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                    tokio::spawn(connection);
                    client.batch_execute("SELECT 1").await?;
                    Ok::<_, anyhow::Error>(client)
                }
                .await;
                let mut client = match locked {
                    Ok(client) => client,
                    Err(err) => {
                        let _ = held.send(Err(anyhow::anyhow!("{err:#}")));
                        return Ok(());
                    }
                };
                let transaction = client.transaction().await?;
                transaction
                    .execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                        &[&key],
                    )
                    .await?;
                let _ = held.send(Ok(()));
                // Wait for the release off the runtime; the connection task keeps running.
                let _ = tokio::task::spawn_blocking(move || released.recv()).await;
                // After an outage the transaction is gone with its connection: nothing to end.
                let _ = transaction.commit().await;
                Ok(())
            })
        });
        is_held
            .recv_timeout(Duration::from_secs(30))
            .context("the rebuild lock is taken")??;
        Ok(Self { release, thread })
    }

    fn release(self) -> Result<()> {
        let _ = self.release.send(());
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the lock holder panicked"))?
    }
}

fn trigger(port: u16, body: &Value) -> Result<(u16, Value)> {
    request(port, "POST", "/api/v1/recomputations", &MANAGED, Some(body))
}

fn run_state(port: u16, id: &str) -> Result<Option<String>> {
    let (status, run) = request(
        port,
        "GET",
        &format!("/api/v1/recomputations/{id}"),
        &MANAGED,
        None,
    )?;
    Ok((status == 200)
        .then(|| run["data"]["status"].as_str().map(str::to_owned))
        .flatten())
}

/// Triggers `body` and returns the id of the 202's run.
fn triggered(port: u16, body: &Value) -> Result<String> {
    let (status, created) = trigger(port, body)?;
    ensure!(status == 202, "{status} {created}");
    Ok(created["data"]["id"].as_str().context("run id")?.to_owned())
}

/// Waits (at most `within`) until run `id` is in `state`.
fn reaches(port: u16, id: &str, state: &str, within: Duration) -> Result<()> {
    eventually(
        &format!("run {id} is {state}"),
        within,
        Duration::from_millis(50),
        || Ok((run_state(port, id)?.as_deref() == Some(state)).then_some(())),
    )
}

fn health(port: u16) -> Result<u16> {
    Ok(request(port, "GET", "/api/v1/health", &[], None)?.0)
}

/// Waits (at most 30 s) until `/health` answers `status`.
fn health_becomes(port: u16, status: u16) -> Result<()> {
    eventually(
        &format!("health answers {status}"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((health(port)? == status).then_some(())),
    )
}

/// Scope of the rebuild the outage tests interrupt.
fn rebuild_body(today: time::Date) -> Value {
    json!({
        "report_slug": "top-entities",
        "window": "day",
        "date_from": (today - time::Duration::days(40)).to_string(),
        "date_to": today.to_string(),
        "requested_by": "fault-test",
    })
}

/// An event with the idempotency key `id`, the same content whenever it is sent.
fn event(id: &str, at: &str) -> Value {
    json!({"event_id": id, "source": "stripe", "entity_id": "c-1", "status": "success", "occurred_at": at, "amount_cents": 42})
}

#[test]
fn a_kill_during_ingestion_loses_no_acknowledged_event_and_stores_none_twice() -> Result<()> {
    let pg = OwnPostgres::start()?;
    let env = environment(&pg, None, &[("RECOMPUTE_WORKERS", "0")]);
    ensure!(
        run(BINARY, &pairs(&env), &["migrate"])?.status.success(),
        "migrate"
    );
    let key = create_key(BINARY, &pairs(&env), "default", &["ingest"])?;
    let at = (time::OffsetDateTime::now_utc() - time::Duration::HOUR)
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    let acknowledged = Arc::new(Mutex::new(BTreeSet::<String>::new()));

    for round in 0..3 {
        let mut server = start(&env)?;
        let port = server.port;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..4)
            .map(|sender| {
                let (stop, sent, acknowledged, key, at) = (
                    stop.clone(),
                    sent.clone(),
                    acknowledged.clone(),
                    key.clone(),
                    at.clone(),
                );
                let event = move |id: &str| event(id, &at);
                std::thread::spawn(move || {
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let ids: Vec<String> = if sender % 2 == 0 {
                            vec![format!("r{round}-s{sender}-{n}")]
                        } else {
                            (0..50)
                                .map(|i| format!("r{round}-s{sender}-{n}-{i}"))
                                .collect()
                        };
                        let outcome = if ids.len() == 1 {
                            request(
                                port,
                                "POST",
                                "/api/v1/events",
                                &[("X-API-Key", &key)],
                                Some(&event(&ids[0])),
                            )
                        } else {
                            let events: Vec<Value> = ids.iter().map(|id| event(id)).collect();
                            request(
                                port,
                                "POST",
                                "/api/v1/events/bulk",
                                &[("X-API-Key", &key)],
                                Some(&json!({"events": events})),
                            )
                        };
                        match outcome {
                            Ok((200 | 201, _)) => {
                                sent.fetch_add(ids.len(), Ordering::SeqCst);
                                let mut acked = acknowledged
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                                acked.extend(ids);
                            }
                            // The process is gone: nothing acknowledged, nothing to record.
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        eventually(
            "events are being acknowledged",
            Duration::from_secs(60),
            Duration::from_millis(20),
            || Ok((sent.load(Ordering::SeqCst) >= 500).then_some(())),
        )?;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for sender in senders {
            sender
                .join()
                .map_err(|_| anyhow::anyhow!("a sender panicked"))?;
        }
    }

    let acknowledged: Vec<String> = acknowledged
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    let sql = Sql::connect(&pg.url())?;
    let stored = sql.count(
        "SELECT count(*) FROM analytics_events WHERE tenant_id = 1 AND event_id = ANY($1)",
        &[&acknowledged],
    )?;
    ensure!(
        stored == acknowledged.len() as i64,
        "every acknowledged event is stored: {stored} of {}",
        acknowledged.len()
    );
    let twice = sql.count(
        "SELECT count(*) FROM (SELECT event_id FROM analytics_events GROUP BY tenant_id, event_id HAVING count(*) > 1) d",
        &[],
    )?;
    ensure!(twice == 0, "{twice} events are stored twice");

    // Sending every acknowledged event again stores nothing: each is a duplicate.
    let server = start(&env)?;
    for chunk in acknowledged.chunks(1_000) {
        let events: Vec<Value> = chunk.iter().map(|id| event(id, &at)).collect();
        let (status, body) = request(
            server.port,
            "POST",
            "/api/v1/events/bulk",
            &[("X-API-Key", &key)],
            Some(&json!({"events": events})),
        )?;
        ensure!(
            status == 200 && body["data"]["counts"]["duplicate"] == chunk.len(),
            "a resent acknowledged event is a duplicate: {status} {}",
            body["data"]["counts"]
        );
    }
    Ok(())
}

/// How long PostgreSQL stays down in an outage test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Back while the worker still retries writing the run's failure.
    Short,
    /// Back only after the worker gave the run up to lease recovery.
    Long,
}

/// Stops PostgreSQL while a rebuild runs, starts it again, and checks that the run ends, the
/// scope is free and health recovers, all without restarting the service.
fn a_postgres_outage_during_a_rebuild(outage: Outage, with_redis: bool) -> Result<()> {
    let pg = OwnPostgres::start()?;
    let redis = if with_redis {
        Some(OwnRedis::start()?)
    } else {
        None
    };
    let env = environment(&pg, redis.as_ref(), &[("RECOMPUTE_WORKERS", "1")]);
    let server = start(&env)?;
    let sql = Sql::connect(&pg.url())?;
    insert_events(&sql, 3_000)?;
    drop(sql);
    let today = time::OffsetDateTime::now_utc().date();
    let blocker = RebuildBlocker::hold(&pg.url(), "top-entities", "day")?;
    let id = triggered(server.port, &rebuild_body(today))?;
    reaches(server.port, &id, "running", Duration::from_secs(30))?;

    pg.stop_immediately()?;
    health_becomes(server.port, 503)?;
    let _ = blocker.release();
    if outage == Outage::Long {
        eventually(
            "the worker gives the run up to lease recovery",
            Duration::from_secs(3 * LEASE_SECS),
            Duration::from_millis(100),
            || {
                Ok(server
                    .log()
                    .contains("left to lease recovery")
                    .then_some(()))
            },
        )?;
    }
    pg.start_server()?;

    let ended = eventually(
        "the run ends",
        Duration::from_secs(3 * LEASE_SECS),
        Duration::from_millis(200),
        || {
            Ok(run_state(server.port, &id)
                .ok()
                .flatten()
                .filter(|state| state == "completed" || state == "failed"))
        },
    )
    .with_context(|| server.log())?;
    health_becomes(server.port, 200)?;
    let (status, again) = trigger(server.port, &rebuild_body(today))?;
    ensure!(
        status == 202,
        "the scope is free once the run has {ended}: {status} {again}"
    );
    let again = again["data"]["id"].as_str().context("run id")?.to_owned();
    reaches(server.port, &again, "completed", Duration::from_secs(60))?;
    Ok(())
}

#[test]
fn a_short_postgres_outage_during_a_rebuild_fails_the_run_and_frees_the_scope() -> Result<()> {
    a_postgres_outage_during_a_rebuild(Outage::Short, false)
}

#[test]
fn a_long_postgres_outage_during_a_rebuild_never_leaves_the_run_stuck() -> Result<()> {
    a_postgres_outage_during_a_rebuild(Outage::Long, false)
}

#[test]
fn a_long_postgres_outage_during_a_rebuild_never_leaves_the_redis_lock_held() -> Result<()> {
    a_postgres_outage_during_a_rebuild(Outage::Long, true)
}

#[test]
fn a_worker_killed_mid_rebuild_is_replaced_and_the_snapshots_match_the_events() -> Result<()> {
    let pg = OwnPostgres::start()?;
    let env = environment(&pg, None, &[("RECOMPUTE_WORKERS", "1")]);
    let mut first = start(&env)?;
    let sql = Sql::connect(&pg.url())?;
    insert_events(&sql, 5_000)?;
    let today = time::OffsetDateTime::now_utc().date();
    let (from, to) = (today - time::Duration::days(40), today);
    let blocker = RebuildBlocker::hold(&pg.url(), "volume-by-period", "day")?;
    let body = json!({"report_slug": "volume-by-period", "window": "day", "date_from": from.to_string(), "date_to": to.to_string()});
    let id = triggered(first.port, &body)?;
    reaches(first.port, &id, "running", Duration::from_secs(30))?;

    first.kill();
    let second = start(&env)?;
    blocker.release()?;

    eventually(
        "another process completes the run",
        Duration::from_secs(4 * LEASE_SECS),
        Duration::from_millis(200),
        || match run_state(second.port, &id)?.as_deref() {
            Some("completed") => Ok(Some(())),
            Some("failed") => bail!("the run failed: {}", second.log()),
            _ => Ok(None),
        },
    )?;
    let differences = sql.count(
        "WITH truth AS (
             SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS bucket, s.slug::text AS value, count(*)::int8 AS n
             FROM analytics_events e JOIN event_sources s ON s.id = e.source_id
             WHERE e.tenant_id = 1 AND (e.occurred_at AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2
             GROUP BY 1, 2
         ), stored AS (
             SELECT bucket_start, d1::text, measure_values[1]
             FROM rollup_snapshots
             WHERE tenant_id = 1 AND report_slug = 'volume-by-period' AND window_name = 'day'
         )
         SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT ALL SELECT * FROM stored) a)
              + (SELECT count(*) FROM (SELECT * FROM stored EXCEPT ALL SELECT * FROM truth) b)",
        &[&from, &to],
    )?;
    ensure!(
        differences == 0,
        "{differences} snapshot rows differ from the events"
    );
    let orphans = sql.count(
        "SELECT count(*) FROM rollup_snapshots s
         LEFT JOIN recompute_runs r ON r.id = s.run_id AND r.status = 'completed'
         WHERE r.id IS NULL",
        &[],
    )?;
    ensure!(
        orphans == 0,
        "{orphans} snapshot rows point to a run that did not complete"
    );
    Ok(())
}

#[test]
fn redis_killed_and_restarted_keeps_reads_working_and_locks_and_versions_recover() -> Result<()> {
    let pg = OwnPostgres::start()?;
    let mut redis = OwnRedis::start()?;
    let env = environment(&pg, Some(&redis), &[("RECOMPUTE_WORKERS", "1")]);
    ensure!(
        run(BINARY, &pairs(&env), &["migrate"])?.status.success(),
        "migrate"
    );
    let server = start(&env)?;
    let sql = Sql::connect(&pg.url())?;
    insert_events(&sql, 1_000)?;
    let today = time::OffsetDateTime::now_utc().date();
    let (from, to) = (today - time::Duration::days(40), today);
    let body = json!({"report_slug": "status-counts", "window": "day", "date_from": from.to_string(), "date_to": to.to_string()});
    let report = format!("/api/v1/reports/status-counts/run?date_from={from}&date_to={to}");
    let total = |port: u16| -> Result<i64> {
        let (status, read) = request(port, "GET", &report, &[], None)?;
        ensure!(status == 200, "a read is served: {read}");
        Ok(read["data"]["rows"]
            .as_array()
            .context("rows")?
            .iter()
            .map(|row| row["event_count"].as_i64().unwrap_or(0))
            .sum())
    };
    let completed = |port: u16| -> Result<()> {
        let id = triggered(port, &body)?;
        reaches(port, &id, "completed", Duration::from_secs(60))
    };
    completed(server.port)?;
    ensure!(
        total(server.port)? == 1_000,
        "the first build counts every event"
    );

    redis.stop();
    for _ in 0..5 {
        ensure!(
            total(server.port)? == 1_000,
            "reads keep working without Redis"
        );
    }

    redis.restart()?;
    health_becomes(server.port, 200)?;
    // Locks: a rebuild held running keeps its scope locked in Redis again.
    let blocker = RebuildBlocker::hold(&pg.url(), "status-counts", "day")?;
    let id = triggered(server.port, &body)?;
    let locks = std::process::Command::new("redis-cli")
        .args([
            "-u",
            &redis.url(),
            "--scan",
            "--pattern",
            "*recompute:lock:*",
        ])
        .output()
        .context("redis-cli")?;
    ensure!(
        String::from_utf8_lossy(&locks.stdout).lines().count() == 1,
        "the scope lock is taken in Redis again: {}",
        String::from_utf8_lossy(&locks.stdout)
    );
    let (status, _) = trigger(server.port, &body)?;
    ensure!(
        status == 409,
        "a second trigger of the busy scope is refused"
    );
    // Versions: new events, rebuilt, are read at once, not a cached result of the old version.
    sql.execute(
        "INSERT INTO analytics_events (tenant_id, event_id, source_id, entity_id, status, occurred_at)
         SELECT 1, 'late-' || i, s.id, 'entity-1', 'failed', date_trunc('day', now()) - interval '2 days'
         FROM generate_series(1, 10) AS i JOIN event_sources s ON s.tenant_id = 1 AND s.slug = 'stripe'",
    )?;
    blocker.release()?;
    reaches(server.port, &id, "completed", Duration::from_secs(60))?;
    ensure!(
        total(server.port)? == 1_010,
        "a completed run retires the cached result"
    );
    Ok(())
}

#[test]
fn stream_messages_wait_through_a_postgres_outage_and_land_once_when_it_is_back() -> Result<()> {
    if std::net::TcpStream::connect("127.0.0.1:4222").is_err() {
        ensure!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "NATS is required (CI) but unreachable on 127.0.0.1:4222"
        );
        return Ok(());
    }
    let pg = OwnPostgres::start()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (stream, prefix) = (format!("EVENTS_{id}"), format!("f{id}"));
    let env = environment(
        &pg,
        None,
        &[
            ("NATS_URL", "nats://127.0.0.1:4222"),
            ("NATS_STREAM", &stream),
            ("NATS_SUBJECT_PREFIX", &prefix),
            ("NATS_ACK_WAIT_SECS", "2"),
        ],
    );
    let env = pairs(&env);
    for args in [
        vec!["tenants", "create", "acme"],
        vec!["sources", "create", "--tenant", "acme", "shop"],
    ] {
        let output = run(BINARY, &env, &args)?;
        ensure!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let consumer = Process::spawn(BINARY, &env, &["consume"])?;
    // The consumer made the stream; nothing is stored while PostgreSQL is down.
    let nats = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let context = nats.block_on(async {
        let context =
            async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await?);
        context
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("{prefix}.>")],
                ..Default::default()
            })
            .await?;
        Ok::<_, anyhow::Error>(context)
    })?;
    // Once its durable consumer exists, the process has started (it connects to PostgreSQL
    // first).
    eventually(
        "the consumer starts",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            nats.block_on(async {
                let events = context.get_stream(&stream).await?;
                Ok(events.consumer_info("pg-analytics").await.ok().map(|_| ()))
            })
        },
    )
    .with_context(|| consumer.log())?;
    pg.stop_immediately()?;
    let at = format!("{}T00:00:00Z", time::OffsetDateTime::now_utc().date());
    nats.block_on(async {
        for m in 0..20 {
            let events: Vec<Value> = (0..10)
                .map(|n| json!({"event_id": format!("m{m}-{n}"), "source": "shop", "entity_id": "c-1", "status": "success", "occurred_at": at}))
                .collect();
            context
                .publish(format!("{prefix}.acme"), json!({ "events": events }).to_string().into())
                .await?
                .await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    eventually(
        "the consumer hands messages back while PostgreSQL is down",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            Ok(consumer
                .log()
                .contains("it will be delivered again")
                .then_some(()))
        },
    )
    .with_context(|| consumer.log())?;
    pg.start_server()?;

    let sql = Sql::connect(&pg.url())?;
    eventually(
        "every event lands once PostgreSQL is back",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            let stored = sql.count("SELECT count(*) FROM analytics_events", &[])?;
            let distinct =
                sql.count("SELECT count(DISTINCT event_id) FROM analytics_events", &[])?;
            ensure!(stored == distinct, "{stored} events, {distinct} ids");
            Ok((stored == 200).then_some(()))
        },
    )
    .with_context(|| consumer.log())?;
    Ok(())
}

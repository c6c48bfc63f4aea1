//! `pg-analytics-bench`: measures the service against the physical limits of the same machine,
//! in one run, and reports ratios (see docs/benchmarks.md).
//!
//! It creates a fresh database on the PostgreSQL it is pointed at, loads a generated data set,
//! starts the release binary against it (and Redis), drives it with `wrk` and
//! samples the server's memory. Nothing here is a test: figures vary between machines and runs.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use pg_analytics::probe::request as http;
use serde_json::{Value, json};

/// Benchmark pg-analytics against COPY, bare SQL and a trivial endpoint of the same binary.
#[derive(Debug, Parser)]
#[command(name = "pg-analytics-bench")]
struct Args {
    /// A PostgreSQL URL with the right to create databases.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    admin_url: String,
    /// Redis for the service's cache and locks.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Events of the generated data set (365 days, 3 sources, 10,000 entities).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// 100,000 events and short phases.
    #[arg(long)]
    quick: bool,
    /// The service binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/pg-analytics")]
    binary: PathBuf,
    /// Where to write the results.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Leaves out the refresh and freshness phases: to measure, side by side, a binary from
    /// before incremental runs.
    #[arg(long)]
    without_freshness: bool,
    /// NATS with JetStream, for the stream ingestion phase.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
}

const KEY: &str = "bench-management-key-0123456789";

/// The generated data set: event i has source i % 3, entity i % 10000, a status by i, one of
/// four names by (i / 3) % 4, one of four channels by (i / 5) % 4 (none for every 9th), a
/// user of 100,000, skewed (user 100,000 u² for u spread evenly over [0, 1) by i: a few hot
/// users, a long tail), a page view a path of 500, skewed harder (path 500 v³ for another
/// such v: a few hot pages, a long tail), and lies i % 365 days and i % 24 hours before now.
const LOAD: &str = "
    INSERT INTO analytics_events (tenant_id, event_id, event_name, source_id, entity_id, status, processing_ms, amount_cents, occurred_at, properties, user_id)
    SELECT 1, 'b-' || i, (ARRAY['page_view', 'purchase', 'signup', 'click'])[(i / 3) % 4 + 1],
           s.id, 'entity-' || (i % 10000 + 1),
           CASE WHEN i % 17 = 0 THEN 'failed' WHEN i % 11 = 0 THEN 'pending' ELSE 'success' END,
           80 + i % 700, 100 + (i * 37) % 100000,
           date_trunc('hour', now() - make_interval(days => (i % 365)::int, hours => (i % 24)::int)),
           CASE WHEN i % 9 = 0 THEN jsonb_build_object('batch', i / 1000)
                ELSE jsonb_build_object('batch', i / 1000,
                                        'channel', (ARRAY['web', 'ios', 'android', 'email'])[(i / 5) % 4 + 1])
           END
           || CASE WHEN (i / 3) % 4 = 0
                   THEN jsonb_build_object('path', '/p/' || floor(500 * (((i * 2246822519) % 4294967296) / 4294967296.0) ^ 3)::int8)
                   ELSE '{}'::jsonb
              END,
           'user-' || floor(100000 * (((i * 2654435761) % 4294967296) / 4294967296.0) ^ 2)::int8
    FROM generate_series($1::int8, $2::int8) AS i
    JOIN event_sources s ON s.tenant_id = 1 AND s.slug = (ARRAY['stripe', 'adyen', 'paypal'])[i % 3 + 1]";

const BARE_TABLE: &str = "
    CREATE TABLE bare_snapshots (
        id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id        BIGINT NOT NULL,
        report_slug      TEXT NOT NULL,
        window_name      TEXT NOT NULL,
        bucket_start     DATE NOT NULL,
        dimension_key    TEXT NOT NULL,
        dimension_value  TEXT NOT NULL,
        metric_name      TEXT NOT NULL,
        metric_value     BIGINT NOT NULL,
        computed_at      TIMESTAMPTZ NOT NULL,
        run_id           UUID,
        created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (tenant_id, report_slug, window_name, bucket_start, dimension_key, dimension_value, metric_name)
    );
    CREATE INDEX ON bare_snapshots (run_id);";

/// The rollup of the rollup phases: events and amounts by event name and channel, by day and
/// by week.
const ROLLUP: &str = r#"{
    "slug": "bench-rollup",
    "measures": [{"name": "events", "kind": "count"},
                 {"name": "amount", "kind": "sum", "field": "amount_cents"}],
    "dimensions": [{"field": "event_name"}, {"field": "properties.channel"}],
    "windows": [{"window": "day", "retention_days": 366}, {"window": "week", "retention_days": 371}],
    "cache_ttl_seconds": 0,
    "is_public": true
}"#;

/// The rollups of the distinct phase: events and unique users by day, in one row per day and
/// by channel; with weeks and months, which reads over long ranges merge instead of days.
const TRAFFIC: &str = r#"{
    "slug": "bench-traffic",
    "measures": [{"name": "events", "kind": "count"},
                 {"name": "unique_users", "kind": "distinct", "field": "user_id"}],
    "windows": [{"window": "day", "retention_days": 366}, {"window": "week", "retention_days": 371},
                {"window": "month", "retention_days": 397}],
    "cache_ttl_seconds": 0,
    "is_public": true
}"#;
const UNIQUES: &str = r#"{
    "slug": "bench-uniques",
    "measures": [{"name": "events", "kind": "count"},
                 {"name": "unique_users", "kind": "distinct", "field": "user_id"}],
    "dimensions": [{"field": "properties.channel"}],
    "windows": [{"window": "day", "retention_days": 366}, {"window": "week", "retention_days": 371},
                {"window": "month", "retention_days": 397}],
    "cache_ttl_seconds": 0,
    "is_public": true
}"#;

/// The bare equivalent of [`ROLLUP`]'s rows: a table indexed on its natural key.
const BARE_ROLLUP_TABLE: &str = "
    CREATE TABLE bare_rollup (
        window_name  TEXT NOT NULL,
        bucket_start DATE NOT NULL,
        event_name   TEXT,
        channel      TEXT,
        events       BIGINT NOT NULL,
        amount       BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX ON bare_rollup (window_name, bucket_start, event_name, channel) NULLS NOT DISTINCT;";

/// How many rows the service's rollup and the bare SQL's differ by, in either direction.
const SAME_ROLLUP_ROWS: &str = "
    WITH service AS (
        SELECT window_name::text, bucket_start, d1 AS event_name,
               d2 AS channel, measure_values[1] AS events, measure_values[2] AS amount
        FROM rollup_snapshots WHERE report_slug = 'bench-rollup'
    ), bare AS (
        SELECT window_name, bucket_start, event_name, channel, events, amount FROM bare_rollup
    )
    SELECT (SELECT count(*) FROM (TABLE service EXCEPT ALL TABLE bare) AS extra)
         + (SELECT count(*) FROM (TABLE bare EXCEPT ALL TABLE service) AS missing)";

/// How many rows the service's snapshots and the bare SQL's differ by, in either direction:
/// both recomputes must write the same rows.
const SAME_ROWS: &str = "
    WITH service AS (
        SELECT report_slug::text COLLATE \"C\", window_name::text COLLATE \"C\", bucket_start,
               CASE report_slug WHEN 'volume-by-period' THEN 'source'
                                WHEN 'status-counts' THEN 'status'
                                ELSE 'entity_id' END COLLATE \"C\",
               d1::text COLLATE \"C\", 'event_count' COLLATE \"C\",
               measure_values[1]
        FROM rollup_snapshots
        WHERE report_slug IN ('volume-by-period', 'status-counts', 'top-entities')
    ), bare AS (
        SELECT report_slug COLLATE \"C\", window_name COLLATE \"C\", bucket_start,
               dimension_key COLLATE \"C\", dimension_value COLLATE \"C\",
               metric_name COLLATE \"C\", metric_value
        FROM bare_snapshots
    )
    SELECT (SELECT count(*) FROM (TABLE service EXCEPT ALL TABLE bare) AS extra)
         + (SELECT count(*) FROM (TABLE bare EXCEPT ALL TABLE service) AS missing)";

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.events = args.events.min(100_000);
    }
    ensure!(
        args.binary.exists(),
        "{} not found: run `cargo build --release` first",
        args.binary.display()
    );
    ensure!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk not found: install it (Debian package wrk)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let name = format!("pga_bench_{}", std::process::id());
    let (admin, connection) =
        tokio_postgres::connect(&args.admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let url = with_database(&args.admin_url, &name);
    let log = server_log(&args);
    let _ = std::fs::remove_file(&log);
    let outcome = measure(&args, &url).await;
    let warnings = std::fs::read_to_string(&log)
        .map(|text| text.lines().count())
        .unwrap_or(0);
    eprintln!(
        "the service logged {warnings} warnings or errors (see {})",
        log.display()
    );
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    outcome
}

fn with_database(url: &str, name: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
    format!("{prefix}/{name}")
}

/// Bare SQL: one INSERT … SELECT per report and window over every event, at the server's
/// default settings, into the snapshot table a straightforward implementation has (see
/// `BARE_TABLE`). Returns the seconds taken.
async fn bare_recompute(pool: &deadpool_postgres::Pool) -> Result<f64> {
    let client = pool.get().await?;
    client.batch_execute("TRUNCATE bare_snapshots").await?;
    client.batch_execute("CHECKPOINT").await?;
    let started = Instant::now();
    for (report, key, value, join) in [
        (
            "volume-by-period",
            "source",
            "s.slug",
            "JOIN event_sources s ON s.id = e.source_id",
        ),
        ("status-counts", "status", "e.status", ""),
        ("top-entities", "entity_id", "e.entity_id", ""),
    ] {
        for window in ["day", "week"] {
            let sql = format!(
                "INSERT INTO bare_snapshots (tenant_id, report_slug, window_name, bucket_start, dimension_key, dimension_value,
                                             metric_name, metric_value, computed_at)
                 SELECT 1, '{report}', '{window}', date_trunc('{window}', e.occurred_at AT TIME ZONE 'UTC')::date, '{key}', {value},
                        'event_count', count(*), now()
                 FROM analytics_events e {join} WHERE e.tenant_id = 1 GROUP BY 4, 6"
            );
            client.batch_execute(&sql).await?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The bare rollup: one plain `INSERT … SELECT … GROUP BY` per window over every event into
/// an indexed table. Returns the seconds taken.
async fn bare_rollup(pool: &deadpool_postgres::Pool) -> Result<f64> {
    let client = pool.get().await?;
    client.batch_execute("TRUNCATE bare_rollup").await?;
    client.batch_execute("CHECKPOINT").await?;
    let started = Instant::now();
    for window in ["day", "week"] {
        client
            .batch_execute(&format!(
                "INSERT INTO bare_rollup (window_name, bucket_start, event_name, channel, events, amount)
                 SELECT '{window}', date_trunc('{window}', occurred_at AT TIME ZONE 'UTC')::date, event_name,
                        properties ->> 'channel', count(*), sum(amount_cents)
                 FROM analytics_events WHERE tenant_id = 1 GROUP BY 2, 3, 4"
            ))
            .await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The rollup built by the service on `port`: defined through the API, both windows built
/// by its backfill (queued together, so one pass over the events serves both), from the
/// definition to both runs completed. The definition is deleted first, and its rows with it,
/// as the bare side's table is emptied. Returns the seconds taken.
async fn service_rollup(pool: &deadpool_postgres::Pool, port: u16) -> Result<f64> {
    let (status, deleted) = http(
        port,
        "DELETE",
        "/api/v1/reports/bench-rollup",
        &[("X-Management-Key", KEY)],
        None,
    )?;
    ensure!(
        status == 204 || status == 404,
        "delete the rollup: {status} {deleted}"
    );
    let client = pool.get().await?;
    client.batch_execute("CHECKPOINT").await?;
    let started = Instant::now();
    define_rollup(port)?;
    Ok(started.elapsed().as_secs_f64())
}

/// Defines the bench's rollup through the API on `port` and waits for its backfill runs.
fn define_rollup(port: u16) -> Result<()> {
    define(port, ROLLUP, 2)
}

/// Defines `definition` through the API on `port` and waits for its `runs` backfill runs.
fn define(port: u16, definition: &str, runs: usize) -> Result<()> {
    let definition: Value = serde_json::from_str(definition)?;
    let (status, created) = http(
        port,
        "POST",
        "/api/v1/reports",
        &[("X-Management-Key", KEY)],
        Some(&definition),
    )?;
    ensure!(status == 201, "define the rollup: {created}");
    let backfills: Vec<String> = created["data"]["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|run| run["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        backfills.len() == runs,
        "a backfill run per window: {created}"
    );
    wait_for_runs(port, &backfills)
}

/// The rollup rebuilt by bare SQL and by the service, twice each, alternating; the faster pass
/// of each, in seconds, once both wrote the same rows.
async fn rollup_passes(
    pool: &deadpool_postgres::Pool,
    port: u16,
    label: &str,
) -> Result<(f64, f64)> {
    let (mut bare_s, mut service_s) = (f64::INFINITY, f64::INFINITY);
    for pass in 1..=2 {
        let bare = bare_rollup(pool).await?;
        let service = service_rollup(pool, port).await?;
        eprintln!("rollup pass {pass} ({label}): bare SQL {bare:.2}s, service {service:.2}s");
        bare_s = bare_s.min(bare);
        service_s = service_s.min(service);
    }
    let differences: i64 = pool
        .get()
        .await?
        .query_one(SAME_ROLLUP_ROWS, &[])
        .await?
        .get(0);
    ensure!(
        differences == 0,
        "{differences} rollup rows of the service differ from the bare SQL's"
    );
    Ok((bare_s, service_s))
}

/// Empties `table`, then triggers a run of each (report, window) of `scopes` over every event
/// through the API on `port` and waits for all of them to complete. Returns the seconds from
/// the first trigger to the last completion.
async fn service_rebuild(
    pool: &deadpool_postgres::Pool,
    port: u16,
    table: &str,
    scopes: &[(&str, &str)],
) -> Result<f64> {
    let client = pool.get().await?;
    client.batch_execute(&format!("TRUNCATE {table}")).await?;
    client.batch_execute("CHECKPOINT").await?;
    let (first_day, last_day) = event_days(&client).await?;
    let started = Instant::now();
    let mut ids = Vec::new();
    for (report, window) in scopes {
        let body = json!({"report_slug": report, "window": window, "date_from": first_day, "date_to": last_day});
        let (status, run) = http(
            port,
            "POST",
            "/api/v1/recomputations",
            &[("X-Management-Key", KEY)],
            Some(&body),
        )?;
        ensure!(status == 202, "trigger {report} {window}: {run}");
        ids.push(run["data"]["id"].as_str().context("run id")?.to_owned());
    }
    wait_for_runs(port, &ids)?;
    Ok(started.elapsed().as_secs_f64())
}

/// The UTC days of the first and the last event.
async fn event_days(client: &deadpool_postgres::Client) -> Result<(String, String)> {
    let days = client
        .query_one(
            "SELECT min(occurred_at AT TIME ZONE 'UTC')::date::text,
                    max(occurred_at AT TIME ZONE 'UTC')::date::text
             FROM analytics_events",
            &[],
        )
        .await?;
    Ok((days.get(0), days.get(1)))
}

/// Waits until every run of `ids` has completed; an error if one failed.
fn wait_for_runs(port: u16, ids: &[String]) -> Result<()> {
    for id in ids {
        loop {
            let (_, run) = http(
                port,
                "GET",
                &format!("/api/v1/recomputations/{id}"),
                &[("X-Management-Key", KEY)],
                None,
            )?;
            match run["data"]["status"].as_str() {
                Some("completed") => break,
                Some("failed") => bail!("run {id} failed: {run}"),
                // Often enough that polling adds little to the service's measured time.
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    Ok(())
}

/// The windows of the refresh phase: the built-in reports' six and the bench rollup's two.
const REFRESHED: [(&str, &str); 8] = [
    ("volume-by-period", "day"),
    ("volume-by-period", "week"),
    ("status-counts", "day"),
    ("status-counts", "week"),
    ("top-entities", "day"),
    ("top-entities", "week"),
    ("bench-rollup", "day"),
    ("bench-rollup", "week"),
];

/// Late events of the refresh phase, in requests of 1,000.
const LATE_EVENTS: usize = 10_000;

/// Triggers a run of each (report, window) of `scopes` in `mode` over `from..=to` through the
/// API on `port` and waits for all of them to complete; the seconds from the first trigger
/// to the last completion.
fn service_runs(
    port: u16,
    scopes: &[(&str, &str)],
    mode: &str,
    from: &str,
    to: &str,
) -> Result<f64> {
    let started = Instant::now();
    let mut ids = Vec::new();
    for (report, window) in scopes {
        let body = json!({"report_slug": report, "window": window, "date_from": from,
                          "date_to": to, "mode": mode});
        let (status, run) = http(
            port,
            "POST",
            "/api/v1/recomputations",
            &[("X-Management-Key", KEY)],
            Some(&body),
        )?;
        ensure!(status == 202, "trigger {report} {window} ({mode}): {run}");
        ids.push(run["data"]["id"].as_str().context("run id")?.to_owned());
    }
    wait_for_runs(port, &ids)?;
    Ok(started.elapsed().as_secs_f64())
}

/// [`LATE_EVENTS`] events spread over `days`, stored through `POST /events/bulk` with `key`.
fn late_events(port: u16, key: &str, days: &[time::Date]) -> Result<()> {
    const NAMES: [&str; 4] = ["page_view", "purchase", "signup", "refund"];
    const CHANNELS: [&str; 4] = ["web", "ios", "android", "email"];
    for request in 0..LATE_EVENTS / 1_000 {
        let events: Vec<Value> = (0..1_000)
            .map(|i| {
                let n = request * 1_000 + i;
                let day = days[n % days.len()];
                let source = ["stripe", "adyen", "paypal"][n % 3];
                let status = ["success", "failed", "pending"][n % 3];
                json!({
                    "event_id": format!("late-{n}"),
                    "event_name": NAMES[n % 4],
                    "user_id": format!("user-{}", n % 5_000 + 1),
                    "source": source,
                    "entity_id": format!("entity-{}", n % 10_000 + 1),
                    "status": status,
                    "occurred_at": format!("{day}T{:02}:{:02}:00Z", n % 24, n % 60),
                    "amount_cents": n,
                    "properties": {"channel": CHANNELS[(n / 4) % 4]},
                })
            })
            .collect();
        let (status, reply) = http(
            port,
            "POST",
            "/api/v1/events/bulk",
            &[("X-API-Key", key)],
            Some(&json!({ "events": events })),
        )?;
        ensure!(
            status == 201 && reply["data"]["counts"]["created"] == 1_000,
            "late events: {status} {reply}"
        );
    }
    Ok(())
}

/// The totals the refreshed windows hold against the events: every rebuilt window must count
/// every event once.
const REFRESHED_TOTALS: &str = "
    SELECT report_slug, window_name, sum(measure_values[1])::int8
    FROM rollup_snapshots
    WHERE report_slug IN ('volume-by-period', 'status-counts', 'top-entities', 'bench-rollup')
    GROUP BY 1, 2";

/// The refresh phase: the windows of [`REFRESHED`] rebuilt in full over every event, then
/// [`LATE_EVENTS`] late events over three days of the year, then the same windows refreshed
/// incrementally straight away (no vacuum in between, as a scheduler would). Returns the
/// seconds of the full rebuild and of the refresh, once every window counts every event.
async fn refresh_phase(pool: &deadpool_postgres::Pool, port: u16, key: &str) -> Result<Refresh> {
    let client = pool.get().await?;
    let (first_day, last_day) = event_days(&client).await?;
    let full_s = service_runs(port, &REFRESHED, "full", &first_day, &last_day)?;
    // Inside every window's retention (top entities keep 180 days of day buckets): a late
    // event older than its window's retention dirties nothing there, by design.
    let last = time::Date::parse(
        &last_day,
        &time::format_description::well_known::Iso8601::DATE,
    )?;
    let days = [150, 90, 30].map(|n| last - time::Duration::days(n));
    late_events(port, key, &days)?;
    let incremental_s = service_runs(port, &REFRESHED, "incremental", &first_day, &last_day)?;
    let events: i64 = client
        .query_one("SELECT count(*) FROM analytics_events", &[])
        .await?
        .get(0);
    for row in client.query(REFRESHED_TOTALS, &[]).await? {
        let (report, window, total): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        // Top entities and statuses keep every event too; the rollup counts every event.
        ensure!(
            total == events,
            "{report} by {window} counts {total} of {events} events after the refresh"
        );
    }
    let dirty: i64 = client
        .query_one(
            "SELECT count(*) FROM dirty_buckets
             WHERE report_slug IN ('volume-by-period', 'status-counts', 'top-entities', 'bench-rollup')",
            &[],
        )
        .await?
        .get(0);
    ensure!(
        dirty == 0,
        "{dirty} buckets are still dirty after the refresh"
    );
    // What each pass wrote, from the runs' summaries: the refresh rewrites whole buckets, so
    // its floor is the rows of the buckets the late events touch.
    let written = client
        .query(
            "SELECT mode, sum((summary->>'rows_inserted')::int8)::int8 FROM (
                 SELECT mode, summary FROM recompute_runs ORDER BY requested_at DESC LIMIT 16
             ) AS phase GROUP BY mode",
            &[],
        )
        .await?;
    let rows_of = |mode: &str| -> i64 {
        written
            .iter()
            .find(|row| row.get::<_, String>(0) == mode)
            .map_or(0, |row| row.get(1))
    };
    Ok(Refresh {
        full_s,
        incremental_s,
        full_rows: rows_of("full"),
        incremental_rows: rows_of("incremental"),
    })
}

/// What the refresh phase measured.
struct Refresh {
    full_s: f64,
    incremental_s: f64,
    full_rows: i64,
    incremental_rows: i64,
}

/// Bulk requests of 1,000 events dated a few seconds ago (so in the current day's buckets),
/// paced to `rows_per_s` over `seconds` by 8 threads; returns the rows stored per second.
fn paced_ingest(port: u16, key: &str, rows_per_s: f64, seconds: u64, tag: &str) -> Result<f64> {
    const THREADS: u64 = 8;
    let interval = Duration::from_secs_f64(1_000.0 * THREADS as f64 / rows_per_s.max(1.0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (key, tag) = (key.to_owned(), tag.to_owned());
            std::thread::spawn(move || -> Result<u64> {
                let mut created = 0;
                for k in 0_u64.. {
                    // Staggered, so the threads' requests spread over each interval.
                    let due = started + interval * u32::try_from(k).unwrap_or(u32::MAX)
                        + interval / u32::try_from(THREADS).unwrap_or(1) * u32::try_from(thread).unwrap_or(0);
                    if due >= deadline {
                        break;
                    }
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let at = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
                    let at = at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default();
                    let events: Vec<Value> = (0..1_000)
                        .map(|i| {
                            let source = ["stripe", "adyen", "paypal"][i % 3];
                            json!({"event_id": format!("{tag}-{thread}-{k}-{i}"), "source": source,
                                   "entity_id": format!("entity-{}", i % 10_000 + 1), "status": "success",
                                   "user_id": format!("user-{}", i % 5_000 + 1),
                                   "occurred_at": at, "amount_cents": i, "processing_ms": 90,
                                   "properties": {"channel": "web", "path": "/pricing"}})
                        })
                        .collect();
                    let (status, reply) = http(
                        port,
                        "POST",
                        "/api/v1/events/bulk",
                        &[("X-API-Key", &key)],
                        Some(&json!({ "events": events })),
                    )?;
                    ensure!(status == 201, "paced ingest: {status} {reply}");
                    created += reply["data"]["counts"]["created"].as_u64().unwrap_or(0);
                }
                Ok(created)
            })
        })
        .collect();
    let mut created = 0;
    for handle in handles {
        created += handle
            .join()
            .map_err(|_| anyhow::anyhow!("an ingest thread panicked"))??;
    }
    Ok(created as f64 / started.elapsed().as_secs_f64())
}

/// How long the oldest change the buckets holding today do not count has waited, in seconds
/// (0 when they count every event): the `lag_seconds` a read of today would show.
const CURRENT_LAG: &str = "
    SELECT coalesce(extract(epoch FROM clock_timestamp() - min(first_marked_at)), 0)::float8
    FROM dirty_buckets
    WHERE tenant_id = 1
      AND ((window_name IN ('hour', 'day') AND bucket_start = current_date)
        OR (window_name = 'week' AND bucket_start = date_trunc('week', current_date)::date)
        OR (window_name = 'month' AND bucket_start = date_trunc('month', current_date)::date))";

/// What the freshness phase measured.
struct Freshness {
    lag_p95_s: f64,
    lag_max_s: f64,
    rows_per_s: f64,
    rows_per_s_unscheduled: f64,
}

/// The freshness phase: ingestion paced to `rows_per_s` for `seconds`, first on a process
/// whose scheduler never refreshes, then on one with `FRESHNESS_TARGET_SECS=5`, sampling the
/// current day's lag twice a second during the second.
async fn freshness_phase(
    args: &Args,
    url: &str,
    pool: &deadpool_postgres::Pool,
    key: &str,
    rows_per_s: f64,
    seconds: u64,
) -> Result<Freshness> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Server::start_with_env(args, url, port, true, &[])?;
    server.wait_ready()?;
    let rows_per_s_unscheduled = paced_ingest(port, key, rows_per_s, seconds, "unscheduled")?;
    server.stop();

    let mut server = Server::start_with_env(
        args,
        url,
        port,
        true,
        &[
            ("FRESHNESS_TARGET_SECS", "5"),
            ("REFRESH_INTERVAL_OVERRIDE_SECS", "86400"),
        ],
    )?;
    server.wait_ready()?;
    // The scheduler first refreshes what the unscheduled ingest left dirty; then the load
    // starts.
    let client = pool.get().await?;
    for waited in 0.. {
        let lag: f64 = client.query_one(CURRENT_LAG, &[]).await?.get(0);
        if lag == 0.0 {
            break;
        }
        ensure!(
            waited < 600,
            "the scheduler did not catch up within a minute: lag {lag:.1}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    let sampler_pool = pool.clone();
    let sampling = tokio::spawn(async move {
        let client = sampler_pool.get().await?;
        let mut lags = Vec::new();
        loop {
            let lag: f64 = client.query_one(CURRENT_LAG, &[]).await?.get(0);
            lags.push(lag);
            if lags.len() as u64 >= seconds * 2 {
                return Ok::<Vec<f64>, anyhow::Error>(lags);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let (key, tag) = (key.to_owned(), "scheduled");
    let rows =
        tokio::task::spawn_blocking(move || paced_ingest(port, &key, rows_per_s, seconds, tag))
            .await??;
    let mut lags = sampling.await??;
    server.stop();
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).clamp(1, lags.len()) - 1];
    Ok(Freshness {
        lag_p95_s: at(0.95),
        lag_max_s: at(1.0),
        rows_per_s: rows,
        rows_per_s_unscheduled,
    })
}

/// Full recompute through the service on `port`: every report × window over every event (the
/// UTC days of the first and the last), from triggering the runs to all of them completed.
/// Returns the seconds taken.
async fn service_recompute(pool: &deadpool_postgres::Pool, port: u16) -> Result<f64> {
    let mut scopes = Vec::new();
    for report in ["volume-by-period", "status-counts", "top-entities"] {
        for window in ["day", "week"] {
            scopes.push((report, window));
        }
    }
    service_rebuild(pool, port, "rollup_snapshots", &scopes).await
}

async fn measure(args: &Args, url: &str) -> Result<()> {
    let pool = postgres_adapter::connect(&postgres_adapter::PostgresConfig {
        url: url.to_owned(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(3600),
    })?;
    postgres_adapter::migrate(&pool).await?;
    let client = pool.get().await?;
    let started = Instant::now();
    let step = 250_000;
    let mut first = 1;
    while first <= args.events {
        let last = (first + step - 1).min(args.events);
        client
            .execute(LOAD, &[&(first as i64), &(last as i64)])
            .await?;
        first = last + 1;
    }
    // Statistics, as a bulk load ends; no vacuum yet, as straight after one in production.
    client.batch_execute("ANALYZE").await?;
    eprintln!(
        "loaded {} events in {:.1}s",
        args.events,
        started.elapsed().as_secs_f64()
    );

    let mut results: BTreeMap<&str, Value> = BTreeMap::new();
    results.insert("events", json!(args.events));
    client.batch_execute(BARE_TABLE).await?;
    client.batch_execute(BARE_ROLLUP_TABLE).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Server::start(args, url, port)?;
    server.wait_ready()?;
    let base = format!("http://127.0.0.1:{port}/api/v1");

    // The rollup phases on the table as loaded: a report defined through the API (its
    // backfill first, as a warm-up), then built by the service and by bare SQL.
    define_rollup(port)?;
    let (bare_rollup_unvacuumed_s, service_rollup_unvacuumed_s) =
        rollup_passes(&pool, port, "unvacuumed").await?;
    results.insert(
        "recompute.rollup_bare_sql_unvacuumed_s",
        json!(bare_rollup_unvacuumed_s),
    );
    results.insert(
        "recompute.rollup_service_unvacuumed_s",
        json!(service_rollup_unvacuumed_s),
    );

    // Every page of the events visible to all, so recomputes may read the index alone.
    client.batch_execute("VACUUM ANALYZE").await?;
    drop(client);

    // The recompute phases. Both start from the same state: an empty snapshot table and no
    // checkpoint owed from earlier writes. Each runs twice, alternating, and the faster pass
    // of each is compared: on a shared machine one stall would otherwise decide the ratio.
    let (mut bare_s, mut service_s) = (f64::INFINITY, f64::INFINITY);
    for pass in 1..=2 {
        let bare = bare_recompute(&pool).await?;
        let service = service_recompute(&pool, port).await?;
        eprintln!("recompute pass {pass}: bare SQL {bare:.1}s, service {service:.1}s");
        bare_s = bare_s.min(bare);
        service_s = service_s.min(service);
    }
    results.insert("recompute.bare_sql_s", json!(bare_s));
    results.insert("recompute.service_s", json!(service_s));
    let differences: i64 = pool.get().await?.query_one(SAME_ROWS, &[]).await?.get(0);
    ensure!(
        differences == 0,
        "{differences} snapshot rows of the service differ from the bare SQL's"
    );

    // The rollup phases again, on the vacuumed table.
    let (bare_rollup_s, service_rollup_s) = rollup_passes(&pool, port, "vacuumed").await?;
    results.insert("recompute.rollup_bare_sql_s", json!(bare_rollup_s));
    results.insert("recompute.rollup_service_s", json!(service_rollup_s));

    // Incremental refresh after late events against the full rebuild of the same windows.
    let key = server.api_key(args, url)?;
    let refresh = if args.without_freshness {
        None
    } else {
        let refresh = refresh_phase(&pool, port, &key).await?;
        eprintln!(
            "refresh: full {:.2}s ({} rows), incremental {:.3}s ({} rows)",
            refresh.full_s, refresh.full_rows, refresh.incremental_s, refresh.incremental_rows
        );
        results.insert("refresh.full_s", json!(refresh.full_s));
        results.insert("refresh.incremental_s", json!(refresh.incremental_s));
        results.insert("refresh.full_rows", json!(refresh.full_rows));
        results.insert("refresh.incremental_rows", json!(refresh.incremental_rows));
        Some(refresh)
    };

    // Reads of the year up to today.
    let today = time::OffsetDateTime::now_utc().date();
    let from = today - time::Duration::days(364);

    // Reads, each phase `seconds` long with 32 connections.
    let seconds = if args.quick { 5 } else { 15 };
    let trivial = wrk(
        &format!("{base}/bench-trivial-not-found"),
        seconds,
        32,
        None,
    )?;
    let report = format!(
        "{base}/reports/volume-by-period/run?date_from={from}&date_to={today}&limit={SNAPSHOT_LIMIT}"
    );
    let path = report.trim_start_matches(&format!("http://127.0.0.1:{port}"));
    let (_, first) = http(port, "GET", path, &[], None)?;
    let (_, second) = http(port, "GET", path, &[], None)?;
    ensure!(
        first["data"]["row_count"].as_u64() > Some(0) && second["data"]["cache_hit"] == true,
        "the report read is not cached: {second}"
    );
    let hit = wrk(&report, seconds, 32, None)?;
    ensure!(hit.failed == 0, "{} cache reads failed", hit.failed);
    let rss_read = server.rss_peak_mib()?;
    // The same cache hits on fresh processes, without metrics and with them in turn; each
    // side's figure is the mean of its two phases, so a drift of the machine during the run
    // falls on both, and neither side is the long-lived process of the phases before.
    let mut with_metrics = Vec::new();
    let mut without_metrics = Vec::new();
    for metrics in ["false", "true", "false", "true"] {
        server.stop();
        server = Server::start_with_env(
            args,
            url,
            port,
            true,
            &[
                ("REFRESH_INTERVAL_OVERRIDE_SECS", "86400"),
                ("METRICS_ENABLED", metrics),
            ],
        )?;
        server.wait_ready()?;
        http(port, "GET", path, &[], None)?;
        let phase = wrk(&report, seconds, 32, None)?;
        ensure!(phase.failed == 0, "{} cache reads failed", phase.failed);
        if metrics == "true" {
            with_metrics.push(phase.rps);
        } else {
            without_metrics.push(phase.rps);
        }
    }
    let mean = |rps: &[f64]| rps.iter().sum::<f64>() / rps.len() as f64;
    let (hit_metrics_rps, hit_no_metrics_rps) = (mean(&with_metrics), mean(&without_metrics));
    eprintln!(
        "cache hits: {hit_metrics_rps:.0}/s with metrics ({with_metrics:.0?}), {hit_no_metrics_rps:.0}/s without ({without_metrics:.0?})"
    );
    let miss_pool = postgres_adapter::connect(&postgres_adapter::PostgresConfig {
        url: url.to_owned(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(600),
    })?;
    let miss_client = miss_pool.get().await?;
    // With a TTL of 0 every read goes to the snapshots. Report definitions are held in
    // process for a minute, so the service is restarted to see the change.
    miss_client
        .batch_execute(
            "UPDATE report_definitions SET cache_ttl_seconds = 0 WHERE slug = 'volume-by-period'",
        )
        .await?;
    server.stop();
    server = Server::start(args, url, port)?;
    server.wait_ready()?;
    http(port, "GET", path, &[], None)?;
    let (_, uncached) = http(port, "GET", path, &[], None)?;
    ensure!(
        uncached["data"]["cache_hit"] == false,
        "the snapshot read is cached: {uncached}"
    );
    let snapshot = wrk(&report, seconds, 32, None)?;
    ensure!(
        snapshot.failed == 0,
        "{} snapshot reads failed",
        snapshot.failed
    );
    let rss_snapshot = server.rss_peak_mib()?;
    // The statement the service ran for each of those reads, by pgbench with as many clients.
    let snapshot_sql = pgbench_read(url, from, today, seconds)?;
    let raw = raw_reads(&miss_client, from, today, if args.quick { 20 } else { 50 }).await?;

    // Rollup reads: the top event names and channels of the year by week, from the rollup's
    // snapshots (its TTL is 0: every read is a snapshot read) and from the raw events.
    let top = format!(
        "{base}/reports/bench-rollup/run?window=week&date_from={from}&date_to={today}&group_by=event_name,channel&order=-events"
    );
    let top_path = top.trim_start_matches(&format!("http://127.0.0.1:{port}"));
    let (status, answer) = http(port, "GET", top_path, &[], None)?;
    ensure!(
        status == 200 && answer["data"]["cache_hit"] == false,
        "the rollup read: {status} {answer}"
    );
    let rollup_snapshot = wrk(&top, seconds, 32, None)?;
    ensure!(
        rollup_snapshot.failed == 0,
        "{} rollup reads failed",
        rollup_snapshot.failed
    );
    let rollup_raw = raw_rollup_reads(
        &miss_client,
        from,
        today,
        &answer,
        if args.quick { 10 } else { 20 },
    )
    .await?;
    // Unique users: over 30 and 365 days, from the sketches of a day rollup merged at read time
    // (its TTL is 0), and `count(DISTINCT user_id)` over the raw events; first, the error of
    // the estimates against the exact counts over 1, 7, 30 and 365 days, with and without a
    // dimension.
    define(port, TRAFFIC, 3)?;
    define(port, UNIQUES, 3)?;
    let max_rel_error = distinct_errors(port, &miss_client, today).await?;
    let mut distinct_rps = Vec::new();
    for days in [30, 365] {
        let start = today - time::Duration::days(days - 1);
        let uri =
            format!("{base}/reports/bench-traffic/run?date_from={start}&date_to={today}&group_by=");
        let served = wrk(&uri, seconds, 32, None)?;
        ensure!(
            served.failed == 0,
            "{} unique-user reads failed",
            served.failed
        );
        let raw =
            raw_distinct_reads(&miss_client, start, today, if args.quick { 3 } else { 5 }).await?;
        eprintln!(
            "unique users over {days} days: {:.0} reads/s from sketches, {raw:.2} from raw events",
            served.rps
        );
        distinct_rps.push((served.rps, raw));
    }
    results.insert("reads.distinct_30d_rps", json!(distinct_rps[0].0));
    results.insert("reads.distinct_30d_raw_rps", json!(distinct_rps[0].1));
    results.insert("reads.distinct_rps", json!(distinct_rps[1].0));
    results.insert("reads.distinct_raw_rps", json!(distinct_rps[1].1));
    results.insert("distinct.max_rel_error", json!(max_rel_error));

    results.insert("reads.trivial_rps", json!(trivial.rps));
    results.insert("reads.cache_hit_rps", json!(hit_metrics_rps));
    results.insert("reads.cache_hit_first_rps", json!(hit.rps));
    results.insert("reads.cache_hit_rps_no_metrics", json!(hit_no_metrics_rps));
    results.insert("reads.cache_hit_p50_ms", json!(hit.p50_ms));
    results.insert("reads.cache_hit_p99_ms", json!(hit.p99_ms));
    results.insert("reads.snapshot_rps", json!(snapshot.rps));
    results.insert("reads.snapshot_p50_ms", json!(snapshot.p50_ms));
    results.insert("reads.snapshot_p99_ms", json!(snapshot.p99_ms));
    results.insert("reads.raw_rps", json!(raw));
    results.insert("reads.snapshot_sql_tps", json!(snapshot_sql));
    results.insert("reads.rollup_snapshot_rps", json!(rollup_snapshot.rps));
    results.insert("reads.rollup_raw_rps", json!(rollup_raw));

    // Ingestion through HTTP (bulk, 1,000 events a request, server-assigned ids, 8
    // connections) against COPY of as many rows as HTTP stored.
    // Yesterday at 08:00: today's would be in the future before 07:55 UTC, and refused.
    let day = today.previous_day().context("a day before today")?;
    let bulk = bulk_body(day);
    let body_file = std::env::temp_dir().join(format!("pga-bench-bulk-{port}.json"));
    std::fs::write(&body_file, bulk.to_string())?;
    let ingest = wrk(
        &format!("{base}/events/bulk"),
        seconds,
        8,
        Some((&body_file, &key)),
    )?;
    let _ = std::fs::remove_file(&body_file);
    ensure!(ingest.failed == 0, "{} bulk requests failed", ingest.failed);
    let http_rows = ingest.rps * 1_000.0;
    let rss_ingest = server.rss_peak_mib()?;
    let copy_count = (http_rows * f64::from(seconds)).max(100_000.0) as u64;
    let copy_rows = copy_rows(url, copy_count, day)?;
    results.insert("ingest.http_rows_per_s", json!(http_rows));
    results.insert("ingest.copy_rows_per_s", json!(copy_rows));
    results.insert("rss_peak_mib", json!(rss_read.max(rss_ingest)));
    results.insert("rss_read_peak_mib", json!(rss_read.max(rss_snapshot)));
    results.insert("rss_ingest_peak_mib", json!(rss_ingest));
    server.stop();

    // Freshness under sustained ingestion at half the HTTP rate just measured.
    let freshness_seconds = if args.quick { 20 } else { 60 };
    let freshness = if args.without_freshness {
        None
    } else {
        let freshness =
            freshness_phase(args, url, &pool, &key, http_rows / 2.0, freshness_seconds).await?;
        eprintln!(
            "freshness: lag p95 {:.1}s (max {:.1}s) at {:.0} rows/s, {:.0} rows/s without the scheduler",
            freshness.lag_p95_s,
            freshness.lag_max_s,
            freshness.rows_per_s,
            freshness.rows_per_s_unscheduled
        );
        results.insert("freshness.lag_p95_s", json!(freshness.lag_p95_s));
        results.insert("freshness.lag_max_s", json!(freshness.lag_max_s));
        results.insert("freshness.ingest_rows_per_s", json!(freshness.rows_per_s));
        results.insert(
            "freshness.ingest_rows_per_s_unscheduled",
            json!(freshness.rows_per_s_unscheduled),
        );
        Some(freshness)
    };

    // Distinct reads: every request a different report read (a miss, then held by the
    // caches), on a fresh process, whose peak must stay within the caches' budgets plus a
    // fixed allowance; once with Redis (the near cache holds entries) and once without (the
    // in-process response cache does).
    miss_client
        .batch_execute(
            "UPDATE report_definitions SET cache_ttl_seconds = 120 WHERE slug = 'volume-by-period'",
        )
        .await?;
    let mut rss_distinct_by = Vec::new();
    for redis in [true, false] {
        let mut server = Server::start_with(args, url, port, redis)?;
        server.wait_ready()?;
        let distinct = distinct_reads(port, from, DISTINCT_READS, 4)?;
        ensure!(
            distinct.failed == 0,
            "{} of the distinct reads failed",
            distinct.failed
        );
        let rss = server.rss_peak_mib()?;
        server.stop();
        eprintln!(
            "{DISTINCT_READS} distinct reads {} Redis: {:.0} reads/s, peak {rss:.1} MiB",
            if redis { "with" } else { "without" },
            distinct.rps
        );
        rss_distinct_by.push(rss);
    }
    let (rss_distinct_redis, rss_distinct_memory) = (rss_distinct_by[0], rss_distinct_by[1]);
    let rss_distinct = rss_distinct_redis.max(rss_distinct_memory);
    results.insert("reads.distinct_count", json!(DISTINCT_READS));
    results.insert("rss_distinct_reads_mib", json!(rss_distinct));
    results.insert("rss_distinct_reads_redis_mib", json!(rss_distinct_redis));
    results.insert("rss_distinct_reads_memory_mib", json!(rss_distinct_memory));
    results.insert("rss_distinct_reads_budget_mib", json!(DISTINCT_BUDGET_MIB));

    // Stream ingestion: a backlog of bulk messages of 1,000 events (1,000 of them, 100 with
    // --quick) consumed by one `consume` process, against the HTTP rows/s measured above.
    let stream_messages = if args.quick { 100 } else { 1_000 };
    let stream = stream_phase(args, url, &pool, day, stream_messages).await?;
    eprintln!(
        "stream: {} events consumed at {:.0} rows/s (HTTP {:.0}), consumer peak {:.1} MiB",
        stream_messages * 1_000,
        stream.rows_per_s,
        http_rows,
        stream.rss_mib
    );
    results.insert("ingest.stream_rows_per_s", json!(stream.rows_per_s));
    results.insert("rss_stream_consumer_mib", json!(stream.rss_mib));

    let mut table = String::new();
    let row = |t: &mut String, name: &str, value: f64, against: f64, target: &str| {
        let _ = writeln!(
            t,
            "| {name} | {value:.1} | {:.2} | {target} |",
            value / against
        );
    };
    let _ = writeln!(
        table,
        "| measure | value | ratio | target |\n|---|---|---|---|"
    );
    row(
        &mut table,
        "ingest rows/s (HTTP bulk vs COPY)",
        http_rows,
        copy_rows,
        "≥ 0.5",
    );
    row(
        &mut table,
        "ingest rows/s (NATS JetStream consumer vs HTTP bulk)",
        stream.rows_per_s,
        http_rows,
        "≥ 0.8",
    );
    row(
        &mut table,
        "full recompute s (service vs bare SQL)",
        service_s,
        bare_s,
        "≤ 0.5",
    );
    row(
        &mut table,
        "rollup recompute s (service vs bare SQL)",
        service_rollup_s,
        bare_rollup_s,
        "≤ 0.5",
    );
    row(
        &mut table,
        "rollup recompute s, not vacuumed (service vs bare SQL)",
        service_rollup_unvacuumed_s,
        bare_rollup_unvacuumed_s,
        "≤ 0.5",
    );
    row(
        &mut table,
        "cache-hit reads/s (vs trivial endpoint)",
        hit.rps,
        trivial.rps,
        "≥ 0.7",
    );
    row(
        &mut table,
        "cache-hit reads/s, metrics on (vs METRICS_ENABLED=false)",
        hit_metrics_rps,
        hit_no_metrics_rps,
        "≥ 0.95",
    );
    row(
        &mut table,
        "snapshot reads/s (vs raw events)",
        snapshot.rps,
        raw,
        "≥ 20",
    );
    row(
        &mut table,
        "snapshot reads/s (vs its statement by pgbench)",
        snapshot.rps,
        snapshot_sql,
        "≥ 0.8",
    );
    row(
        &mut table,
        "rollup reads/s (vs raw events)",
        rollup_snapshot.rps,
        rollup_raw,
        "≥ 100",
    );
    row(
        &mut table,
        "unique users over 30 days, reads/s (vs count distinct)",
        distinct_rps[0].0,
        distinct_rps[0].1,
        "≥ 100",
    );
    row(
        &mut table,
        "unique users over 365 days, reads/s (vs count distinct)",
        distinct_rps[1].0,
        distinct_rps[1].1,
        "≥ 100",
    );
    if let Some(refresh) = &refresh {
        row(
            &mut table,
            "refresh s after 10,000 late events (full vs incremental)",
            refresh.full_s,
            refresh.incremental_s,
            "≥ 100",
        );
    }
    if let Some(freshness) = &freshness {
        row(
            &mut table,
            "ingest rows/s with FRESHNESS_TARGET_SECS=5 (vs without scheduler)",
            freshness.rows_per_s,
            freshness.rows_per_s_unscheduled,
            "≥ 0.8",
        );
        let _ = writeln!(
            table,
            "| freshness lag p95 s, FRESHNESS_TARGET_SECS=5 | {:.1} | | ≤ 10 |",
            freshness.lag_p95_s
        );
    }
    let _ = writeln!(
        table,
        "| unique users, largest relative error | {max_rel_error:.4} | | ≤ 0.02 |"
    );
    let _ = writeln!(
        table,
        "| server RSS peak MiB | {:.1} | | ≤ 100 |",
        rss_read.max(rss_ingest)
    );
    let _ = writeln!(
        table,
        "| RSS MiB after {DISTINCT_READS} distinct reads | {rss_distinct:.1} | {:.2} | ≤ 1 (budget {DISTINCT_BUDGET_MIB} MiB) |",
        rss_distinct / DISTINCT_BUDGET_MIB
    );
    let _ = writeln!(
        table,
        "\ncache hit p50 {:.2} ms, p99 {:.2} ms; snapshot p50 {:.2} ms, p99 {:.2} ms; trivial {:.0} req/s",
        hit.p50_ms, hit.p99_ms, snapshot.p50_ms, snapshot.p99_ms, trivial.rps
    );
    // The second server process serves the snapshot reads, then the ingest phase: its peak
    // before and after the ingest tells them apart.
    let _ = writeln!(
        table,
        "RSS peaks: {rss_read:.1} MiB over the recompute and hit reads, {rss_snapshot:.1} MiB over the snapshot reads, {rss_ingest:.1} MiB with the ingest after them"
    );
    {
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), "{table}")?;
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut object = serde_json::Map::new();
    for (name, value) in results {
        object.insert(name.to_owned(), value);
    }
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&Value::Object(object))?,
    )?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Distinct report reads the memory phase makes.
const DISTINCT_READS: u32 = 18_000;

/// The memory the distinct reads may take: the service's default cache budgets (32 MiB of
/// entries, `REDIS_LOCAL_CACHE_MB` with Redis or `RESPONSE_CACHE_MB` without, and
/// `REPORT_REPLAY_MB` 16) plus 40 MiB for everything else.
const DISTINCT_BUDGET_MIB: f64 = 32.0 + 16.0 + 40.0;

/// What a phase of requests gave.
struct Reads {
    rps: f64,
    failed: u64,
}

/// `count` reads of `volume-by-period` by source, each with its own range within the year
/// from `first_day` (a day offset and a length: no two alike), by `threads` clients at once.
fn distinct_reads(port: u16, first_day: time::Date, count: u32, threads: u32) -> Result<Reads> {
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut failed = 0u64;
                for i in (t..count).step_by(threads as usize) {
                    let from = first_day + time::Duration::days(i64::from(i % 300));
                    let to = from + time::Duration::days(30 + i64::from(i / 300));
                    let path = format!(
                        "/api/v1/reports/volume-by-period/run?breakdown=source&limit=100&date_from={from}&date_to={to}"
                    );
                    match http(port, "GET", &path, &[], None) {
                        Ok((200, _)) => {}
                        _ => failed += 1,
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for worker in workers {
        failed += worker
            .join()
            .map_err(|_| anyhow::anyhow!("a reader panicked"))?;
    }
    Ok(Reads {
        rps: f64::from(count) / started.elapsed().as_secs_f64(),
        failed,
    })
}

/// The same answer as the snapshot read, computed from the raw events on every request, by one
/// client issuing `per_client` queries in a row straight to PostgreSQL (no HTTP): requests per
/// second. Without HTTP and with one connection this flatters neither side exactly; the
/// benchmark notes say so.
async fn raw_reads(
    client: &deadpool_postgres::Client,
    from: time::Date,
    to: time::Date,
    per_client: u32,
) -> Result<f64> {
    let sql = "SELECT date_trunc('day', occurred_at AT TIME ZONE 'UTC')::date AS bucket, count(*)
               FROM analytics_events
               WHERE tenant_id = 1 AND occurred_at >= $1::date::timestamp AT TIME ZONE 'UTC'
                 AND occurred_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
               GROUP BY 1 ORDER BY 1 LIMIT 50";
    let started = Instant::now();
    for _ in 0..per_client {
        client.query(sql, &[&from, &to]).await?;
    }
    Ok(f64::from(per_client) / started.elapsed().as_secs_f64())
}

/// The rollup read's answer computed from the raw events on every request, as
/// [`raw_reads`] does: the same weeks (those that start inside the range), groups and order. Checks the first answer against
/// `served` (the service's), then returns requests per second.
async fn raw_rollup_reads(
    client: &deadpool_postgres::Client,
    from: time::Date,
    to: time::Date,
    served: &Value,
    per_client: u32,
) -> Result<f64> {
    let sql = "SELECT * FROM (
                   SELECT event_name,
                          CASE WHEN jsonb_typeof(properties -> 'channel') = 'string' THEN properties ->> 'channel' END AS channel,
                          count(*) AS events
                   FROM analytics_events
                   WHERE tenant_id = 1
                     AND occurred_at >= date_trunc('week', $1::date + 6)::date::timestamp AT TIME ZONE 'UTC'
                     AND occurred_at < (date_trunc('week', $2::date)::date + 7)::timestamp AT TIME ZONE 'UTC'
                   GROUP BY 1, 2
               ) AS grouped
               ORDER BY events DESC, event_name COLLATE \"C\", channel COLLATE \"C\" NULLS LAST
               LIMIT 50";
    let rows = client.query(sql, &[&from, &to]).await?;
    let raw: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({"event_name": row.get::<_, String>(0), "channel": row.get::<_, Option<String>>(1),
                   "events": row.get::<_, i64>(2)})
        })
        .collect();
    let service: Vec<Value> = served["data"]["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| json!({"event_name": row["event_name"], "channel": row["channel"], "events": row["events"]}))
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        !raw.is_empty() && raw == service,
        "the raw rollup read differs from the service's: {raw:?} against {service:?}"
    );
    let started = Instant::now();
    for _ in 0..per_client {
        client.query(sql, &[&from, &to]).await?;
    }
    Ok(f64::from(per_client) / started.elapsed().as_secs_f64())
}

/// The largest relative error of the unique users of `bench-traffic` and `bench-uniques`
/// against `count(DISTINCT user_id)` over the raw events, over 1, 7, 30 and 365 days ending
/// `today`: in one row (from each), and by channel.
async fn distinct_errors(
    port: u16,
    client: &deadpool_postgres::Client,
    today: time::Date,
) -> Result<f64> {
    const EXACT: &str = "
        SELECT channel, count(DISTINCT user_id)
        FROM (
            SELECT CASE WHEN jsonb_typeof(properties -> 'channel') = 'string' THEN properties ->> 'channel' END AS channel,
                   user_id
            FROM analytics_events
            WHERE tenant_id = 1 AND occurred_at >= $1::date::timestamp AT TIME ZONE 'UTC'
              AND occurred_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
        ) AS events
        GROUP BY ROLLUP (channel)
        ORDER BY GROUPING(channel), channel";
    let mut worst: f64 = 0.0;
    for days in [1, 7, 30, 365] {
        let start = today - time::Duration::days(days - 1);
        // The grand total (its channel is null, as a channel's may be) comes last.
        let exact: Vec<(Option<String>, i64)> = client
            .query(EXACT, &[&start, &today])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let (total, by_channel) = exact.split_last().context("the exact counts")?;
        for (report, group_by, expected) in [
            ("bench-traffic", "", std::slice::from_ref(total)),
            ("bench-uniques", "", std::slice::from_ref(total)),
            ("bench-uniques", "channel", by_channel),
        ] {
            let path = format!(
                "/api/v1/reports/{report}/run?date_from={start}&date_to={today}&group_by={group_by}&limit=100"
            );
            let (status, answer) = http(port, "GET", &path, &[], None)?;
            ensure!(status == 200, "the unique users read: {status} {answer}");
            let rows = answer["data"]["rows"].as_array().context("rows")?;
            ensure!(
                rows.len() == expected.len(),
                "{days} days by {group_by:?}: {} rows for {} groups",
                rows.len(),
                expected.len()
            );
            for (channel, exact) in expected {
                let row = rows
                    .iter()
                    .find(|row| {
                        group_by.is_empty() || row["channel"].as_str() == channel.as_deref()
                    })
                    .context("a row of every group")?;
                let served = row["unique_users"].as_i64().context("unique_users")?;
                let error = (served - exact).abs() as f64 / (*exact).max(1) as f64;
                worst = worst.max(error);
            }
        }
        eprintln!(
            "unique users over {days} days: {} exactly; worst relative error so far {worst:.4}",
            total.1
        );
    }
    Ok(worst)
}

/// `count(DISTINCT user_id)` over the raw events of `from..=to`, `per_client` times in a row:
/// requests per second.
async fn raw_distinct_reads(
    client: &deadpool_postgres::Client,
    from: time::Date,
    to: time::Date,
    per_client: u32,
) -> Result<f64> {
    let sql = "SELECT count(DISTINCT user_id) FROM analytics_events
               WHERE tenant_id = 1 AND occurred_at >= $1::date::timestamp AT TIME ZONE 'UTC'
                 AND occurred_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'";
    let started = Instant::now();
    for _ in 0..per_client {
        client.query_one(sql, &[&from, &to]).await?;
    }
    Ok(f64::from(per_client) / started.elapsed().as_secs_f64())
}

/// The page size of the snapshot reads.
const SNAPSHOT_LIMIT: u32 = 100;

/// The one statement of the snapshot read of `volume-by-period` by day over `from..=to`, the
/// service's own, run by pgbench for `seconds` with 32 clients and prepared as the service
/// prepares it, its parameters given as pgbench variables: transactions per second.
fn pgbench_read(url: &str, from: time::Date, to: time::Date, seconds: u32) -> Result<f64> {
    let range = domain::DateRange::new(from, to)?;
    let query = domain::ReportQuery {
        tenant: domain::TenantId::DEFAULT,
        kind: domain::ReportKind::VolumeByPeriod,
        window: domain::Window::Day,
        range,
        breakdown: domain::Breakdown::Period,
        filter: None,
        page: domain::PageRequest::new(SNAPSHOT_LIMIT, 0),
    }
    .rollup_query();
    let mut sql = postgres_adapter::rollup_read_sql(&query);
    // Highest first, so `$1` does not match the start of a longer one.
    for n in (1..=9).rev() {
        sql = sql.replace(&format!("${n}"), &format!(":p{n}"));
    }
    let widened = query.window.widen(range);
    let values = [
        (1, query.tenant.get().to_string()),
        (2, query.report.as_str().to_owned()),
        (3, query.window.as_str().to_owned()),
        (4, from.to_string()),
        (5, to.to_string()),
        (6, SNAPSHOT_LIMIT.to_string()),
        (7, "0".to_owned()),
        (8, widened.from().to_string()),
        (9, widened.to().to_string()),
    ];
    let script = std::env::temp_dir().join(format!("pga-bench-read-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "{};\n",
            sql.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    )?;
    let mut command = Command::new("pgbench");
    command.args(["-n", "-M", "prepared", "-c", "32", "-j", "2", "-T"]);
    command.arg(seconds.to_string());
    for (n, value) in values {
        command.arg("-D").arg(format!("p{n}={value}"));
    }
    let output = command
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .context("pgbench (Debian package postgresql-client)")?;
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "pgbench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|tps| tps.parse().ok())
        })
        .with_context(|| format!("no tps in pgbench's output: {stdout}"))
}

fn bulk_body(day: time::Date) -> Value {
    let events: Vec<Value> = (0..1_000)
        .map(|n| {
            let source = ["stripe", "adyen", "paypal"][n % 3];
            json!({"source": source, "entity_id": format!("entity-{}", n % 10_000 + 1),
                   "status": "success", "occurred_at": format!("{day}T08:00:00Z"), "amount_cents": n, "processing_ms": 90})
        })
        .collect();
    json!({ "events": events })
}

/// What the stream phase measured.
struct StreamPhase {
    rows_per_s: f64,
    rss_mib: f64,
}

/// Publishes `messages` bulk messages of 1,000 events to a stream of their own, then starts one
/// `consume` process and times it from the first message it acknowledged to the last; its peak RSS
/// with the whole backlog waiting.
async fn stream_phase(
    args: &Args,
    url: &str,
    pool: &postgres_adapter::Pool,
    day: time::Date,
    messages: usize,
) -> Result<StreamPhase> {
    use async_nats::jetstream;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (stream, prefix) = (format!("BENCH_{id}"), format!("bench{id}"));
    let context = jetstream::new(
        async_nats::connect(&args.nats_url)
            .await
            .with_context(|| format!("NATS at {} (--nats-url)", args.nats_url))?,
    );
    context
        .get_or_create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await?;
    let body = bytes::Bytes::from(bulk_body(day).to_string());
    let mut acks = Vec::new();
    for _ in 0..messages {
        acks.push(
            context
                .publish(format!("{prefix}.default"), body.clone())
                .await?,
        );
        if acks.len() == 100 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    let count = async || -> Result<i64> {
        Ok(pool
            .get()
            .await?
            .query_one("SELECT count(*) FROM analytics_events", &[])
            .await?
            .get(0))
    };
    let before = count().await?;
    let expected = before + i64::try_from(messages * 1_000)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(server_log(args))?;
    let started = Instant::now();
    let mut consumer = Command::new(&args.binary)
        .arg("consume")
        .env("DATABASE_URL", url)
        .env("APP_AUTO_MIGRATE", "false")
        .env("NATS_URL", &args.nats_url)
        .env("NATS_STREAM", &stream)
        .env("NATS_SUBJECT_PREFIX", &prefix)
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    // Timed from the first message acknowledged to the last, as the HTTP phase is timed on a
    // running server; the start-up (connections, the stream's consumer) is printed apart.
    // Progress is read from the consumer's acknowledgement floor, which costs the database
    // nothing; the events are counted once at the end.
    let events = context.get_stream(&stream).await?;
    let total = u64::try_from(messages)?;
    let mut first = None;
    let outcome = async {
        loop {
            if let Ok(info) = events.consumer_info("pg-analytics").await {
                let acked = info.ack_floor.stream_sequence;
                if acked > 0 && first.is_none() {
                    first = Some((Instant::now(), acked));
                    eprintln!(
                        "stream: consume acknowledged its first message {:.2}s after it started",
                        started.elapsed().as_secs_f64()
                    );
                }
                if acked == total && info.num_ack_pending == 0 {
                    let (at, acked_then) = first.unwrap_or((started, 0));
                    return Ok((at.elapsed().as_secs_f64(), (total - acked_then) * 1_000));
                }
            }
            if let Some(status) = consumer.try_wait()? {
                bail!("consume exited with {status}");
            }
            ensure!(
                started.elapsed() < Duration::from_secs(1_800),
                "the stream was not consumed in 30 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    .await;
    let rss_mib = peak_rss_mib(consumer.id());
    let _ = consumer.kill();
    let _ = consumer.wait();
    let _ = context.delete_stream(&stream).await;
    let _ = context.delete_stream(format!("{stream}_DLQ")).await;
    let (elapsed, rows) = outcome?;
    let stored = count().await?;
    ensure!(
        stored == expected,
        "{} events stored from the stream, {} published",
        stored - before,
        expected - before
    );
    Ok(StreamPhase {
        rows_per_s: rows as f64 / elapsed.max(f64::EPSILON),
        rss_mib: rss_mib?,
    })
}

/// The peak RSS (`VmHWM`) of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .context("VmHWM")?;
    Ok(kib / 1024.0)
}

/// COPY of `rows` generated events into the same table (same indexes), through psql.
fn copy_rows(url: &str, rows: u64, day: time::Date) -> Result<f64> {
    let file = std::env::temp_dir().join(format!("pga-bench-copy-{}.csv", std::process::id()));
    let mut csv = String::with_capacity(rows as usize * 120);
    for n in 0..rows {
        let _ = writeln!(
            csv,
            // A 64-character fingerprint, like the SHA-256 the service stores.
            "1,copy-{n},{},entity-{},success,90,{n},{day}T08:00:00Z,{{}},{n:064x}",
            n % 3 + 1,
            n % 10_000 + 1
        );
    }
    std::fs::write(&file, csv)?;
    let started = Instant::now();
    let status = Command::new("psql")
        .arg(url)
        .arg("-qc")
        .arg(format!(
            "\\copy analytics_events (tenant_id, event_id, source_id, entity_id, status, processing_ms, amount_cents, occurred_at, properties, fingerprint) FROM '{}' CSV",
            file.display()
        ))
        .status()?;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    ensure!(status.success(), "COPY failed");
    Ok(rows as f64 / elapsed)
}

/// What `wrk` measured.
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Requests answered with another status than 2xx or 3xx, or not answered (wrk's socket
    /// errors: connect, read, write, timeout).
    failed: u64,
}

/// Drives `url` with `wrk` (2 threads, `connections` keep-alive connections) for `seconds`;
/// with `post`, every request POSTs that file's content with that `X-API-Key`.
fn wrk(url: &str, seconds: u32, connections: u32, post: Option<(&PathBuf, &str)>) -> Result<Load> {
    let mut command = Command::new("wrk");
    command.args([
        "--latency",
        // A request is only given up on (a socket error, counted as failed) after this.
        "--timeout",
        "30s",
        "-t",
        "2",
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{seconds}s"),
    ]);
    let script = std::env::temp_dir().join(format!("pga-bench-{}.lua", std::process::id()));
    if let Some((body, key)) = post {
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\n\
                 wrk.headers[\"Content-Type\"] = \"application/json\"\n\
                 wrk.headers[\"X-API-Key\"] = \"{key}\"\n\
                 local file = io.open(\"{}\", \"rb\")\n\
                 wrk.body = file:read(\"*a\")\n\
                 file:close()\n",
                body.display()
            ),
        )?;
        command.arg("-s").arg(&script);
    }
    let output = command.arg(url).output()?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    let line = |prefix: &str| {
        text.lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    };
    let rps = line("Requests/sec:")
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("wrk output: {text}"))?;
    let latency = |prefix: &str| {
        line(prefix)
            .and_then(|v| duration_ms(&v))
            .with_context(|| format!("no {prefix} latency in wrk output: {text}"))
    };
    let non_2xx = line("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let socket_errors: u64 = line("Socket errors:")
        .map(|v| {
            v.split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Load {
        rps,
        p50_ms: latency("50%")?,
        p99_ms: latency("99%")?,
        failed: non_2xx + socket_errors,
    })
}

/// A wrk duration (`415.00us`, `3.21ms`, `1.02s`, `2.00m`) in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1_000.0,
        "ms" => number,
        "s" => number * 1_000.0,
        "m" => number * 60_000.0,
        _ => return None,
    })
}

/// Where the service's warnings go: `server.log` beside the results.
fn server_log(args: &Args) -> PathBuf {
    args.out.with_file_name("server.log")
}

/// The service under test.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts the service with Redis, its warnings appended to [`server_log`].
    fn start(args: &Args, url: &str, port: u16) -> Result<Self> {
        Self::start_with(args, url, port, true)
    }

    /// Starts the service, with Redis or without, its warnings appended to [`server_log`].
    fn start_with(args: &Args, url: &str, port: u16, redis: bool) -> Result<Self> {
        Self::start_with_env(
            args,
            url,
            port,
            redis,
            // The phases trigger their runs; the scheduler stays out of their measurements.
            &[("REFRESH_INTERVAL_OVERRIDE_SECS", "86400")],
        )
    }

    /// As [`Server::start_with`], with `env` set as well.
    fn start_with_env(
        args: &Args,
        url: &str,
        port: u16,
        redis: bool,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log = server_log(args);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new(&args.binary);
        if redis {
            command
                .env("REDIS_URL", &args.redis_url)
                .env("REDIS_KEY_PREFIX", format!("bench:{port}:"));
        }
        let child = command
            .env("DATABASE_URL", url)
            // The harness migrated the database; a migration would also put back the catalog
            // settings the snapshot phase changes.
            .env("APP_AUTO_MIGRATE", "false")
            .env("MANAGEMENT_API_KEY", KEY)
            .env("APP_HOST", "127.0.0.1")
            .env("APP_PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .env("LOG_FORMAT", "json")
            .env("RECOMPUTE_QUEUE_SIZE", "16")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self { child, port })
    }

    fn wait_ready(&mut self) -> Result<()> {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait()? {
                bail!("the service exited with {status}");
            }
            if http(self.port, "GET", "/api/v1/health", &[], None).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the service did not start")
    }

    /// A key of the default tenant with `ingest`, created with the service's own CLI.
    fn api_key(&self, args: &Args, url: &str) -> Result<String> {
        let output = Command::new(&args.binary)
            .args([
                "api-keys", "create", "--tenant", "default", "--scope", "ingest",
            ])
            .env("DATABASE_URL", url)
            // The harness migrated the database; a migration would also put back the catalog
            // settings the snapshot phase changes.
            .env("APP_AUTO_MIGRATE", "false")
            .env("MANAGEMENT_API_KEY", KEY)
            .env("RUST_LOG", "warn")
            .output()?;
        ensure!(output.status.success(), "api-keys create failed");
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned())
    }

    /// The peak resident memory so far (VmHWM), in MiB.
    fn rss_peak_mib(&self) -> Result<f64> {
        peak_rss_mib(self.child.id())
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

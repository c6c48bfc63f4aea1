//! The real `pg-analytics` binary, as separate processes: the embedded default out of the box,
//! configuration errors, graceful shutdown, the one-shot commands, and a pending run that
//! survives its process and is completed by another one sharing the database.

use std::{process::Output, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use pg_analytics::testing::{self, Process, request as request_with, shared_redis};
use postgres_adapter::testing::TestDatabase;
use redis_adapter::testing::OwnRedis;
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_pg-analytics");
const KEY: &str = "process-test-key-0123456";

fn start(env: &[(&str, &str)]) -> Result<Process> {
    Process::start(BINARY, env)
}

/// One HTTP/1.1 request with the management key; returns the status and the JSON body.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    request_with(port, method, path, &[("X-Management-Key", KEY)], body)
}

fn run(env: &[(&str, &str)], args: &[&str]) -> Result<Output> {
    testing::run(BINARY, env, args)
}

fn create_key(env: &[(&str, &str)], tenant: &str, scopes: &[&str]) -> Result<String> {
    testing::create_key(BINARY, env, tenant, scopes)
}

#[test]
fn the_embedded_default_serves_the_demo_data_with_exact_counts() -> Result<()> {
    let server = start(&[("MANAGEMENT_API_KEY", KEY)])?;
    let (status, health) = request(server.port, "GET", "/api/v1/health", None)?;
    ensure!(
        status == 200 && health["data"]["dependencies"]["postgres"] == "not_configured",
        "{health}"
    );
    // The demo events lie within the 91 days ending today (UTC): ask for the last 100.
    let from = time::OffsetDateTime::now_utc().date() - time::Duration::days(100);
    let path = format!("/api/v1/reports/status-counts/run?date_from={from}");
    let mut totals = std::collections::BTreeMap::new();
    let (status, report) = request(server.port, "GET", &path, None)?;
    ensure!(status == 200, "{report}");
    ensure!(report["data"]["source_system"] == "memory", "{report}");
    for row in report["data"]["rows"].as_array().context("rows")? {
        totals.insert(
            row["status"].as_str().unwrap_or_default().to_owned(),
            row["event_count"].as_i64().unwrap_or(0),
        );
    }
    let failed = 25_000 / 17;
    let pending = 25_000 / 11 - 25_000 / 187;
    ensure!(totals.get("failed") == Some(&failed), "{totals:?}");
    ensure!(totals.get("pending") == Some(&pending), "{totals:?}");
    ensure!(
        totals.get("success") == Some(&(25_000 - failed - pending)),
        "{totals:?}"
    );
    Ok(())
}

#[test]
fn an_invalid_setting_stops_the_process_and_names_the_variable() -> Result<()> {
    let output = run(&[("MAX_REPORT_RANGE_DAYS", "a year")], &["serve"])?;
    ensure!(
        output.status.code() == Some(2),
        "exit code 2, got {:?}",
        output.status
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("MAX_REPORT_RANGE_DAYS"),
        "the message names the variable: {stderr}"
    );
    Ok(())
}

#[test]
fn sigterm_stops_the_server_cleanly() -> Result<()> {
    let mut server = start(&[])?;
    let status = server.terminate()?;
    ensure!(
        status.success(),
        "a graceful shutdown exits 0, got {status}"
    );
    Ok(())
}

#[tokio::test]
async fn commands_run_without_a_management_key_and_serving_needs_one() -> Result<()> {
    let Some(db) = TestDatabase::create().await? else {
        return Ok(());
    };
    let env = [("DATABASE_URL", db.url.as_str())];

    let migrate = run(&env, &["migrate"])?;
    let tenants = run(&env, &["tenants", "list"])?;
    let serve = run(&env, &["serve"])?;

    ensure!(
        migrate.status.success() && tenants.status.success(),
        "administration never serves, so it needs no management key: {}",
        String::from_utf8_lossy(&tenants.stderr)
    );
    let stderr = String::from_utf8_lossy(&serve.stderr);
    ensure!(
        serve.status.code() == Some(2) && stderr.contains("MANAGEMENT_API_KEY"),
        "serving on a database refuses to start without one: {:?} {stderr}",
        serve.status
    );
    Ok(())
}

#[tokio::test]
async fn migrate_seed_and_recompute_commands_run_against_postgres() -> Result<()> {
    let Some(db) = TestDatabase::create().await? else {
        return Ok(());
    };
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("MANAGEMENT_API_KEY", KEY),
    ];
    let migrate = run(&env, &["migrate"])?;
    ensure!(
        migrate.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    ensure!(
        String::from_utf8_lossy(&migrate.stdout).contains("applied 0 migration"),
        "already migrated"
    );

    let seed = run(&env, &["seed", "--events", "600"])?;
    ensure!(
        seed.status.success(),
        "seed: {}",
        String::from_utf8_lossy(&seed.stderr)
    );
    ensure!(
        String::from_utf8_lossy(&seed.stdout).contains("seeded 600 new demo events"),
        "seed output"
    );
    let reseed = run(&env, &["seed", "--events", "600", "--reset"])?;
    ensure!(
        String::from_utf8_lossy(&reseed.stdout).contains("600 events"),
        "--reset removes first"
    );

    let recompute = run(
        &env,
        &[
            "recompute",
            "--report",
            "top-entities",
            "--window",
            "week",
            "--requested-by",
            "cron",
        ],
    )?;
    let stdout = String::from_utf8_lossy(&recompute.stdout);
    ensure!(
        recompute.status.success() && stdout.contains("completed"),
        "recompute: {stdout} {}",
        String::from_utf8_lossy(&recompute.stderr)
    );

    let refused = run(
        &env,
        &[
            "recompute",
            "--report",
            "top-entities",
            "--window",
            "fortnight",
        ],
    )?;
    ensure!(!refused.status.success(), "a bad window is refused");
    ensure!(
        String::from_utf8_lossy(&refused.stderr).contains("window"),
        "and named"
    );
    Ok(())
}

#[tokio::test]
async fn a_pending_run_written_by_one_process_is_completed_by_another() -> Result<()> {
    let Some(db) = TestDatabase::create().await? else {
        return Ok(());
    };
    let shared = [
        ("DATABASE_URL", db.url.as_str()),
        ("MANAGEMENT_API_KEY", KEY),
        ("RECOMPUTE_POLL_INTERVAL_MS", "100"),
    ];

    // A serve-only process accepts the trigger, then dies without running it.
    let mut serve_only = shared.to_vec();
    serve_only.extend([
        ("RECOMPUTE_WORKERS", "0"),
        ("APP_AUTO_SEED", "true"),
        ("APP_SEED_EVENTS", "1000"),
    ]);
    let first = start(&serve_only)?;
    let trigger = serde_json::json!({"report_slug": "status-counts", "date_from": "2026-11-01", "date_to": "2026-11-10"});
    let (status, created) = request(first.port, "POST", "/api/v1/recomputations", Some(&trigger))?;
    ensure!(status == 202, "{created}");
    let id = created["data"]["id"].as_str().context("run id")?.to_owned();
    drop(first);

    // Another process with a worker finds it in the database and completes it.
    let mut with_worker = shared.to_vec();
    with_worker.push(("RECOMPUTE_WORKERS", "1"));
    let second = start(&with_worker)?;
    for _ in 0..300 {
        let (_, run) = request(
            second.port,
            "GET",
            &format!("/api/v1/recomputations/{id}"),
            None,
        )?;
        match run["data"]["status"].as_str() {
            Some("completed") => {
                ensure!(run["data"]["summary"]["bucket_count"] == 10, "{run}");
                return Ok(());
            }
            Some("pending" | "running") => std::thread::sleep(Duration::from_millis(100)),
            other => bail!("unexpected run state {other:?}: {run}"),
        }
    }
    bail!("the second process never completed the run")
}

fn run_status(port: u16, id: &str) -> Result<Value> {
    let (_, run) = request(port, "GET", &format!("/api/v1/recomputations/{id}"), None)?;
    Ok(run)
}

fn wait_completed(port: u16, id: &str) -> Result<Value> {
    for _ in 0..300 {
        let run = run_status(port, id)?;
        match run["data"]["status"].as_str() {
            Some("completed") => return Ok(run),
            Some("pending" | "running") => std::thread::sleep(Duration::from_millis(100)),
            other => bail!("unexpected run state {other:?}: {run}"),
        }
    }
    bail!("run {id} never completed")
}

#[tokio::test]
async fn two_processes_share_the_cache_the_versions_and_the_locks_through_redis() -> Result<()> {
    let Some(db) = TestDatabase::create().await? else {
        return Ok(());
    };
    let Some(redis) = shared_redis()? else {
        return Ok(());
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let shared = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("MANAGEMENT_API_KEY", KEY),
        ("RECOMPUTE_POLL_INTERVAL_MS", "100"),
    ];
    let mut first_env = shared.to_vec();
    first_env.extend([
        ("RECOMPUTE_WORKERS", "0"),
        ("APP_AUTO_SEED", "true"),
        ("APP_SEED_EVENTS", "1000"),
    ]);
    let first = start(&first_env)?;
    // No process runs recomputes yet, so the duplicate below cannot race a finished run.
    let mut second_env = shared.to_vec();
    second_env.push(("RECOMPUTE_WORKERS", "0"));
    let second = start(&second_env)?;

    let (_, health) = request(first.port, "GET", "/api/v1/health", None)?;
    ensure!(health["data"]["dependencies"]["redis"] == "ok", "{health}");

    // A result cached by one process is a hit, from Redis, on the other.
    let report = "/api/v1/reports/top-entities/run?date_from=2026-11-01&date_to=2026-11-10&limit=5";
    let (_, cold) = request(first.port, "GET", report, None)?;
    ensure!(
        cold["data"]["cache_hit"] == false && cold["data"]["source_system"] == "postgres",
        "{cold}"
    );
    let (_, warm) = request(second.port, "GET", report, None)?;
    ensure!(
        warm["data"]["cache_hit"] == true && warm["data"]["source_system"] == "redis",
        "{warm}"
    );

    // A scope triggered on one is busy on the other.
    let trigger = serde_json::json!({"report_slug": "top-entities", "date_from": "2026-11-01", "date_to": "2026-11-10"});
    let (status, created) = request(first.port, "POST", "/api/v1/recomputations", Some(&trigger))?;
    ensure!(status == 202, "{created}");
    let (status, duplicate) = request(
        second.port,
        "POST",
        "/api/v1/recomputations",
        Some(&trigger),
    )?;
    ensure!(
        status == 409 && duplicate["error"]["code"] == "conflict",
        "{status} {duplicate}"
    );

    // A third process runs it; the first stops serving its old entry at once.
    let mut worker_env = shared.to_vec();
    worker_env.push(("RECOMPUTE_WORKERS", "1"));
    let _worker = start(&worker_env)?;
    let id = created["data"]["id"].as_str().context("run id")?;
    wait_completed(first.port, id)?;
    // The bump's notice reaches the first process about a round trip after the bump.
    let warm_version = warm["data"]["snapshot_version"].as_u64();
    let moved = |page: &Value| page["data"]["snapshot_version"].as_u64() > warm_version;
    let mut fresh = Value::Null;
    for _ in 0..250 {
        fresh = request(first.port, "GET", report, None)?.1;
        if moved(&fresh) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(
        warm_version.is_some() && moved(&fresh),
        "one bump, seen by every process: {fresh}"
    );
    ensure!(
        fresh["data"]["cache_hit"] == false,
        "the version bump retired the entry everywhere: {fresh}"
    );
    Ok(())
}

#[tokio::test]
async fn killing_redis_degrades_speed_never_correctness() -> Result<()> {
    let Some(db) = TestDatabase::create().await? else {
        return Ok(());
    };
    if !OwnRedis::available() {
        ensure!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "redis-server is required (CI)"
        );
        return Ok(());
    }
    let mut redis = OwnRedis::start()?;
    let url = redis.url();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", url.as_str()),
        ("MANAGEMENT_API_KEY", KEY),
        ("APP_AUTO_SEED", "true"),
        ("APP_SEED_EVENTS", "1000"),
        ("RECOMPUTE_WORKERS", "0"),
        ("REDIS_RETRY_AFTER_MS", "200"),
    ];
    let api = start(&env)?;
    let report = "/api/v1/reports/status-counts/run?date_from=2026-11-01&date_to=2026-11-10";
    let (_, first) = request(api.port, "GET", report, None)?;
    let (_, hit) = request(api.port, "GET", report, None)?;
    ensure!(
        hit["data"]["source_system"] == "redis",
        "served from Redis while it is up: {hit}"
    );

    // Redis dies: reads still answer, from PostgreSQL once the process has noticed that its
    // version notices stopped (until then it may serve the entry it holds, which is still
    // right), and health says degraded.
    redis.stop();
    let mut degraded = Value::Null;
    for _ in 0..250 {
        let (status, read) = request(api.port, "GET", report, None)?;
        ensure!(status == 200, "reads answer without Redis: {read}");
        degraded = read;
        if degraded["data"]["cache_hit"] == false {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(degraded["data"]["cache_hit"] == false, "{degraded}");
    ensure!(
        degraded["data"]["source_system"] == "postgres",
        "{degraded}"
    );
    ensure!(
        degraded["data"]["rows"] == first["data"]["rows"],
        "the same answer without Redis"
    );
    let (status, health) = request(api.port, "GET", "/api/v1/health", None)?;
    ensure!(
        status == 503 && health["data"]["status"] == "degraded",
        "{status} {health}"
    );
    ensure!(
        health["data"]["dependencies"]["redis"] == "unavailable",
        "{health}"
    );

    // Triggers stay safe through the database's one-active-run rule.
    let trigger = serde_json::json!({"report_slug": "status-counts", "date_from": "2026-11-01", "date_to": "2026-11-10"});
    let (status, created) = request(api.port, "POST", "/api/v1/recomputations", Some(&trigger))?;
    ensure!(
        status == 202,
        "a trigger without Redis is accepted: {created}"
    );
    let (status, duplicate) = request(api.port, "POST", "/api/v1/recomputations", Some(&trigger))?;
    ensure!(status == 409, "and its duplicate refused: {duplicate}");

    // Redis returns: the same process uses it again, without a restart.
    redis.restart()?;
    let mut healthy = false;
    for _ in 0..100 {
        let (status, _) = request(api.port, "GET", "/api/v1/health", None)?;
        if status == 200 {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(healthy, "health recovers once Redis is back");
    request(api.port, "GET", report, None)?;
    let (_, again) = request(api.port, "GET", report, None)?;
    ensure!(
        again["data"]["source_system"] == "redis" && again["data"]["cache_hit"] == true,
        "{again}"
    );
    Ok(())
}

#[tokio::test]
async fn two_tenants_ingest_with_their_own_keys_and_see_only_their_own_reports() -> Result<()> {
    let Some(db) = TestDatabase::create().await? else {
        return Ok(());
    };
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("MANAGEMENT_API_KEY", KEY),
    ];
    for (args, expect) in [
        (
            vec!["tenants", "create", "acme", "--name", "Acme"],
            "created tenant acme",
        ),
        (vec!["tenants", "create", "globex"], "created tenant globex"),
        (
            vec![
                "sources",
                "create",
                "--tenant",
                "acme",
                "shop",
                "--provider-name",
                "Shop",
            ],
            "created source shop",
        ),
        (
            vec!["sources", "create", "--tenant", "globex", "shop"],
            "created source shop",
        ),
    ] {
        let output = run(&env, &args)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success() && stdout.contains(expect),
            "{args:?}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let acme = create_key(&env, "acme", &["ingest", "read", "manage"])?;
    let globex = create_key(&env, "globex", &["ingest", "read"])?;
    let json = run(
        &env,
        &[
            "api-keys", "create", "--tenant", "acme", "--scope", "read", "--json",
        ],
    )?;
    let object: Value = serde_json::from_slice(&json.stdout)?;
    ensure!(
        object["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("pga_"))
            && object["scopes"] == serde_json::json!(["read"]),
        "{object}"
    );

    let server = start(&[
        ("DATABASE_URL", db.url.as_str()),
        ("MANAGEMENT_API_KEY", KEY),
        ("RECOMPUTE_WORKERS", "1"),
        ("API_KEY_CACHE_SECS", "1"),
    ])?;
    let today = time::OffsetDateTime::now_utc().date();
    // Today's first second: dated today and never in the future, whatever the time of day.
    let at = format!("{today}T00:00:00Z");
    let event = |n: usize| serde_json::json!({"event_id": format!("o-{n}"), "source": "shop", "entity_id": "c-1", "status": "success", "occurred_at": at});
    let bulk = serde_json::json!({"events": (0..5).map(event).collect::<Vec<_>>()});
    let (status, acme_bulk) = request_with(
        server.port,
        "POST",
        "/api/v1/events/bulk",
        &[("X-API-Key", &acme)],
        Some(&bulk),
    )?;
    ensure!(
        status == 201 && acme_bulk["data"]["counts"]["created"] == 5,
        "{status} {acme_bulk}"
    );
    let two = serde_json::json!({"events": (0..2).map(event).collect::<Vec<_>>()});
    let (status, globex_bulk) = request_with(
        server.port,
        "POST",
        "/api/v1/events/bulk",
        &[("X-API-Key", &globex)],
        Some(&two),
    )?;
    ensure!(
        status == 201 && globex_bulk["data"]["counts"]["created"] == 2,
        "the same ids are new for another tenant: {globex_bulk}"
    );
    let (status, replay) = request_with(
        server.port,
        "POST",
        "/api/v1/events",
        &[("X-API-Key", &acme)],
        Some(&event(0)),
    )?;
    ensure!(
        status == 200 && replay["data"]["duplicate"] == true,
        "a retry never duplicates: {replay}"
    );

    // Each tenant recomputes with the operator key, then reads its own report with its key.
    for tenant in ["acme", "globex"] {
        let trigger = serde_json::json!({"report_slug": "volume-by-period", "date_from": today.to_string(), "date_to": today.to_string()});
        let (status, run) = request(
            server.port,
            "POST",
            &format!("/api/v1/recomputations?tenant={tenant}"),
            Some(&trigger),
        )?;
        ensure!(status == 202, "{run}");
        let id = run["data"]["id"].as_str().context("id")?;
        let (_, done) = request(
            server.port,
            "GET",
            &format!("/api/v1/recomputations/{id}?tenant={tenant}"),
            None,
        )?;
        if done["data"]["status"] != "completed" {
            for _ in 0..300 {
                let (_, polled) = request(
                    server.port,
                    "GET",
                    &format!("/api/v1/recomputations/{id}?tenant={tenant}"),
                    None,
                )?;
                if polled["data"]["status"] == "completed" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let report = format!("/api/v1/reports/volume-by-period/run?date_from={today}&date_to={today}");
    let (status, acme_report) =
        request_with(server.port, "GET", &report, &[("X-API-Key", &acme)], None)?;
    ensure!(
        status == 200 && acme_report["data"]["rows"][0]["event_count"] == 5,
        "acme sees its 5: {acme_report}"
    );
    let (_, globex_report) =
        request_with(server.port, "GET", &report, &[("X-API-Key", &globex)], None)?;
    ensure!(
        globex_report["data"]["rows"][0]["event_count"] == 2,
        "globex sees its 2: {globex_report}"
    );
    let (status, _) = request_with(
        server.port,
        "GET",
        &format!("{report}&tenant=acme"),
        &[("X-API-Key", &globex)],
        None,
    )?;
    ensure!(status == 403, "globex cannot read acme");
    let (status, _) = request_with(
        server.port,
        "GET",
        &format!("{report}&tenant=acme"),
        &[],
        None,
    )?;
    ensure!(
        status == 401,
        "anonymous readers see only the default tenant"
    );

    // A revocation by another process takes effect within API_KEY_CACHE_SECS (1 s here).
    let prefix: String = globex.chars().take(12).collect();
    let revoked = run(&env, &["api-keys", "revoke", "--tenant", "globex", &prefix])?;
    ensure!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (status, _) = request_with(
            server.port,
            "POST",
            "/api/v1/events",
            &[("X-API-Key", &globex)],
            Some(&event(9)),
        )?;
        if status == 401 || std::time::Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        status == 401,
        "a revoked key is refused once the key cache has expired"
    );
    Ok(())
}

#[test]
fn the_embedded_default_accepts_events_with_the_key_it_logs() -> Result<()> {
    let server = start(&[("MANAGEMENT_API_KEY", KEY), ("LOG_FORMAT", "json")])?;
    let key = server
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|line| line["api_key"].as_str().map(str::to_owned))
        .context("the embedded default logs an API key")?;
    // An hour ago, whatever the time of day: a fixed hour of today is in the future before it.
    let at = (time::OffsetDateTime::now_utc() - time::Duration::HOUR)
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    let event = serde_json::json!({"source": "stripe", "entity_id": "c-1", "status": "success", "occurred_at": at});
    let (status, created) = request_with(
        server.port,
        "POST",
        "/api/v1/events",
        &[("X-API-Key", &key)],
        Some(&event),
    )?;
    ensure!(
        status == 201 && created["data"]["duplicate"] == false,
        "{status} {created}"
    );
    Ok(())
}

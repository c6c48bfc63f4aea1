//! What an operator sees of the real binary on PostgreSQL and Redis: the Prometheus scrape
//! after a known workload (exact counter deltas, checked by `promtool`), the probes, the JSON
//! request logs (ids, trace, tenant, route, and no secret), and a SIGTERM in the middle of
//! ingestion and runs that loses nothing.

use std::{
    collections::BTreeSet,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use pg_analytics::testing::{self, Process, eventually, exchange, request as request_with};
use postgres_adapter::testing::TestDatabase;
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_pg-analytics");
const KEY: &str = "observability-test-key-0123";

fn operator(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    request_with(port, method, path, &[("X-Management-Key", KEY)], body)
}

/// One scrape of `/metrics`, as text.
fn scrape(port: u16) -> Result<String> {
    let answer = exchange(port, "GET", "/metrics", &[], "")?;
    ensure!(answer.status == 200, "GET /metrics: {}", answer.status);
    ensure!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "the Prometheus text format: {}",
        answer.head
    );
    Ok(answer.body)
}

/// The sum of the samples of `name` whose labels include every one of `labels` (`key="v"`);
/// 0 when there is none (a counter not yet incremented is absent).
fn sample(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|label| rest.contains(label))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

fn has_series(exposition: &str, name: &str) -> bool {
    exposition
        .lines()
        .any(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
}

/// `promtool check metrics` on `exposition`: required in CI, skipped with a notice elsewhere
/// when promtool is not installed.
fn promtool_accepts(exposition: &str) -> Result<()> {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            ensure!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "promtool is required (CI): apt-get install prometheus"
            );
            eprintln!("promtool not installed: the exposition is not linted");
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    child
        .stdin
        .take()
        .context("promtool's input")?
        .write_all(exposition.as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The request log lines of `log` (JSON, one per request).
fn request_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "request completed")
        .collect()
}

/// A field of a log line, on the event or on its request span.
fn field<'a>(line: &'a Value, name: &str) -> &'a Value {
    match &line[name] {
        Value::Null => &line["span"][name],
        value => value,
    }
}

fn create_tenant_with_source(env: &[(&str, &str)], tenant: &str) -> Result<String> {
    for args in [
        vec!["tenants", "create", tenant],
        vec!["sources", "create", "--tenant", tenant, "shop"],
    ] {
        let output = testing::run(BINARY, env, &args)?;
        ensure!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    testing::create_key(BINARY, env, tenant, &["ingest", "read"])
}

fn event(id: &str) -> Value {
    let at = format!("{}T00:00:00Z", time::OffsetDateTime::now_utc().date());
    json!({"event_id": id, "source": "shop", "entity_id": "c-1", "status": "success", "occurred_at": at})
}

#[tokio::test]
async fn the_scrape_counts_the_workload_exactly_and_passes_promtool() -> Result<()> {
    let Some(db) = TestDatabase::create().await? else {
        return Ok(());
    };
    let Some(redis) = testing::shared_redis()? else {
        return Ok(());
    };
    let prefix = format!("obs-{}", uuid::Uuid::new_v4().simple());
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("MANAGEMENT_API_KEY", KEY),
    ];
    let api_key = create_tenant_with_source(&env, "acme")?;
    let server = Process::start(
        BINARY,
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("MANAGEMENT_API_KEY", KEY),
            ("REDIS_URL", redis.as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("RECOMPUTE_WORKERS", "1"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )?;
    let port = server.port;
    let ingest = |path: &str, body: &Value, trace: Option<&str>| -> Result<u16> {
        let mut headers = vec![("X-API-Key", api_key.as_str())];
        if let Some(trace) = trace {
            headers.push(("traceparent", trace));
        }
        Ok(request_with(port, "POST", path, &headers, Some(body))?.0)
    };
    let before = scrape(port)?;

    // 7 events stored (a bulk of 5, then 2 alone), then the 2 sent again: 2 duplicates.
    let bulk = json!({"events": (0..5).map(|n| event(&format!("b-{n}"))).collect::<Vec<_>>()});
    ensure!(ingest("/api/v1/events/bulk", &bulk, None)? == 201);
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for id in ["s-1", "s-2"] {
        ensure!(ingest("/api/v1/events", &event(id), Some(trace))? == 201);
    }
    for id in ["s-1", "s-2"] {
        ensure!(ingest("/api/v1/events", &event(id), None)? == 200);
    }
    // One invalid event: refused whole, counted as rejected.
    ensure!(ingest("/api/v1/events", &json!({"source": "shop"}), None)? == 400);
    // One recompute of the operator, run to its end.
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let (status, run) = operator(
        port,
        "POST",
        "/api/v1/recomputations?tenant=acme",
        Some(&json!({"report_slug": "status-counts", "date_from": today, "date_to": today})),
    )?;
    ensure!(status == 202, "{run}");
    let id = run["data"]["id"].as_str().context("run id")?.to_owned();
    eventually(
        "the run completes",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let (_, run) = operator(
                port,
                "GET",
                &format!("/api/v1/recomputations/{id}?tenant=acme"),
                None,
            )?;
            Ok((run["data"]["status"] == "completed").then_some(()))
        },
    )?;
    // The run's counter moves after its outcome is stored: wait for it, not for time.
    let after = eventually(
        "the finished run is counted",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let scraped = scrape(port)?;
            let runs = sample(&scraped, "pg_analytics_runs_total", &["kind=\"recompute\""])
                - sample(&before, "pg_analytics_runs_total", &["kind=\"recompute\""]);
            Ok((runs >= 1.0).then_some(scraped))
        },
    )?;

    let delta =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    let events = "pg_analytics_ingest_events_total";
    ensure!(
        delta(events, &["outcome=\"accepted\""]) == 7.0,
        "7 accepted"
    );
    ensure!(
        delta(events, &["outcome=\"duplicate\""]) == 2.0,
        "2 duplicates"
    );
    ensure!(
        delta(events, &["outcome=\"rejected\""]) == 1.0,
        "1 rejected"
    );
    ensure!(
        delta(events, &["outcome=\"conflict\""]) == 0.0,
        "no conflict"
    );
    let requests = "pg_analytics_http_requests_total";
    let single = "route=\"/api/v1/events\"";
    ensure!(delta(requests, &[single, "method=\"POST\"", "status=\"201\""]) == 2.0);
    ensure!(delta(requests, &[single, "method=\"POST\"", "status=\"200\""]) == 2.0);
    ensure!(delta(requests, &[single, "method=\"POST\"", "status=\"400\""]) == 1.0);
    ensure!(
        delta(
            requests,
            &["route=\"/api/v1/events/bulk\"", "status=\"201\""]
        ) == 1.0,
        "the bulk request, by its route"
    );
    ensure!(
        !after.contains("route=\"/api/v1/recomputations/")
            || after.contains("route=\"/api/v1/recomputations/{id}\""),
        "routes are templates, never paths"
    );
    ensure!(
        delta(
            "pg_analytics_runs_total",
            &[
                "kind=\"recompute\"",
                "mode=\"full\"",
                "outcome=\"completed\""
            ]
        ) == 1.0,
        "one completed recompute"
    );
    ensure!(
        delta(
            "pg_analytics_run_duration_seconds_count",
            &["kind=\"recompute\""]
        ) == 1.0
    );
    ensure!(
        delta("pg_analytics_ingest_batch_events_sum", &[]) >= 7.0,
        "committed in batches"
    );
    for gauge in [
        "pg_analytics_run_queue_pending",
        "pg_analytics_run_queue_oldest_pending_age_seconds",
        "pg_analytics_freshness_lag_seconds",
        "pg_analytics_postgres_pool_max_connections",
        "pg_analytics_postgres_pool_connections_in_use",
        "pg_analytics_postgres_pool_waiting",
        "pg_analytics_http_requests_in_flight",
        "pg_analytics_ingest_writers",
        "pg_analytics_build_info",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        ensure!(has_series(&after, gauge), "{gauge} is exposed");
    }
    ensure!(sample(&after, "pg_analytics_postgres_up", &[]) == 1.0);
    ensure!(sample(&after, "pg_analytics_redis_up", &[]) == 1.0);
    ensure!(sample(&after, "process_resident_memory_bytes", &[]) > 0.0);
    ensure!(
        !after.contains("tenant=\""),
        "no tenant label unless METRICS_TENANT_LABELS"
    );
    promtool_accepts(&after)?;

    // The probes.
    let (status, ready) = request_with(port, "GET", "/readyz", &[], None)?;
    ensure!(
        status == 200 && ready["data"]["status"] == "ready",
        "{ready}"
    );
    let (status, live) = request_with(port, "GET", "/livez", &[], None)?;
    ensure!(status == 200 && live["data"]["status"] == "ok", "{live}");

    // The logs: one line per request with its ids, route, tenant, status and latency.
    let log = server.log();
    let lines = request_lines(&log);
    let ingested: Vec<&Value> = lines
        .iter()
        .filter(|line| field(line, "route") == "/api/v1/events")
        .collect();
    ensure!(ingested.len() == 5, "a line per request: {log}");
    for line in &ingested {
        for name in ["request_id", "trace_id"] {
            ensure!(
                field(line, name).as_str().is_some_and(|v| !v.is_empty()),
                "{name} in {line}"
            );
        }
        ensure!(field(line, "tenant") == "acme", "the tenant's slug: {line}");
        ensure!(
            field(line, "status").is_u64() && field(line, "latency_ms").is_number(),
            "{line}"
        );
    }
    ensure!(
        ingested
            .iter()
            .filter(|line| field(line, "trace_id") == "0af7651916cd43dd8448eb211c80319c")
            .count()
            == 2,
        "the caller's trace continued: {log}"
    );
    ensure!(
        log.contains(&format!("\"run_id\":\"{id}\"")),
        "run work names its run: {log}"
    );
    // No secret the workload used is ever logged.
    for secret in [api_key.as_str(), KEY] {
        ensure!(!log.contains(secret), "a secret reached the logs");
    }
    Ok(())
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_address_or_not_at_all() -> Result<()> {
    let metrics_port = testing::free_port()?;
    let address = format!("127.0.0.1:{metrics_port}");
    let separate = Process::start(
        BINARY,
        &[
            ("MANAGEMENT_API_KEY", KEY),
            ("METRICS_ADDR", address.as_str()),
        ],
    )?;
    let (status, _) = request_with(separate.port, "GET", "/metrics", &[], None)?;
    ensure!(status == 404, "not on the API's address: {status}");
    let scraped = scrape(metrics_port)?;
    ensure!(has_series(&scraped, "pg_analytics_build_info"), "{scraped}");
    drop(separate);

    let off = Process::start(
        BINARY,
        &[("MANAGEMENT_API_KEY", KEY), ("METRICS_ENABLED", "false")],
    )?;
    let (status, _) = request_with(off.port, "GET", "/metrics", &[], None)?;
    ensure!(status == 404, "metrics off: {status}");
    Ok(())
}

#[test]
fn freshness_is_labelled_by_tenant_only_when_asked() -> Result<()> {
    let labelled = Process::start(
        BINARY,
        &[
            ("MANAGEMENT_API_KEY", KEY),
            ("METRICS_TENANT_LABELS", "true"),
            ("LOG_FORMAT", "json"),
            // The scheduler stays out of the way: the event's buckets stay dirty.
            ("REFRESH_INTERVAL_OVERRIDE_SECS", "86400"),
        ],
    )?;
    let key = labelled
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|line| line["api_key"].as_str().map(str::to_owned))
        .context("the embedded default logs an API key")?;
    let at = format!("{}T00:00:00Z", time::OffsetDateTime::now_utc().date());
    let event =
        json!({"source": "stripe", "entity_id": "c-1", "status": "success", "occurred_at": at});
    let (status, _) = request_with(
        labelled.port,
        "POST",
        "/api/v1/events",
        &[("X-API-Key", &key)],
        Some(&event),
    )?;
    ensure!(status == 201);
    let scraped = scrape(labelled.port)?;
    ensure!(
        sample(
            &scraped,
            "pg_analytics_freshness_dirty_buckets",
            &["tenant=\"default\""]
        ) > 0.0,
        "the default tenant's dirty buckets, by its slug: {scraped}"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_loses_no_acknowledged_event_and_no_run() -> Result<()> {
    let Some(db) = TestDatabase::create().await? else {
        return Ok(());
    };
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("MANAGEMENT_API_KEY", KEY),
    ];
    let api_key = create_tenant_with_source(&env, "acme")?;
    let serving = [
        ("DATABASE_URL", db.url.as_str()),
        ("MANAGEMENT_API_KEY", KEY),
        ("RECOMPUTE_WORKERS", "1"),
        ("RECOMPUTE_POLL_INTERVAL_MS", "100"),
        ("HTTP_WORKERS", "2"),
    ];
    let mut server = Process::start(BINARY, &serving)?;
    let port = server.port;

    // Producers send events one by one until the server stops answering; what it
    // acknowledged is recorded.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..4)
        .map(|producer| {
            let (acknowledged, stop, key) = (acknowledged.clone(), stop.clone(), api_key.clone());
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("p{producer}-{n}");
                    match request_with(
                        port,
                        "POST",
                        "/api/v1/events",
                        &[("X-API-Key", &key)],
                        Some(&event(&id)),
                    ) {
                        Ok((201, _)) => {
                            acknowledged
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id);
                        }
                        // Refused or cut off while stopping: not acknowledged.
                        Ok(_) | Err(_) => {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            })
        })
        .collect();
    // Runs asked for while events arrive.
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let mut runs = Vec::new();
    eventually(
        "events flow",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || Ok((acknowledged.lock().unwrap_or_else(|e| e.into_inner()).len() >= 50).then_some(())),
    )?;
    for report in ["status-counts", "volume-by-period", "top-entities"] {
        let (status, run) = operator(
            port,
            "POST",
            "/api/v1/recomputations?tenant=acme",
            Some(&json!({"report_slug": report, "date_from": today, "date_to": today})),
        )?;
        ensure!(status == 202, "{run}");
        runs.push(run["data"]["id"].as_str().context("run id")?.to_owned());
    }

    let status = server.terminate()?;
    stop.store(true, Ordering::Relaxed);
    for producer in producers {
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("a producer panicked"))?;
    }
    ensure!(
        status.success(),
        "a graceful shutdown exits 0: {status}: {}",
        server.log()
    );

    // Every acknowledged event is stored, once.
    let acknowledged: Vec<String> = acknowledged
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    let client = db.pool.get().await?;
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM analytics_events WHERE event_id = ANY($1)",
            &[&acknowledged],
        )
        .await?
        .get(0);
    ensure!(
        stored == i64::try_from(acknowledged.len())?,
        "{} acknowledged, {stored} stored",
        acknowledged.len()
    );
    // No run is left running: each finished, or waits for the next process, which finishes it.
    let running: i64 = client
        .query_one(
            "SELECT count(*) FROM recompute_runs WHERE status = 'running'",
            &[],
        )
        .await?
        .get(0);
    ensure!(running == 0, "a drained process leaves no run running");
    let next = Process::start(BINARY, &serving)?;
    for id in &runs {
        eventually(
            "every run completes",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let (_, run) = operator(
                    next.port,
                    "GET",
                    &format!("/api/v1/recomputations/{id}?tenant=acme"),
                    None,
                )?;
                match run["data"]["status"].as_str() {
                    Some("completed") => Ok(Some(())),
                    Some("pending" | "running") => Ok(None),
                    other => bail!("run {id} ended {other:?}: {run}"),
                }
            },
        )?;
    }
    Ok(())
}

//! The whole HTTP API served from PostgreSQL, in process, on a fresh database per test: the
//! same app the binary serves, wired by the same code, checked against the embedded default and
//! against a direct aggregation of the raw events.

use std::{collections::HashMap, sync::Arc};

use actix_web::{http::StatusCode, test};
use anyhow::{Context, Result, ensure};
use application::{RunReportParams, ports::Clock};
use domain::{TenantId, demo};
use memory_adapter::ManualClock;
use pg_analytics::{config::Config, wiring};
use postgres_adapter::testing::TestDatabase;
use redis_adapter::testing::OwnRedis;
use secrecy::ExposeSecret;
use serde_json::Value;
use time::{OffsetDateTime, macros::datetime};

const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
const KEY: &str = "test-management-key-0123";

fn config(database_url: Option<&str>) -> Result<Config> {
    let mut vars: HashMap<&str, String> = HashMap::new();
    vars.insert("MANAGEMENT_API_KEY", KEY.to_owned());
    if let Some(url) = database_url {
        vars.insert("DATABASE_URL", url.to_owned());
    }
    Ok(Config::from_lookup(|name| vars.get(name).cloned())?)
}

/// The HTTP state of `services`, as `serve` builds it.
fn app_state(services: &application::Services) -> Result<http_api::AppState> {
    Ok(wiring::app_state(&config(None)?, services, None))
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(NOW))
}

macro_rules! database {
    () => {
        match TestDatabase::create().await? {
            Some(db) => db,
            None => return Ok(()),
        }
    };
}

#[actix_web::test]
async fn postgres_and_the_embedded_default_give_identical_reports() -> Result<()> {
    let db = database!();
    let pg = wiring::build(&config(Some(&db.url))?, clock())
        .await?
        .services;
    let memory = wiring::build(&config(None)?, clock()).await?.services;
    for services in [&pg, &memory] {
        services
            .seeder
            .seed(TenantId::DEFAULT, 4_000, false)
            .await?;
    }
    let range = demo::date_range(NOW);
    let shapes: [(&str, Option<&str>); 5] = [
        ("volume-by-period", None),
        ("volume-by-period", Some("source")),
        ("status-counts", None),
        ("status-counts", Some("period")),
        ("top-entities", None),
    ];
    for (slug, breakdown) in shapes {
        for window in ["day", "week"] {
            let params = RunReportParams {
                window: Some(window.into()),
                date_from: Some(range.from().to_string()),
                date_to: Some(range.to().to_string()),
                breakdown: breakdown.map(Into::into),
                limit: Some("100".into()),
                ..RunReportParams::default()
            };
            let from_pg = pg.reports.run(TenantId::DEFAULT, slug, &params).await?;
            let from_memory = memory.reports.run(TenantId::DEFAULT, slug, &params).await?;
            ensure!(
                !from_pg.rows.is_empty(),
                "{slug} {window} {breakdown:?} has rows"
            );
            ensure!(
                from_pg.rows == from_memory.rows
                    && from_pg.read.total_rows == from_memory.read.total_rows,
                "{slug} {window} {breakdown:?}: postgres and memory disagree"
            );
        }
    }
    Ok(())
}

#[actix_web::test]
async fn snapshots_agree_exactly_with_an_aggregation_of_the_events() -> Result<()> {
    let db = database!();
    let pg = wiring::build(&config(Some(&db.url))?, clock())
        .await?
        .services;
    pg.seeder.seed(TenantId::DEFAULT, 5_000, false).await?;
    // Each report and window rebuilt again over the seed's rows, together, as a worker would:
    // the rows of a bucket are unique by construction, which this checks.
    for report in ["volume-by-period", "status-counts", "top-entities"] {
        for window in [domain::Window::Day, domain::Window::Week] {
            let run = pg
                .recompute
                .run_now(&application::RecomputeRequest {
                    tenant: TenantId::DEFAULT,
                    report_slug: domain::ReportSlug::parse(report)?,
                    window,
                    range: demo::date_range(NOW),
                    mode: domain::RunMode::Full,
                    requested_by: domain::Actor::builtin(domain::Actor::SEED),
                })
                .await?;
            ensure!(
                run.status == domain::RunStatus::Completed,
                "{report} {window} rebuilt again: {run:?}"
            );
        }
    }
    let client = db.pool.get().await?;
    // Both directions of EXCEPT ALL: every snapshot row is an aggregate of events and vice
    // versa, and no row is there twice.
    let differences: i64 = client
        .query_one(
            "WITH truth AS (
                 SELECT 'status-counts'::text AS report_slug, w AS window_name,
                        date_trunc(w, e.occurred_at AT TIME ZONE 'UTC')::date AS bucket_start,
                        e.status AS dimension_value, count(*)::int8 AS metric_value
                 FROM analytics_events e CROSS JOIN (VALUES ('day'), ('week')) AS windows(w)
                 GROUP BY 1, 2, 3, 4
                 UNION ALL
                 SELECT 'volume-by-period', w, date_trunc(w, e.occurred_at AT TIME ZONE 'UTC')::date, s.slug, count(*)
                 FROM analytics_events e JOIN event_sources s ON s.id = e.source_id
                      CROSS JOIN (VALUES ('day'), ('week')) AS windows(w)
                 GROUP BY 1, 2, 3, 4
                 UNION ALL
                 SELECT 'top-entities', w, date_trunc(w, e.occurred_at AT TIME ZONE 'UTC')::date, e.entity_id, count(*)
                 FROM analytics_events e CROSS JOIN (VALUES ('day'), ('week')) AS windows(w)
                 GROUP BY 1, 2, 3, 4
             ), stored AS (
                 SELECT report_slug, window_name, bucket_start, d1, measure_values[1]
                 FROM rollup_snapshots
                 WHERE report_slug IN ('status-counts', 'volume-by-period', 'top-entities')
             )
             SELECT (SELECT count(*) FROM (SELECT * FROM truth EXCEPT ALL SELECT * FROM stored) a)
                  + (SELECT count(*) FROM (SELECT * FROM stored EXCEPT ALL SELECT * FROM truth) b)",
            &[],
        )
        .await?
        .get(0);
    ensure!(
        differences == 0,
        "{differences} rows differ between snapshots and events"
    );
    let orphans: i64 = client
        .query_one(
            "SELECT count(*) FROM rollup_snapshots s
             LEFT JOIN recompute_runs r ON r.id = s.run_id AND r.status = 'completed'
             WHERE r.id IS NULL",
            &[],
        )
        .await?
        .get(0);
    ensure!(
        orphans == 0,
        "every snapshot row points to the completed run that wrote it"
    );
    Ok(())
}

/// Sends `$request` to `$app` and returns the status and the JSON body.
macro_rules! call {
    ($app:expr, $request:expr) => {{
        let response = test::call_service(&$app, $request.to_request()).await;
        let status = response.status();
        let body: Value = test::read_body_json(response).await;
        (status, body)
    }};
}

#[actix_web::test]
async fn the_http_api_serves_reports_recomputes_and_audit_from_postgres() -> Result<()> {
    let db = database!();
    let services = wiring::build(&config(Some(&db.url))?, clock())
        .await?
        .services;
    services
        .seeder
        .seed(TenantId::DEFAULT, 3_000, false)
        .await?;
    let app = test::init_service(http_api::build_app(app_state(&services)?)).await;

    let (status, health) = call!(app, test::TestRequest::get().uri("/api/v1/health"));
    ensure!(status == StatusCode::OK, "health {status}: {health}");
    ensure!(
        health["data"]["dependencies"]["postgres"] == "ok",
        "postgres probed: {health}"
    );

    let range = demo::date_range(NOW);
    let uri = format!(
        "/api/v1/reports/status-counts/run?date_from={}&date_to={}",
        range.from(),
        range.to()
    );
    let (status, report) = call!(app, test::TestRequest::get().uri(&uri));
    ensure!(status == StatusCode::OK, "report {status}: {report}");
    let failed = 3_000 / 17;
    let pending = 3_000 / 11 - 3_000 / 187;
    let rows = &report["data"]["rows"];
    ensure!(
        rows[0]
            == serde_json::json!({"status": "success", "event_count": 3_000 - failed - pending}),
        "{rows}"
    );
    ensure!(
        rows[1] == serde_json::json!({"status": "pending", "event_count": pending}),
        "{rows}"
    );
    ensure!(
        rows[2] == serde_json::json!({"status": "failed", "event_count": failed}),
        "{rows}"
    );
    ensure!(
        report["data"]["source_system"] == "postgres",
        "served from postgres: {report}"
    );
    let (_, again) = call!(app, test::TestRequest::get().uri(&uri));
    ensure!(
        again["data"]["cache_hit"] == true,
        "the second read is a cache hit"
    );

    let volume =
        "/api/v1/reports/volume-by-period/run?window=week&date_from=2026-11-02&date_to=2026-11-15";
    call!(app, test::TestRequest::get().uri(volume));
    let (_, cached) = call!(app, test::TestRequest::get().uri(volume));
    ensure!(
        cached["data"]["cache_hit"] == true,
        "volume-by-period is cached before the recompute"
    );

    let trigger = serde_json::json!({"report_slug": "volume-by-period", "window": "week",
                                      "date_from": "2026-11-04", "date_to": "2026-11-12", "requested_by": "e2e"});
    let post = || {
        test::TestRequest::post()
            .uri("/api/v1/recomputations")
            .insert_header(("X-Management-Key", KEY))
            .set_json(trigger.clone())
    };
    let (status, created) = call!(app, post());
    ensure!(
        status == StatusCode::ACCEPTED,
        "trigger {status}: {created}"
    );
    let id = created["data"]["id"].as_str().context("run id")?.to_owned();
    let (status, duplicate) = call!(app, post());
    ensure!(
        status == StatusCode::CONFLICT && duplicate["error"]["code"] == "conflict",
        "{status} {duplicate}"
    );

    let claimed = services
        .ports
        .queue
        .claim_next()
        .await?
        .context("the run is queued in postgres")?;
    ensure!(claimed.id.to_string() == id, "the queued run is claimed");
    services.worker.execute(claimed).await;

    let get_run = test::TestRequest::get()
        .uri(&format!("/api/v1/recomputations/{id}"))
        .insert_header(("Authorization", format!("Bearer {KEY}")));
    let (status, run) = call!(app, get_run);
    ensure!(
        status == StatusCode::OK && run["data"]["status"] == "completed",
        "{status} {run}"
    );
    ensure!(
        run["data"]["summary"]["effective_date_from"] == "2026-11-02",
        "widened to Monday: {run}"
    );
    ensure!(
        run["data"]["summary"]["bucket_count"] == 2,
        "two weeks: {run}"
    );

    let audit = test::TestRequest::get()
        .uri("/api/v1/audit-entries?actor=recompute-worker&action=recompute.completed&limit=1")
        .insert_header(("X-Management-Key", KEY));
    let (status, entries) = call!(app, audit);
    ensure!(status == StatusCode::OK, "audit {status}");
    ensure!(
        entries["data"][0]["resource_id"] == id.as_str(),
        "the completion is audited: {entries}"
    );

    let (_, after) = call!(app, test::TestRequest::get().uri(volume));
    ensure!(
        after["data"]["cache_hit"] == false,
        "the completed recompute retired the entry: {after}"
    );
    ensure!(
        after["data"]["snapshot_version"].as_u64()
            == cached["data"]["snapshot_version"].as_u64().map(|v| v + 1),
        "one version bump: {after}"
    );
    let (_, untouched) = call!(app, test::TestRequest::get().uri(&uri));
    ensure!(
        untouched["data"]["cache_hit"] == true,
        "other reports keep their entries"
    );

    let missing = test::TestRequest::get()
        .uri(&format!("/api/v1/recomputations/{}", uuid::Uuid::new_v4()))
        .insert_header(("X-Management-Key", KEY));
    let (status, _) = call!(app, missing);
    ensure!(status == StatusCode::NOT_FOUND, "unknown run is 404");
    Ok(())
}

/// Two processes' services on one PostgreSQL and one Redis, with a clock that never moves: a
/// kept hit could only end by its version, and a bump made by the other ends it.
#[actix_web::test]
async fn a_bump_by_another_process_ends_a_kept_hit() -> Result<()> {
    let db = database!();
    if !OwnRedis::available() {
        ensure!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "redis-server is required (CI)"
        );
        return Ok(());
    }
    let redis = OwnRedis::start()?;
    let redis_url = redis.url();
    let vars: HashMap<&str, &str> = HashMap::from([
        ("MANAGEMENT_API_KEY", KEY),
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
    ]);
    let config = Config::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned()))?;
    let serving = wiring::build(&config, clock()).await?.services;
    let bumping = wiring::build(&config, clock()).await?.services;
    serving.seeder.seed(TenantId::DEFAULT, 1_000, false).await?;
    let app = test::init_service(http_api::build_app(app_state(&serving)?)).await;
    let range = demo::date_range(NOW);
    let uri = format!(
        "/api/v1/reports/status-counts/run?date_from={}&date_to={}",
        range.from(),
        range.to()
    );
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(call!(app, test::TestRequest::get().uri(&uri)).1);
    }
    ensure!(
        replies[1]["data"]["cache_hit"] == true && replies[2]["data"]["cache_hit"] == true,
        "primed: {replies:?}"
    );

    let slug = domain::ReportSlug::parse("status-counts")?;
    let bumped = bumping
        .ports
        .versions
        .bump(TenantId::DEFAULT, &slug)
        .await?;
    // The notice travels asynchronously; give it up to five seconds.
    let mut fresh = Value::Null;
    for _ in 0..250 {
        fresh = call!(app, test::TestRequest::get().uri(&uri)).1;
        if fresh["data"]["snapshot_version"].as_u64() == Some(bumped) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    ensure!(
        fresh["data"]["snapshot_version"].as_u64() == Some(bumped)
            && fresh["data"]["cache_hit"] == false,
        "the other process's bump ended the kept hit: {fresh}"
    );
    Ok(())
}

#[actix_web::test]
async fn no_text_with_a_nul_character_reaches_postgres() -> Result<()> {
    let db = database!();
    let services = wiring::build(&config(Some(&db.url))?, clock())
        .await?
        .services;
    let issued = services
        .tenancy
        .issue_key(TenantId::DEFAULT, &domain::Scope::ALL, "nul probes")
        .await?;
    let app = test::init_service(http_api::build_app(app_state(&services)?)).await;
    let nul = "a%00b";
    let gets = [
        format!("/api/v1/reports?search={nul}"),
        format!("/api/v1/reports?sort={nul}"),
        format!("/api/v1/reports/{nul}"),
        format!("/api/v1/reports/{nul}/run"),
        format!("/api/v1/reports/volume-by-period/run?source={nul}"),
        format!("/api/v1/reports/status-counts/run?status={nul}"),
        format!("/api/v1/reports/status-counts/run?window={nul}"),
        format!("/api/v1/reports/status-counts/run?breakdown={nul}"),
        format!("/api/v1/reports/status-counts/run?date_from={nul}"),
        format!("/api/v1/reports/status-counts/run?tenant={nul}"),
        format!("/api/v1/recomputations?report_slug={nul}"),
        format!("/api/v1/recomputations?status={nul}"),
        format!("/api/v1/recomputations/{nul}"),
        format!("/api/v1/audit-entries?action={nul}"),
        format!("/api/v1/audit-entries?actor={nul}"),
        format!("/api/v1/sources?tenant={nul}"),
    ];
    for uri in &gets {
        let (status, body) = call!(
            app,
            test::TestRequest::get()
                .uri(uri)
                .insert_header(("X-Management-Key", KEY))
        );
        ensure!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "GET {uri}: {status} {body}"
        );
    }
    let today = NOW.date();
    let posts: [(&str, Value, Option<&str>); 7] = [
        (
            "/api/v1/sources",
            serde_json::json!({"slug": "shop", "description": "a\u{0}b"}),
            Some("description"),
        ),
        (
            "/api/v1/sources",
            serde_json::json!({"slug": "shop", "provider_name": "a\u{0}b"}),
            Some("provider_name"),
        ),
        (
            "/api/v1/sources",
            serde_json::json!({"slug": "a\u{0}b"}),
            Some("slug"),
        ),
        (
            "/api/v1/recomputations",
            serde_json::json!({"report_slug": "status-counts", "requested_by": "a\u{0}b"}),
            Some("requested_by"),
        ),
        (
            "/api/v1/recomputations",
            serde_json::json!({"report_slug": "status\u{0}counts"}),
            None,
        ),
        (
            "/api/v1/events",
            serde_json::json!({"event_id": "a\u{0}b", "source": "stripe", "entity_id": "c", "status": "success", "occurred_at": format!("{today}T00:00:00Z")}),
            Some("event_id"),
        ),
        (
            "/api/v1/events",
            serde_json::json!({"source": "stripe", "entity_id": "c", "status": "success", "occurred_at": format!("{today}T00:00:00Z"), "payload": {"k\u{0}": "v\u{0}"}}),
            Some("payload"),
        ),
    ];
    for (uri, body, field) in &posts {
        let (status, reply) = call!(
            app,
            test::TestRequest::post()
                .uri(uri)
                .insert_header(("X-API-Key", issued.secret.expose_secret()))
                .set_json(body)
        );
        match field {
            Some(field) => ensure!(
                status == StatusCode::BAD_REQUEST && reply["error"]["details"]["field"] == *field,
                "POST {uri} {body}: {status} {reply}"
            ),
            None => ensure!(
                status == StatusCode::NOT_FOUND,
                "POST {uri} {body}: {status} {reply}"
            ),
        }
    }
    Ok(())
}

/// A report defined over the API on PostgreSQL, built by its backfill runs and read grouped,
/// equals a `GROUP BY` of the same events in SQL.
#[actix_web::test]
async fn a_tenants_report_on_postgres_equals_a_group_by_of_its_events() -> Result<()> {
    let db = database!();
    let services = wiring::build(&config(Some(&db.url))?, clock())
        .await?
        .services;
    services
        .seeder
        .seed(TenantId::DEFAULT, 3_000, false)
        .await?;
    let app = test::init_service(http_api::build_app(app_state(&services)?)).await;
    let definition = serde_json::json!({
        "slug": "views-by-channel-and-path",
        "measures": [{"name": "views", "kind": "count"},
                     {"name": "amount", "kind": "sum", "field": "amount_cents"}],
        "dimensions": [{"field": "properties.channel"}, {"field": "properties.path"}],
        "filters": {"event_name": "page_view"},
        "windows": [{"window": "day"}, {"window": "month"}]
    });
    let (status, created) = call!(
        app,
        test::TestRequest::post()
            .uri("/api/v1/reports")
            .insert_header(("X-Management-Key", KEY))
            .set_json(&definition)
    );
    ensure!(status == StatusCode::CREATED, "create {status}: {created}");
    let backfills = created["data"]["runs"].as_array().map_or(0, Vec::len);
    ensure!(backfills == 2, "a run per window: {created}");
    for _ in 0..backfills {
        let run = services
            .ports
            .queue
            .claim_next()
            .await?
            .context("a queued backfill")?;
        let done = services.worker.execute(run).await;
        ensure!(
            done.status == domain::RunStatus::Completed,
            "backfill run: {done:?}"
        );
    }

    let range = demo::date_range(NOW);
    let uri = format!(
        "/api/v1/reports/views-by-channel-and-path/run?date_from={}&date_to={}&group_by=channel,path&limit=100",
        range.from(),
        range.to()
    );
    let (status, report) = call!(
        app,
        test::TestRequest::get()
            .uri(&uri)
            .insert_header(("X-Management-Key", KEY))
    );
    ensure!(status == StatusCode::OK, "read {status}: {report}");
    let client = db.pool.get().await?;
    let expected = client
        .query(
            "SELECT * FROM (
                 SELECT properties ->> 'channel' AS channel, properties ->> 'path' AS path,
                        count(*)::int8 AS views, sum(amount_cents)::int8 AS amount
                 FROM analytics_events
                 WHERE tenant_id = 1 AND event_name = 'page_view'
                   AND (occurred_at AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2
                 GROUP BY 1, 2
             ) AS grouped
             ORDER BY views DESC, channel COLLATE \"C\", path COLLATE \"C\"",
            &[&range.from(), &range.to()],
        )
        .await?
        .iter()
        .map(|row| {
            serde_json::json!({
                "channel": row.get::<_, Option<String>>("channel"),
                "path": row.get::<_, Option<String>>("path"),
                "views": row.get::<_, i64>("views"),
                "amount": row.get::<_, i64>("amount"),
            })
        })
        .collect::<Vec<_>>();
    ensure!(!expected.is_empty(), "the demo data has page views");
    ensure!(
        report["data"]["rows"] == Value::Array(expected.clone()),
        "rollup {} against SQL {}",
        report["data"]["rows"],
        Value::Array(expected)
    );
    ensure!(
        report["data"]["source_system"] == "postgres",
        "served from postgres: {report}"
    );
    Ok(())
}

/// `GET /stats` and `GET /metrics` on PostgreSQL equal a direct SQL aggregation of the raw
/// events: whole days and hours from the standard rollups, ragged edges from raw events, and
/// users seen both at an edge and inside counted once.
#[actix_web::test]
async fn stats_and_metrics_on_postgres_equal_a_direct_aggregation_of_the_events() -> Result<()> {
    let db = database!();
    let services = wiring::build(&config(Some(&db.url))?, clock())
        .await?
        .services;
    services
        .seeder
        .seed(TenantId::DEFAULT, 3_000, false)
        .await?;
    // Demo events lie on whole hours: these fall inside hours, at the edges of the windows
    // below too, by users the demo data also has.
    let events: Vec<Value> = (0..90_usize)
        .map(|i| {
            let minutes = i64::try_from(i * 53 + 7)?;
            let at = datetime!(2026-11-18 00:00 UTC) + time::Duration::minutes(minutes);
            let (name, path, channel) = (
                ["page_view", "purchase", "signup"][i % 3],
                ["/", "/pricing", "/docs"][i % 4 % 3],
                ["ios", "web"][i % 2],
            );
            Ok(serde_json::json!({
                "event_id": format!("minute-{i}"),
                "event_name": name,
                "user_id": format!("user-{}", i % 40 + 1),
                "timestamp": at.format(&time::format_description::well_known::Rfc3339)?,
                "properties": {"path": path, "channel": channel}
            }))
        })
        .collect::<Result<_>>()?;
    services
        .ingest
        .ingest_bulk(TenantId::DEFAULT, serde_json::json!({ "events": events }))
        .await?;
    let fortnight = domain::DateRange::new(datetime!(2026-11-08 00:00 UTC).date(), NOW.date())?;
    for (report, window) in [
        ("events-by-name", domain::Window::Hour),
        ("events-by-name", domain::Window::Day),
        ("traffic", domain::Window::Day),
        ("top-paths", domain::Window::Day),
    ] {
        let run = services
            .recompute
            .run_now(&application::RecomputeRequest {
                tenant: TenantId::DEFAULT,
                report_slug: domain::ReportSlug::parse(report)?,
                window,
                range: fortnight,
                mode: domain::RunMode::Full,
                requested_by: domain::Actor::builtin(domain::Actor::SEED),
            })
            .await?;
        ensure!(
            run.status == domain::RunStatus::Completed,
            "{report} {window}: {run:?}"
        );
    }
    let app = test::init_service(http_api::build_app(app_state(&services)?)).await;
    let client = db.pool.get().await?;

    // Metrics: totals, and buckets by day or hour, against count(*) and count(DISTINCT).
    for (query, from, to, grouping, name, channel) in [
        (
            "from=2026-11-18T10:17:00Z&to=2026-11-20T05:43:00Z&group_by=day",
            datetime!(2026-11-18 10:17 UTC),
            datetime!(2026-11-20 05:43 UTC),
            Some("day"),
            None,
            None,
        ),
        (
            "event_name=page_view&from=2026-11-20T09:05:00Z&to=1795232400&group_by=hour",
            datetime!(2026-11-20 09:05 UTC),
            datetime!(2026-11-21 03:40 UTC),
            Some("hour"),
            Some("page_view"),
            None,
        ),
        (
            "channel=ios&from=2026-11-19T23:31:00Z&to=2026-11-19T23:59:00Z",
            datetime!(2026-11-19 23:31 UTC),
            datetime!(2026-11-19 23:59 UTC),
            None,
            None,
            Some("ios"),
        ),
    ] {
        let (status, body) = call!(
            app,
            test::TestRequest::get().uri(&format!("/api/v1/metrics?{query}"))
        );
        ensure!(status == StatusCode::OK, "{query}: {status} {body}");
        let filter = "tenant_id = 1 AND occurred_at >= $1 AND occurred_at < $2
                      AND ($3::text IS NULL OR event_name = $3)
                      AND ($4::text IS NULL OR properties ->> 'channel' = $4)";
        let total = client
            .query_one(
                &format!(
                    "SELECT count(*)::int8, count(DISTINCT user_id)::int8 FROM analytics_events WHERE {filter}"
                ),
                &[&from, &to, &name, &channel],
            )
            .await?;
        let expected = (total.get::<_, i64>(0), total.get::<_, i64>(1));
        ensure!(
            (
                body["data"]["count"].as_i64(),
                body["data"]["unique_users"].as_i64()
            ) == (Some(expected.0), Some(expected.1))
                && expected.0 > 0,
            "{query}: {body} against {expected:?}"
        );
        if let Some(grouping) = grouping {
            let rows = client
                .query(
                    &format!(
                        "SELECT date_trunc($5, occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                                count(*)::int8, count(DISTINCT user_id)::int8
                         FROM analytics_events WHERE {filter} GROUP BY 1"
                    ),
                    &[&from, &to, &name, &channel, &grouping],
                )
                .await?;
            let truth: HashMap<OffsetDateTime, (i64, i64)> = rows
                .iter()
                .map(|row| (row.get(0), (row.get(1), row.get(2))))
                .collect();
            let buckets = body["data"]["buckets"].as_array().context("buckets")?;
            ensure!(!buckets.is_empty(), "{query}: buckets");
            for bucket in buckets {
                let start = OffsetDateTime::parse(
                    bucket["start"].as_str().context("start")?,
                    &time::format_description::well_known::Rfc3339,
                )?;
                let want = truth.get(&start).copied().unwrap_or((0, 0));
                ensure!(
                    (bucket["count"].as_i64(), bucket["unique_users"].as_i64())
                        == (Some(want.0), Some(want.1)),
                    "{query}: bucket {bucket} against {want:?}"
                );
            }
            let counted: i64 = buckets.iter().filter_map(|b| b["count"].as_i64()).sum();
            ensure!(counted == expected.0, "{query}: the buckets add up");
        }
    }

    // Stats: views, unique users and top paths of a range, of every source or one.
    for (query, source) in [
        ("date=2026-11-15&date_to=2026-11-20&limit=2", None),
        ("date=2026-11-18&site_id=stripe", Some("stripe")),
    ] {
        let (status, body) = call!(
            app,
            test::TestRequest::get().uri(&format!("/api/v1/stats?{query}"))
        );
        ensure!(status == StatusCode::OK, "{query}: {status} {body}");
        let (from, to) = (
            domain::parse_date("date", body["data"]["date"].as_str().context("date")?)?,
            domain::parse_date(
                "date_to",
                body["data"]["date_to"].as_str().context("date_to")?,
            )?,
        );
        let filter =
            "e.tenant_id = 1 AND (e.occurred_at AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2
                      AND ($3::text IS NULL OR s.slug = $3)";
        let total = client
            .query_one(
                &format!(
                    "SELECT count(*)::int8, count(DISTINCT e.user_id)::int8
                     FROM analytics_events e JOIN event_sources s ON s.id = e.source_id WHERE {filter}"
                ),
                &[&from, &to, &source],
            )
            .await?;
        ensure!(
            body["data"]["total_views"].as_i64() == Some(total.get(0))
                && body["data"]["unique_users"].as_i64() == Some(total.get(1)),
            "{query}: {body} against {total:?}"
        );
        let limit: i64 = if source.is_some() { 10 } else { 2 };
        let paths = client
            .query(
                &format!(
                    "SELECT e.properties ->> 'path' AS path, count(*)::int8, count(DISTINCT e.user_id)::int8
                     FROM analytics_events e JOIN event_sources s ON s.id = e.source_id
                     WHERE {filter} AND e.properties ->> 'path' IS NOT NULL
                     GROUP BY 1 ORDER BY 2 DESC, (e.properties ->> 'path') COLLATE \"C\" LIMIT $4"
                ),
                &[&from, &to, &source, &limit],
            )
            .await?;
        let expected: Vec<Value> = paths
            .iter()
            .map(|row| {
                serde_json::json!({"path": row.get::<_, String>(0), "views": row.get::<_, i64>(1),
                                   "unique_users": row.get::<_, i64>(2)})
            })
            .collect();
        ensure!(
            body["data"]["top_paths"] == Value::Array(expected.clone()) && !expected.is_empty(),
            "{query}: {} against {expected:?}",
            body["data"]["top_paths"]
        );
    }
    Ok(())
}

/// Two processes over one database (each with its own scope locks, so only the run table's
/// one-active-refresh rule stands between them) find the same dirty windows due at once:
/// each refresh is queued once, and carrying them out counts the late event.
#[actix_web::test]
async fn two_processes_queue_each_due_refresh_once() -> Result<()> {
    use application::ports::IngestEvent;
    let db = database!();
    let manual = Arc::new(ManualClock::new(NOW));
    let clock: Arc<dyn Clock> = manual.clone();
    let first = wiring::build(&config(Some(&db.url))?, clock.clone())
        .await?
        .services;
    let second = wiring::build(&config(Some(&db.url))?, clock)
        .await?
        .services;
    let mut late = demo::event(1, NOW);
    late.event_id = "late".into();
    late.occurred_at = datetime!(2026-11-18 09:00 UTC);
    first
        .ports
        .events
        .ingest(
            TenantId::DEFAULT,
            vec![IngestEvent {
                fingerprint: application::ingest::fingerprint(&late),
                event: late,
            }],
            NOW,
        )
        .await?;
    manual.advance(time::Duration::days(2));
    let (a, b) = tokio::join!(first.scheduler.tick(), second.scheduler.tick());
    let runs = first
        .recompute
        .list(
            TenantId::DEFAULT,
            &domain::RunFilter::default(),
            domain::PageRequest::new(500, 0),
        )
        .await?
        .items;
    let scopes: std::collections::BTreeSet<(String, domain::Window)> = runs
        .iter()
        .map(|r| (r.report_slug.to_string(), r.window))
        .collect();
    ensure!(
        !runs.is_empty() && scopes.len() == runs.len(),
        "one refresh per report and window: {runs:?}"
    );
    ensure!(
        a.queued.len() + b.queued.len() == runs.len() && a.busy + b.busy >= runs.len(),
        "each due scope was queued by one process and found busy by the other: {a:?} {b:?}"
    );
    // Either process's worker carries them out.
    loop {
        let claimed = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            second.ports.queue.claim_next(),
        )
        .await;
        let Ok(Ok(Some(run))) = claimed else { break };
        for done in second.worker.execute_with_companions(run).await {
            ensure!(
                done.status == domain::RunStatus::Completed,
                "a refresh failed: {done:?}"
            );
        }
    }
    let day = domain::DateRange::new(
        time::macros::date!(2026 - 11 - 18),
        time::macros::date!(2026 - 11 - 18),
    )?;
    let dirty = first
        .ports
        .rollups
        .dirty_scopes(time::macros::date!(1970 - 01 - 01), NOW.date())
        .await?;
    ensure!(
        dirty.is_empty(),
        "every dirty window was refreshed: {dirty:?}"
    );
    let volume = domain::rollup::builtin(domain::ReportKind::VolumeByPeriod);
    let page = first
        .ports
        .rollups
        .read(&domain::RollupQuery {
            tenant: TenantId::DEFAULT,
            report: volume.slug.clone(),
            window: domain::Window::Day,
            range: day,
            measures: vec![domain::Combine::Sum],
            by_period: true,
            dimensions: Vec::new(),
            filters: Vec::new(),
            order: domain::RollupOrder::Period,
            page: domain::PageRequest::new(10, 0),
            coarser: Vec::new(),
        })
        .await?;
    ensure!(
        page.rows.first().map(|r| r.measures[0]) == Some(1) && !page.is_stale(),
        "the late event is counted: {page:?}"
    );
    Ok(())
}

/// `backfill` covers a range longer than one run may (in audited runs of whole buckets), and
/// a second, incremental backfill finds nothing left to do.
#[actix_web::test]
async fn a_backfill_rebuilds_a_long_range_in_runs_and_then_has_nothing_dirty() -> Result<()> {
    use application::ports::IngestEvent;
    let db = database!();
    let services = wiring::build(&config(Some(&db.url))?, clock())
        .await?
        .services;
    let events: Vec<IngestEvent> = (0..40_i64)
        .map(|n| {
            let mut event = demo::event(1, NOW);
            event.event_id = format!("old-{n}");
            event.occurred_at = NOW - time::Duration::days(n * 12);
            IngestEvent {
                fingerprint: application::ingest::fingerprint(&event),
                event,
            }
        })
        .collect();
    services
        .ports
        .events
        .ingest(TenantId::DEFAULT, events, NOW)
        .await?;
    let args = |mode: &str| pg_analytics::backfill::BackfillArgs {
        report: "volume-by-period".into(),
        from: "2025-06-01".into(),
        to: "2026-11-21".into(),
        mode: Some(mode.into()),
        window: Some("day".into()),
        tenant: None,
        requested_by: Some("ops".into()),
    };
    pg_analytics::backfill::backfill(&services, args("full")).await?;
    let runs = services
        .recompute
        .list(
            TenantId::DEFAULT,
            &domain::RunFilter::default(),
            domain::PageRequest::new(100, 0),
        )
        .await?
        .items;
    ensure!(
        runs.len() > 12
            && runs
                .iter()
                .all(|r| r.status == domain::RunStatus::Completed
                    && r.requested_by.as_str() == "ops"),
        "17 months of days in completed runs of a month or so: {}",
        runs.len()
    );
    let volume = domain::rollup::builtin(domain::ReportKind::VolumeByPeriod);
    let whole = domain::DateRange::new(
        time::macros::date!(2025 - 06 - 01),
        time::macros::date!(2026 - 11 - 21),
    )?;
    let counted: i64 = db
        .pool
        .get()
        .await?
        .query_one(
            "SELECT coalesce(sum(measure_values[1]), 0)::int8 FROM rollup_snapshots
             WHERE report_slug = $1 AND window_name = 'day' AND bucket_start BETWEEN $2 AND $3",
            &[&volume.slug.as_str(), &whole.from(), &whole.to()],
        )
        .await?
        .get(0);
    ensure!(
        counted == 40,
        "every event of the range is counted: {counted}"
    );
    pg_analytics::backfill::backfill(&services, args("incremental")).await?;
    let after = services
        .recompute
        .list(
            TenantId::DEFAULT,
            &domain::RunFilter::default(),
            domain::PageRequest::new(100, 0),
        )
        .await?
        .total;
    ensure!(
        after == runs.len() as u64,
        "nothing was dirty, so the incremental backfill ran nothing"
    );
    Ok(())
}

//! Health, routing, the catalog, report runs, recomputations, the audit trail and the OpenAPI
//! document, on the `default` tenant with the management key.

use std::sync::Arc;

use actix_web::{
    http::StatusCode,
    test::{self, TestRequest},
};
use anyhow::{Context, Result, anyhow};
use application::ports::{DependencyStatus, MockHealthProbe, MockReportCatalog, StoreError};
use domain::demo;
use http_api::build_app;
use serde_json::json;

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// Health, request ids and routing
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn health_is_200_ok_with_unconfigured_dependencies() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, get("/api/v1/health").to_request()).await;

    reply.assert_data(StatusCode::OK);
    let data = &reply.body["data"];
    assert_eq!(data["status"], "ok", "no configured dependency is failing");
    assert_eq!(
        data["service"], "pg-analytics",
        "the configured service name"
    );
    assert_eq!(data["version"], "1.2.3-test", "the configured version");
    assert_eq!(
        data["timestamp"], "2026-11-21T12:00:00Z",
        "the clock's time, RFC 3339"
    );
    assert_eq!(
        data["dependencies"],
        json!({ "postgres": "not_configured", "redis": "not_configured" }),
        "dependencies"
    );
    assert!(reply.body.get("meta").is_none(), "empty meta is omitted");
    Ok(())
}

#[actix_web::test]
async fn health_is_503_degraded_when_a_configured_dependency_is_unavailable() -> Result<()> {
    let mut postgres = MockHealthProbe::new();
    postgres
        .expect_check()
        .returning(|| DependencyStatus::Unavailable);
    let h = Harness::with_ports(|ports| ports.postgres_health = Some(Arc::new(postgres)));
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, get("/api/v1/health").to_request()).await;

    reply.assert_data(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["data"]["status"], "degraded", "overall status");
    assert_eq!(
        reply.body["data"]["dependencies"]["postgres"], "unavailable",
        "postgres"
    );
    assert_eq!(
        reply.body["data"]["dependencies"]["redis"], "not_configured",
        "redis"
    );
    Ok(())
}

#[actix_web::test]
async fn a_client_request_id_is_echoed() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let ok = send(
        &app,
        get("/api/v1/health")
            .insert_header(("X-Request-Id", "trace-abc-123"))
            .to_request(),
    )
    .await;
    let failed = send(
        &app,
        get("/api/v1/nowhere")
            .insert_header(("X-Request-Id", "trace-def-456"))
            .to_request(),
    )
    .await;

    assert_eq!(
        ok.header("x-request-id"),
        Some("trace-abc-123"),
        "echoed on a success"
    );
    assert_eq!(
        failed.header("x-request-id"),
        Some("trace-def-456"),
        "echoed on an error"
    );
    Ok(())
}

#[actix_web::test]
async fn a_missing_or_unacceptable_request_id_is_replaced_by_a_uuid() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let missing = send(&app, get("/api/v1/health").to_request()).await;
    let too_long = "x".repeat(129);
    let replaced = send(
        &app,
        get("/api/v1/health")
            .insert_header(("X-Request-Id", too_long.as_str()))
            .to_request(),
    )
    .await;

    for (case, reply) in [("missing", &missing), ("too long", &replaced)] {
        let id = reply
            .header("x-request-id")
            .with_context(|| format!("{case}: an id is set"))?;
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{case}: generated id {id:?} is a UUID"
        );
    }
    assert_ne!(
        missing.header("x-request-id"),
        replaced.header("x-request-id"),
        "each request gets its own id"
    );
    Ok(())
}

#[actix_web::test]
async fn an_unknown_route_is_a_json_404() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    for uri in [
        "/nope",
        "/api/v1/nope",
        "/api/v2/reports",
        "/api/v1/reports/volume-by-period/run/extra",
    ] {
        let reply = send(&app, get(uri).to_request()).await;
        reply.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    Ok(())
}

#[actix_web::test]
async fn a_wrong_method_on_a_known_route_is_a_json_405_with_allow() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let delete = send(
        &app,
        TestRequest::delete().uri("/api/v1/reports").to_request(),
    )
    .await;
    let put = send(
        &app,
        managed(TestRequest::put().uri("/api/v1/recomputations")).to_request(),
    )
    .await;
    let post = send(&app, TestRequest::post().uri("/api/v1/health").to_request()).await;

    delete.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(
        delete.header("allow"),
        Some("GET, HEAD, POST"),
        "Allow of /reports"
    );
    put.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(
        put.header("allow"),
        Some("GET, HEAD, POST"),
        "Allow of /recomputations"
    );
    post.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    Ok(())
}

#[actix_web::test]
async fn head_is_answered_like_get_without_a_body() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let head = test::call_service(
        &app,
        TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/api/v1/reports")
            .to_request(),
    )
    .await;

    assert_eq!(head.status(), StatusCode::OK, "HEAD of a GET route");
    assert!(
        head.headers().contains_key("x-request-id"),
        "with the headers of a GET"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_catalog_lists_every_public_report_with_pagination() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, get("/api/v1/reports").to_request()).await;

    reply.assert_data(StatusCode::OK);
    let slugs: Vec<&str> = reply.body["data"]
        .as_array()
        .context("data is a list")?
        .iter()
        .filter_map(|r| r["slug"].as_str())
        .collect();
    assert_eq!(
        slugs,
        [
            "events-by-name",
            "status-counts",
            "top-entities",
            "top-paths",
            "traffic",
            "volume-by-period"
        ],
        "the built-in reports and the rollups every tenant has, sorted by slug by default"
    );
    assert_eq!(
        reply.body["meta"]["pagination"],
        json!({ "limit": 20, "offset": 0, "total": 6 }),
        "pagination used"
    );
    let volume = &reply.body["data"][5];
    assert_eq!(volume["cache_ttl_seconds"], 120, "reference TTL");
    assert_eq!(volume["default_window"], "day", "default window");
    assert_eq!(
        volume["allowed_windows"][1],
        json!({ "window": "week", "retention_days": 730, "refresh_interval_minutes": 240, "is_default": false }),
        "window settings"
    );
    assert_eq!(
        volume["supported_filters"]["filters"],
        json!(["source"]),
        "supported filters"
    );
    assert!(
        volume["updated_at"].is_string()
            && volume["name"].is_string()
            && volume["description"].is_string(),
        "item shape: {volume}"
    );
    Ok(())
}

#[actix_web::test]
async fn the_catalog_clamps_limit_sorts_and_searches() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let big = send(&app, get("/api/v1/reports?limit=500&offset=1").to_request()).await;
    let small = send(&app, get("/api/v1/reports?limit=0").to_request()).await;
    let by_ttl = send(
        &app,
        get("/api/v1/reports?sort=cache_ttl_seconds&order=desc").to_request(),
    )
    .await;
    let search = send(&app, get("/api/v1/reports?search=STATUS").to_request()).await;

    assert_eq!(
        big.body["meta"]["pagination"],
        json!({ "limit": 100, "offset": 1, "total": 6 }),
        "limit clamped to 100"
    );
    assert_eq!(
        big.body["data"].as_array().map(Vec::len),
        Some(5),
        "offset 1 skips one report"
    );
    assert_eq!(
        small.body["meta"]["pagination"]["limit"], 1,
        "limit clamped to 1"
    );
    let ttls: Vec<i64> = by_ttl.body["data"]
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|r| r["cache_ttl_seconds"].as_i64())
        .collect();
    assert_eq!(ttls, [120, 90, 60, 60, 60, 45], "sorted by TTL, descending");
    assert_eq!(
        search.body["meta"]["pagination"]["total"], 1,
        "case-insensitive search"
    );
    assert_eq!(search.body["data"][0]["slug"], "status-counts", "the match");
    Ok(())
}

#[actix_web::test]
async fn bad_catalog_parameters_are_400_naming_the_field() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    for (query, field) in [
        ("sort=id", "sort"),
        ("order=sideways", "order"),
        ("offset=-1", "offset"),
        ("limit=ten", "limit"),
    ] {
        let reply = send(&app, get(&format!("/api/v1/reports?{query}")).to_request()).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(reply.error_field(), field, "field of {query}");
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(field),
            "message names the field: {message}"
        );
    }
    Ok(())
}

#[actix_web::test]
async fn a_report_is_served_by_slug_and_unknown_slugs_are_404() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let found = send(&app, get("/api/v1/reports/top-entities").to_request()).await;
    let unknown = send(&app, get("/api/v1/reports/revenue").to_request()).await;
    let malformed = send(&app, get("/api/v1/reports/Not_A_Slug").to_request()).await;

    found.assert_data(StatusCode::OK);
    assert_eq!(found.body["data"]["slug"], "top-entities", "the report");
    assert_eq!(
        found.body["data"]["allowed_windows"][0]["retention_days"], 180,
        "its windows"
    );
    unknown.assert_error(StatusCode::NOT_FOUND, "not_found");
    malformed.assert_error(StatusCode::NOT_FOUND, "not_found");
    Ok(())
}

#[actix_web::test]
async fn a_report_run_over_seeded_demo_data_has_exact_counts() -> Result<()> {
    let h = Harness::new();
    let events: i64 = 1_000;
    h.seed(events as u64).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let range = demo::date_range(NOW);
    let uri = format!(
        "/api/v1/reports/status-counts/run?date_from={}&date_to={}",
        range.from(),
        range.to()
    );

    let first = send(&app, get(&uri).to_request()).await;
    let second = send(&app, get(&uri).to_request()).await;

    first.assert_data(StatusCode::OK);
    // failed: multiples of 17; pending: multiples of 11 that are not also multiples of 17.
    let failed = events / 17;
    let pending = events / 11 - events / (11 * 17);
    let success = events - failed - pending;
    let data = &first.body["data"];
    assert_eq!(
        data["rows"],
        json!([
            { "status": "success", "event_count": success },
            { "status": "pending", "event_count": pending },
            { "status": "failed", "event_count": failed },
        ]),
        "exact counts, by count descending"
    );
    assert_eq!(data["row_count"], 3, "rows in the page");
    assert_eq!(data["total_rows"], 3, "rows in the result");
    assert_eq!(data["report_slug"], "status-counts", "slug");
    assert_eq!(data["window"], "day", "the report's default window");
    assert_eq!(
        data["breakdown"], "status",
        "the report's default breakdown"
    );
    assert_eq!(data["date_from"], range.from().to_string(), "date_from");
    assert_eq!(data["date_to"], range.to().to_string(), "date_to");
    assert_eq!(
        data["source_system"], "memory",
        "answered by the memory snapshots"
    );
    assert_eq!(
        data["snapshot_version"], 2,
        "the day and week seed runs bumped the version"
    );
    assert!(
        data["generated_at"].is_string() && data["last_refreshed_at"].is_string(),
        "timestamps: {data}"
    );
    assert!(data["execution_ms"].is_number(), "execution time");
    assert_eq!(
        first.body["meta"],
        json!({ "cache_hit": false, "pagination": { "limit": 50, "offset": 0, "total": 3 } }),
        "meta of a miss"
    );
    assert_eq!(
        second.body["meta"]["cache_hit"], true,
        "the second read is a cache hit"
    );
    assert_eq!(
        second.body["data"]["rows"], data["rows"],
        "a hit serves the same rows"
    );

    let page = send(&app, get(&format!("{uri}&limit=2&offset=1")).to_request()).await;
    assert_eq!(page.body["data"]["row_count"], 2, "a page of two rows");
    assert_eq!(
        page.body["data"]["rows"][0]["status"], "pending",
        "offset 1 skips the first row"
    );
    assert_eq!(
        page.body["meta"]["pagination"],
        json!({ "limit": 2, "offset": 1, "total": 3 }),
        "row pagination"
    );
    Ok(())
}

#[actix_web::test]
async fn report_run_parameter_errors_are_400_naming_the_field() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let cases = [
        ("volume-by-period", "window=month", "window"),
        ("volume-by-period", "date_from=2026-02-30", "date_from"),
        (
            "volume-by-period",
            "date_from=2026-11-10&date_to=2026-11-01",
            "date_from",
        ),
        (
            "volume-by-period",
            "date_from=2024-01-01&date_to=2026-01-01",
            "date_to",
        ),
        // Entirely before the day window's retention (365 days).
        (
            "volume-by-period",
            "date_from=2024-01-01&date_to=2024-01-31",
            "date_from",
        ),
        ("volume-by-period", "breakdown=status", "breakdown"),
        ("volume-by-period", "status=failed", "status"),
        ("status-counts", "status=lost", "status"),
        ("status-counts", "limit=0", "limit"),
        ("status-counts", "limit=101", "limit"),
        ("top-entities", "offset=-5", "offset"),
    ];
    for (slug, query, field) in cases {
        let reply = send(
            &app,
            get(&format!("/api/v1/reports/{slug}/run?{query}")).to_request(),
        )
        .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(reply.error_field(), field, "field of {slug}?{query}");
    }

    let breakdown = send(
        &app,
        get("/api/v1/reports/volume-by-period/run?breakdown=bogus").to_request(),
    )
    .await;
    let message = breakdown.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("period, source"),
        "the message names the allowed breakdowns: {message}"
    );
    Ok(())
}

#[actix_web::test]
async fn a_run_of_an_unknown_report_is_404() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, get("/api/v1/reports/revenue/run").to_request()).await;

    reply.assert_error(StatusCode::NOT_FOUND, "not_found");
    Ok(())
}

#[actix_web::test]
async fn an_unavailable_store_is_503() -> Result<()> {
    let h = Harness::new();
    h.adapters.catalog.set_failing(true);
    let app = test::init_service(build_app(h.state.clone())).await;

    let list = send(&app, get("/api/v1/reports").to_request()).await;
    let run = send(&app, get("/api/v1/reports/status-counts/run").to_request()).await;

    list.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    run.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let message = list.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("told to fail"),
        "the cause stays in the logs: {message}"
    );
    Ok(())
}

#[actix_web::test]
async fn an_unexpected_failure_is_500_with_an_opaque_message() -> Result<()> {
    let mut catalog = MockReportCatalog::new();
    catalog.expect_list_public().returning(|_| {
        Err(StoreError::Unexpected(anyhow!(
            "connection reset by peer: secret-host:5432"
        )))
    });
    let h = Harness::with_ports(|ports| ports.catalog = Arc::new(catalog));
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, get("/api/v1/reports").to_request()).await;

    reply.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert_eq!(
        reply.body["error"]["message"], "internal server error",
        "opaque message"
    );
    assert!(
        reply.body["error"].get("details").is_none(),
        "no details: {:?}",
        reply.body
    );
    assert!(
        !reply.body.to_string().contains("secret-host"),
        "the cause never reaches the client"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Management authentication
// ---------------------------------------------------------------------------------------------

fn management_requests() -> Vec<TestRequest> {
    vec![
        TestRequest::post()
            .uri("/api/v1/recomputations")
            .set_json(trigger_body(
                "volume-by-period",
                "day",
                "2026-11-01",
                "2026-11-07",
            )),
        get("/api/v1/recomputations"),
        get("/api/v1/recomputations/6f1c1f76-2b9e-4d3c-9a51-0c6f0f3b4f10"),
        get("/api/v1/audit-entries"),
    ]
}

#[actix_web::test]
async fn management_routes_refuse_a_missing_key_with_401() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    for req in management_requests() {
        let reply = send(&app, req.to_request()).await;
        reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The key is checked before the body is read: a bad body without a key is still a 401.
    let not_json = TestRequest::post()
        .uri("/api/v1/recomputations")
        .insert_header(("Content-Type", "text/plain"))
        .set_payload("hello");
    send(&app, not_json.to_request())
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        h.run_count().await?,
        0,
        "nothing was triggered without a key"
    );
    Ok(())
}

#[actix_web::test]
async fn management_routes_refuse_a_wrong_key_with_401() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    for req in management_requests() {
        let reply = send(
            &app,
            req.insert_header(("X-Management-Key", "not-the-key"))
                .to_request(),
        )
        .await;
        reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    for req in management_requests() {
        let reply = send(
            &app,
            req.insert_header(("Authorization", "Bearer not-the-key"))
                .to_request(),
        )
        .await;
        reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // When X-Management-Key is sent it decides, even next to a correct bearer token.
    let mixed = get("/api/v1/audit-entries")
        .insert_header(("X-Management-Key", "not-the-key"))
        .insert_header(("Authorization", format!("Bearer {KEY}")));
    send(&app, mixed.to_request())
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    Ok(())
}

#[actix_web::test]
async fn both_management_key_headers_are_accepted() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let by_header = send(
        &app,
        get("/api/v1/audit-entries")
            .insert_header(("X-Management-Key", KEY))
            .to_request(),
    )
    .await;
    let by_bearer = send(
        &app,
        get("/api/v1/audit-entries")
            .insert_header(("Authorization", format!("Bearer {KEY}")))
            .to_request(),
    )
    .await;

    by_header.assert_data(StatusCode::OK);
    by_bearer.assert_data(StatusCode::OK);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Recomputations
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_malformed_x_actor_is_400_even_when_the_body_names_the_requester() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let body = trigger_body("volume-by-period", "day", "2026-11-04", "2026-11-10");

    let reply = send(
        &app,
        trigger_request(&body)
            .insert_header(("X-Actor", ""))
            .to_request(),
    )
    .await;

    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(reply.error_field(), "X-Actor");
    assert_eq!(h.run_count().await?, 0, "nothing was admitted");
    Ok(())
}

#[actix_web::test]
async fn a_trigger_is_accepted_with_202_and_can_be_read_back() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let body = json!({ "report_slug": "volume-by-period", "window": "week", "date_from": "2026-11-04", "date_to": "2026-11-10" });

    let reply = send(
        &app,
        trigger_request(&body)
            .insert_header(("X-Actor", "nightly-job"))
            .to_request(),
    )
    .await;

    reply.assert_data(StatusCode::ACCEPTED);
    let run = &reply.body["data"];
    let id = run["id"].as_str().context("a run id")?;
    assert_eq!(run["status"], "pending", "a new run is pending");
    assert_eq!(run["report_slug"], "volume-by-period", "slug");
    assert_eq!(run["window"], "week", "window");
    assert_eq!(
        (&run["date_from"], &run["date_to"]),
        (&json!("2026-11-04"), &json!("2026-11-10")),
        "the requested range"
    );
    assert_eq!(
        run["requested_by"], "nightly-job",
        "the X-Actor header names the requester"
    );
    assert_eq!(run["requested_at"], "2026-11-21T12:00:00Z", "requested now");
    assert!(
        run["summary"].is_null() && run["started_at"].is_null() && run["error_message"].is_null(),
        "not started: {run}"
    );
    assert!(
        run.get("lock_token").is_none(),
        "the lock token is never exposed: {run}"
    );
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/recomputations/{id}").as_str()),
        "Location of the run"
    );

    let read = send(
        &app,
        managed(get(&format!("/api/v1/recomputations/{id}"))).to_request(),
    )
    .await;
    read.assert_data(StatusCode::OK);
    assert_eq!(read.body["data"], *run, "the run reads back as admitted");

    let audit = send(
        &app,
        managed(get("/api/v1/audit-entries?action=recompute.triggered")).to_request(),
    )
    .await;
    let entry = &audit.body["data"][0];
    assert_eq!(entry["actor"], "nightly-job", "audited as the requester");
    assert_eq!(entry["resource_type"], "recompute_run", "resource type");
    assert_eq!(entry["resource_id"], id, "resource id");
    assert_eq!(
        entry["metadata"],
        json!({ "report_slug": "volume-by-period", "window": "week", "mode": "full", "date_from": "2026-11-04", "date_to": "2026-11-10" }),
        "metadata"
    );
    Ok(())
}

#[actix_web::test]
async fn a_trigger_without_requester_defaults_and_without_dates_covers_thirty_days() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(
        &app,
        trigger_request(&json!({ "report_slug": "top-entities" })).to_request(),
    )
    .await;

    reply.assert_data(StatusCode::ACCEPTED);
    let run = &reply.body["data"];
    assert_eq!(
        run["requested_by"], "management-api",
        "the default requester"
    );
    assert_eq!(run["window"], "day", "the default window");
    assert_eq!(
        (&run["date_from"], &run["date_to"]),
        (&json!("2026-10-23"), &json!("2026-11-21")),
        "the last 30 days"
    );
    Ok(())
}

#[actix_web::test]
async fn a_completed_run_has_its_summary() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let admitted = send(
        &app,
        trigger_request(&trigger_body(
            "status-counts",
            "day",
            "2026-11-01",
            "2026-11-07",
        ))
        .to_request(),
    )
    .await;
    let id = admitted.body["data"]["id"]
        .as_str()
        .context("a run id")?
        .to_owned();

    let finished = h.work_one().await?;
    let read = send(
        &app,
        managed(get(&format!("/api/v1/recomputations/{id}"))).to_request(),
    )
    .await;

    assert_eq!(
        finished.id.to_string(),
        id,
        "the worker ran the triggered run"
    );
    read.assert_data(StatusCode::OK);
    let run = &read.body["data"];
    assert_eq!(run["status"], "completed", "the run completed: {run}");
    let summary = &run["summary"];
    assert_eq!(summary["bucket_count"], 7, "seven day buckets");
    assert_eq!(
        (
            &summary["effective_date_from"],
            &summary["effective_date_to"]
        ),
        (&json!("2026-11-01"), &json!("2026-11-07")),
        "day ranges are not widened"
    );
    assert!(
        summary["rows_deleted"].is_u64() && summary["rows_inserted"].is_u64(),
        "row counts: {summary}"
    );
    assert!(
        run["started_at"].is_string() && run["finished_at"].is_string(),
        "lifecycle stamps: {run}"
    );
    Ok(())
}

#[actix_web::test]
async fn trigger_checks_the_window_before_the_report() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let bad_window = send(
        &app,
        trigger_request(&trigger_body(
            "no-such-report",
            "year",
            "2026-11-01",
            "2026-11-07",
        ))
        .to_request(),
    )
    .await;
    let bad_order = send(
        &app,
        trigger_request(&trigger_body(
            "no-such-report",
            "day",
            "2026-11-07",
            "2026-11-01",
        ))
        .to_request(),
    )
    .await;
    let too_long = send(
        &app,
        trigger_request(&trigger_body(
            "no-such-report",
            "day",
            "2024-01-01",
            "2026-01-01",
        ))
        .to_request(),
    )
    .await;
    let unknown = send(
        &app,
        trigger_request(&trigger_body(
            "no-such-report",
            "day",
            "2026-11-01",
            "2026-11-07",
        ))
        .to_request(),
    )
    .await;
    let missing = send(
        &app,
        trigger_request(&json!({ "window": "day" })).to_request(),
    )
    .await;

    bad_window.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        bad_window.error_field(),
        "window",
        "an invalid window is reported before the unknown report"
    );
    bad_order.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(bad_order.error_field(), "date_from", "from after to");
    too_long.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(too_long.error_field(), "date_to", "the range limit");
    unknown.assert_error(StatusCode::NOT_FOUND, "not_found");
    missing.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        missing.error_field(),
        "report_slug",
        "report_slug is required"
    );
    Ok(())
}

#[actix_web::test]
async fn a_duplicate_trigger_of_the_same_scope_is_409() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let body = trigger_body("volume-by-period", "day", "2026-11-01", "2026-11-07");

    let first = send(&app, trigger_request(&body).to_request()).await;
    let second = send(&app, trigger_request(&body).to_request()).await;

    first.assert_data(StatusCode::ACCEPTED);
    second.assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(
        second.body["error"]["details"]["report_slug"], "volume-by-period",
        "the busy scope: {:?}",
        second.body
    );
    let runs = send(&app, managed(get("/api/v1/recomputations")).to_request()).await;
    assert_eq!(
        runs.body["meta"]["pagination"]["total"], 1,
        "the duplicate stored no run"
    );
    Ok(())
}

#[actix_web::test]
async fn a_trigger_when_the_queue_is_full_is_503_and_the_run_is_failed() -> Result<()> {
    let h = Harness::with_queue_capacity(1);
    let app = test::init_service(build_app(h.state.clone())).await;

    let queued = send(
        &app,
        trigger_request(&trigger_body(
            "volume-by-period",
            "day",
            "2026-11-01",
            "2026-11-07",
        ))
        .to_request(),
    )
    .await;
    let refused = send(
        &app,
        trigger_request(&trigger_body(
            "status-counts",
            "day",
            "2026-11-01",
            "2026-11-07",
        ))
        .to_request(),
    )
    .await;

    queued.assert_data(StatusCode::ACCEPTED);
    refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let failed = send(
        &app,
        managed(get("/api/v1/recomputations?status=failed")).to_request(),
    )
    .await;
    assert_eq!(
        failed.body["meta"]["pagination"]["total"], 1,
        "the refused run was marked failed"
    );
    assert_eq!(
        failed.body["data"][0]["report_slug"], "status-counts",
        "the refused run"
    );
    assert_eq!(
        failed.body["data"][0]["id"], refused.body["error"]["details"]["run_id"],
        "the error names the failed run"
    );
    Ok(())
}

#[actix_web::test]
async fn a_trigger_when_the_run_store_is_unavailable_is_503() -> Result<()> {
    let h = Harness::new();
    h.adapters.runs.set_failing(true);
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(
        &app,
        trigger_request(&trigger_body(
            "volume-by-period",
            "day",
            "2026-11-01",
            "2026-11-07",
        ))
        .to_request(),
    )
    .await;

    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    Ok(())
}

#[actix_web::test]
async fn an_unknown_body_field_is_400() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(
        &app,
        trigger_request(&json!({ "report_slug": "volume-by-period", "force": true })).to_request(),
    )
    .await;

    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unknown field `force`"),
        "the serde message names the field: {message}"
    );
    Ok(())
}

#[actix_web::test]
async fn malformed_json_is_400() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let req = managed(TestRequest::post().uri("/api/v1/recomputations"))
        .insert_header(("Content-Type", "application/json"))
        .set_payload("{\"report_slug\": ");

    let reply = send(&app, req.to_request()).await;

    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    Ok(())
}

#[actix_web::test]
async fn a_body_that_is_not_json_is_415() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let payload = trigger_body("volume-by-period", "day", "2026-11-01", "2026-11-07").to_string();

    let text = managed(TestRequest::post().uri("/api/v1/recomputations"))
        .insert_header(("Content-Type", "text/plain"))
        .set_payload(payload.clone());
    let untyped = managed(TestRequest::post().uri("/api/v1/recomputations")).set_payload(payload);

    send(&app, text.to_request())
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    send(&app, untyped.to_request())
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    Ok(())
}

#[actix_web::test]
async fn a_body_over_16_kib_is_413() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let body = json!({ "report_slug": "volume-by-period", "requested_by": "x".repeat(17 * 1024) });

    let reply = send(&app, trigger_request(&body).to_request()).await;

    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(h.run_count().await?, 0, "nothing was triggered");
    Ok(())
}

#[actix_web::test]
async fn an_unknown_or_malformed_run_id_is_404() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let unknown = send(
        &app,
        managed(get(
            "/api/v1/recomputations/6f1c1f76-2b9e-4d3c-9a51-0c6f0f3b4f10",
        ))
        .to_request(),
    )
    .await;
    let malformed = send(
        &app,
        managed(get("/api/v1/recomputations/not-a-uuid")).to_request(),
    )
    .await;

    unknown.assert_error(StatusCode::NOT_FOUND, "not_found");
    malformed.assert_error(StatusCode::NOT_FOUND, "not_found");
    Ok(())
}

#[actix_web::test]
async fn runs_are_listed_newest_first_with_filters_and_pagination() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    send(
        &app,
        trigger_request(&trigger_body(
            "volume-by-period",
            "day",
            "2026-11-01",
            "2026-11-07",
        ))
        .to_request(),
    )
    .await
    .assert_data(StatusCode::ACCEPTED);
    h.clock.advance(time::Duration::minutes(1));
    send(
        &app,
        trigger_request(&trigger_body(
            "status-counts",
            "day",
            "2026-11-01",
            "2026-11-07",
        ))
        .to_request(),
    )
    .await
    .assert_data(StatusCode::ACCEPTED);

    let all = send(&app, managed(get("/api/v1/recomputations")).to_request()).await;
    let page = send(
        &app,
        managed(get("/api/v1/recomputations?limit=1&offset=1")).to_request(),
    )
    .await;
    let by_slug = send(
        &app,
        managed(get(
            "/api/v1/recomputations?report_slug=status-counts&status=pending",
        ))
        .to_request(),
    )
    .await;
    let completed = send(
        &app,
        managed(get("/api/v1/recomputations?status=completed")).to_request(),
    )
    .await;

    all.assert_data(StatusCode::OK);
    assert_eq!(
        all.body["data"][0]["report_slug"], "status-counts",
        "newest first"
    );
    assert_eq!(
        all.body["meta"]["pagination"],
        json!({ "limit": 20, "offset": 0, "total": 2 }),
        "default page"
    );
    assert_eq!(
        page.body["data"][0]["report_slug"], "volume-by-period",
        "the second page"
    );
    assert_eq!(
        page.body["meta"]["pagination"],
        json!({ "limit": 1, "offset": 1, "total": 2 }),
        "page used"
    );
    assert_eq!(
        by_slug.body["meta"]["pagination"]["total"], 1,
        "filtered by slug and status"
    );
    assert_eq!(
        completed.body["meta"]["pagination"]["total"], 0,
        "no completed run yet"
    );

    for (query, field) in [
        ("report_slug=Not_A_Slug", "report_slug"),
        ("status=done", "status"),
        ("offset=x", "offset"),
    ] {
        let reply = send(
            &app,
            managed(get(&format!("/api/v1/recomputations?{query}"))).to_request(),
        )
        .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(reply.error_field(), field, "field of {query}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn audit_entries_are_listed_newest_first_with_exact_filters() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    send(
        &app,
        trigger_request(&trigger_body(
            "volume-by-period",
            "day",
            "2026-11-01",
            "2026-11-07",
        ))
        .to_request(),
    )
    .await
    .assert_data(StatusCode::ACCEPTED);
    h.work_one().await?;

    let all = send(&app, managed(get("/api/v1/audit-entries")).to_request()).await;
    let by_action = send(
        &app,
        managed(get("/api/v1/audit-entries?action=recompute.completed")).to_request(),
    )
    .await;
    let by_actor = send(
        &app,
        managed(get("/api/v1/audit-entries?actor=ops&limit=500")).to_request(),
    )
    .await;

    all.assert_data(StatusCode::OK);
    let actions: Vec<&str> = all.body["data"]
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["recompute.completed", "recompute.triggered"],
        "newest first"
    );
    assert_eq!(
        all.body["meta"]["pagination"],
        json!({ "limit": 20, "offset": 0, "total": 2 }),
        "pagination"
    );
    let entry = &all.body["data"][0];
    for key in [
        "id",
        "actor",
        "action",
        "resource_type",
        "resource_id",
        "metadata",
        "created_at",
    ] {
        assert!(entry.get(key).is_some(), "an entry has {key}: {entry}");
    }
    assert_eq!(
        by_action.body["data"][0]["actor"], "recompute-worker",
        "the worker audits the outcome"
    );
    assert_eq!(
        by_action.body["meta"]["pagination"]["total"], 1,
        "exact action filter"
    );
    assert_eq!(
        by_actor.body["meta"]["pagination"],
        json!({ "limit": 100, "offset": 0, "total": 1 }),
        "actor filter, clamped limit"
    );

    for (query, field) in [
        ("action=recompute", "action"),
        ("actor=%20%20", "actor"),
        ("offset=-1", "offset"),
    ] {
        let reply = send(
            &app,
            managed(get(&format!("/api/v1/audit-entries?{query}"))).to_request(),
        )
        .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(reply.error_field(), field, "field of {query}");
    }
    Ok(())
}

#[actix_web::test]
async fn an_unavailable_audit_log_is_503() -> Result<()> {
    let h = Harness::new();
    h.adapters.audit.set_failing(true);
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, managed(get("/api/v1/audit-entries")).to_request()).await;

    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_openapi_document_is_3_1_and_describes_every_route() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, get("/api/v1/openapi.json").to_request()).await;

    assert_eq!(reply.status, StatusCode::OK, "served publicly");
    assert!(
        reply.header("x-request-id").is_some(),
        "carries X-Request-Id"
    );
    let doc = &reply.body;
    assert_eq!(doc["openapi"], "3.1.0", "OpenAPI 3.1");
    let routes = [
        ("/api/v1/health", "get"),
        ("/api/v1/reports", "get"),
        ("/api/v1/reports/{slug}", "get"),
        ("/api/v1/reports/{slug}/run", "get"),
        ("/api/v1/recomputations", "post"),
        ("/api/v1/recomputations", "get"),
        ("/api/v1/recomputations/{id}", "get"),
        ("/api/v1/audit-entries", "get"),
        ("/api/v1/events", "post"),
        ("/api/v1/events/bulk", "post"),
        ("/api/v1/sources", "get"),
        ("/api/v1/sources", "post"),
        ("/api/v1/stats", "get"),
        ("/api/v1/metrics", "get"),
        ("/api/v1/openapi.json", "get"),
    ];
    for (path, method) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    assert_eq!(
        doc["paths"].as_object().map(|p| p.len()),
        Some(13),
        "no undocumented or extra paths"
    );

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["management_key"]["name"], "X-Management-Key",
        "header key scheme: {schemes}"
    );
    assert_eq!(
        schemes["management_bearer"]["scheme"], "bearer",
        "bearer scheme: {schemes}"
    );
    assert_eq!(
        schemes["api_key"],
        json!({ "type": "apiKey", "in": "header", "name": "X-API-Key", "description": schemes["api_key"]["description"] }),
        "the tenant API key scheme: {schemes}"
    );
    let trigger = &doc["paths"]["/api/v1/recomputations"]["post"];
    assert_eq!(
        trigger["security"],
        json!([{ "management_key": [] }, { "management_bearer": [] }, { "api_key": [] }]),
        "either management key header, or an API key with manage"
    );
    assert_eq!(
        doc["paths"]["/api/v1/events"]["post"]["security"],
        json!([{ "api_key": [] }]),
        "events take an API key only"
    );
    assert_eq!(
        doc["paths"]["/api/v1/reports/{slug}/run"]["get"]["security"][0],
        json!({}),
        "report runs may be anonymous (for the default tenant)"
    );
    for status in [
        "202", "400", "401", "404", "409", "413", "415", "500", "503",
    ] {
        assert!(
            trigger["responses"][status].is_object(),
            "the trigger documents {status}"
        );
    }
    assert_eq!(
        trigger["responses"]["409"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorEnvelope",
        "errors use the error envelope"
    );
    let schemas = doc["components"]["schemas"]
        .as_object()
        .context("component schemas")?;
    for name in [
        "ErrorEnvelope",
        "ErrorCode",
        "ReportListEnvelope",
        "ReportRunEnvelope",
        "RunEnvelope",
        "AuditListEnvelope",
        "HealthEnvelope",
        "TriggerSchema",
        "ReportRowSchema",
        "IngestedEventEnvelope",
        "BulkIngestEnvelope",
        "EventSchema",
        "BulkEventsSchema",
        "SourceSchema",
        "SourceEnvelope",
        "SourceListEnvelope",
        "RollupSchema",
        "RollupChangeEnvelope",
        "RollupRunEnvelope",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is a component");
    }
    let run_params: Vec<&str> = doc["paths"]["/api/v1/reports/{slug}/run"]["get"]["parameters"]
        .as_array()
        .context("run parameters")?
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        run_params,
        [
            "slug",
            "window",
            "date_from",
            "date_to",
            "breakdown",
            "source",
            "status",
            "group_by",
            "order",
            "limit",
            "offset",
            "tenant"
        ],
        "every report run parameter"
    );
    let tenant_scoped = [
        ("/api/v1/reports/{slug}/run", "get"),
        ("/api/v1/recomputations", "post"),
        ("/api/v1/recomputations", "get"),
        ("/api/v1/recomputations/{id}", "get"),
        ("/api/v1/audit-entries", "get"),
        ("/api/v1/events", "post"),
        ("/api/v1/events/bulk", "post"),
        ("/api/v1/sources", "get"),
        ("/api/v1/sources", "post"),
    ];
    for (path, method) in tenant_scoped {
        let has_tenant = doc["paths"][path][method]["parameters"]
            .as_array()
            .is_some_and(|params| {
                params
                    .iter()
                    .any(|p| p["name"] == "tenant" && p["in"] == "query")
            });
        assert!(has_tenant, "{method} {path} documents the tenant parameter");
    }
    let event_headers: Vec<&str> = doc["paths"]["/api/v1/events"]["post"]["parameters"]
        .as_array()
        .context("event parameters")?
        .iter()
        .filter(|p| p["in"] == "header")
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        event_headers,
        ["Idempotency-Key"],
        "the idempotency header is documented"
    );
    for status in [
        "201", "200", "400", "401", "403", "409", "413", "415", "429",
    ] {
        assert!(
            doc["paths"]["/api/v1/events"]["post"]["responses"][status].is_object(),
            "POST /events documents {status}"
        );
    }
    let codes = &doc["components"]["schemas"]["ErrorCode"];
    assert!(
        codes.to_string().contains("idempotency_conflict"),
        "the new error code is in the schema: {codes}"
    );
    Ok(())
}

#[actix_web::test]
async fn the_openapi_document_states_the_rules_the_server_enforces() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let doc = send(&app, get("/api/v1/openapi.json").to_request())
        .await
        .body;

    let runs = &doc["paths"]["/api/v1/recomputations"]["get"];
    let param = |operation: &serde_json::Value, name: &str| {
        operation["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    assert_eq!(
        param(runs, "offset")["schema"]["maximum"],
        json!(i64::MAX),
        "offsets end where PostgreSQL's do"
    );
    assert!(
        param(runs, "tenant")["schema"]["pattern"].is_string(),
        "tenant is a slug"
    );
    assert!(
        param(runs, "limit")["schema"]["maximum"].is_null(),
        "a listing's limit is clamped, never refused"
    );
    for (path, method) in [
        ("/api/v1/recomputations/{id}", "get"),
        ("/api/v1/events", "post"),
        ("/api/v1/reports", "get"),
    ] {
        for (status, response) in doc["paths"][path][method]["responses"]
            .as_object()
            .context("responses")?
        {
            assert!(
                response["headers"]["X-Request-Id"].is_object(),
                "{method} {path} {status} declares X-Request-Id"
            );
        }
    }
    assert!(
        doc["paths"]["/api/v1/recomputations/{id}"]["get"]["responses"]["400"].is_object(),
        "a malformed tenant is documented where it can happen"
    );
    assert!(
        doc["paths"]["/api/v1/events"]["post"]["responses"]["429"]["headers"]["Retry-After"]
            .is_object(),
        "429s declare Retry-After"
    );
    let schemas = &doc["components"]["schemas"];
    for row in [
        "PeriodSourceRow",
        "PeriodStatusRow",
        "PeriodRow",
        "StatusRow",
        "EntityRow",
    ] {
        assert_eq!(
            schemas[row]["additionalProperties"],
            json!(false),
            "{row} is closed, so a row matches one shape only"
        );
    }
    for body in [
        "TriggerSchema",
        "SourceSchema",
        "EventSchema",
        "BulkEventsSchema",
    ] {
        assert_eq!(
            schemas[body]["additionalProperties"],
            json!(false),
            "{body}: unknown fields are refused"
        );
    }
    assert_eq!(
        schemas["TriggerSchema"]["required"],
        json!(["report_slug"]),
        "{}",
        schemas["TriggerSchema"]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Probes and trace context
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn livez_answers_without_asking_any_dependency() -> Result<()> {
    // A probe with no expectation panics when asked.
    let h = Harness::with_ports(|ports| {
        ports.postgres_health = Some(Arc::new(MockHealthProbe::new()));
        ports.redis_health = Some(Arc::new(MockHealthProbe::new()));
    });
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, get("/livez").to_request()).await;

    reply.assert_data(StatusCode::OK);
    assert_eq!(reply.body["data"]["status"], "ok");
    Ok(())
}

#[actix_web::test]
async fn readyz_is_503_until_postgres_is_migrated_and_ignores_redis() -> Result<()> {
    let mut postgres = MockHealthProbe::new();
    postgres
        .expect_ready()
        .returning(|| Err("the schema is at V3, this build needs V9".to_owned()));
    let mut redis = MockHealthProbe::new();
    redis.expect_check().returning(|| DependencyStatus::Ok);
    let h = Harness::with_ports(|ports| {
        ports.postgres_health = Some(Arc::new(postgres));
        ports.redis_health = Some(Arc::new(redis));
    });
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, get("/readyz").to_request()).await;

    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("PostgreSQL") && message.contains("V3"),
        "the reason is given: {message}"
    );
    Ok(())
}

#[actix_web::test]
async fn readyz_is_200_degraded_when_only_redis_is_down() -> Result<()> {
    let mut postgres = MockHealthProbe::new();
    postgres.expect_ready().returning(|| Ok(()));
    let mut redis = MockHealthProbe::new();
    redis
        .expect_check()
        .returning(|| DependencyStatus::Unavailable);
    let h = Harness::with_ports(|ports| {
        ports.postgres_health = Some(Arc::new(postgres));
        ports.redis_health = Some(Arc::new(redis));
    });
    let app = test::init_service(build_app(h.state.clone())).await;

    let degraded = send(&app, get("/readyz").to_request()).await;
    let plain = send(
        &test::init_service(build_app(Harness::new().state.clone())).await,
        get("/readyz").to_request(),
    )
    .await;

    degraded.assert_data(StatusCode::OK);
    assert_eq!(degraded.body["data"]["status"], "degraded");
    assert_eq!(degraded.body["data"]["redis"], "unavailable");
    plain.assert_data(StatusCode::OK);
    assert_eq!(plain.body["data"]["status"], "ready", "nothing configured");
    Ok(())
}

#[actix_web::test]
async fn metrics_are_404_where_they_are_not_served() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(&app, get("/metrics").to_request()).await;

    reply.assert_error(StatusCode::NOT_FOUND, "not_found");
    Ok(())
}

#[actix_web::test]
async fn a_traceparent_is_continued_and_a_malformed_one_replaced() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let continued = send(
        &app,
        get("/livez")
            .insert_header(("traceparent", incoming))
            .to_request(),
    )
    .await;
    let replaced = send(
        &app,
        get("/livez")
            .insert_header(("traceparent", "00-zz-not-a-trace-01"))
            .to_request(),
    )
    .await;

    let outgoing = continued
        .header("traceparent")
        .context("traceparent sent")?;
    let parts: Vec<&str> = outgoing.split('-').collect();
    assert_eq!(parts.len(), 4, "{outgoing}");
    assert_eq!(
        parts[1], "4bf92f3577b34da6a3ce929d0e0e4736",
        "the same trace"
    );
    assert_ne!(parts[2], "00f067aa0ba902b7", "this server's own span id");
    assert_eq!(parts[3], "01", "the sampled flag kept");
    let fresh = replaced.header("traceparent").context("traceparent sent")?;
    assert_eq!(fresh.len(), 55, "a well-formed new traceparent: {fresh}");
    assert!(!fresh.contains("zz"), "{fresh}");
    Ok(())
}

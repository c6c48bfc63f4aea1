//! Tenants: credentials, tenant selection, isolation on every route, revocation, rate limiting
//! and sources.

use actix_web::{
    http::{Method, StatusCode},
    test::{self, TestRequest},
};
use anyhow::{Context, Result};
use domain::{Scope, TenantId};
use http_api::{RateLimit, build_app};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::*;

const ALL_SCOPES: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Manage];

/// Every tenant-scoped route, labelled, with `?tenant=` appended when `tenant` is given: the
/// report run, six management requests, then the two ingestion routes.
fn tenant_scoped_requests(tenant: Option<&str>) -> Vec<(String, TestRequest)> {
    let uri = |path: &str| match tenant {
        Some(slug) => format!("{path}?tenant={slug}"),
        None => path.to_owned(),
    };
    let post = |path: &str, body: Value| {
        (
            format!("POST {path}"),
            TestRequest::post().uri(&uri(path)).set_json(body),
        )
    };
    let get_ = |path: &str| (format!("GET {path}"), get(&uri(path)));
    vec![
        get_("/api/v1/reports/status-counts/run"),
        post(
            "/api/v1/recomputations",
            trigger_body("status-counts", "day", "2026-11-21", "2026-11-21"),
        ),
        get_("/api/v1/recomputations"),
        get_("/api/v1/recomputations/6f1c1f76-2b9e-4d3c-9a51-0c6f0f3b4f10"),
        get_("/api/v1/audit-entries"),
        get_("/api/v1/sources"),
        post("/api/v1/sources", json!({ "slug": "new-source" })),
        post("/api/v1/events", event("shopify", "cus_1", "success")),
        post(
            "/api/v1/events/bulk",
            json!({ "events": [event("shopify", "cus_2", "success")] }),
        ),
    ]
}

/// The `data` rows of a report run, as (status, count).
fn status_counts(reply: &Reply) -> Vec<(String, i64)> {
    reply.body["data"]["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    (
                        row["status"].as_str().unwrap_or_default().to_owned(),
                        row["event_count"].as_i64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[actix_web::test]
async fn two_tenants_see_only_their_own_events_reports_runs_and_audit_entries() -> Result<()> {
    let h = Harness::new();
    let acme = h.tenant("acme").await?;
    let default_key = h.key(TenantId::DEFAULT, &ALL_SCOPES).await?;
    let acme_key = h.key(acme, &ALL_SCOPES).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let trigger = |key: &str| {
        keyed(TestRequest::post().uri("/api/v1/recomputations"), key)
            .set_json(trigger_body(
                "status-counts",
                "day",
                "2026-11-21",
                "2026-11-21",
            ))
            .to_request()
    };

    // Arrange: each tenant ingests its own events and recomputes.
    send(
        &app,
        post_bulk(
            &default_key,
            &[
                event("stripe", "cus_1", "success"),
                event("stripe", "cus_2", "failed"),
            ],
        )
        .to_request(),
    )
    .await
    .assert_data(StatusCode::CREATED);
    send(
        &app,
        post_bulk(
            &acme_key,
            &[
                event("shopify", "a_1", "pending"),
                event("shopify", "a_2", "pending"),
                event("shopify", "a_3", "pending"),
            ],
        )
        .to_request(),
    )
    .await
    .assert_data(StatusCode::CREATED);
    let default_run = send(&app, trigger(&default_key)).await;
    let acme_run = send(&app, trigger(&acme_key)).await;
    default_run.assert_data(StatusCode::ACCEPTED);
    acme_run.assert_data(StatusCode::ACCEPTED);
    h.work_one().await?;
    h.work_one().await?;
    let default_run_id = default_run.body["data"]["id"]
        .as_str()
        .context("default run id")?;
    let acme_run_id = acme_run.body["data"]["id"]
        .as_str()
        .context("acme run id")?;
    let run_uri = "/api/v1/reports/status-counts/run?date_from=2026-11-21&date_to=2026-11-21";

    // Act
    let default_report = send(&app, keyed(get(run_uri), &default_key).to_request()).await;
    let acme_report = send(&app, keyed(get(run_uri), &acme_key).to_request()).await;
    let operator_acme_report = send(
        &app,
        managed(get(&format!("{run_uri}&tenant=acme"))).to_request(),
    )
    .await;
    let public_report = send(&app, get(run_uri).to_request()).await;
    let default_runs = send(
        &app,
        keyed(get("/api/v1/recomputations"), &default_key).to_request(),
    )
    .await;
    let acme_runs = send(
        &app,
        keyed(get("/api/v1/recomputations"), &acme_key).to_request(),
    )
    .await;
    let acme_reads_default_run = send(
        &app,
        keyed(
            get(&format!("/api/v1/recomputations/{default_run_id}")),
            &acme_key,
        )
        .to_request(),
    )
    .await;
    let acme_reads_own_run = send(
        &app,
        keyed(
            get(&format!("/api/v1/recomputations/{acme_run_id}")),
            &acme_key,
        )
        .to_request(),
    )
    .await;
    let default_audit = send(
        &app,
        keyed(get("/api/v1/audit-entries"), &default_key).to_request(),
    )
    .await;
    let acme_audit = send(
        &app,
        keyed(get("/api/v1/audit-entries"), &acme_key).to_request(),
    )
    .await;

    // Assert
    assert_eq!(
        status_counts(&default_report),
        [("failed".to_owned(), 1), ("success".to_owned(), 1)],
        "default counts its own events only: {:?}",
        default_report.body
    );
    assert_eq!(
        status_counts(&acme_report),
        [("pending".to_owned(), 3)],
        "acme counts its own events only: {:?}",
        acme_report.body
    );
    assert_eq!(
        status_counts(&operator_acme_report),
        status_counts(&acme_report),
        "the operator reads acme with ?tenant=acme"
    );
    assert_eq!(
        status_counts(&public_report),
        status_counts(&default_report),
        "anonymous reads default"
    );
    for (name, runs, own_id) in [
        ("default", &default_runs, default_run_id),
        ("acme", &acme_runs, acme_run_id),
    ] {
        runs.assert_data(StatusCode::OK);
        let ids: Vec<&Value> = runs.body["data"]
            .as_array()
            .context("runs")?
            .iter()
            .map(|run| &run["id"])
            .collect();
        assert_eq!(ids, [&json!(own_id)], "{name} lists only its own run");
    }
    acme_reads_default_run.assert_error(StatusCode::NOT_FOUND, "not_found");
    acme_reads_own_run.assert_data(StatusCode::OK);
    for (name, audit, own_id) in [
        ("default", &default_audit, default_run_id),
        ("acme", &acme_audit, acme_run_id),
    ] {
        audit.assert_data(StatusCode::OK);
        // Setting the tenant up (its source) is audited too; here only the runs matter.
        let entries: Vec<&Value> = audit.body["data"]
            .as_array()
            .context("audit entries")?
            .iter()
            .filter(|entry| entry["resource_type"] == "recompute_run")
            .collect();
        assert_eq!(
            entries.len(),
            2,
            "{name}: triggered and completed: {entries:?}"
        );
        assert!(
            entries.iter().all(|entry| entry["resource_id"] == own_id),
            "{name} sees only entries about its own run: {entries:?}"
        );
    }
    Ok(())
}

#[actix_web::test]
async fn every_tenant_scoped_route_refuses_a_key_of_another_tenant_with_403() -> Result<()> {
    let h = Harness::new();
    let acme = h.tenant("acme").await?;
    let acme_key = h.key(acme, &ALL_SCOPES).await?;
    let default_key = h.key(TenantId::DEFAULT, &ALL_SCOPES).await?;
    let app = test::init_service(build_app(h.state.clone())).await;

    for (key, other) in [
        (&acme_key, "default"),
        (&default_key, "acme"),
        (&acme_key, "no-such-tenant"),
    ] {
        for (what, req) in tenant_scoped_requests(Some(other)) {
            let reply = send(&app, keyed(req, key).to_request()).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{what} naming {other}: {:?}",
                reply.body
            );
            reply.assert_error(StatusCode::FORBIDDEN, "forbidden");
        }
    }
    assert_eq!(h.run_count_of(acme).await?, 0, "nothing triggered for acme");
    assert_eq!(h.run_count().await?, 0, "nothing triggered for default");
    assert_eq!(h.event_count(acme).await?, 0, "no acme events");
    Ok(())
}

#[actix_web::test]
async fn a_key_naming_its_own_tenant_is_served() -> Result<()> {
    let h = Harness::new();
    let acme = h.tenant("acme").await?;
    let acme_key = h.key(acme, &ALL_SCOPES).await?;
    let app = test::init_service(build_app(h.state.clone())).await;

    for (what, req) in tenant_scoped_requests(Some("acme")) {
        let reply = send(&app, keyed(req, &acme_key).to_request()).await;
        assert!(
            reply.status.is_success() || reply.status == StatusCode::NOT_FOUND,
            "{what}: served for its own tenant: {} {:?}",
            reply.status,
            reply.body
        );
    }
    assert_eq!(
        h.event_count(acme).await?,
        2,
        "both acme events were stored"
    );
    Ok(())
}

#[actix_web::test]
async fn anonymous_callers_read_only_the_default_tenant() -> Result<()> {
    let h = Harness::new();
    h.tenant("acme").await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let run = "/api/v1/reports/status-counts/run";

    let implicit = send(&app, get(run).to_request()).await;
    let explicit = send(&app, get(&format!("{run}?tenant=default")).to_request()).await;
    let other = send(&app, get(&format!("{run}?tenant=acme")).to_request()).await;
    let unknown = send(&app, get(&format!("{run}?tenant=ghost")).to_request()).await;
    let malformed = send(
        &app,
        get(&format!("{run}?tenant=Not%20A%20Slug")).to_request(),
    )
    .await;
    let catalog = send(&app, get("/api/v1/reports?tenant=acme").to_request()).await;

    implicit.assert_data(StatusCode::OK);
    explicit.assert_data(StatusCode::OK);
    other.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    unknown.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    malformed.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(malformed.error_field(), "tenant", "the field");
    catalog.assert_data(StatusCode::OK);
    for (what, req) in tenant_scoped_requests(None).into_iter().skip(1) {
        let reply = send(&app, req.to_request()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what} without credentials: {:?}",
            reply.body
        );
        reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    Ok(())
}

#[actix_web::test]
async fn the_operator_acts_on_any_tenant_and_an_unknown_one_is_404() -> Result<()> {
    let h = Harness::new();
    let acme = h.tenant("acme").await?;
    let app = test::init_service(build_app(h.state.clone())).await;

    let trigger = send(
        &app,
        managed(TestRequest::post().uri("/api/v1/recomputations?tenant=acme"))
            .set_json(trigger_body(
                "status-counts",
                "day",
                "2026-11-21",
                "2026-11-21",
            ))
            .to_request(),
    )
    .await;
    let acme_sources = send(
        &app,
        managed(get("/api/v1/sources?tenant=acme")).to_request(),
    )
    .await;
    let ghost = send(
        &app,
        managed(get("/api/v1/audit-entries?tenant=ghost")).to_request(),
    )
    .await;
    let malformed = send(
        &app,
        managed(get("/api/v1/recomputations?tenant=-bad-")).to_request(),
    )
    .await;
    let in_body = send(
        &app,
        trigger_request(&json!({ "report_slug": "status-counts", "tenant": "acme" })).to_request(),
    )
    .await;

    trigger.assert_data(StatusCode::ACCEPTED);
    assert_eq!(h.run_count_of(acme).await?, 1, "the run belongs to acme");
    assert_eq!(h.run_count().await?, 0, "not to default");
    acme_sources.assert_data(StatusCode::OK);
    assert_eq!(
        acme_sources.body["data"][1]["slug"], "shopify",
        "acme's sources, after its default one: {:?}",
        acme_sources.body
    );
    ghost.assert_error(StatusCode::NOT_FOUND, "not_found");
    malformed.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(malformed.error_field(), "tenant", "the field");
    in_body.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        in_body.error_message().contains("unknown field `tenant`"),
        "the tenant is a query parameter, not a body field: {}",
        in_body.error_message()
    );
    Ok(())
}

#[actix_web::test]
async fn a_key_without_the_needed_scope_is_403() -> Result<()> {
    let h = Harness::new();
    let ingest_only = h.key(TenantId::DEFAULT, &[Scope::Ingest]).await?;
    let read_only = h.key(TenantId::DEFAULT, &[Scope::Read]).await?;
    let manage_only = h.key(TenantId::DEFAULT, &[Scope::Manage]).await?;
    let app = test::init_service(build_app(h.state.clone())).await;

    // Request index: 0 run report, 1..=6 management, 7..=8 ingestion.
    let needs = |index: usize| match index {
        0 => Scope::Read,
        1..=6 => Scope::Manage,
        _ => Scope::Ingest,
    };
    for (key, scope) in [
        (&ingest_only, Scope::Ingest),
        (&read_only, Scope::Read),
        (&manage_only, Scope::Manage),
    ] {
        for (index, (what, req)) in tenant_scoped_requests(None).into_iter().enumerate() {
            if needs(index) == scope {
                continue;
            }
            let reply = send(&app, keyed(req, key).to_request()).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{what} with only {scope}: {:?}",
                reply.body
            );
            reply.assert_error(StatusCode::FORBIDDEN, "forbidden");
        }
    }
    Ok(())
}

#[actix_web::test]
async fn an_unknown_or_revoked_key_is_401_immediately() -> Result<()> {
    let h = Harness::new();
    let issued = h
        .tenancy
        .issue_key(TenantId::DEFAULT, &[Scope::Read], "soon revoked")
        .await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let run = "/api/v1/reports/status-counts/run";

    let before = send(
        &app,
        keyed(get(run), issued.secret.expose_secret()).to_request(),
    )
    .await;
    h.tenancy
        .revoke_key(TenantId::DEFAULT, &issued.key.prefix)
        .await?;
    let after = send(
        &app,
        keyed(get(run), issued.secret.expose_secret()).to_request(),
    )
    .await;
    let unknown = send(&app, keyed(get(run), "pga_made-up").to_request()).await;
    let blank = send(&app, keyed(get(run), "  ").to_request()).await;

    before.assert_data(StatusCode::OK);
    after.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    unknown.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    blank.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        !after
            .body
            .to_string()
            .contains(issued.secret.expose_secret()),
        "the key is never echoed"
    );
    Ok(())
}

#[actix_web::test]
async fn an_empty_bearer_token_is_401_even_beside_a_valid_api_key() -> Result<()> {
    let h = Harness::new();
    let key = h.key(TenantId::DEFAULT, &[Scope::Read]).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let run = "/api/v1/reports/status-counts/run";

    let replies = [
        send(
            &app,
            keyed(get(run), &key)
                .insert_header(("Authorization", "Bearer "))
                .to_request(),
        )
        .await,
        send(
            &app,
            keyed(get(run), &key)
                .insert_header(("Authorization", "Bearer"))
                .to_request(),
        )
        .await,
    ];

    for reply in &replies {
        reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    Ok(())
}

#[actix_web::test]
async fn a_key_over_its_rate_is_429_with_retry_after_and_the_management_key_never_is() -> Result<()>
{
    let mut h = Harness::new();
    h.state.rate_limit = RateLimit::new(0.01, 2);
    let limited = h.key(TenantId::DEFAULT, &[Scope::Read]).await?;
    let other = h.key(TenantId::DEFAULT, &[Scope::Read]).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let run = "/api/v1/reports/status-counts/run";

    let allowed: Vec<Reply> = vec![
        send(&app, keyed(get(run), &limited).to_request()).await,
        send(&app, keyed(get(run), &limited).to_request()).await,
    ];
    let refused = send(&app, keyed(get(run), &limited).to_request()).await;
    let other_key = send(&app, keyed(get(run), &other).to_request()).await;
    let mut operator = Vec::new();
    for _ in 0..10 {
        operator.push(send(&app, managed(get(run)).to_request()).await);
    }

    for reply in &allowed {
        reply.assert_data(StatusCode::OK);
    }
    refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry_after: u64 = refused
        .header("retry-after")
        .context("a Retry-After header")?
        .parse()?;
    assert!(
        retry_after >= 1,
        "whole seconds, at least one: {retry_after}"
    );
    assert_eq!(
        refused.body["error"]["details"]["retry_after_seconds"],
        json!(retry_after),
        "the same wait in the body"
    );
    other_key.assert_data(StatusCode::OK);
    assert!(
        operator.iter().all(|r| r.status == StatusCode::OK),
        "the management key is never limited"
    );
    Ok(())
}

#[actix_web::test]
async fn sources_are_listed_and_created_per_tenant() -> Result<()> {
    let h = Harness::new();
    let acme = h.tenant("acme").await?;
    let acme_key = h.key(acme, &ALL_SCOPES).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let create = |body: Value| {
        managed(TestRequest::post().uri("/api/v1/sources"))
            .set_json(body)
            .to_request()
    };

    let listed = send(&app, managed(get("/api/v1/sources")).to_request()).await;
    let created = send(
        &app,
        create(json!({ "slug": "klarna", "provider_name": "Klarna", "description": "BNPL" })),
    )
    .await;
    let duplicate = send(&app, create(json!({ "slug": "klarna" }))).await;
    let bad_slug = send(&app, create(json!({ "slug": "Not A Slug" }))).await;
    let missing_slug = send(&app, create(json!({ "provider_name": "Nobody" }))).await;
    let unknown_field = send(&app, create(json!({ "slug": "x", "active": true }))).await;
    let acme_created = send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/sources"), &acme_key)
            .set_json(json!({ "slug": "klarna" }))
            .to_request(),
    )
    .await;
    let default_after = send(&app, managed(get("/api/v1/sources")).to_request()).await;
    let acme_after = send(&app, keyed(get("/api/v1/sources"), &acme_key).to_request()).await;
    let anonymous = send(&app, get("/api/v1/sources").to_request()).await;

    listed.assert_data(StatusCode::OK);
    let slugs = |reply: &Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|s| s["slug"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        slugs(&listed),
        ["adyen", "default", "paypal", "stripe"],
        "default's sources, by slug"
    );
    created.assert_data(StatusCode::CREATED);
    let source = &created.body["data"];
    assert_eq!(
        (
            &source["slug"],
            &source["provider_name"],
            &source["description"],
            &source["is_active"]
        ),
        (
            &json!("klarna"),
            &json!("Klarna"),
            &json!("BNPL"),
            &json!(true)
        ),
        "the created source: {source}"
    );
    assert!(source["created_at"].is_string(), "a timestamp: {source}");
    duplicate.assert_error(StatusCode::CONFLICT, "conflict");
    bad_slug.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(bad_slug.error_field(), "slug", "the field");
    missing_slug.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(missing_slug.error_field(), "slug", "the field");
    unknown_field.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    acme_created.assert_data(StatusCode::CREATED);
    assert_eq!(
        slugs(&default_after),
        ["adyen", "default", "klarna", "paypal", "stripe"],
        "default gained klarna once"
    );
    assert_eq!(
        slugs(&acme_after),
        ["default", "klarna", "shopify"],
        "acme's sources are its own, beside its default one"
    );
    anonymous.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    Ok(())
}

#[actix_web::test]
async fn events_of_a_new_source_are_accepted() -> Result<()> {
    let h = Harness::new();
    let key = h.key(TenantId::DEFAULT, &ALL_SCOPES).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let body = event("klarna", "cus_1", "success");

    let before = send(&app, post_event(&key, &body).to_request()).await;
    send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/sources"), &key)
            .set_json(json!({ "slug": "klarna" }))
            .to_request(),
    )
    .await
    .assert_data(StatusCode::CREATED);
    let after = send(&app, post_event(&key, &body).to_request()).await;

    before.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    after.assert_data(StatusCode::CREATED);
    Ok(())
}

#[actix_web::test]
async fn a_wrong_method_on_the_new_routes_is_a_json_405() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;

    for (method, uri, allow) in [
        (Method::GET, "/api/v1/events", "POST"),
        (Method::PUT, "/api/v1/events/bulk", "POST"),
        (Method::DELETE, "/api/v1/sources", "GET, HEAD, POST"),
    ] {
        let reply = send(
            &app,
            TestRequest::default()
                .method(method.clone())
                .uri(uri)
                .to_request(),
        )
        .await;
        reply.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {uri}");
    }
    Ok(())
}

#[actix_web::test]
async fn an_unavailable_key_store_is_503() -> Result<()> {
    let h = Harness::new();
    let key = h.key(TenantId::DEFAULT, &[Scope::Read]).await?;
    h.adapters.keys.set_failing(true);
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(
        &app,
        keyed(get("/api/v1/reports/status-counts/run"), &key).to_request(),
    )
    .await;

    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    Ok(())
}

#[actix_web::test]
async fn changes_made_with_a_tenant_key_are_audited_under_that_key() -> Result<()> {
    let h = Harness::new();
    let acme = h.tenant("acme").await?;
    let key = h.key(acme, &[Scope::Manage]).await?;
    let prefix: String = key.chars().take(12).collect();
    let expected_actor = format!("api-key:{prefix}");
    let app = test::init_service(build_app(h.state.clone())).await;

    let source = TestRequest::post()
        .uri("/api/v1/sources")
        .set_json(json!({"slug": "kiosk"}));
    let created = send(&app, keyed(source, &key).to_request()).await;
    created.assert_data(StatusCode::CREATED);

    let mut body = trigger_body("status-counts", "day", "2026-11-20", "2026-11-21");
    body.as_object_mut().map(|b| b.remove("requested_by"));
    let trigger = TestRequest::post()
        .uri("/api/v1/recomputations")
        .set_json(body);
    let triggered = send(&app, keyed(trigger, &key).to_request()).await;
    triggered.assert_data(StatusCode::ACCEPTED);
    assert_eq!(
        triggered.body["data"]["requested_by"],
        expected_actor.as_str(),
        "a key without a named requester is the requester"
    );

    let audit = keyed(get("/api/v1/audit-entries?action=source.created"), &key);
    let entries = send(&app, audit.to_request()).await;
    entries.assert_data(StatusCode::OK);
    let entry = &entries.body["data"][0];
    assert_eq!(
        entry["actor"],
        expected_actor.as_str(),
        "source creation is audited: {entry}"
    );
    assert_eq!(entry["resource_type"], "event_source", "{entry}");
    assert_eq!(entry["resource_id"], "kiosk", "{entry}");
    Ok(())
}

//! Reports a tenant defines: POST, PUT, DELETE and GET of `/reports`, their credentials,
//! their errors and their isolation between tenants.

use actix_web::{
    http::StatusCode,
    test::{self, TestRequest},
};
use anyhow::Result;
use domain::Scope;
use http_api::build_app;
use serde_json::{Value, json};

use crate::helpers::*;

fn purchases_by_channel() -> Value {
    json!({
        "slug": "purchases-by-channel",
        "name": "Purchases by channel",
        "measures": [{"name": "purchases", "kind": "count"},
                     {"name": "revenue_cents", "kind": "sum", "field": "amount_cents"}],
        "dimensions": [{"name": "channel", "field": "properties.channel"}],
        "filters": {"event_name": "purchase"},
        "windows": [{"window": "day", "retention_days": 30, "is_default": true},
                    {"window": "month", "retention_days": 90}],
        "cache_ttl_seconds": 60
    })
}

#[actix_web::test]
async fn a_report_is_defined_read_changed_and_deleted_over_the_api() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let acme = h.tenant("acme").await?;
    let key = h.key(acme, &[Scope::Manage, Scope::Read]).await?;

    let created = send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/reports"), &key)
            .set_json(purchases_by_channel())
            .to_request(),
    )
    .await;
    created.assert_data(StatusCode::CREATED);
    let data = &created.body["data"];
    assert_eq!(data["slug"], "purchases-by-channel");
    assert_eq!(
        data["measures"][1],
        json!({"name": "revenue_cents", "kind": "sum", "field": "amount_cents"})
    );
    assert_eq!(
        data["dimensions"],
        json!([{"name": "channel", "field": "properties.channel"}])
    );
    assert_eq!(data["filters"], json!({"event_name": "purchase"}));
    assert_eq!(data["windows"][1]["refresh_interval_minutes"], 1440);
    let runs = data["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 2, "a backfill run per window: {data}");
    assert_eq!(runs[0]["status"], "pending");
    assert_eq!(runs[0]["date_from"], "2026-10-23", "30 days of retention");

    let read = send(
        &app,
        keyed(get("/api/v1/reports/purchases-by-channel"), &key).to_request(),
    )
    .await;
    read.assert_data(StatusCode::OK);
    assert_eq!(read.body["data"]["name"], "Purchases by channel");
    assert!(read.body["data"].get("runs").is_none());

    let anonymous = send(
        &app,
        get("/api/v1/reports/purchases-by-channel").to_request(),
    )
    .await;
    anonymous.assert_error(StatusCode::NOT_FOUND, "not_found");
    let builtin = send(&app, get("/api/v1/reports/status-counts").to_request()).await;
    builtin.assert_data(StatusCode::OK);

    let mut renamed = purchases_by_channel();
    renamed["name"] = json!("Purchases per channel");
    renamed.as_object_mut().map(|o| o.remove("slug"));
    let replaced = send(
        &app,
        keyed(
            TestRequest::put().uri("/api/v1/reports/purchases-by-channel"),
            &key,
        )
        .set_json(renamed)
        .to_request(),
    )
    .await;
    replaced.assert_data(StatusCode::OK);
    assert_eq!(
        replaced.body["data"]["runs"],
        json!([]),
        "a name rebuilds nothing"
    );

    let deleted = send(
        &app,
        keyed(
            TestRequest::delete().uri("/api/v1/reports/purchases-by-channel"),
            &key,
        )
        .to_request(),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = send(
        &app,
        keyed(get("/api/v1/reports/purchases-by-channel"), &key).to_request(),
    )
    .await;
    gone.assert_error(StatusCode::NOT_FOUND, "not_found");
    Ok(())
}

#[actix_web::test]
async fn a_bad_definition_names_every_field_and_stores_nothing() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let bad = send(
        &app,
        managed(TestRequest::post().uri("/api/v1/reports"))
            .set_json(json!({
                "slug": "bad",
                "measures": [{"name": "n", "kind": "avg"}],
                "dimensions": [{"field": "properties.a b"}],
                "windows": [{"window": "year"}]
            }))
            .to_request(),
    )
    .await;
    bad.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let fields: Vec<&str> = bad.body["error"]["details"]["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        [
            "measures[0].kind",
            "dimensions[0].field",
            "windows[0].window"
        ]
    );
    let missing = send(&app, managed(get("/api/v1/reports/bad")).to_request()).await;
    missing.assert_error(StatusCode::NOT_FOUND, "not_found");
    Ok(())
}

#[actix_web::test]
async fn slugs_of_builtins_and_of_existing_reports_are_taken() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let post = |body: Value| {
        managed(TestRequest::post().uri("/api/v1/reports"))
            .set_json(body)
            .to_request()
    };
    send(&app, post(purchases_by_channel()))
        .await
        .assert_data(StatusCode::CREATED);
    send(&app, post(purchases_by_channel()))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    send(
        &app,
        post(json!({"slug": "top-entities", "measures": [{"name": "n", "kind": "count"}]})),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict");
    let builtin = send(
        &app,
        managed(TestRequest::delete().uri("/api/v1/reports/top-entities")).to_request(),
    )
    .await;
    builtin.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let bad_tenant = send(
        &app,
        get("/api/v1/reports/status-counts?tenant=").to_request(),
    )
    .await;
    bad_tenant.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(bad_tenant.error_field(), "tenant");
    Ok(())
}

#[actix_web::test]
async fn reports_are_defined_with_manage_and_kept_apart_between_tenants() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let acme = h.tenant("acme").await?;
    let globex = h.tenant("globex").await?;
    let reader = h.key(acme, &[Scope::Read]).await?;
    let acme_manager = h.key(acme, &[Scope::Manage]).await?;
    let globex_manager = h.key(globex, &[Scope::Manage, Scope::Read]).await?;

    let refused = send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/reports"), &reader)
            .set_json(purchases_by_channel())
            .to_request(),
    )
    .await;
    refused.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let anonymous = send(
        &app,
        TestRequest::post()
            .uri("/api/v1/reports")
            .set_json(purchases_by_channel())
            .to_request(),
    )
    .await;
    anonymous.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/reports"), &acme_manager)
            .set_json(purchases_by_channel())
            .to_request(),
    )
    .await
    .assert_data(StatusCode::CREATED);
    let other = send(
        &app,
        keyed(get("/api/v1/reports/purchases-by-channel"), &globex_manager).to_request(),
    )
    .await;
    other.assert_error(StatusCode::NOT_FOUND, "not_found");
    let other_delete = send(
        &app,
        keyed(
            TestRequest::delete().uri("/api/v1/reports/purchases-by-channel"),
            &globex_manager,
        )
        .to_request(),
    )
    .await;
    other_delete.assert_error(StatusCode::NOT_FOUND, "not_found");
    let same_slug = send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/reports"), &globex_manager)
            .set_json(purchases_by_channel())
            .to_request(),
    )
    .await;
    same_slug.assert_data(StatusCode::CREATED);
    let by_operator = send(
        &app,
        managed(get("/api/v1/reports/purchases-by-channel?tenant=acme")).to_request(),
    )
    .await;
    by_operator.assert_data(StatusCode::OK);
    Ok(())
}

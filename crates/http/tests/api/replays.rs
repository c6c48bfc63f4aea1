//! Repeated cache hits answered with the body they were first sent with, and everything that
//! ends that.

use actix_web::{http::StatusCode, test};
use anyhow::Result;
use domain::{Scope, TenantId, demo};
use http_api::build_app;
use serde_json::Value;

use crate::helpers::*;

/// A `status-counts` run (TTL 90 s) over the demo range, whatever tenant asks.
fn report_uri() -> String {
    let range = demo::date_range(NOW);
    format!(
        "/api/v1/reports/status-counts/run?date_from={}&date_to={}",
        range.from(),
        range.to()
    )
}

/// `body` without its `execution_ms`, the one field a replay changes.
fn timeless(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(data) = body["data"].as_object_mut() {
        data.remove("execution_ms");
    }
    body
}

#[actix_web::test]
async fn a_repeated_hit_is_answered_with_the_same_body_and_its_own_execution_ms() -> Result<()> {
    let h = Harness::new();
    h.seed(1_000).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let uri = report_uri();

    let miss = send(&app, get(&uri).to_request()).await;
    let hit = send(&app, get(&uri).to_request()).await;
    let replay = send(&app, get(&uri).to_request()).await;

    miss.assert_data(StatusCode::OK);
    assert_eq!(hit.body["meta"]["cache_hit"], true, "primed: {}", hit.body);
    assert_eq!(
        timeless(&replay.body),
        timeless(&hit.body),
        "the hit's body again"
    );
    assert!(
        replay.body["data"]["execution_ms"].as_f64() >= Some(0.0),
        "its own execution time: {}",
        replay.body
    );
    assert_eq!(
        replay.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..]),
        "served as JSON"
    );

    // The cache going away does not change what the unchanged version's result is; only the
    // kept body could still say so.
    h.adapters.cache.set_failing(true);
    let kept = send(&app, get(&uri).to_request()).await;
    assert_eq!(
        timeless(&kept.body),
        timeless(&hit.body),
        "answered from the kept body"
    );
    Ok(())
}

#[actix_web::test]
async fn a_recompute_ends_the_replay_of_its_report() -> Result<()> {
    let h = Harness::new();
    h.seed(1_000).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let uri = report_uri();
    for _ in 0..3 {
        send(&app, get(&uri).to_request()).await;
    }
    let range = demo::date_range(NOW);
    let trigger = trigger_body(
        "status-counts",
        "day",
        &range.from().to_string(),
        &range.to().to_string(),
    );
    send(&app, trigger_request(&trigger).to_request())
        .await
        .assert_data(StatusCode::ACCEPTED);
    h.work_one().await?;

    let after = send(&app, get(&uri).to_request()).await;
    assert_eq!(after.body["meta"]["cache_hit"], false, "{}", after.body);
    assert_eq!(
        after.body["data"]["snapshot_version"], 3,
        "the run's bump, after the seed's two"
    );
    Ok(())
}

#[actix_web::test]
async fn a_body_is_sent_again_for_a_second_at_most_after_its_hit() -> Result<()> {
    let h = Harness::new();
    h.seed(1_000).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let uri = report_uri();
    for _ in 0..2 {
        send(&app, get(&uri).to_request()).await;
    }
    // With the cache failing, only a kept body can still answer a hit.
    h.adapters.cache.set_failing(true);
    h.clock.advance(time::Duration::milliseconds(999));
    let within = send(&app, get(&uri).to_request()).await;
    assert_eq!(within.body["meta"]["cache_hit"], true, "{}", within.body);
    h.clock.advance(time::Duration::milliseconds(1));
    let after = send(&app, get(&uri).to_request()).await;
    assert_eq!(after.body["meta"]["cache_hit"], false, "{}", after.body);
    assert_ne!(
        after.body["data"]["generated_at"], within.body["data"]["generated_at"],
        "computed again"
    );
    Ok(())
}

#[actix_web::test]
async fn tenants_never_share_a_replay_and_credentials_are_checked_first() -> Result<()> {
    let h = Harness::new();
    h.seed(1_000).await?;
    let acme = h.tenant("acme").await?;
    let acme_key = h.key(acme, &[Scope::Read]).await?;
    let other_key = h.key(TenantId::DEFAULT, &[Scope::Ingest]).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let uri = report_uri();
    for _ in 0..3 {
        send(&app, get(&uri).to_request()).await;
    }

    // The same path and query, for another tenant: its own (empty) result.
    let theirs = send(&app, keyed(get(&uri), &acme_key).to_request()).await;
    theirs.assert_data(StatusCode::OK);
    assert_eq!(theirs.body["meta"]["cache_hit"], false, "{}", theirs.body);
    assert_eq!(theirs.body["data"]["rows"], Value::Array(vec![]));

    // A key without the read scope is refused before any kept body is looked at.
    let refused = send(&app, keyed(get(&uri), &other_key).to_request()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    Ok(())
}

#[actix_web::test]
async fn with_replays_off_every_hit_runs_the_report() -> Result<()> {
    let mut h = Harness::new();
    h.state.replays = http_api::HitReplays::disabled();
    h.seed(1_000).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let uri = report_uri();
    for _ in 0..3 {
        send(&app, get(&uri).to_request()).await;
    }
    h.adapters.cache.set_failing(true);
    let read = send(&app, get(&uri).to_request()).await;
    assert_eq!(
        read.body["meta"]["cache_hit"], false,
        "nothing kept, so the failing cache means the snapshots: {}",
        read.body
    );
    Ok(())
}

#[actix_web::test]
async fn a_key_over_its_rate_is_refused_though_its_hit_is_kept() -> Result<()> {
    let mut h = Harness::new();
    h.state.rate_limit = http_api::RateLimit::new(0.01, 3);
    h.seed(1_000).await?;
    let key = h.key(TenantId::DEFAULT, &[Scope::Read]).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let uri = report_uri();
    let allowed = [
        send(&app, keyed(get(&uri), &key).to_request()).await,
        send(&app, keyed(get(&uri), &key).to_request()).await,
        send(&app, keyed(get(&uri), &key).to_request()).await,
    ];
    assert_eq!(allowed[2].body["meta"]["cache_hit"], true, "kept by now");
    let refused = send(&app, keyed(get(&uri), &key).to_request()).await;
    refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    Ok(())
}

/// A hit kept for a caller with credentials is never served to an anonymous caller of the same
/// tenant, who may read only the public reports.
#[actix_web::test]
async fn an_anonymous_caller_never_gets_a_hit_kept_for_credentials() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    send(
        &app,
        managed(test::TestRequest::post().uri("/api/v1/reports"))
            .set_json(serde_json::json!({
                "slug": "private-counts",
                "measures": [{"name": "events", "kind": "count"}],
                "is_public": false
            }))
            .to_request(),
    )
    .await
    .assert_data(StatusCode::CREATED);
    let uri = "/api/v1/reports/private-counts/run";
    send(&app, managed(get(uri)).to_request())
        .await
        .assert_data(StatusCode::OK);
    let hit = send(&app, managed(get(uri)).to_request()).await;
    assert_eq!(hit.body["meta"]["cache_hit"], true, "kept: {}", hit.body);
    let kept = send(&app, managed(get(uri)).to_request()).await;
    assert_eq!(timeless(&kept.body), timeless(&hit.body), "served again");

    let anonymous = send(&app, get(uri).to_request()).await;
    assert_eq!(
        anonymous.status,
        StatusCode::NOT_FOUND,
        "not public: {}",
        anonymous.body
    );
    Ok(())
}

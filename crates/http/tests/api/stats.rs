//! `GET /stats` and `GET /metrics`: the numbers of a small tenant worked out by hand, the
//! tenant boundary, and a precise 400 for every bad parameter.

use actix_web::{http::StatusCode, test, test::TestRequest};
use anyhow::Result;
use domain::Scope;
use http_api::build_app;
use serde_json::{Value, json};

use crate::helpers::{Harness, get, keyed, post_bulk, send};

/// Seven visits of acme's site over two days; some lie inside an hour, where a window's edge
/// may cut.
const VISITS: [(&str, &str, &str, &str, &str); 7] = [
    ("2026-11-19T10:00:00Z", "ana", "/", "page_view", "web"),
    (
        "2026-11-19T11:20:00Z",
        "ana",
        "/pricing",
        "page_view",
        "web",
    ),
    ("2026-11-19T12:00:00Z", "bo", "/", "page_view", "ios"),
    ("2026-11-20T09:10:00Z", "ana", "/", "page_view", "web"),
    ("2026-11-20T10:00:00Z", "cy", "/", "purchase", "web"),
    ("2026-11-20T11:45:00Z", "cy", "/docs", "page_view", "ios"),
    ("2026-11-20T12:30:00Z", "dee", "/docs", "page_view", "web"),
];

/// A harness whose tenant `acme` has [`VISITS`], with its standard rollups rebuilt over them;
/// and acme's key.
async fn visited() -> Result<(Harness, String)> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let acme = h.tenant("acme").await?;
    let key = h
        .key(acme, &[Scope::Ingest, Scope::Read, Scope::Manage])
        .await?;
    let events: Vec<Value> = VISITS
        .iter()
        .map(|(at, user, path, name, channel)| {
            json!({"event_name": name, "user_id": user, "timestamp": at,
                   "properties": {"path": path, "channel": channel}})
        })
        .collect();
    send(&app, post_bulk(&key, &events).to_request())
        .await
        .assert_data(StatusCode::CREATED);
    for (report, window) in [
        ("events-by-name", "hour"),
        ("events-by-name", "day"),
        ("traffic", "day"),
        ("top-paths", "day"),
    ] {
        send(
            &app,
            keyed(TestRequest::post().uri("/api/v1/recomputations"), &key)
                .set_json(json!({"report_slug": report, "window": window,
                                 "date_from": "2026-11-19", "date_to": "2026-11-20"}))
                .to_request(),
        )
        .await
        .assert_data(StatusCode::ACCEPTED);
        h.work_one().await?;
    }
    Ok((h, key))
}

#[actix_web::test]
async fn stats_give_views_unique_users_and_top_paths_of_a_range() -> Result<()> {
    let (h, key) = visited().await?;
    let app = test::init_service(build_app(h.state.clone())).await;

    let both = send(
        &app,
        keyed(
            get("/api/v1/stats?date=2026-11-19&date_to=2026-11-20"),
            &key,
        )
        .to_request(),
    )
    .await;
    both.assert_data(StatusCode::OK);
    assert_eq!(
        both.body["data"],
        json!({
            "date": "2026-11-19", "date_to": "2026-11-20", "source": null,
            "total_views": 7, "unique_users": 4,
            "top_paths": [
                {"path": "/", "views": 4, "unique_users": 3},
                {"path": "/docs", "views": 2, "unique_users": 2},
                {"path": "/pricing", "views": 1, "unique_users": 1}
            ]
        }),
        "ana, bo, cy and dee once each, whatever the days and paths"
    );
    assert_eq!(both.body["meta"]["stale"], false);
    assert!(both.body["meta"]["last_refreshed_at"].is_string());

    let one = send(
        &app,
        keyed(get("/api/v1/stats?date=2026-11-19&limit=1"), &key).to_request(),
    )
    .await;
    assert_eq!(
        (
            &one.body["data"]["total_views"],
            &one.body["data"]["unique_users"],
            &one.body["data"]["top_paths"]
        ),
        (
            &json!(3),
            &json!(2),
            &json!([{"path": "/", "views": 2, "unique_users": 2}])
        ),
        "one day, one top path: {}",
        one.body
    );
    let other_source = send(
        &app,
        keyed(get("/api/v1/stats?date=2026-11-19&site_id=stripe"), &key).to_request(),
    )
    .await;
    assert_eq!(
        (
            &other_source.body["data"]["source"],
            &other_source.body["data"]["total_views"]
        ),
        (&json!("stripe"), &json!(0)),
        "site_id is source: acme's visits came from its default source"
    );
    let anonymous = send(&app, get("/api/v1/stats?date=2026-11-19").to_request()).await;
    anonymous.assert_data(StatusCode::OK);
    assert_eq!(
        anonymous.body["data"]["total_views"], 0,
        "without credentials, the default tenant: none of acme's visits"
    );
    Ok(())
}

#[actix_web::test]
async fn metrics_count_a_window_exactly_with_its_ragged_edges_from_raw_events() -> Result<()> {
    let (h, key) = visited().await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let read = |query: &str| keyed(get(&format!("/api/v1/metrics?{query}")), &key).to_request();

    // 11:10 to 12:00 on the 19th and 11:00 to 11:50 on the 20th are read raw; the hours
    // between from the hour buckets. Ana is at both ends: one user.
    let window = "from=2026-11-19T11:10:00Z&to=2026-11-20T11:50:00Z";
    let by_day = send(&app, read(&format!("{window}&group_by=day"))).await;
    by_day.assert_data(StatusCode::OK);
    assert_eq!(
        by_day.body["data"],
        json!({
            "event_name": null, "channel": null,
            "from": "2026-11-19T11:10:00Z", "to": "2026-11-20T11:50:00Z", "group_by": "day",
            "count": 5, "unique_users": 3,
            "buckets": [
                {"start": "2026-11-19T00:00:00Z", "count": 2, "unique_users": 2},
                {"start": "2026-11-20T00:00:00Z", "count": 3, "unique_users": 2}
            ]
        })
    );
    let views = send(&app, read(&format!("{window}&event_name=page_view"))).await;
    assert_eq!(
        (
            &views.body["data"]["count"],
            &views.body["data"]["unique_users"],
            &views.body["data"]["buckets"]
        ),
        (&json!(4), &json!(3), &json!([])),
        "page views only, totals only: {}",
        views.body
    );
    let web = send(&app, read(&format!("{window}&channel=web"))).await;
    assert_eq!(
        (
            &web.body["data"]["count"],
            &web.body["data"]["unique_users"]
        ),
        (&json!(3), &json!(2)),
        "the web channel: {}",
        web.body
    );
    // Unix seconds: 2026-11-20T09:00:00Z to 12:00:00Z, by hour.
    let hours = send(&app, read("from=1795165200&to=1795176000&group_by=hour")).await;
    assert_eq!(
        hours.body["data"]["buckets"],
        json!([
            {"start": "2026-11-20T09:00:00Z", "count": 1, "unique_users": 1},
            {"start": "2026-11-20T10:00:00Z", "count": 1, "unique_users": 1},
            {"start": "2026-11-20T11:00:00Z", "count": 1, "unique_users": 1}
        ]),
        "{}",
        hours.body
    );
    // Inside one hour: raw events alone.
    let inside = send(
        &app,
        read("from=2026-11-20T11:30:00Z&to=2026-11-20T11:46:00Z"),
    )
    .await;
    assert_eq!(inside.body["data"]["count"], 1, "{}", inside.body);
    let empty = send(
        &app,
        read("from=2026-11-20T11:30:00Z&to=2026-11-20T11:30:00Z&group_by=hour"),
    )
    .await;
    assert_eq!(
        (&empty.body["data"]["count"], &empty.body["data"]["buckets"]),
        (&json!(0), &json!([])),
        "an empty window has no buckets"
    );
    // By hour, as far back as the hour buckets are kept: 00:00 UTC thirteen days ago.
    let kept = send(
        &app,
        read("from=2026-11-08T00:00:00Z&to=2026-11-21T12:00:00Z&group_by=hour"),
    )
    .await;
    kept.assert_data(StatusCode::OK);
    // Whole days older than the hour buckets are kept: day buckets alone.
    let old = send(
        &app,
        read("from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z"),
    )
    .await;
    old.assert_data(StatusCode::OK);
    Ok(())
}

#[actix_web::test]
async fn bad_parameters_are_400s_naming_them() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let cases = [
        ("/api/v1/stats", "date", "is required"),
        ("/api/v1/stats?date=2026-13-01", "date", ""),
        (
            "/api/v1/stats?date=2026-11-20&date_to=2026-11-19",
            "date",
            "after date_to",
        ),
        (
            "/api/v1/stats?date=2024-01-01&date_to=2026-11-19",
            "date_to",
            "366 days",
        ),
        (
            "/api/v1/stats?date=2026-11-20&source=Not_A_Slug",
            "source",
            "",
        ),
        (
            "/api/v1/stats?date=2026-11-20&source=web&site_id=ios",
            "site_id",
            "alias",
        ),
        (
            "/api/v1/stats?date=2024-01-01&date_to=2024-12-31",
            "date",
            "kept 365 days",
        ),
        ("/api/v1/stats?date=2026-11-20&limit=0", "limit", "1 to 100"),
        (
            "/api/v1/stats?date=2026-11-20&limit=101",
            "limit",
            "1 to 100",
        ),
        (
            "/api/v1/stats?date=2026-11-20&date=2026-11-21",
            "date",
            "once",
        ),
        (
            "/api/v1/stats?date=2026-11-20&path=/",
            "path",
            "not a parameter",
        ),
        (
            "/api/v1/metrics?to=2026-11-20T00:00:00Z",
            "from",
            "is required",
        ),
        (
            "/api/v1/metrics?from=2026-11-20T00:00:00Z",
            "to",
            "is required",
        ),
        (
            "/api/v1/metrics?from=yesterday&to=2026-11-20T00:00:00Z",
            "from",
            "RFC 3339",
        ),
        (
            "/api/v1/metrics?from=2026-11-20&to=2026-11-21T00:00:00Z",
            "from",
            "Unix seconds",
        ),
        (
            "/api/v1/metrics?from=2026-11-20T10:00:00Z&to=2026-11-20T09:00:00Z",
            "from",
            "after to",
        ),
        (
            "/api/v1/metrics?from=2026-11-01T00:00:00Z&to=2026-11-20T00:00:00Z&group_by=hour",
            "from",
            "hour buckets",
        ),
        (
            "/api/v1/metrics?from=9999-12-31T12:00:00Z&to=9999-12-31T13:00:00Z",
            "from",
            "9000",
        ),
        (
            "/api/v1/metrics?from=2026-11-20T00:00:00Z&to=9999-12-31T23:30:00-01:00",
            "to",
            "RFC 3339",
        ),
        (
            "/api/v1/metrics?from=2024-01-01T00:00:00Z&to=2026-11-20T00:00:00Z",
            "to",
            "366 days",
        ),
        (
            "/api/v1/metrics?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&group_by=week",
            "group_by",
            "day or hour",
        ),
        (
            "/api/v1/metrics?from=2026-11-01T10:15:00Z&to=2026-11-03T00:00:00Z",
            "from",
            "hour buckets",
        ),
        (
            "/api/v1/metrics?from=2026-11-20T00:00:00Z&to=2026-11-20T01:00:00Z&event_name=",
            "event_name",
            "1 to 128",
        ),
        (
            "/api/v1/metrics?from=2026-11-20T00:00:00Z&to=2026-11-20T01:00:00Z&site_id=x",
            "site_id",
            "not a parameter",
        ),
    ];
    for (uri, field, message) in cases {
        let reply = send(&app, get(uri).to_request()).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(reply.error_field(), field, "{uri}: {}", reply.body);
        assert!(
            reply.error_message().contains(message),
            "{uri}: {}",
            reply.error_message()
        );
    }
    let wrong = send(
        &app,
        get("/api/v1/stats?date=2026-11-20&tenant=acme").to_request(),
    )
    .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "another tenant than default needs credentials"
    );
    let post = send(
        &app,
        TestRequest::post().uri("/api/v1/metrics").to_request(),
    )
    .await;
    post.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    Ok(())
}

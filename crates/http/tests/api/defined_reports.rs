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
        json!([{"name": "channel", "field": "properties.channel", "required": false}])
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

/// Reads `uri` with `key` and returns the rows, after checking the envelope.
async fn rows<S, B>(app: &S, key: &str, uri: &str) -> Value
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let reply = send(app, keyed(get(uri), key).to_request()).await;
    reply.assert_data(StatusCode::OK);
    reply.body["data"]["rows"].clone()
}

#[actix_web::test]
async fn a_tenants_report_is_read_grouped_filtered_and_ordered_as_asked() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let acme = h.tenant("acme").await?;
    let key = h
        .key(acme, &[Scope::Ingest, Scope::Read, Scope::Manage])
        .await?;
    // Seed-style events: two purchases on the web, one on iOS the day after, a purchase with
    // no channel, and a sign-up the definition's filter leaves out.
    let events = [
        ("2026-11-19T10:00:00Z", "purchase", Some("web"), 1_000),
        ("2026-11-19T11:00:00Z", "purchase", Some("web"), 500),
        ("2026-11-20T09:00:00Z", "purchase", Some("ios"), 2_000),
        ("2026-11-20T10:00:00Z", "purchase", None, 100),
        ("2026-11-20T11:00:00Z", "signup", Some("web"), 0),
    ];
    for (at, name, channel, amount) in events {
        let mut body = json!({"event_name": name, "timestamp": at, "amount_cents": amount});
        if let Some(channel) = channel {
            body["channel"] = json!(channel);
        }
        send(&app, post_event(&key, &body).to_request())
            .await
            .assert_data(StatusCode::CREATED);
    }
    let mut definition = purchases_by_channel();
    definition["is_public"] = json!(true);
    send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/reports"), &key)
            .set_json(definition)
            .to_request(),
    )
    .await
    .assert_data(StatusCode::CREATED);
    h.work_one().await?;
    h.work_one().await?;

    let base = "/api/v1/reports/purchases-by-channel/run?date_from=2026-11-19&date_to=2026-11-21";
    assert_eq!(
        rows(&app, &key, base).await,
        json!([
            {"bucket_date": "2026-11-19", "channel": "web", "purchases": 2, "revenue_cents": 1500},
            {"bucket_date": "2026-11-20", "channel": "ios", "purchases": 1, "revenue_cents": 2000},
            {"bucket_date": "2026-11-20", "channel": null, "purchases": 1, "revenue_cents": 100}
        ]),
        "by default, by period and every dimension"
    );
    assert_eq!(
        rows(&app, &key, &format!("{base}&group_by=channel")).await,
        json!([
            {"channel": "web", "purchases": 2, "revenue_cents": 1500},
            {"channel": "ios", "purchases": 1, "revenue_cents": 2000},
            {"channel": null, "purchases": 1, "revenue_cents": 100}
        ]),
        "a top-N by the first measure, ties by value"
    );
    assert_eq!(
        rows(
            &app,
            &key,
            &format!("{base}&group_by=channel&order=-revenue_cents")
        )
        .await,
        json!([
            {"channel": "ios", "purchases": 1, "revenue_cents": 2000},
            {"channel": "web", "purchases": 2, "revenue_cents": 1500},
            {"channel": null, "purchases": 1, "revenue_cents": 100}
        ])
    );
    assert_eq!(
        rows(&app, &key, &format!("{base}&group_by=period&channel=web")).await,
        json!([{"bucket_date": "2026-11-19", "purchases": 2, "revenue_cents": 1500}]),
        "a dimension parameter filters"
    );
    assert_eq!(
        rows(
            &app,
            &key,
            "/api/v1/reports/purchases-by-channel/run?window=month&group_by=period&date_from=2026-11-01&date_to=2026-11-30"
        )
        .await,
        json!([{"bucket_date": "2026-11-01", "purchases": 4, "revenue_cents": 3600}]),
        "a month is read when its first day is in the range"
    );
    assert_eq!(
        rows(&app, &key, &format!("{base}&window=month")).await,
        json!([]),
        "a month that starts before the range is left out, as a week is"
    );

    for (query, field) in [
        ("&colour=red", "colour"),
        ("&group_by=period,colour", "group_by"),
        ("&group_by=channel&order=period", "order"),
        ("&window=week", "window"),
        ("&limit=0", "limit"),
    ] {
        let reply = send(
            &app,
            keyed(get(&format!("{base}{query}")), &key).to_request(),
        )
        .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(reply.error_field(), field, "{query}");
    }
    // September is entirely before the 30 days the day window keeps; the month window (90
    // days) still keeps it.
    let expired = send(
        &app,
        keyed(
            get("/api/v1/reports/purchases-by-channel/run?date_from=2026-09-01&date_to=2026-09-30"),
            &key,
        )
        .to_request(),
    )
    .await;
    expired.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(expired.error_field(), "date_from", "{:?}", expired.body);
    let kept = send(
        &app,
        keyed(
            get("/api/v1/reports/purchases-by-channel/run?window=month&date_from=2026-09-01&date_to=2026-09-30"),
            &key,
        )
        .to_request(),
    )
    .await;
    kept.assert_data(StatusCode::OK);

    let first = send(&app, keyed(get(base), &key).to_request()).await;
    assert_eq!(
        first.body["meta"]["cache_hit"], true,
        "the second read is a hit"
    );
    let other = h.tenant("globex").await?;
    let stranger = h.key(other, &[Scope::Read]).await?;
    let reply = send(&app, keyed(get(base), &stranger).to_request()).await;
    reply.assert_error(StatusCode::NOT_FOUND, "not_found");
    Ok(())
}

/// The slugs of a listing's page, with its total.
async fn listed<S, B>(app: &S, req: TestRequest) -> (Vec<String>, u64)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let reply = send(app, req.to_request()).await;
    reply.assert_data(StatusCode::OK);
    let slugs = reply.body["data"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["slug"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let total = reply.body["meta"]["pagination"]["total"]
        .as_u64()
        .unwrap_or_default();
    (slugs, total)
}

#[actix_web::test]
async fn the_listing_holds_the_public_reports_and_the_callers_own() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let acme = h.tenant("acme").await?;
    let globex = h.tenant("globex").await?;
    let acme_key = h.key(acme, &[Scope::Manage, Scope::Read]).await?;
    let globex_key = h.key(globex, &[Scope::Read]).await?;
    for body in [
        purchases_by_channel(),
        json!({"slug": "events-by-kind", "name": "Events by kind",
               "measures": [{"name": "events", "kind": "count"}],
               "dimensions": [{"field": "event_name"}]}),
    ] {
        send(
            &app,
            keyed(TestRequest::post().uri("/api/v1/reports"), &acme_key)
                .set_json(body)
                .to_request(),
        )
        .await
        .assert_data(StatusCode::CREATED);
    }
    // The built-in reports, and the rollups every tenant has.
    let builtins = [
        "events-by-name",
        "status-counts",
        "top-entities",
        "top-paths",
        "traffic",
        "volume-by-period",
    ];

    let (slugs, total) = listed(&app, keyed(get("/api/v1/reports"), &acme_key)).await;
    assert_eq!(
        slugs,
        [
            "events-by-kind",
            "events-by-name",
            "purchases-by-channel",
            "status-counts",
            "top-entities",
            "top-paths",
            "traffic",
            "volume-by-period"
        ],
        "one listing by slug"
    );
    assert_eq!(total, 8);
    let reply = send(&app, keyed(get("/api/v1/reports"), &acme_key).to_request()).await;
    assert_eq!(
        reply.body["data"][2]["measures"][0]["name"], "purchases",
        "a defined report is listed as its definition"
    );
    assert_eq!(
        reply.body["data"][1]["measures"][1]["kind"], "distinct",
        "a rollup every tenant has is listed as its definition"
    );
    assert_eq!(
        reply.body["data"][3]["allowed_windows"][0]["window"], "day",
        "a built-in keeps its catalog entry"
    );

    let (slugs, _) = listed(&app, keyed(get("/api/v1/reports"), &globex_key)).await;
    assert_eq!(
        slugs, builtins,
        "another tenant sees only the public reports"
    );
    let (slugs, _) = listed(&app, get("/api/v1/reports")).await;
    assert_eq!(slugs, builtins, "without credentials, the public reports");
    let (slugs, _) = listed(&app, managed(get("/api/v1/reports?tenant=acme"))).await;
    assert_eq!(slugs.len(), 8, "the operator lists a tenant's: {slugs:?}");
    let (slugs, _) = listed(&app, get("/api/v1/reports?tenant=acme")).await;
    assert_eq!(
        slugs, builtins,
        "without credentials, naming a tenant still lists the public reports"
    );
    let (slugs, _) = listed(&app, keyed(get("/api/v1/reports"), "pga_not_a_key")).await;
    assert_eq!(
        slugs, builtins,
        "a wrong key is not an error on the public listing"
    );
    for (slug, public) in [("default-private", false), ("default-public", true)] {
        send(
            &app,
            managed(TestRequest::post().uri("/api/v1/reports"))
                .set_json(
                    json!({"slug": slug, "measures": [{"name": "events", "kind": "count"}],
                                 "is_public": public}),
                )
                .to_request(),
        )
        .await
        .assert_data(StatusCode::CREATED);
    }
    let (slugs, _) = listed(&app, get("/api/v1/reports")).await;
    assert_eq!(
        slugs,
        [
            "default-public",
            "events-by-name",
            "status-counts",
            "top-entities",
            "top-paths",
            "traffic",
            "volume-by-period"
        ],
        "without credentials, the default tenant's public reports too"
    );

    let (slugs, total) = listed(
        &app,
        keyed(
            get("/api/v1/reports?search=BY&sort=name&order=desc&limit=2&offset=1"),
            &acme_key,
        ),
    )
    .await;
    assert_eq!(
        (slugs, total),
        (
            vec![
                "purchases-by-channel".to_owned(),
                "events-by-name".to_owned()
            ],
            4
        ),
        "searched, sorted and paged as one listing: Volume, Purchases, Events by name, Events by kind"
    );
    Ok(())
}

/// A distinct count merges across days and paths: a user seen on two days or two paths is
/// one user of the range, and a top-N may rank by it.
#[actix_web::test]
async fn unique_users_are_counted_once_whatever_the_grouping() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let acme = h.tenant("acme").await?;
    let key = h
        .key(acme, &[Scope::Ingest, Scope::Read, Scope::Manage])
        .await?;
    let visits = [
        ("2026-11-19T10:00:00Z", "ana", "/"),
        ("2026-11-19T11:00:00Z", "ana", "/pricing"),
        ("2026-11-19T12:00:00Z", "bo", "/"),
        ("2026-11-20T09:00:00Z", "ana", "/"),
        ("2026-11-20T10:00:00Z", "cy", "/"),
        ("2026-11-20T11:00:00Z", "cy", "/docs"),
    ];
    for (at, user, path) in visits {
        let body = json!({"event_name": "page_view", "user_id": user, "timestamp": at,
                          "properties": {"path": path}});
        send(&app, post_event(&key, &body).to_request())
            .await
            .assert_data(StatusCode::CREATED);
    }
    // An event without a user counts as a view, not as a user.
    let anonymous = json!({"event_name": "page_view", "timestamp": "2026-11-20T12:00:00Z",
                           "properties": {"path": "/docs"}});
    send(&app, post_event(&key, &anonymous).to_request())
        .await
        .assert_data(StatusCode::CREATED);
    let definition = json!({
        "slug": "paths",
        "measures": [{"name": "views", "kind": "count"},
                     {"name": "unique_users", "kind": "distinct", "field": "user_id"}],
        "dimensions": [{"name": "path", "field": "properties.path"}]
    });
    let created = send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/reports"), &key)
            .set_json(&definition)
            .to_request(),
    )
    .await;
    created.assert_data(StatusCode::CREATED);
    assert_eq!(
        created.body["data"]["measures"][1],
        json!({"name": "unique_users", "kind": "distinct", "field": "user_id"}),
        "the measure as defined: {}",
        created.body
    );
    h.work_one().await?;

    let base = "/api/v1/reports/paths/run?date_from=2026-11-19&date_to=2026-11-20";
    assert_eq!(
        rows(&app, &key, &format!("{base}&group_by=period")).await,
        json!([
            {"bucket_date": "2026-11-19", "views": 3, "unique_users": 2},
            {"bucket_date": "2026-11-20", "views": 4, "unique_users": 2}
        ]),
        "per day"
    );
    assert_eq!(
        rows(&app, &key, &format!("{base}&group_by=")).await,
        json!([{"views": 7, "unique_users": 3}]),
        "over both days, grouped by nothing: ana, bo and cy, once each"
    );
    assert_eq!(
        rows(
            &app,
            &key,
            &format!("{base}&group_by=path&order=-unique_users")
        )
        .await,
        json!([
            {"path": "/", "views": 4, "unique_users": 3},
            {"path": "/docs", "views": 2, "unique_users": 1},
            {"path": "/pricing", "views": 1, "unique_users": 1}
        ]),
        "a top-N of paths over both days by unique users (ana on both days once), ties bytewise"
    );
    Ok(())
}

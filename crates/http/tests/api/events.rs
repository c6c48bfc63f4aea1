//! Event ingestion: single and bulk, idempotency, validation, and what reaches the reports.

use std::rc::Rc;

use actix_web::{
    http::StatusCode,
    test::{self, TestRequest},
};
use anyhow::{Context, Result};
use domain::{Scope, TenantId};
use http_api::build_app;
use serde_json::{Value, json};

use crate::helpers::*;

/// `event` with `event_id` set.
fn event_with_id(id: &str, entity_id: &str, status: &str) -> Value {
    let mut event = event("stripe", entity_id, status);
    event["event_id"] = json!(id);
    event
}

/// A key of `default` that may ingest.
async fn ingest_key(h: &Harness) -> Result<String> {
    h.key(TenantId::DEFAULT, &[Scope::Ingest]).await
}

#[actix_web::test]
async fn a_new_event_is_201_and_a_replay_is_200_with_duplicate_and_the_original_id() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let body = event_with_id("ord-1", "cus_1", "success");

    let first = send(&app, post_event(&key, &body).to_request()).await;
    let replay = send(&app, post_event(&key, &body).to_request()).await;

    first.assert_data(StatusCode::CREATED);
    assert_eq!(
        first.body["data"],
        json!({ "event_id": "ord-1", "duplicate": false }),
        "a new event"
    );
    replay.assert_data(StatusCode::OK);
    assert_eq!(
        replay.body["data"],
        json!({ "event_id": "ord-1", "duplicate": true }),
        "a replay names the original event"
    );
    assert_eq!(
        h.event_count(TenantId::DEFAULT).await?,
        1,
        "the replay stored nothing"
    );
    Ok(())
}

#[actix_web::test]
async fn an_event_without_a_key_gets_one_from_the_server() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(
        &app,
        post_event(&key, &event("adyen", "cus_1", "failed")).to_request(),
    )
    .await;

    reply.assert_data(StatusCode::CREATED);
    let id = reply.body["data"]["event_id"].as_str().unwrap_or_default();
    assert!(id.starts_with("evt_"), "a server-assigned id: {id:?}");
    Ok(())
}

#[actix_web::test]
async fn the_same_key_with_different_content_is_409_idempotency_conflict() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    send(
        &app,
        post_event(&key, &event_with_id("ord-1", "cus_1", "success")).to_request(),
    )
    .await
    .assert_data(StatusCode::CREATED);

    let changed = send(
        &app,
        post_event(&key, &event_with_id("ord-1", "cus_1", "failed")).to_request(),
    )
    .await;

    changed.assert_error(StatusCode::CONFLICT, "idempotency_conflict");
    assert_eq!(
        changed.body["error"]["details"]["event_id"], "ord-1",
        "the conflicting key: {:?}",
        changed.body
    );
    assert_eq!(
        h.event_count(TenantId::DEFAULT).await?,
        1,
        "the changed event was not stored"
    );
    Ok(())
}

#[actix_web::test]
async fn the_idempotency_key_header_is_the_key_and_must_match_an_event_id() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let body = event("paypal", "cus_9", "pending");

    let first = send(
        &app,
        post_event(&key, &body)
            .insert_header(("Idempotency-Key", "retry-42"))
            .to_request(),
    )
    .await;
    let replay = send(
        &app,
        post_event(&key, &body)
            .insert_header(("Idempotency-Key", "retry-42"))
            .to_request(),
    )
    .await;
    let mut with_other_id = body.clone();
    with_other_id["event_id"] = json!("something-else");
    let mismatch = send(
        &app,
        post_event(&key, &with_other_id)
            .insert_header(("Idempotency-Key", "retry-42"))
            .to_request(),
    )
    .await;
    let blank_header = send(
        &app,
        post_event(&key, &body)
            .insert_header(("Idempotency-Key", ""))
            .to_request(),
    )
    .await;

    first.assert_data(StatusCode::CREATED);
    assert_eq!(
        first.body["data"]["event_id"], "retry-42",
        "the header is the key"
    );
    replay.assert_data(StatusCode::OK);
    assert_eq!(
        replay.body["data"],
        json!({ "event_id": "retry-42", "duplicate": true }),
        "a replay by header"
    );
    mismatch.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        mismatch.error_field(),
        "event_id",
        "event_id must equal the header"
    );
    blank_header.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        blank_header.error_field(),
        "Idempotency-Key",
        "a blank header is no key"
    );
    assert_eq!(
        h.event_count(TenantId::DEFAULT).await?,
        1,
        "one event stored"
    );
    Ok(())
}

#[actix_web::test]
async fn a_bulk_request_answers_each_item_with_counts() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    for body in [
        event_with_id("ord-1", "cus_1", "success"),
        event_with_id("ord-2", "cus_2", "success"),
    ] {
        send(&app, post_event(&key, &body).to_request())
            .await
            .assert_data(StatusCode::CREATED);
    }
    let events = [
        event_with_id("ord-1", "cus_1", "success"),
        event_with_id("ord-2", "cus_2", "failed"),
        event_with_id("ord-3", "cus_3", "pending"),
        event("adyen", "cus_4", "success"),
    ];

    let reply = send(&app, post_bulk(&key, &events).to_request()).await;
    let again = send(&app, post_bulk(&key, &events[..1]).to_request()).await;

    reply.assert_data(StatusCode::CREATED);
    let data = &reply.body["data"];
    let statuses: Vec<(&Value, &Value)> = data["results"]
        .as_array()
        .context("results")?
        .iter()
        .map(|item| (&item["index"], &item["status"]))
        .collect();
    assert_eq!(
        statuses,
        [
            (&json!(0), &json!("duplicate")),
            (&json!(1), &json!("conflict")),
            (&json!(2), &json!("created")),
            (&json!(3), &json!("created")),
        ],
        "one outcome per item, in order: {data}"
    );
    assert_eq!(
        data["results"][1]["event_id"], "ord-2",
        "the conflicting id"
    );
    assert!(
        data["results"][3]["event_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("evt_")),
        "an item without an id gets one: {data}"
    );
    assert_eq!(
        data["counts"],
        json!({ "created": 2, "duplicate": 1, "conflict": 1 }),
        "counts"
    );
    again.assert_data(StatusCode::OK);
    assert_eq!(
        again.body["data"]["counts"],
        json!({ "created": 0, "duplicate": 1, "conflict": 0 }),
        "nothing new is a 200"
    );
    assert_eq!(
        h.event_count(TenantId::DEFAULT).await?,
        4,
        "two before, two created"
    );
    Ok(())
}

#[actix_web::test]
async fn any_invalid_bulk_item_is_400_naming_it_and_nothing_is_stored() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let mut bad_amount = event("stripe", "cus_2", "success");
    bad_amount["amount_cents"] = json!(-5);
    let events = [
        event("stripe", "cus_0", "success"),
        event("stripe", "cus_1", "exploded"),
        bad_amount,
        event("klarna", "cus_3", "success"),
    ];

    let reply = send(&app, post_bulk(&key, &events).to_request()).await;

    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        reply.error_field(),
        "events[1].status",
        "the first invalid field"
    );
    let fields: Vec<&str> = reply.body["error"]["details"]["errors"]
        .as_array()
        .context("details.errors")?
        .iter()
        .filter_map(|error| error["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "events[1].status",
            "events[2].amount_cents",
            "events[3].source"
        ],
        "every invalid field, by item"
    );
    let message = reply.error_message();
    assert!(
        message.starts_with("3 fields are invalid: events[1].status must be"),
        "a readable message: {message}"
    );
    assert_eq!(
        h.event_count(TenantId::DEFAULT).await?,
        0,
        "the valid item was not stored either"
    );
    Ok(())
}

#[actix_web::test]
async fn a_bulk_request_needs_1_to_1000_events() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let too_many: Vec<Value> = (0..1001)
        .map(|n| event("stripe", &format!("cus_{n}"), "success"))
        .collect();

    let empty = send(&app, post_bulk(&key, &[]).to_request()).await;
    let over = send(&app, post_bulk(&key, &too_many).to_request()).await;
    let not_a_list = send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/events/bulk"), &key)
            .set_json(json!({ "events": {} }))
            .to_request(),
    )
    .await;
    let exactly = send(&app, post_bulk(&key, &too_many[..1000]).to_request()).await;

    for (name, reply) in [("empty", &empty), ("1001", &over), ("object", &not_a_list)] {
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(reply.error_field(), "events", "{name}: the field");
    }
    exactly.assert_data(StatusCode::CREATED);
    assert_eq!(
        exactly.body["data"]["counts"]["created"], 1000,
        "1,000 events are accepted"
    );
    Ok(())
}

#[actix_web::test]
async fn an_unknown_source_is_400_on_the_source_field() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = test::init_service(build_app(h.state.clone())).await;

    let single = send(
        &app,
        post_event(&key, &event("shopify", "cus_1", "success")).to_request(),
    )
    .await;
    let bulk = send(
        &app,
        post_bulk(&key, &[event("shopify", "cus_1", "success")]).to_request(),
    )
    .await;

    single.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(single.error_field(), "source", "single event");
    assert!(
        single.error_message().contains("stripe"),
        "the message names the tenant's sources: {}",
        single.error_message()
    );
    bulk.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(bulk.error_field(), "events[0].source", "bulk item");
    Ok(())
}

#[actix_web::test]
async fn ingestion_needs_an_api_key_with_the_ingest_scope() -> Result<()> {
    let h = Harness::new();
    let read_only = h
        .key(TenantId::DEFAULT, &[Scope::Read, Scope::Manage])
        .await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let body = event("stripe", "cus_1", "success");
    let routes = ["/api/v1/events", "/api/v1/events/bulk"];

    for uri in routes {
        let payload = if uri.ends_with("bulk") {
            json!({ "events": [body.clone()] })
        } else {
            body.clone()
        };
        let post = || TestRequest::post().uri(uri).set_json(&payload);

        let anonymous = send(&app, post().to_request()).await;
        let unknown = send(&app, keyed(post(), "pga_not-a-key").to_request()).await;
        let without_scope = send(&app, keyed(post(), &read_only).to_request()).await;
        let management = send(&app, managed(post()).to_request()).await;

        anonymous.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        unknown.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        without_scope.assert_error(StatusCode::FORBIDDEN, "forbidden");
        assert!(
            without_scope.error_message().contains("ingest"),
            "{uri}: names the missing scope: {}",
            without_scope.error_message()
        );
        management.assert_error(StatusCode::FORBIDDEN, "forbidden");
        assert!(
            management.error_message().contains("API key"),
            "{uri}: says events are sent with a tenant's API key: {}",
            management.error_message()
        );
    }
    assert_eq!(
        h.event_count(TenantId::DEFAULT).await?,
        0,
        "nothing was stored"
    );
    Ok(())
}

#[actix_web::test]
async fn an_event_body_must_be_json_of_at_most_2_mib() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let json_text = event("stripe", "cus_1", "success").to_string();
    let huge = format!(
        "{{\"events\": [], \"padding\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );

    for uri in ["/api/v1/events", "/api/v1/events/bulk"] {
        let post = || keyed(TestRequest::post().uri(uri), &key);
        let text = send(
            &app,
            post()
                .insert_header(("Content-Type", "text/plain"))
                .set_payload(json_text.clone())
                .to_request(),
        )
        .await;
        let untyped = send(&app, post().set_payload(json_text.clone()).to_request()).await;
        let malformed = send(
            &app,
            post()
                .insert_header(("Content-Type", "application/json"))
                .set_payload("{\"source\": ")
                .to_request(),
        )
        .await;
        let too_large = send(
            &app,
            post()
                .insert_header(("Content-Type", "application/json"))
                .set_payload(huge.clone())
                .to_request(),
        )
        .await;

        text.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        untyped.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        malformed.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        too_large.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    // The key is checked before the body is read: a bad body without a key is still a 401.
    send(
        &app,
        TestRequest::post()
            .uri("/api/v1/events")
            .insert_header(("Content-Type", "text/plain"))
            .set_payload("hello")
            .to_request(),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        h.event_count(TenantId::DEFAULT).await?,
        0,
        "nothing was stored"
    );
    Ok(())
}

#[actix_web::test]
async fn an_unavailable_event_store_is_503_and_stores_nothing() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    h.adapters.events.set_failing(true);
    let app = test::init_service(build_app(h.state.clone())).await;

    let reply = send(
        &app,
        post_event(&key, &event("stripe", "cus_1", "success")).to_request(),
    )
    .await;

    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert!(
        reply.error_message().contains("nothing was stored"),
        "the client knows to retry: {}",
        reply.error_message()
    );
    Ok(())
}

#[actix_web::test]
async fn concurrent_replays_of_one_key_create_exactly_one_event() -> Result<()> {
    let h = Harness::new();
    let key = ingest_key(&h).await?;
    let app = Rc::new(test::init_service(build_app(h.state.clone())).await);
    let body = event_with_id("ord-race", "cus_1", "success");
    let tasks = 32;

    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let app = Rc::clone(&app);
            let req = post_event(&key, &body).to_request();
            actix_web::rt::spawn(async move { send(app.as_ref(), req).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(tasks);
    for handle in handles {
        replies.push(handle.await?);
    }

    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let replayed = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK && r.body["data"]["duplicate"] == true)
        .count();
    assert_eq!(created, 1, "exactly one request created the event");
    assert_eq!(replayed, tasks - 1, "every other one is a duplicate");
    assert!(
        replies
            .iter()
            .all(|r| r.body["data"]["event_id"] == "ord-race"),
        "all name the same event"
    );
    assert_eq!(
        h.event_count(TenantId::DEFAULT).await?,
        1,
        "one event stored"
    );
    Ok(())
}

#[actix_web::test]
async fn ingested_events_make_a_result_stale_until_a_recompute_counts_them() -> Result<()> {
    let h = Harness::new();
    let key = h
        .key(
            TenantId::DEFAULT,
            &[Scope::Ingest, Scope::Read, Scope::Manage],
        )
        .await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    let events = [
        event("stripe", "cus_1", "success"),
        event("adyen", "cus_2", "success"),
        event("paypal", "cus_3", "failed"),
    ];
    send(&app, post_bulk(&key, &events).to_request())
        .await
        .assert_data(StatusCode::CREATED);
    let run_uri = "/api/v1/reports/status-counts/run?date_from=2026-11-21&date_to=2026-11-21";

    let before = send(&app, get(run_uri).to_request()).await;
    let trigger = send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/recomputations"), &key)
            .set_json(trigger_body(
                "status-counts",
                "day",
                "2026-11-21",
                "2026-11-21",
            ))
            .to_request(),
    )
    .await;
    trigger.assert_data(StatusCode::ACCEPTED);
    let run = h.work_one().await?;
    let after = send(&app, keyed(get(run_uri), &key).to_request()).await;

    before.assert_data(StatusCode::OK);
    assert_eq!(
        before.body["data"]["stale"], true,
        "events arrived after the (absent) snapshots: {:?}",
        before.body
    );
    assert_eq!(
        run.status,
        domain::RunStatus::Completed,
        "the recompute completed"
    );
    after.assert_data(StatusCode::OK);
    assert_eq!(
        after.body["data"]["rows"],
        json!([
            { "status": "success", "event_count": 2 },
            { "status": "failed", "event_count": 1 },
        ]),
        "the ingested events are counted"
    );
    assert_eq!(
        after.body["data"]["stale"], false,
        "fresh after the recompute"
    );
    Ok(())
}

#[actix_web::test]
async fn seed_style_and_segment_track_payloads_are_accepted_as_sent() -> Result<()> {
    let h = Harness::new();
    let key = h
        .key(
            TenantId::DEFAULT,
            &[Scope::Ingest, Scope::Read, Scope::Manage],
        )
        .await?;
    let app = test::init_service(build_app(h.state.clone())).await;
    // 2026-11-21T10:00:00Z, an hour before the harness's clock.
    let seed_style = json!({
        "event_name": "purchase", "user_id": "u-1", "timestamp": 1_795_255_200,
        "channel": "ios", "campaign_id": "bf-2026", "tags": ["sale"],
        "metadata": {"path": "/checkout"}
    });
    let track = json!({
        "type": "track", "event": "Order Completed", "userId": "u-2", "anonymousId": "anon-7",
        "messageId": "ajs-1", "timestamp": "2026-11-21T10:30:00Z",
        "properties": {"revenue": 25}, "context": {"library": {"name": "analytics.js"}}
    });

    let seeded = send(&app, post_event(&key, &seed_style).to_request()).await;
    let tracked = send(&app, post_event(&key, &track).to_request()).await;
    let replayed = send(&app, post_event(&key, &track).to_request()).await;
    let identify = send(
        &app,
        post_event(
            &key,
            &json!({"type": "identify", "userId": "u-2",
                                  "timestamp": "2026-11-21T10:30:00Z"}),
        )
        .to_request(),
    )
    .await;
    let unknown = send(
        &app,
        post_event(
            &key,
            &json!({"event": "x", "timestamp": 1_795_255_200, "colour": "red"}),
        )
        .to_request(),
    )
    .await;
    send(
        &app,
        keyed(TestRequest::post().uri("/api/v1/recomputations"), &key)
            .set_json(trigger_body(
                "volume-by-period",
                "day",
                "2026-11-21",
                "2026-11-21",
            ))
            .to_request(),
    )
    .await
    .assert_data(StatusCode::ACCEPTED);
    h.work_one().await?;
    let by_source = send(
        &app,
        keyed(
            get("/api/v1/reports/volume-by-period/run?date_from=2026-11-21&date_to=2026-11-21&breakdown=source"),
            &key,
        )
        .to_request(),
    )
    .await;

    seeded.assert_data(StatusCode::CREATED);
    tracked.assert_data(StatusCode::CREATED);
    assert_eq!(
        tracked.body["data"],
        json!({ "event_id": "ajs-1", "duplicate": false }),
        "messageId is the idempotency key"
    );
    replayed.assert_data(StatusCode::OK);
    assert_eq!(
        replayed.body["data"]["duplicate"], true,
        "a replay is a duplicate"
    );
    identify.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(identify.error_field(), "type");
    unknown.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        unknown.error_field(),
        "colour",
        "an unknown field names itself"
    );
    assert_eq!(h.event_count(TenantId::DEFAULT).await?, 2);
    by_source.assert_data(StatusCode::OK);
    assert_eq!(
        by_source.body["data"]["rows"],
        json!([{ "bucket_date": "2026-11-21", "source": "default", "event_count": 2 }]),
        "events without a source are the default source's"
    );
    Ok(())
}

//! The dashboard and the API explorer: pages with a policy that keeps them on this server,
//! and the files they load, built into the binary.

use actix_web::{http::StatusCode, test};
use anyhow::Result;
use http_api::build_app;

use crate::helpers::{Harness, get, send};

#[actix_web::test]
async fn the_dashboard_and_the_explorer_are_pages_that_load_only_from_this_server() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    for (path, names) in [
        (
            "/",
            [
                "/assets/dashboard/app.js",
                "/assets/vendor/uplot-1.6.32/uPlot.iife.min.js",
            ],
        ),
        (
            "/api/v1/docs",
            [
                "/assets/dashboard/docs.js",
                "/assets/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js",
            ],
        ),
    ] {
        let reply = send(&app, get(path).to_request()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let policy = reply.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(reply.header("x-request-id").is_some(), "{path}");
        let page = reply.body.as_str().unwrap_or_default();
        for name in names {
            assert!(page.contains(name), "{path} loads {name}");
            let asset = send(&app, get(name).to_request()).await;
            assert_eq!(asset.status, StatusCode::OK, "{name}");
            assert_eq!(
                asset.header("content-type"),
                Some("text/javascript; charset=utf-8"),
                "{name}"
            );
        }
    }
    Ok(())
}

#[actix_web::test]
async fn an_unknown_asset_is_the_apis_404_and_a_page_takes_only_get() -> Result<()> {
    let h = Harness::new();
    let app = test::init_service(build_app(h.state.clone())).await;
    let missing = send(&app, get("/assets/dashboard/nope.js").to_request()).await;
    missing.assert_error(StatusCode::NOT_FOUND, "not_found");
    let escape = send(&app, get("/assets/../Cargo.toml").to_request()).await;
    assert_eq!(escape.status, StatusCode::NOT_FOUND);
    let post = send(&app, test::TestRequest::post().uri("/").to_request()).await;
    post.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let head = send(
        &app,
        test::TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/")
            .to_request(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK, "HEAD as GET");
    Ok(())
}

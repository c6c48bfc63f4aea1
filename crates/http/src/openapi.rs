//! The OpenAPI 3.1 document, generated from the handlers' annotations and the DTOs.

use actix_web::HttpResponse;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self,
        schema::{Object, ObjectBuilder, Type},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    auth::{API_KEY_HEADER, MANAGEMENT_KEY_HEADER},
    routes,
};

/// The API description served at `/api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pg-analytics",
        description = "A PostgreSQL-first analytics service: event ingestion, a report \
            catalog, report results served from snapshots, and managed recomputations, for \
            isolated tenants.\n\n\
            Producers send events with a tenant's API key (`X-API-Key`, scope `ingest`). \
            Tenant-scoped routes take an optional `tenant` query parameter: the management key \
            may name any tenant (default `default`), an API key acts on its own tenant only, and \
            without credentials only the reports of `default` can be read. Requests made with \
            an API key may be rate limited (429 with `Retry-After`).\n\n\
            Every response is an envelope: `{\"data\", \"meta\"}` on success, \
            `{\"error\": {\"code\", \"message\", \"details\"}}` on failure, and carries an \
            `X-Request-Id` header (the client's, when it sent a printable one of at most 128 \
            characters)."
    ),
    paths(
        routes::health::health,
        routes::reports::list_reports,
        routes::reports::get_report,
        routes::reports::run_report,
        routes::recomputations::trigger,
        routes::recomputations::list_runs,
        routes::recomputations::get_run,
        routes::audit::list_audit_entries,
        routes::events::ingest_event,
        routes::events::ingest_bulk,
        routes::sources::list_sources,
        routes::sources::create_source,
        openapi_json,
    ),
    modifiers(&Security),
    tags(
        (name = "health", description = "Liveness and dependency health"),
        (name = "reports", description = "The public report catalog and report results"),
        (name = "recomputations", description = "Snapshot rebuilds (the management key, or an API key with the manage scope)"),
        (name = "audit", description = "The operational audit trail (the management key, or an API key with the manage scope)"),
        (name = "events", description = "Event ingestion (an API key with the ingest scope)"),
        (name = "sources", description = "A tenant's event sources (the management key, or an API key with the manage scope)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Declares the two equivalent ways to present the management key, and tenants' API keys.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "management_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                MANAGEMENT_KEY_HEADER,
                "The management API key; when this header is sent it alone decides.",
            ))),
        );
        components.add_security_scheme(
            "management_bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The management API key as a bearer token."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                API_KEY_HEADER,
                "A tenant's API key: acts on that tenant only, with the key's scopes \
                 (ingest, read, manage). Checked on every request, so a revoked key stops \
                 working at once.",
            ))),
        );
    }
}

/// Returns this OpenAPI document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    operation_id = "getOpenApi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document (not enveloped)", content_type = "application/json", body = Object),
    )
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

fn string_enum(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

/// The schema of the catalog's `sort` parameter.
pub(crate) fn catalog_sort_schema() -> Object {
    string_enum(
        &["slug", "name", "updated_at", "cache_ttl_seconds"],
        "A catalog sort column",
    )
}

/// The schema of an `order` parameter.
pub(crate) fn sort_order_schema() -> Object {
    string_enum(&["asc", "desc"], "A sort direction")
}

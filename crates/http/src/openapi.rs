//! The OpenAPI 3.1 document, generated from the handlers' annotations and the DTOs.

use actix_web::HttpResponse;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self,
        header::Header,
        schema::{
            KnownFormat, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType,
            Type,
        },
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
        routes::reports::create_report,
        routes::reports::replace_report,
        routes::reports::delete_report,
        routes::reports::run_report,
        routes::recomputations::trigger,
        routes::recomputations::list_runs,
        routes::recomputations::get_run,
        routes::audit::list_audit_entries,
        routes::events::ingest_event,
        routes::events::ingest_bulk,
        routes::sources::list_sources,
        routes::sources::create_source,
        routes::stats::stats,
        routes::stats::metrics,
        openapi_json,
    ),
    modifiers(&Security, &ResponseHeaders),
    tags(
        (name = "health", description = "Liveness and dependency health"),
        (name = "reports", description = "The public report catalog, the reports a tenant defines (the management key, or an API key with the manage scope), and report results"),
        (name = "recomputations", description = "Snapshot rebuilds (the management key, or an API key with the manage scope)"),
        (name = "audit", description = "The operational audit trail (the management key, or an API key with the manage scope)"),
        (name = "events", description = "Event ingestion (an API key with the ingest scope)"),
        (name = "sources", description = "A tenant's event sources (the management key, or an API key with the manage scope)"),
        (name = "stats", description = "Web analytics' first answers (views, unique users, top paths; an event's count over any time window), from the rollups every tenant has"),
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
                 (ingest, read, manage). A process reuses a key's lookup for \
                 API_KEY_CACHE_SECS (30 s), so a revoked key stops working within that time.",
            ))),
        );
    }
}

/// Declares the headers every response carries (`X-Request-Id`), and those of 401s
/// (`WWW-Authenticate`) and 429s (`Retry-After`), once for all operations.
struct ResponseHeaders;

impl Modify for ResponseHeaders {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let string = || ObjectBuilder::new().schema_type(Type::String).build();
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, response) in &mut operation.responses.responses {
                    let openapi::RefOr::T(response) = response else {
                        continue;
                    };
                    let mut id = Header::new(string());
                    id.description = Some(
                        "The request's id: the client's `X-Request-Id` when it sent a printable \
                         one of at most 128 characters, else a new one"
                            .to_owned(),
                    );
                    response.headers.insert("X-Request-Id".to_owned(), id);
                    if status == "401" {
                        let mut challenge = Header::new(string());
                        challenge.description = Some("Always `Bearer`".to_owned());
                        response
                            .headers
                            .insert("WWW-Authenticate".to_owned(), challenge);
                    }
                    if status == "429" {
                        let mut wait = Header::new(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(1))
                                .build(),
                        );
                        wait.description = Some("Seconds to wait before retrying".to_owned());
                        response.headers.insert("Retry-After".to_owned(), wait);
                    }
                }
            }
        }
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

/// The white space the server trims from parameters and fields (Unicode `White_Space`).
macro_rules! ws {
    () => {
        "[\\t\\n\\u000b\\u000c\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    };
}

/// The control characters the server refuses in text (Unicode `Cc`).
macro_rules! control {
    () => {
        "\\u0000-\\u001f\\u007f-\\u009f"
    };
}

/// A regular expression matching `values` in any case, with white space around, as every
/// enumerated parameter of the API is read.
fn any_case(values: &[&str]) -> String {
    let alternatives: Vec<String> = values
        .iter()
        .map(|value| {
            value
                .chars()
                .map(|c| match c {
                    c if c.is_ascii_alphabetic() => {
                        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                    }
                    '.' => "\\.".to_owned(),
                    c => c.to_string(),
                })
                .collect()
        })
        .collect();
    format!("^{ws}*(?:{}){ws}*$", alternatives.join("|"), ws = ws!())
}

/// A string parameter taking one of `values`, in any case.
fn any_case_enum(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(any_case(values)))
        .description(Some(format!(
            "{description}: one of {} (in any case)",
            values.join(", ")
        )))
        .examples(values.iter().take(1).copied())
        .build()
}

/// The white space characters, as they go inside a character class.
macro_rules! ws_chars {
    () => {
        "\\t\\n\\u000b\\u000c\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
    };
}

/// What a slug looks like, with the white space around it the server ignores.
pub(crate) const SLUG_PATTERN: &str = concat!(
    "^",
    ws!(),
    "*[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?",
    ws!(),
    "*$"
);

/// Visible ASCII with spaces inside, as a header value the API reads as text.
pub(crate) const HEADER_TEXT_PATTERN: &str = "^[\\x20-\\x7e]*[\\x21-\\x7e][\\x20-\\x7e]*$";

/// The control characters text may not hold: all of them (`Cc`).
const ALL_CONTROLS: &str = control!();

/// The control characters free text may not hold: all but tab, line feed and carriage return.
const CONTROLS_BUT_LINE_BREAKS: &str =
    "\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f";

/// Text as the server reads it: any white space around it is trimmed first; what remains may
/// hold none of the characters of `excluded` (a character-class body) and is `min` (0 or 1)
/// to `max` characters long. The length is stated by the pattern, not by `maxLength`, which
/// would count the white space the server ignores.
fn trimmed_text_pattern(excluded: &str, min: usize, max: usize) -> String {
    let edge = format!("[^{excluded}{}]", ws_chars!());
    let trimmed = format!(
        "{edge}(?:[^{excluded}]{{0,{}}}{edge})?",
        max.saturating_sub(2)
    );
    let trimmed = if min == 0 {
        format!("(?:{trimmed})?")
    } else {
        trimmed
    };
    format!("^{ws}*{trimmed}{ws}*$", ws = ws!())
}

/// A string schema of `pattern`, described, with an example.
fn text(pattern: impl Into<String>, description: &str, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example])
        .build()
}

/// Text of 1 to `max` characters without control characters, as names, actors and ids are.
fn printable(max: usize, description: &str, example: &str) -> Object {
    text(
        trimmed_text_pattern(ALL_CONTROLS, 1, max),
        description,
        example,
    )
}

/// The schema of a slug parameter.
pub(crate) fn slug_schema() -> Object {
    text(
        SLUG_PATTERN,
        "A slug: 1 to 64 lowercase letters, digits and hyphens, starting and ending with a letter or digit",
        "default",
    )
}

/// The schema of an event source filter.
pub(crate) fn source_schema() -> Object {
    text(
        SLUG_PATTERN,
        "A source slug: 1 to 64 lowercase letters, digits and hyphens",
        "stripe",
    )
}

/// The schema of a report slug filter.
pub(crate) fn report_slug_schema() -> Object {
    text(
        SLUG_PATTERN,
        "A report slug: 1 to 64 lowercase letters, digits and hyphens",
        "volume-by-period",
    )
}

/// The schema of an actor name (`requested_by`, `X-Actor`, the audit `actor` filter).
pub(crate) fn actor_schema() -> Object {
    printable(128, "1 to 128 characters, no control characters", "ops-bot")
}

/// The schema of text read from a header: visible ASCII, 1 to 128 characters.
pub(crate) fn header_text_schema() -> Object {
    let mut schema = text(
        HEADER_TEXT_PATTERN,
        "1 to 128 visible ASCII characters",
        "order-1042",
    );
    // A header value arrives without white space around it, so its length is what counts.
    schema.max_length = Some(128);
    schema
}

/// The schema of the catalog's `search` parameter.
pub(crate) fn search_schema() -> Object {
    text(
        trimmed_text_pattern(ALL_CONTROLS, 0, 100),
        "A case-insensitive substring of the slug or the name: at most 100 characters, no control characters",
        "status",
    )
}

/// `schema` accepting `null` too, as the optional fields of the JSON bodies do.
fn nullable(mut schema: Object) -> Object {
    if let SchemaType::Type(kind) = schema.schema_type {
        schema.schema_type = SchemaType::from_iter([kind, Type::Null]);
    }
    schema
}

/// The schema of an identifier in a body (`event_id`, `entity_id`): 1 to 128 characters.
pub(crate) fn id_schema() -> Object {
    printable(128, "1 to 128 characters, no control characters", "cus_123")
}

/// [`id_schema`] or `null`.
pub(crate) fn nullable_id_schema() -> Object {
    nullable(id_schema())
}

/// A display name or `null`: 1 to 200 characters.
pub(crate) fn nullable_name_schema() -> Object {
    nullable(printable(
        200,
        "1 to 200 characters, no control characters",
        "Shopify",
    ))
}

/// A description or `null`: at most 1,000 characters.
pub(crate) fn nullable_description_schema() -> Object {
    nullable(text(
        trimmed_text_pattern(CONTROLS_BUT_LINE_BREAKS, 0, 1000),
        "At most 1,000 characters; line breaks and tabs are the only control characters allowed",
        "Orders from the web shop",
    ))
}

/// [`actor_schema`] or `null`.
pub(crate) fn nullable_actor_schema() -> Object {
    nullable(actor_schema())
}

/// [`window_schema`] or `null`.
pub(crate) fn nullable_window_schema() -> Object {
    nullable(window_schema())
}

/// A run's mode, or `null`.
pub(crate) fn nullable_mode_schema() -> Object {
    nullable(any_case_enum(
        &["full", "incremental"],
        "How the run rebuilds its range",
    ))
}

/// [`date_schema`] or `null`.
pub(crate) fn nullable_date_schema() -> Object {
    nullable(date_schema())
}

/// A non-negative integer or `null`.
pub(crate) fn nullable_count_schema() -> Object {
    nullable(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(i64::MAX))
            .build(),
    )
}

/// An event's name or `null`: 1 to 128 characters.
pub(crate) fn nullable_event_name_schema() -> Object {
    nullable(printable(
        128,
        "1 to 128 characters, no control characters",
        "purchase",
    ))
}

/// A user id or `null`: 1 to 128 characters.
pub(crate) fn nullable_user_schema() -> Object {
    nullable(printable(
        128,
        "1 to 128 characters, no control characters",
        "user-42",
    ))
}

/// [`source_schema`] or `null`.
pub(crate) fn nullable_source_schema() -> Object {
    nullable(source_schema())
}

/// [`status_value_schema`] or `null`.
pub(crate) fn nullable_status_value_schema() -> Object {
    nullable(status_value_schema())
}

/// An event's time: an RFC 3339 timestamp or integer Unix seconds (or `null`, for the name
/// not used).
pub(crate) fn event_time_schema() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .examples(["2026-11-21T12:00:00Z"]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .description(Some("Unix seconds")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("RFC 3339, or integer Unix seconds"))
        .build()
        .into()
}

/// Segment's call type or `null`: only `track`.
pub(crate) fn call_type_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(["track"]))
        .description(Some("Only `track` calls are events"))
        .build()
}

/// The status of an event.
pub(crate) fn status_value_schema() -> Object {
    any_case_enum(&["success", "failed", "pending"], "The event's outcome")
}

/// The schema of a date parameter.
pub(crate) fn date_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .description(Some("A day, YYYY-MM-DD (UTC)"))
        .examples(["2026-01-01"])
        .build()
}

/// The schema of an `offset` parameter.
pub(crate) fn offset_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(i64::MAX))
        .description(Some("Items to skip (default 0)"))
        .build()
}

/// The schema of a listing's `limit`, clamped into 1 to 100 rather than refused.
pub(crate) fn clamped_limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some(
            "Page size (default 20); a value below 1 counts as 1 and one above 100 as 100",
        ))
        .build()
}

/// The schema of a report run's `limit`: 1 to 100, anything else refused.
pub(crate) fn strict_limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
        .minimum(Some(1))
        .maximum(Some(100))
        .description(Some("Rows per page, 1 to 100 (default 50)"))
        .build()
}

/// The schema of the catalog's `sort` parameter.
pub(crate) fn catalog_sort_schema() -> Object {
    any_case_enum(
        &["slug", "name", "updated_at", "cache_ttl_seconds"],
        "The sort column (default slug)",
    )
}

/// The schema of an `order` parameter.
pub(crate) fn sort_order_schema() -> Object {
    any_case_enum(&["asc", "desc"], "The sort direction (default asc)")
}

/// The schema of a `window` parameter.
pub(crate) fn window_schema() -> Object {
    any_case_enum(&["day", "week", "month"], "The window")
}

/// The schema of a report run's `breakdown`.
pub(crate) fn breakdown_schema() -> Object {
    any_case_enum(
        &["period", "source", "status", "entity_id"],
        "The row grouping, which each report restricts: volume-by-period takes period \
         (default) or source, status-counts status (default) or period, top-entities entity_id; \
         any other is a 400",
    )
}

/// The schema of an event status filter.
pub(crate) fn event_status_schema() -> Object {
    any_case_enum(
        &["success", "failed", "pending"],
        "Only events of this status (status-counts only; with another report a 400)",
    )
}

/// The schema of a run status filter.
pub(crate) fn run_status_schema() -> Object {
    any_case_enum(
        &["pending", "running", "completed", "failed"],
        "Only runs in this status",
    )
}

/// The schema of `group_by`: a comma list of `period` and dimension names. Any text: what it
/// may name depends on the report, and built-in reports do not read it.
pub(crate) fn group_by_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "A comma list of period and the report's dimension names; empty for one row of the whole range",
        ))
        .examples(["period,channel"])
        .build()
}

/// The schema of a tenant's report `order`: `period` or `-<measure>` (any text, as
/// `group_by`).
pub(crate) fn rollup_order_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("period, or -<measure> for a top-N"))
        .examples(["-purchases"])
        .build()
}

/// The schema of an audit action filter.
pub(crate) fn audit_action_schema() -> Object {
    any_case_enum(
        &[
            "recompute.triggered",
            "recompute.completed",
            "recompute.failed",
            "source.created",
            "report.created",
            "report.updated",
            "report.deleted",
            "snapshots.expired",
            "events.purged",
        ],
        "Only entries of this action",
    )
}

#[cfg(test)]
mod tests {
    use domain::{Actor, CatalogQuery, CatalogSort, PageRequest, SortOrder, TenantSlug};

    use super::*;

    /// Whether `pattern` (of the document) matches `value`, as a JSON Schema validator would.
    fn matches(pattern: &str, value: &str) -> bool {
        regex::Regex::new(pattern)
            .unwrap_or_else(|err| panic!("{pattern} does not compile: {err}"))
            .is_match(value)
    }

    /// Strings around the edges of the text rules: white space of every kind around and
    /// inside, control characters, lengths at and past the limits.
    fn samples(limit: usize) -> Vec<String> {
        let x = |n: usize| "x".repeat(n);
        vec![
            String::new(),
            " ".into(),
            "\u{85}\u{3000}\t".into(),
            "ops".into(),
            " ops ".into(),
            "\u{b}ops\u{2028}".into(),
            "a b".into(),
            "a\u{0}b".into(),
            "a\tb".into(),
            "a\nb".into(),
            "\u{7f}".into(),
            "ops\u{85}".into(),
            "caf\u{e9}".into(),
            x(limit),
            x(limit + 1),
            format!("  {}\u{3000}", x(limit)),
            format!(" {} ", x(limit + 1)),
            format!("a{}b", " ".repeat(limit - 2)),
            format!("a{}b", " ".repeat(limit - 1)),
        ]
    }

    #[test]
    fn the_actor_pattern_accepts_exactly_what_the_server_accepts() {
        let pattern = trimmed_text_pattern(ALL_CONTROLS, 1, 128);
        for value in samples(128) {
            assert_eq!(
                matches(&pattern, &value),
                Actor::parse(&value).is_ok(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn the_search_pattern_accepts_exactly_what_the_server_accepts() {
        let pattern = trimmed_text_pattern(ALL_CONTROLS, 0, 100);
        for value in samples(100) {
            let accepted = CatalogQuery::new(
                Some(&value),
                CatalogSort::default(),
                SortOrder::default(),
                PageRequest::new(20, 0),
            )
            .is_ok();
            assert_eq!(matches(&pattern, &value), accepted, "{value:?}");
        }
    }

    #[test]
    fn the_description_pattern_accepts_exactly_what_the_server_accepts() {
        let pattern = trimmed_text_pattern(CONTROLS_BUT_LINE_BREAKS, 0, 1000);
        for value in samples(1000) {
            assert_eq!(
                matches(&pattern, &value),
                domain::Description::parse("description", &value).is_ok(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn the_slug_pattern_accepts_exactly_what_the_server_accepts() {
        for value in [
            "acme",
            " acme\u{3000}",
            "a",
            "a-b",
            "-a",
            "a-",
            "A",
            "a_b",
            "",
            &"a".repeat(64),
            &"a".repeat(65),
            "\u{85}default\t",
        ] {
            assert_eq!(
                matches(SLUG_PATTERN, value),
                TenantSlug::parse("tenant", value).is_ok(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn enumerations_match_in_any_case_and_nothing_else() {
        let pattern = any_case(&["asc", "recompute.failed"]);
        assert!(
            pattern.contains(
                "*(?:[aA][sS][cC]|[rR][eE][cC][oO][mM][pP][uU][tT][eE]\\.[fF][aA][iI][lL][eE][dD])["
            ),
            "{pattern}"
        );
    }
}

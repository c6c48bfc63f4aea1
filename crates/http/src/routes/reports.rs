//! The public report catalog and report results.

use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, dev::Payload, web};
use application::{CatalogEntry, ReportError, RollupError, RunReportParams};
use domain::{CatalogQuery, CatalogSort, SortOrder, ValidationError};
use serde::Deserialize;
use serde_json::Value;

use super::{json_body, query};
use crate::{
    AppState,
    auth::{ManagedTenant, ReadTenant, TenantParam},
    dto::{ReportRunDto, RollupRunDto, RollupSchema},
    envelope::{
        AnyReportRunEnvelope, ErrorEnvelope, ListMeta, Pagination, ReportEnvelope,
        ReportListEnvelope, ReportOrRollupDto, ReportOrRollupEnvelope, ReportRunEnvelope,
        ReportRunMeta, RollupChangeEnvelope, RollupEnvelope, RollupRunEnvelope,
    },
    error::ApiError,
    openapi::{
        breakdown_schema, catalog_sort_schema, clamped_limit_schema, date_schema,
        event_status_schema, group_by_schema, offset_schema, rollup_order_schema, search_schema,
        sort_order_schema, source_schema, strict_limit_schema, window_schema,
    },
    replay,
};

/// The query of `GET /reports`. Every value arrives as text so that the domain parsers, not the
/// deserializer, report what is wrong and on which field.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogParams {
    /// Case-insensitive substring of the slug or the name (at most 100 characters).
    #[param(schema_with = search_schema)]
    pub search: Option<String>,
    /// Page size, 1 to 100 (default 20); values out of range are clamped.
    #[param(schema_with = clamped_limit_schema)]
    pub limit: Option<String>,
    /// Items to skip (default 0).
    #[param(schema_with = offset_schema)]
    pub offset: Option<String>,
    /// Sort column (default `slug`); any other value is a 400.
    #[param(schema_with = catalog_sort_schema)]
    pub sort: Option<String>,
    /// Sort direction (default `asc`).
    #[param(schema_with = sort_order_schema)]
    pub order: Option<String>,
}

impl CatalogParams {
    /// The catalog listing this query asks for.
    ///
    /// # Errors
    /// A [`ValidationError`] on the first parameter that breaks its rule.
    pub fn parse(&self) -> Result<CatalogQuery, ValidationError> {
        let sort = self
            .sort
            .as_deref()
            .map(str::parse::<CatalogSort>)
            .transpose()?
            .unwrap_or_default();
        let order = self
            .order
            .as_deref()
            .map(str::parse::<SortOrder>)
            .transpose()?
            .unwrap_or_default();
        let page = super::listing_page(self.limit.as_deref(), self.offset.as_deref())?;
        CatalogQuery::new(self.search.as_deref(), sort, order, page)
    }
}

/// Lists the reports the caller sees: the public built-in reports and the reports the
/// caller's tenant defined (without credentials that read a tenant, the `default` tenant's
/// reports marked `is_public`), as one listing searched, sorted and paged together.
#[utoipa::path(
    get,
    path = "/api/v1/reports",
    tag = "reports",
    operation_id = "listReports",
    params(CatalogParams, TenantParam),
    responses(
        (status = 200, description = "A page of the catalog: built-in reports' entries and the tenant's definitions (they have `measures`)", body = ReportListEnvelope),
        (status = 400, description = "`sort`, `order`, `limit`, `offset`, `search` or `tenant` is invalid", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The catalog is unavailable", body = ErrorEnvelope),
    ),
    security((), ("api_key" = []), ("management_key" = []), ("management_bearer" = []))
)]
pub async fn list_reports(
    state: web::Data<AppState>,
    params: web::Query<CatalogParams>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let catalog_query = params.parse()?;
    // A malformed `tenant` is a 400, as on every route that takes it.
    if let Some(raw) = query::<TenantParam>(&req)?.tenant {
        domain::TenantSlug::parse_for("tenant", &raw)?;
    }
    // The listing is public, as it was before tenants defined reports: credentials that do
    // not let the caller read a tenant (missing, wrong, another tenant's) are not an error
    // here, and the listing is the public one.
    let tenant = ReadTenant::from_request(&req, &mut Payload::None)
        .await
        .ok()
        .map(|tenant| tenant.0);
    // Known once the tenant extractor has identified the caller.
    let anonymous = req.extensions().get::<application::Principal>().is_none();
    let defined: Vec<_> = match tenant {
        Some(tenant) => state
            .rollups
            .list(tenant)
            .await?
            .into_iter()
            .filter(|stored| !anonymous || stored.definition.is_public)
            .collect(),
        // No tenant to read: the reports every tenant has.
        None => application::standard::standard_for(domain::TenantId::DEFAULT),
    };
    let page = state.reports.list_with(&catalog_query, defined).await?;
    let pagination = Pagination::from(&page);
    Ok(HttpResponse::Ok().json(ReportListEnvelope {
        data: page
            .items
            .into_iter()
            .map(|entry| match entry {
                CatalogEntry::BuiltIn(report) => ReportOrRollupDto::Report(report.into()),
                CatalogEntry::Defined(stored) => ReportOrRollupDto::Rollup(stored.into()),
            })
            .collect(),
        meta: ListMeta { pagination },
    }))
}

/// Returns one report: a public built-in report, or a report the caller's tenant defined.
///
/// Built-in reports are answered to anyone. A tenant's own report needs credentials that
/// read that tenant (an API key with `read`, or the management key with `tenant`); without
/// credentials, only the `default` tenant's reports marked `is_public` are found.
#[utoipa::path(
    get,
    path = "/api/v1/reports/{slug}",
    tag = "reports",
    operation_id = "getReport",
    params(
        ("slug" = String, Path, description = "The report slug", example = "volume-by-period"),
        TenantParam,
    ),
    responses(
        (status = 200, description = "The report: a built-in report's catalog entry, or a tenant's definition", body = ReportOrRollupEnvelope),
        (status = 400, description = "`tenant` is not a slug", body = ErrorEnvelope),
        (status = 401, description = "Credentials are wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the read scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "No report has this slug for the caller", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The catalog is unavailable", body = ErrorEnvelope),
    ),
    security((), ("api_key" = []), ("management_key" = []), ("management_bearer" = []))
)]
pub async fn get_report(
    state: web::Data<AppState>,
    slug: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // `tenant` is checked whatever the report, as on every route that takes it.
    if let Some(raw) = query::<TenantParam>(&req)?.tenant {
        domain::TenantSlug::parse_for("tenant", &raw)?;
    }
    match state.reports.get(&slug).await {
        Ok(report) => Ok(HttpResponse::Ok().json(ReportEnvelope {
            data: report.into(),
        })),
        Err(not_found @ ReportError::NotFound(_)) => {
            let tenant = ReadTenant::from_request(&req, &mut Payload::None).await?;
            let anonymous = req.extensions().get::<application::Principal>().is_none();
            match state.rollups.get(tenant.0, &slug).await {
                Ok(stored) if !anonymous || stored.definition.is_public => Ok(HttpResponse::Ok()
                    .json(RollupEnvelope {
                        data: stored.into(),
                    })),
                // Said as for any unknown report.
                Ok(_) | Err(RollupError::NotFound(_)) => Err(not_found.into()),
                Err(err) => Err(err.into()),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// The largest report definition accepted.
pub const REPORT_BODY_LIMIT: usize = 16 * 1024;

/// Defines a report of the tenant, and queues the runs that build it.
#[utoipa::path(
    post,
    path = "/api/v1/reports",
    tag = "reports",
    operation_id = "createReport",
    params(TenantParam),
    request_body(content = RollupSchema, content_type = "application/json", description = "At most 16 KiB; see docs/reports.md"),
    responses(
        (status = 201, description = "The report was defined; `runs` build it", body = RollupChangeEnvelope),
        (status = 400, description = "A field, `tenant` or the JSON is invalid, or the tenant has as many reports as it may (`slug`); every broken rule is listed", body = ErrorEnvelope),
        (status = 401, description = "Credentials are missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the manage scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "The management key names an unknown tenant", body = ErrorEnvelope),
        (status = 409, description = "The tenant already has a report with this slug, or it is a built-in report's", body = ErrorEnvelope),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorEnvelope),
        (status = 415, description = "The body is not sent as application/json", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "Report storage is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []), ("api_key" = []))
)]
pub async fn create_report(
    tenant: ManagedTenant,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: Value = json_body(&req, payload, REPORT_BODY_LIMIT).await?;
    let change = state
        .rollups
        .create(tenant.0, &body, &crate::auth::actor_of(&req))
        .await?;
    Ok(HttpResponse::Created().json(RollupChangeEnvelope {
        data: change.into(),
    }))
}

/// Replaces a report of the tenant. When what it computes changes (measures, dimensions,
/// filters or windows), its snapshots are deleted and runs queued to rebuild it.
#[utoipa::path(
    put,
    path = "/api/v1/reports/{slug}",
    tag = "reports",
    operation_id = "replaceReport",
    params(
        ("slug" = String, Path, description = "The report slug", example = "purchases-by-channel"),
        TenantParam,
    ),
    request_body(content = RollupSchema, content_type = "application/json", description = "At most 16 KiB; `slug` absent or that of the path"),
    responses(
        (status = 200, description = "The report as replaced; `runs` rebuild it when what it computes changed", body = RollupChangeEnvelope),
        (status = 400, description = "A field, `tenant` or the JSON is invalid; every broken rule is listed", body = ErrorEnvelope),
        (status = 401, description = "Credentials are missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the manage scope or names another tenant, or the report is a built-in one", body = ErrorEnvelope),
        (status = 404, description = "The tenant has no report with this slug, or the management key names an unknown tenant", body = ErrorEnvelope),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorEnvelope),
        (status = 415, description = "The body is not sent as application/json", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "Report storage is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []), ("api_key" = []))
)]
pub async fn replace_report(
    tenant: ManagedTenant,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: Value = json_body(&req, payload, REPORT_BODY_LIMIT).await?;
    let change = state
        .rollups
        .replace(tenant.0, &slug, &body, &crate::auth::actor_of(&req))
        .await?;
    Ok(HttpResponse::Ok().json(RollupChangeEnvelope {
        data: change.into(),
    }))
}

/// Deletes a report of the tenant with its snapshots and cached results; its runs and audit
/// entries stay.
#[utoipa::path(
    delete,
    path = "/api/v1/reports/{slug}",
    tag = "reports",
    operation_id = "deleteReport",
    params(
        ("slug" = String, Path, description = "The report slug", example = "purchases-by-channel"),
        TenantParam,
    ),
    responses(
        (status = 204, description = "The report is gone"),
        (status = 400, description = "`tenant` is not a slug", body = ErrorEnvelope),
        (status = 401, description = "Credentials are missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the manage scope or names another tenant, or the report is a built-in one", body = ErrorEnvelope),
        (status = 404, description = "The tenant has no report with this slug, or the management key names an unknown tenant", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "Report storage is unavailable", body = ErrorEnvelope),
    ),
    security(("management_key" = []), ("management_bearer" = []), ("api_key" = []))
)]
pub async fn delete_report(
    tenant: ManagedTenant,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    state
        .rollups
        .delete(tenant.0, &slug, &crate::auth::actor_of(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The query of `GET /reports/{slug}/run`, passed to the report service as text.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    /// The window (default: the report's default window); case-insensitive.
    #[param(schema_with = window_schema)]
    pub window: Option<String>,
    /// First day, inclusive, YYYY-MM-DD (UTC). Without dates: the 30 days ending today; with
    /// only `date_from`: up to today.
    #[param(schema_with = date_schema)]
    pub date_from: Option<String>,
    /// Last day, inclusive, YYYY-MM-DD (UTC). With only `date_to`: the 30 days ending then.
    #[param(schema_with = date_schema)]
    pub date_to: Option<String>,
    /// Row grouping. volume-by-period: `period` (default) or `source`; status-counts: `status`
    /// (default) or `period`; top-entities: `entity_id`. Anything else is a 400.
    #[param(schema_with = breakdown_schema)]
    pub breakdown: Option<String>,
    /// Only events of this source, a slug (volume-by-period only; with another report a 400).
    #[param(schema_with = source_schema)]
    pub source: Option<String>,
    /// Only events of this status: success, failed or pending (status-counts only; with
    /// another report a 400).
    #[param(schema_with = event_status_schema)]
    pub status: Option<String>,
    /// A tenant's report only (built-in reports take `breakdown`): a comma list of `period`
    /// and the report's dimension names to group rows by (default: `period` and every
    /// dimension). Any dimension name of the report is also a parameter, an equality filter.
    #[param(schema_with = group_by_schema)]
    pub group_by: Option<String>,
    /// A tenant's report only: `period` (the default when grouped by period) or `-<measure>`
    /// for a top-N (the default otherwise, by the first measure).
    #[param(schema_with = rollup_order_schema)]
    pub order: Option<String>,
    /// Rows per page, 1 to 100 (default 50); out of range is a 400.
    #[param(schema_with = strict_limit_schema)]
    pub limit: Option<String>,
    /// Rows to skip (default 0).
    #[param(schema_with = offset_schema)]
    pub offset: Option<String>,
}

impl From<RunParams> for RunReportParams {
    fn from(params: RunParams) -> Self {
        Self {
            window: params.window,
            date_from: params.date_from,
            date_to: params.date_to,
            breakdown: params.breakdown,
            source: params.source,
            status: params.status,
            limit: params.limit,
            offset: params.offset,
        }
    }
}

/// Runs a report over the tenant's snapshots, served from the cache when possible.
///
/// A repeated hit is answered as it was first (all but `execution_ms`) while its cache
/// version, TTL and day still hold, for at most a second after that hit.
///
/// The reports of `default` are public; another tenant's need one of its API keys with the
/// `read` scope, or the management key. `stale` says that events dated in the range arrived
/// after the snapshots were computed.
#[utoipa::path(
    get,
    path = "/api/v1/reports/{slug}/run",
    tag = "reports",
    operation_id = "runReport",
    params(
        ("slug" = String, Path, description = "The report slug", example = "status-counts"),
        RunParams,
        TenantParam,
    ),
    responses(
        (status = 200, description = "The report result: a built-in report's, or a tenant's report's (grouped by `group_by`)", body = AnyReportRunEnvelope),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorEnvelope),
        (status = 401, description = "Credentials are wrong, or another tenant than `default` is read without any", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the read scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "No public report has this slug, or the management key names an unknown tenant", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The snapshots are unavailable", body = ErrorEnvelope),
    ),
    security((), ("api_key" = []), ("management_key" = []), ("management_bearer" = []))
)]
pub async fn run_report(
    tenant: ReadTenant,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let builtin = domain::ReportSlug::parse(&slug)
        .ok()
        .is_some_and(|parsed| domain::ReportKind::from_slug(&parsed).is_some());
    if !builtin {
        return run_rollup(tenant, &state, &slug, &req).await;
    }
    let params = RunReportParams::from(query::<RunParams>(&req)?);
    let mut result = state.reports.run(tenant.0, &slug, &params).await?;
    let basis = result.read.basis.take();
    let meta = ReportRunMeta {
        cache_hit: result.read.cache_hit,
        pagination: Pagination {
            limit: result.page.limit(),
            offset: result.page.offset(),
            total: result.read.total_rows,
        },
    };
    let envelope = ReportRunEnvelope {
        data: ReportRunDto::try_from(result).map_err(|err| ApiError::Internal(err.into()))?,
        meta,
    };
    replay::respond(envelope, |e| &mut e.data.read.execution_ms, basis)
        .map_err(|err| ApiError::Internal(err.into()))
}

/// Reads a report the tenant defined: rows grouped by `group_by`, filtered by dimension
/// parameters, ordered by `order`. A caller without credentials reads only the `default`
/// tenant's reports marked `is_public`; any other slug is a 404 as for an unknown report.
async fn run_rollup(
    tenant: ReadTenant,
    state: &AppState,
    slug: &str,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params: Vec<(String, String)> = query(req)?;
    let anonymous = req.extensions().get::<application::Principal>().is_none();
    let mut result = match state.rollups.read(tenant.0, slug, &params, anonymous).await {
        Ok(result) => result,
        Err(RollupError::NotFound(_)) => {
            return Err(ReportError::NotFound(slug.to_owned()).into());
        }
        Err(err) => return Err(err.into()),
    };
    let meta = ReportRunMeta {
        cache_hit: result.read.cache_hit,
        pagination: Pagination {
            limit: result.query.page.limit(),
            offset: result.query.page.offset(),
            total: result.read.total_rows,
        },
    };
    let basis = result.read.basis.take();
    let envelope = RollupRunEnvelope {
        data: RollupRunDto::try_from(result).map_err(|err| ApiError::Internal(err.into()))?,
        meta,
    };
    replay::respond(envelope, |e| &mut e.data.read.execution_ms, basis)
        .map_err(|err| ApiError::Internal(err.into()))
}

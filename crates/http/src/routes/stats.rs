//! `GET /stats` and `GET /metrics`: web analytics' first answers, in the shapes earlier
//! systems gave them, from the standard rollups.

use actix_web::{HttpRequest, HttpResponse, web};
use application::stats::{Grouping, Metrics, Stats};
use domain::dates::format_date;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::{ReadTenant, TenantParam},
    envelope::ErrorEnvelope,
    error::ApiError,
    openapi::{date_schema, source_schema},
    routes::query,
};

/// The query of `GET /stats` (documentation only: the service reads the raw pairs, so an
/// unknown parameter is a 400 naming it).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// The first day, YYYY-MM-DD (UTC).
    #[param(schema_with = date_schema)]
    pub date: String,
    /// The last day, inclusive (default: `date`); at most `MAX_REPORT_RANGE_DAYS` days in all.
    #[param(schema_with = date_schema)]
    pub date_to: Option<String>,
    /// Only the events of this source.
    #[param(schema_with = source_schema)]
    pub source: Option<String>,
    /// An alias of `source`, as earlier systems named it.
    #[param(schema_with = source_schema)]
    pub site_id: Option<String>,
    /// How many top paths, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The query of `GET /metrics` (documentation only, as for [`StatsParams`]).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    /// Only events of this name (1 to 128 printable characters).
    #[param(example = "purchase")]
    pub event_name: Option<String>,
    /// Only events whose `properties.channel` is this (1 to 128 printable characters).
    #[param(example = "ios")]
    pub channel: Option<String>,
    /// The window's start, inclusive: RFC 3339 (`2026-11-18T10:00:00Z`) or Unix seconds, from
    /// 1970 to the year 9000.
    #[param(example = "2026-11-18T10:15:00Z")]
    pub from: String,
    /// The window's end, exclusive, as `from`; not before `from`.
    #[param(example = "2026-11-19T02:30:00Z")]
    pub to: String,
    /// Buckets: `day` or `hour` (by hour, the window lies within the hour buckets' retention:
    /// from 00:00 UTC thirteen days ago). Without it, totals only.
    #[param(example = "day")]
    pub group_by: Option<String>,
}

/// Views, unique users and top paths over a range of days.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsDto {
    /// The first day (YYYY-MM-DD).
    #[schema(format = Date, example = "2026-11-18")]
    pub date: String,
    /// The last day, inclusive.
    #[schema(format = Date, example = "2026-11-18")]
    pub date_to: String,
    /// The source the answer is limited to; null for every source.
    pub source: Option<String>,
    /// Every event of the range.
    pub total_views: i64,
    /// Distinct `user_id`s of the range (exact up to 2,560, within 2% above).
    pub unique_users: i64,
    /// The paths (`properties.path`) with the most events, most first.
    pub top_paths: Vec<PathStatsDto>,
}

/// One path of `top_paths`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PathStatsDto {
    #[schema(example = "/pricing")]
    pub path: String,
    pub views: i64,
    pub unique_users: i64,
}

/// How fresh an answer is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FreshnessMeta {
    /// The oldest of the newest `computed_at` of the snapshots each part was read from; null
    /// when none was read.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refreshed_at: Option<OffsetDateTime>,
    /// Some event the answer should count is not counted yet: a refresh would change it.
    pub stale: bool,
    /// How long the oldest change the answer does not count had waited when it was made, in
    /// seconds; 0 when it counts every event.
    pub lag_seconds: u64,
    /// Whether the answer came from the response cache (`stats` only; `metrics` is never
    /// cached).
    pub cache_hit: bool,
}

/// `GET /stats`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsEnvelope {
    pub data: StatsDto,
    pub meta: FreshnessMeta,
}

/// The count and unique users of events over a window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricsDto {
    /// The event name counted; null for every name.
    pub event_name: Option<String>,
    /// The channel counted; null for every channel.
    pub channel: Option<String>,
    /// The window's start, inclusive (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// The window's end, exclusive.
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// `day`, `hour`, or null for totals only.
    #[schema(example = "day")]
    pub group_by: Option<String>,
    /// Events in the window (exact).
    pub count: i64,
    /// Distinct `user_id`s in the window (exact up to 2,560, within 2% above).
    pub unique_users: i64,
    /// With `group_by`, every bucket overlapping the window, in order, empty ones included:
    /// the first and last count only their part inside the window. Empty without it.
    pub buckets: Vec<MetricsBucketDto>,
}

/// One bucket of `buckets`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricsBucketDto {
    /// The bucket's start (RFC 3339, UTC): a day at 00:00, or an hour.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    pub count: i64,
    pub unique_users: i64,
}

/// `GET /metrics`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricsEnvelope {
    pub data: MetricsDto,
    pub meta: FreshnessMeta,
}

/// Views, unique users and top paths of a day or a range of days.
///
/// Read from the standard rollups `traffic` and `top-paths` (day buckets), through the
/// response cache, never from raw events. Every event counts as a view. A caller without
/// credentials reads the `default` tenant.
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    tag = "stats",
    operation_id = "getStats",
    params(StatsParams, TenantParam),
    responses(
        (status = 200, description = "The stats of the range", body = StatsEnvelope),
        (status = 400, description = "A parameter is missing or invalid (`date` after `date_to`, a range over the limit, an unknown parameter); `details.field` names it", body = ErrorEnvelope),
        (status = 401, description = "Credentials are wrong, or another tenant than `default` is read without any", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the read scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "The management key names an unknown tenant", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The snapshots are unavailable", body = ErrorEnvelope),
    ),
    security((), ("api_key" = []), ("management_key" = []), ("management_bearer" = []))
)]
pub async fn stats(
    tenant: ReadTenant,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params: Vec<(String, String)> = query(&req)?;
    let stats: Stats = state.stats.stats(tenant.0, &params).await?;
    Ok(HttpResponse::Ok().json(StatsEnvelope {
        meta: FreshnessMeta {
            last_refreshed_at: stats.freshness.last_refreshed_at,
            stale: stats.freshness.stale,
            lag_seconds: stats.freshness.lag_seconds,
            cache_hit: stats.cache_hit,
        },
        data: StatsDto {
            date: format_date(stats.date),
            date_to: format_date(stats.date_to),
            source: stats.source.map(|s| s.to_string()),
            total_views: stats.total_views,
            unique_users: stats.unique_users,
            top_paths: stats
                .top_paths
                .into_iter()
                .map(|p| PathStatsDto {
                    path: p.path,
                    views: p.views,
                    unique_users: p.unique_users,
                })
                .collect(),
        },
    }))
}

/// The count and unique users of events over a window `[from, to)`, in total and per day or
/// hour.
///
/// Read from the standard rollup `events-by-name`: whole days from its day buckets, whole
/// hours of a partial day from its hour buckets, and only the ragged edges (before the first
/// whole hour and after the last: under an hour each) from raw events, through their time
/// index. Counts are exact; unique users merge the edges' users into the buckets' sketches.
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    tag = "stats",
    operation_id = "getMetrics",
    params(MetricsParams, TenantParam),
    responses(
        (status = 200, description = "The count and unique users of the window", body = MetricsEnvelope),
        (status = 400, description = "A parameter is missing or invalid (`from` after `to`, an unparsable time or one outside 1970 to 9000, a window over the limit, hours outside the hour buckets' retention, an unknown parameter); `details.field` names it", body = ErrorEnvelope),
        (status = 401, description = "Credentials are wrong, or another tenant than `default` is read without any", body = ErrorEnvelope),
        (status = 403, description = "The API key lacks the read scope or names another tenant", body = ErrorEnvelope),
        (status = 404, description = "The management key names an unknown tenant", body = ErrorEnvelope),
        (status = 429, description = "The API key is over its rate limit; see `Retry-After`", body = ErrorEnvelope),
        (status = 500, description = "Internal error", body = ErrorEnvelope),
        (status = 503, description = "The snapshots or the events are unavailable", body = ErrorEnvelope),
    ),
    security((), ("api_key" = []), ("management_key" = []), ("management_bearer" = []))
)]
pub async fn metrics(
    tenant: ReadTenant,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params: Vec<(String, String)> = query(&req)?;
    let metrics: Metrics = state.stats.metrics(tenant.0, &params).await?;
    Ok(HttpResponse::Ok().json(MetricsEnvelope {
        meta: FreshnessMeta {
            last_refreshed_at: metrics.freshness.last_refreshed_at,
            stale: metrics.freshness.stale,
            lag_seconds: metrics.freshness.lag_seconds,
            cache_hit: false,
        },
        data: MetricsDto {
            event_name: metrics.event_name,
            channel: metrics.channel,
            from: metrics.from,
            to: metrics.to,
            group_by: metrics.group_by.map(|g| {
                match g {
                    Grouping::Day => "day",
                    Grouping::Hour => "hour",
                }
                .to_owned()
            }),
            count: metrics.count,
            unique_users: metrics.unique_users,
            buckets: metrics
                .buckets
                .into_iter()
                .map(|b| MetricsBucketDto {
                    start: b.start,
                    count: b.count,
                    unique_users: b.unique_users,
                })
                .collect(),
        },
    }))
}

//! Credentials and tenancy at the edge: reading what a request presents, and the extractors
//! that hand a handler the tenant it may act on.
//!
//! Who may do what is decided by `application::AccessPolicy`; this module only reads the
//! credentials off the headers ([`credentials`]), applies an API key's rate limit, and records
//! who acted in the request's span. Each handler states what it needs by the extractor it
//! takes: [`ReadTenant`], [`ManagedTenant`] or [`IngestTenant`].

use std::{future::Future, pin::Pin};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header::HeaderMap, web,
};
use application::{Access, AccessPolicy, Credentials, Principal};
use domain::{TenantId, ValidationError};
use serde::Deserialize;

use crate::{AppState, error::ApiError};

/// The header that carries a tenant's API key.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// The header that carries the management key; when present it alone decides.
pub const MANAGEMENT_KEY_HEADER: &str = "X-Management-Key";

pub use application::access::TENANT_PARAM;

/// The credentials `headers` present: `X-Management-Key` if sent (even empty or wrong), else
/// an `Authorization` header (a Bearer token is a management key, any other scheme is refused),
/// else an `X-API-Key`, else none. Raw bytes, so a non-UTF-8 value is simply a wrong key.
pub fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    if let Some(value) = headers.get(MANAGEMENT_KEY_HEADER) {
        return Credentials::ManagementKey(value.as_bytes().trim_ascii());
    }
    if let Some(authorization) = headers.get(actix_web::http::header::AUTHORIZATION) {
        let authorization = authorization.as_bytes().trim_ascii();
        // The server trims a header value, so `Bearer ` arrives as `Bearer`: a bearer scheme
        // with no token is still a bearer credential (an empty, wrong one).
        let (scheme, token) = match authorization.iter().position(u8::is_ascii_whitespace) {
            Some(at) => (&authorization[..at], &authorization[at..]),
            None => (authorization, &b""[..]),
        };
        return if scheme.eq_ignore_ascii_case(b"bearer") {
            Credentials::ManagementKey(token.trim_ascii())
        } else {
            Credentials::OtherScheme
        };
    }
    match headers.get(API_KEY_HEADER) {
        Some(value) => Credentials::ApiKey(value.as_bytes()),
        None => Credentials::Anonymous,
    }
}

/// Who sent a request: its credentials checked by the access policy, and the API key's rate
/// limit applied. `None` is an anonymous caller.
///
/// # Errors
/// As [`AccessPolicy::identify`], and 429 when the key is over its rate.
async fn identify(req: &HttpRequest, state: &AppState) -> Result<Option<Principal>, ApiError> {
    let principal = state.access.identify(credentials(req.headers())).await?;
    if let Some(Principal::Tenant {
        tenant, key_prefix, ..
    }) = &principal
    {
        // Prefixes are short; with the tenant, two keys never share a bucket by chance.
        state
            .rate_limit
            .check(&format!("{tenant}:{key_prefix}"))
            .map_err(|wait| ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            })?;
    }
    Ok(principal)
}

/// Adds the caller and `tenant` (its id, and its slug when known) to the request's span, so
/// its log line says who acted on which tenant. A key shows only its visible prefix.
fn record(principal: Option<&Principal>, tenant: TenantId, slug: Option<&str>) {
    let span = tracing::Span::current();
    match principal {
        None => span.record("principal", "anonymous"),
        Some(Principal::Operator) => span.record("principal", "operator"),
        Some(Principal::Tenant { key_prefix, .. }) => {
            span.record("principal", format!("api_key:{key_prefix}"))
        }
    };
    span.record("tenant_id", tenant.get());
    if let Some(slug) = slug {
        span.record("tenant", slug);
    }
}

fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("the application state is not registered"))
        })
}

/// The tenant a request of `access` acts on: its caller identified, authorized, and the
/// `tenant` parameter applied; the principal is kept in the request for [`actor_of`].
async fn tenant_for(req: &HttpRequest, access: Access) -> Result<TenantId, ApiError> {
    let state = app_state(req)?;
    let principal = identify(req, &state).await?;
    AccessPolicy::authorize(principal.as_ref(), access)?;
    let requested = web::Query::<TenantParam>::from_query(req.query_string())
        .map_err(|err| ValidationError::new(TENANT_PARAM, err.to_string()))?
        .into_inner()
        .tenant;
    let tenant = state
        .access
        .select_tenant(principal.as_ref(), requested.as_deref())
        .await?;
    let slug = state.access.tenant_slug(tenant).await;
    record(
        principal.as_ref(),
        tenant,
        slug.as_ref().map(|slug| slug.as_str()),
    );
    if let Some(principal) = principal {
        req.extensions_mut().insert(principal);
    }
    Ok(tenant)
}

/// The boxed future of the asynchronous extractors.
type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Declares an extractor yielding the tenant a caller may act on with one kind of access.
macro_rules! tenant_extractor {
    ($(#[$doc:meta])* $name:ident, $access:expr) => {
        $(#[$doc])*
        ///
        /// Take it as the first argument of a handler: actix polls extractors together, so the
        /// handler reads its query and body itself, after this has succeeded, and a request
        /// without the right credentials is refused before anything else about it is examined.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub TenantId);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = LocalBoxFuture<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
                // Resolved once per request: a middleware may have done it already.
                if let Some(resolved) = req.extensions().get::<$name>() {
                    let resolved = *resolved;
                    return Box::pin(async move { Ok(resolved) });
                }
                let req = req.clone();
                Box::pin(async move {
                    let resolved = $name(tenant_for(&req, $access).await?);
                    req.extensions_mut().insert(resolved);
                    Ok(resolved)
                })
            }
        }
    };
}

tenant_extractor!(
    /// The tenant whose reports a request reads: `default` for anyone, another tenant with one
    /// of its API keys with `read`, any tenant for the operator.
    ReadTenant,
    Access::Read
);

tenant_extractor!(
    /// The tenant a management request acts on: its own for an API key with `manage`, any
    /// tenant (default `default`) for the operator.
    ManagedTenant,
    Access::Manage
);

tenant_extractor!(
    /// The tenant events are sent to: that of the request's API key, which needs `ingest`.
    IngestTenant,
    Access::Ingest
);

/// The actor a request's changes are audited under: its principal's (see
/// [`Principal::actor`]), or `management-api` when no tenant extractor ran.
pub fn actor_of(req: &HttpRequest) -> domain::Actor {
    req.extensions().get::<Principal>().map_or_else(
        || domain::Actor::builtin(domain::Actor::MANAGEMENT_API),
        Principal::actor,
    )
}

/// The `tenant` query parameter every tenant-scoped route accepts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantParam {
    /// The tenant (slug) to act on. The management key may name any tenant (default
    /// `default`); an API key acts on its own tenant and naming another is a 403; without
    /// credentials only `default` can be read.
    #[param(schema_with = crate::openapi::slug_schema)]
    pub tenant: Option<String>,
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue};

    use super::*;

    #[test]
    fn the_management_header_decides_over_a_bearer_token_and_an_api_key() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("pga_key"),
        );
        assert_eq!(credentials(&headers), Credentials::ApiKey(b"pga_key"));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer from-bearer"),
        );
        assert_eq!(
            credentials(&headers),
            Credentials::ManagementKey(b"from-bearer")
        );
        headers.insert(
            HeaderName::from_static("x-management-key"),
            HeaderValue::from_static("from-header"),
        );
        assert_eq!(
            credentials(&headers),
            Credentials::ManagementKey(b"from-header")
        );
    }

    #[test]
    fn other_authorization_schemes_are_presented_as_such() {
        let mut headers = HeaderMap::new();
        assert_eq!(credentials(&headers), Credentials::Anonymous);
        for value in ["Basic dXNlcjpwYXNz", "xu:", "Bearerish token"] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(credentials(&headers), Credentials::OtherScheme, "{value:?}");
        }
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer lower-case-scheme"),
        );
        assert_eq!(
            credentials(&headers),
            Credentials::ManagementKey(b"lower-case-scheme")
        );
    }

    #[test]
    fn a_bearer_scheme_without_a_token_presents_an_empty_key() {
        for value in ["Bearer", "Bearer ", "bearer \t ", "BEARER"] {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(
                credentials(&headers),
                Credentials::ManagementKey(b""),
                "{value:?} presents a key, an empty one"
            );
        }
    }
}

//! Authentication and tenancy: who a request comes from and which tenant it may act on.
//!
//! Credentials are the management key (the operator, across tenants) or a tenant's API key
//! (`X-API-Key`, its own tenant and scopes); a request without either is anonymous and may only
//! read the public reports of `default`. Each handler states what it needs by the extractor it
//! takes: [`ReadTenant`], [`ManagedTenant`] or [`IngestTenant`].

use std::{future::Future, pin::Pin};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header::HeaderMap, web,
};
use application::{Principal, TenancyService, TenancyServiceError};
use domain::{Scope, TenantId, TenantSlug, ValidationError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AppState, error::ApiError};

/// The header that carries a tenant's API key.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// The query parameter naming the tenant a request acts on.
pub const TENANT_PARAM: &str = "tenant";

/// The longest `X-API-Key` worth looking up; issued keys are far shorter.
const MAX_API_KEY_LEN: usize = 256;

/// The header that carries the management key; when present it alone decides.
pub const MANAGEMENT_KEY_HEADER: &str = "X-Management-Key";

/// The management API key.
///
/// Only its SHA-256 is kept: comparing digests of equal length in constant time leaks neither
/// the key nor its length through timing, and the secret itself never sits in the state where a
/// stray `{:?}` could print it.
#[derive(Clone)]
pub struct ManagementKey {
    digest: [u8; 32],
}

impl ManagementKey {
    /// Wraps the configured secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            digest: Sha256::digest(secret.as_ref()).into(),
        }
    }

    /// Whether `candidate` is the key, compared in constant time. An empty candidate never is,
    /// so a blank header cannot match a misconfigured empty key.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        if candidate.is_empty() {
            return false;
        }
        let candidate: [u8; 32] = Sha256::digest(candidate).into();
        self.digest.ct_eq(&candidate).into()
    }
}

impl std::fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagementKey(<redacted>)")
    }
}

/// Who sent a request, once its credentials are checked: the operator (management key), a
/// tenant's API key, or nobody.
///
/// Extracting it authenticates the request and applies the API key's rate limit; it does not
/// yet decide what the caller may do. Handlers usually take one of [`ReadTenant`],
/// [`ManagedTenant`] or [`IngestTenant`] instead, which also pick and check the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    principal: Option<Principal>,
}

/// What a route does with a tenant's data, and so what its caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read reports: public for `default`; a key with `read`; the operator.
    Read,
    /// Recomputations, the audit trail, sources: a key with `manage`; the operator.
    Manage,
    /// Send events: a key with `ingest` only.
    Ingest,
}

impl Access {
    /// The scope an API key needs for this access.
    pub const fn scope(self) -> Scope {
        match self {
            Access::Read => Scope::Read,
            Access::Manage => Scope::Manage,
            Access::Ingest => Scope::Ingest,
        }
    }
}

impl Caller {
    /// A caller acting as `principal` (`None`: anonymous).
    pub fn new(principal: Option<Principal>) -> Self {
        Self { principal }
    }

    /// The principal, `None` when the request carried no credentials.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Authenticates the request.
    ///
    /// The management key, if presented (`X-Management-Key`, else `Authorization: Bearer`),
    /// decides alone: right is the operator, wrong is a 401. Otherwise an `X-API-Key` is looked
    /// up on every request, so a revoked key stops working at once, and its rate limit applies.
    /// No credentials at all is an anonymous caller.
    ///
    /// # Errors
    /// 401 for a wrong management key or an unknown or revoked API key; 429 when the key is
    /// over its rate; 503/500 when the key store fails.
    pub async fn identify(req: &HttpRequest, state: &AppState) -> Result<Self, ApiError> {
        match presented_key(req.headers()) {
            Presented::Key(key) => {
                return if state.management_key.verify(key) {
                    Ok(Self::new(Some(Principal::Operator)))
                } else {
                    Err(ApiError::Unauthorized(
                        "invalid management key (a tenant's API key is sent as X-API-Key)",
                    ))
                };
            }
            Presented::OtherScheme => {
                return Err(ApiError::Unauthorized(
                    "unsupported Authorization scheme: the management key is sent as \
                     Authorization: Bearer <key> (or X-Management-Key), an API key as X-API-Key",
                ));
            }
            Presented::Nothing => {}
        }
        let Some(value) = req.headers().get(API_KEY_HEADER) else {
            return Ok(Self::new(None));
        };
        let secret = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|secret| !secret.is_empty() && secret.len() <= MAX_API_KEY_LEN)
            .ok_or(ApiError::Unauthorized("invalid API key"))?;
        let principal = state
            .tenancy
            .authenticate(secret)
            .await?
            .ok_or(ApiError::Unauthorized("unknown or revoked API key"))?;
        if let Principal::Tenant {
            tenant, key_prefix, ..
        } = &principal
        {
            // Prefixes are short; with the tenant, two keys never share a bucket by chance.
            state
                .rate_limit
                .check(&format!("{tenant}:{key_prefix}"))
                .map_err(|wait| ApiError::RateLimited {
                    retry_after_secs: wait.as_secs().max(1),
                })?;
        }
        Ok(Self::new(Some(principal)))
    }

    /// Adds the caller and `tenant` to the request's span, so its log line says who acted on
    /// which tenant. A key shows only its visible prefix.
    fn record(&self, tenant: TenantId) {
        let span = tracing::Span::current();
        match &self.principal {
            None => span.record("principal", "anonymous"),
            Some(Principal::Operator) => span.record("principal", "operator"),
            Some(Principal::Tenant { key_prefix, .. }) => {
                span.record("principal", format!("api_key:{key_prefix}"))
            }
        };
        span.record("tenant", tenant.get());
    }

    /// Checks that the caller may use a route of `access` at all, whatever the tenant.
    ///
    /// # Errors
    /// 401 when an anonymous caller needs credentials; 403 when an API key lacks the scope or
    /// the management key is used to send events.
    pub fn authorize(&self, access: Access) -> Result<(), ApiError> {
        match (&self.principal, access) {
            (None, Access::Read) | (Some(Principal::Operator), Access::Read | Access::Manage) => {
                Ok(())
            }
            (None, Access::Manage) => Err(ApiError::Unauthorized(
                "missing credentials: send the management key (X-Management-Key or \
                 Authorization: Bearer) or an X-API-Key with the manage scope",
            )),
            (None, Access::Ingest) => Err(ApiError::Unauthorized(
                "missing API key: send events with X-API-Key: <a key of your tenant with the \
                 ingest scope>",
            )),
            (Some(Principal::Operator), Access::Ingest) => Err(ApiError::Forbidden(
                "events are sent with a tenant's API key (X-API-Key with the ingest scope), \
                 not with the management key"
                    .to_owned(),
            )),
            (Some(Principal::Tenant { scopes, .. }), access) => {
                if scopes.contains(&access.scope()) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(format!(
                        "this API key lacks the {} scope",
                        access.scope()
                    )))
                }
            }
        }
    }

    /// The tenant a request of an authorized caller acts on, given its `tenant` parameter.
    ///
    /// The operator acts on the named tenant (default `default`); an API key on its own tenant
    /// only; an anonymous caller on `default` only.
    ///
    /// # Errors
    /// 400 for a malformed slug; 403 when an API key names another tenant (known or not, so a
    /// key cannot probe which tenants exist); 401 when an anonymous caller names another
    /// tenant; 404 when the operator names an unknown tenant; 503/500 when the tenant store
    /// fails.
    pub async fn select_tenant(
        &self,
        tenancy: &TenancyService,
        requested: Option<&str>,
    ) -> Result<TenantId, ApiError> {
        let requested = requested
            .map(|raw| TenantSlug::parse(TENANT_PARAM, raw))
            .transpose()?;
        match (&self.principal, requested) {
            (_, None) => Ok(match &self.principal {
                Some(Principal::Tenant { tenant, .. }) => *tenant,
                Some(Principal::Operator) | None => TenantId::DEFAULT,
            }),
            (None, Some(slug)) => {
                if slug.as_str() == TenantSlug::DEFAULT {
                    Ok(TenantId::DEFAULT)
                } else {
                    Err(ApiError::Unauthorized(
                        "only the default tenant is public: send an X-API-Key of this tenant \
                         with the read scope",
                    ))
                }
            }
            (Some(Principal::Operator), Some(slug)) => find_tenant(tenancy, &slug)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no tenant is called {slug}"))),
            (Some(Principal::Tenant { tenant, .. }), Some(slug)) => {
                if find_tenant(tenancy, &slug).await? == Some(*tenant) {
                    Ok(*tenant)
                } else {
                    Err(ApiError::Forbidden(format!(
                        "this API key belongs to another tenant than {slug}"
                    )))
                }
            }
        }
    }

    /// [`authorize`](Self::authorize), then [`select_tenant`](Self::select_tenant) with the
    /// request's `tenant` query parameter.
    ///
    /// # Errors
    /// As those two, and 400 when the query string cannot be read.
    pub async fn tenant_for(
        &self,
        req: &HttpRequest,
        tenancy: &TenancyService,
        access: Access,
    ) -> Result<TenantId, ApiError> {
        self.authorize(access)?;
        let requested = web::Query::<TenantParam>::from_query(req.query_string())
            .map_err(|err| ValidationError::new(TENANT_PARAM, err.to_string()))?
            .into_inner()
            .tenant;
        self.select_tenant(tenancy, requested.as_deref()).await
    }
}

/// The id of the tenant called `slug`, `None` when there is none. `default` always exists
/// (the first migration creates it as tenant 1), so it costs no lookup.
async fn find_tenant(
    tenancy: &TenancyService,
    slug: &TenantSlug,
) -> Result<Option<TenantId>, ApiError> {
    if slug.as_str() == TenantSlug::DEFAULT {
        return Ok(Some(TenantId::DEFAULT));
    }
    match tenancy.resolve(Some(slug.as_str())).await {
        Ok(tenant) => Ok(Some(tenant.id)),
        Err(TenancyServiceError::NotFound(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("the application state is not registered"))
        })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = app_state(&req)?;
            Caller::identify(&req, &state).await
        })
    }
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
                let req = req.clone();
                Box::pin(async move {
                    let state = app_state(&req)?;
                    let caller = Caller::identify(&req, &state).await?;
                    let tenant = caller.tenant_for(&req, &state.tenancy, $access).await?;
                    caller.record(tenant);
                    if let Some(principal) = caller.principal() {
                        req.extensions_mut().insert(principal.clone());
                    }
                    Ok($name(tenant))
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

/// The actor a request's changes are audited under: `api-key:{prefix}` for a tenant's key,
/// `management-api` for the operator (or when no tenant extractor ran).
pub fn actor_of(req: &HttpRequest) -> domain::Actor {
    match req.extensions().get::<Principal>() {
        Some(Principal::Tenant { key_prefix, .. }) => {
            domain::Actor::parse(&format!("api-key:{key_prefix}"))
                .unwrap_or_else(|_| domain::Actor::builtin(domain::Actor::MANAGEMENT_API))
        }
        _ => domain::Actor::builtin(domain::Actor::MANAGEMENT_API),
    }
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

/// The management credential a request presents.
#[derive(Debug, PartialEq, Eq)]
enum Presented<'a> {
    /// Neither `X-Management-Key` nor `Authorization`.
    Nothing,
    /// `X-Management-Key` if sent (even empty or wrong), else the token of an
    /// `Authorization: Bearer` header (empty when the scheme came alone). Raw bytes, so a
    /// non-UTF-8 header is simply a wrong key.
    Key(&'a [u8]),
    /// An `Authorization` header of another scheme than Bearer, which this API does not take.
    OtherScheme,
}

fn presented_key(headers: &HeaderMap) -> Presented<'_> {
    if let Some(value) = headers.get(MANAGEMENT_KEY_HEADER) {
        return Presented::Key(value.as_bytes().trim_ascii());
    }
    let Some(authorization) = headers.get(actix_web::http::header::AUTHORIZATION) else {
        return Presented::Nothing;
    };
    let authorization = authorization.as_bytes().trim_ascii();
    // The server trims a header value, so `Bearer ` arrives as `Bearer`: a bearer scheme with
    // no token is still a bearer credential (an empty, wrong one), never no credential at all.
    let (scheme, token) = match authorization.iter().position(u8::is_ascii_whitespace) {
        Some(at) => (&authorization[..at], &authorization[at..]),
        None => (authorization, &b""[..]),
    };
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Presented::Key(token.trim_ascii())
    } else {
        Presented::OtherScheme
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{AUTHORIZATION, HeaderValue};

    use super::*;

    fn key_with(scopes: &[Scope]) -> Caller {
        Caller::new(Some(Principal::Tenant {
            tenant: TenantId::new(7),
            scopes: scopes.to_vec(),
            key_prefix: "pga_12345678".to_owned(),
        }))
    }

    fn status(result: Result<(), ApiError>) -> u16 {
        result.map_or_else(|err| err.code().status().as_u16(), |()| 200)
    }

    #[test]
    fn each_access_needs_its_scope_or_the_operator() {
        let anonymous = Caller::new(None);
        let operator = Caller::new(Some(Principal::Operator));
        let cases = [
            (&anonymous, Access::Read, 200),
            (&anonymous, Access::Manage, 401),
            (&anonymous, Access::Ingest, 401),
            (&operator, Access::Read, 200),
            (&operator, Access::Manage, 200),
            (&operator, Access::Ingest, 403),
        ];
        for (caller, access, expected) in cases {
            assert_eq!(
                status(caller.authorize(access)),
                expected,
                "{access:?} by {caller:?}"
            );
        }
        for access in [Access::Read, Access::Manage, Access::Ingest] {
            assert_eq!(
                status(key_with(&[access.scope()]).authorize(access)),
                200,
                "a key with the scope of {access:?}"
            );
            let others: Vec<Scope> = Scope::ALL
                .into_iter()
                .filter(|scope| *scope != access.scope())
                .collect();
            assert_eq!(
                status(key_with(&others).authorize(access)),
                403,
                "a key with every scope but that of {access:?}"
            );
        }
    }

    #[test]
    fn the_key_matches_only_itself() {
        let key = ManagementKey::new("correct horse battery staple");
        assert!(key.verify(b"correct horse battery staple"));
        assert!(
            !key.verify(b"correct horse battery stapl"),
            "a prefix is not the key"
        );
        assert!(!key.verify(b""), "an empty candidate never matches");
    }

    #[test]
    fn debug_output_never_contains_the_key() {
        let key = ManagementKey::new("super-secret-value");
        assert!(
            !format!("{key:?}").contains("super-secret"),
            "debug: {key:?}"
        );
    }

    #[test]
    fn the_management_header_decides_over_a_bearer_token() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer from-bearer"),
        );
        assert_eq!(presented_key(&headers), Presented::Key(b"from-bearer"));
        headers.insert(
            actix_web::http::header::HeaderName::from_static("x-management-key"),
            HeaderValue::from_static("from-header"),
        );
        assert_eq!(presented_key(&headers), Presented::Key(b"from-header"));
    }

    #[test]
    fn other_authorization_schemes_are_presented_as_such() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_key(&headers), Presented::Nothing);
        for value in ["Basic dXNlcjpwYXNz", "xu:", "Bearerish token"] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(presented_key(&headers), Presented::OtherScheme, "{value:?}");
        }
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer lower-case-scheme"),
        );
        assert_eq!(
            presented_key(&headers),
            Presented::Key(b"lower-case-scheme")
        );
    }

    #[test]
    fn a_bearer_scheme_without_a_token_presents_an_empty_key() {
        for value in ["Bearer", "Bearer ", "bearer \t ", "BEARER"] {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(
                presented_key(&headers),
                Presented::Key(b""),
                "{value:?} presents a key, an empty one"
            );
        }
    }
}

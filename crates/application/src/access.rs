//! Who may do what: the access policy of every route, decided from the credentials a request
//! presents.
//!
//! The HTTP layer reads the credentials off a request ([`Credentials`]) and maps
//! [`AccessError`] to statuses; every rule is here. Callers are the operator (the management
//! key: any tenant, but never ingestion), a tenant's API key (its own tenant, its scopes) or
//! nobody (the public reports of `default` only).

use domain::{Actor, Scope, TenantId, TenantSlug, ValidationError};
use subtle::ConstantTimeEq;

use crate::{
    digest::key_digest,
    tenancy::{Principal, TenancyService, TenancyServiceError},
};

/// The query parameter naming the tenant a request acts on.
pub const TENANT_PARAM: &str = "tenant";

/// The longest API key worth looking up; issued keys are far shorter.
const MAX_API_KEY_LEN: usize = 256;

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

/// The credentials a request presents, as read off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// None: an anonymous caller.
    Anonymous,
    /// A management key: when one is presented it alone decides, right or wrong.
    ManagementKey(&'a [u8]),
    /// An `Authorization` header of a scheme the API does not take.
    OtherScheme,
    /// A tenant's API key, as sent.
    ApiKey(&'a [u8]),
}

/// Why a caller may not do what it asks.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The credentials are missing, wrong, unknown or revoked.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The operator named a tenant that does not exist.
    #[error("no tenant is called {0}")]
    UnknownTenant(TenantSlug),
    /// The `tenant` parameter is not a slug.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The key or tenant store cannot be reached.
    #[error("tenancy storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<TenancyServiceError> for AccessError {
    fn from(err: TenancyServiceError) -> Self {
        match err {
            TenancyServiceError::Invalid(invalid) => AccessError::Invalid(invalid),
            TenancyServiceError::Unavailable(cause) => AccessError::Unavailable(cause),
            other => AccessError::Unexpected(other.into()),
        }
    }
}

/// The management key, kept only as its SHA-256: comparing digests of equal length in constant
/// time leaks neither the key nor its length, and the secret never sits where a stray `{:?}`
/// could print it.
#[derive(Clone)]
pub struct ManagementKey {
    digest: [u8; 32],
}

impl ManagementKey {
    /// Wraps the configured secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            digest: key_digest(secret.as_ref()),
        }
    }

    /// Whether `candidate` is the key, compared in constant time. An empty candidate never is,
    /// so a blank header cannot match a misconfigured empty key.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        !candidate.is_empty() && bool::from(self.digest.ct_eq(&key_digest(candidate)))
    }
}

impl std::fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagementKey(<redacted>)")
    }
}

impl Principal {
    /// The actor changes made by this principal are audited under: `api-key:{prefix}` for a
    /// tenant's key, `management-api` for the operator.
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Operator => Actor::builtin(Actor::MANAGEMENT_API),
            Principal::Tenant { key_prefix, .. } => Actor::parse(&format!("api-key:{key_prefix}"))
                .unwrap_or_else(|_| Actor::builtin(Actor::MANAGEMENT_API)),
        }
    }
}

/// Decides who a request comes from and what it may do.
#[derive(Clone)]
pub struct AccessPolicy {
    /// `None` in a process that does not serve the operator (the one-shot commands).
    management_key: Option<ManagementKey>,
    tenancy: TenancyService,
}

impl std::fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessPolicy").finish_non_exhaustive()
    }
}

impl AccessPolicy {
    /// A policy recognising `management_key` as the operator's and looking API keys up
    /// through `tenancy`.
    pub fn new(management_key: Option<ManagementKey>, tenancy: TenancyService) -> Self {
        Self {
            management_key,
            tenancy,
        }
    }

    /// Who presents `credentials`: the operator, a tenant's key, or nobody (`None`).
    ///
    /// # Errors
    /// [`AccessError::Unauthenticated`] for a wrong management key, a scheme the API does not
    /// take, or an API key that is malformed, unknown or revoked; [`AccessError::Unavailable`]
    /// when a key the process cannot vouch for meets an unreachable key store.
    pub async fn identify(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Option<Principal>, AccessError> {
        match credentials {
            Credentials::Anonymous => Ok(None),
            Credentials::ManagementKey(key) => {
                if self.management_key.as_ref().is_some_and(|k| k.verify(key)) {
                    Ok(Some(Principal::Operator))
                } else {
                    Err(AccessError::Unauthenticated(
                        "invalid management key (a tenant's API key is sent as X-API-Key)",
                    ))
                }
            }
            Credentials::OtherScheme => Err(AccessError::Unauthenticated(
                "unsupported Authorization scheme: the management key is sent as \
                 Authorization: Bearer <key> (or X-Management-Key), an API key as X-API-Key",
            )),
            Credentials::ApiKey(raw) => {
                let secret = std::str::from_utf8(raw)
                    .ok()
                    .map(str::trim)
                    .filter(|secret| {
                        !secret.is_empty()
                            && secret.len() <= MAX_API_KEY_LEN
                            && secret
                                .bytes()
                                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
                    })
                    .ok_or(AccessError::Unauthenticated("invalid API key"))?;
                self.tenancy
                    .authenticate(secret)
                    .await?
                    .map(Some)
                    .ok_or(AccessError::Unauthenticated("unknown or revoked API key"))
            }
        }
    }

    /// Whether `principal` may use a route of `access` at all, whatever the tenant.
    ///
    /// # Errors
    /// [`AccessError::Unauthenticated`] when an anonymous caller needs credentials;
    /// [`AccessError::Forbidden`] when an API key lacks the scope or the management key is
    /// used to send events.
    pub fn authorize(principal: Option<&Principal>, access: Access) -> Result<(), AccessError> {
        match (principal, access) {
            (None, Access::Read) | (Some(Principal::Operator), Access::Read | Access::Manage) => {
                Ok(())
            }
            (None, Access::Manage) => Err(AccessError::Unauthenticated(
                "missing credentials: send the management key (X-Management-Key or \
                 Authorization: Bearer) or an X-API-Key with the manage scope",
            )),
            (None, Access::Ingest) => Err(AccessError::Unauthenticated(
                "missing API key: send events with X-API-Key: <a key of your tenant with the \
                 ingest scope>",
            )),
            (Some(Principal::Operator), Access::Ingest) => Err(AccessError::Forbidden(
                "events are sent with a tenant's API key (X-API-Key with the ingest scope), \
                 not with the management key"
                    .to_owned(),
            )),
            (Some(Principal::Tenant { scopes, .. }), access) => {
                if scopes.contains(&access.scope()) {
                    Ok(())
                } else {
                    Err(AccessError::Forbidden(format!(
                        "this API key lacks the {} scope",
                        access.scope()
                    )))
                }
            }
        }
    }

    /// The tenant a request of `principal` acts on, given its `tenant` parameter: the operator
    /// acts on the named tenant (default `default`); an API key on its own tenant only; an
    /// anonymous caller on `default` only.
    ///
    /// # Errors
    /// [`AccessError::Invalid`] for a malformed slug; [`AccessError::Forbidden`] when an API
    /// key names another tenant (known or not, so a key cannot probe which tenants exist);
    /// [`AccessError::Unauthenticated`] when an anonymous caller names another tenant;
    /// [`AccessError::UnknownTenant`] when the operator names one that does not exist;
    /// [`AccessError::Unavailable`] when the tenant store cannot be reached.
    pub async fn select_tenant(
        &self,
        principal: Option<&Principal>,
        requested: Option<&str>,
    ) -> Result<TenantId, AccessError> {
        let requested = requested
            .map(|raw| TenantSlug::parse(TENANT_PARAM, raw))
            .transpose()?;
        let Some(slug) = requested else {
            return Ok(match principal {
                Some(Principal::Tenant { tenant, .. }) => *tenant,
                Some(Principal::Operator) | None => TenantId::DEFAULT,
            });
        };
        match principal {
            None if slug.as_str() == TenantSlug::DEFAULT => Ok(TenantId::DEFAULT),
            None => Err(AccessError::Unauthenticated(
                "only the default tenant is public: send an X-API-Key of this tenant with the \
                 read scope",
            )),
            Some(Principal::Operator) => self
                .find_tenant(&slug)
                .await?
                .ok_or(AccessError::UnknownTenant(slug)),
            Some(Principal::Tenant { tenant, .. }) => {
                if self.find_tenant(&slug).await? == Some(*tenant) {
                    Ok(*tenant)
                } else {
                    Err(AccessError::Forbidden(format!(
                        "this API key belongs to another tenant than {slug}"
                    )))
                }
            }
        }
    }

    /// The id of the tenant called `slug`, `None` when there is none. `default` always exists
    /// (the first migration creates it as tenant 1), so it costs no lookup.
    /// The slug of `tenant`, for the logs (see [`TenancyService::slug_of`]).
    pub async fn tenant_slug(&self, tenant: TenantId) -> Option<TenantSlug> {
        self.tenancy.slug_of(tenant).await
    }

    async fn find_tenant(&self, slug: &TenantSlug) -> Result<Option<TenantId>, AccessError> {
        if slug.as_str() == TenantSlug::DEFAULT {
            return Ok(Some(TenantId::DEFAULT));
        }
        match self.tenancy.resolve(Some(slug.as_str())).await {
            Ok(tenant) => Ok(Some(tenant.id)),
            Err(TenancyServiceError::NotFound(_)) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_with(scopes: &[Scope]) -> Principal {
        Principal::Tenant {
            tenant: TenantId::new(7),
            scopes: scopes.to_vec(),
            key_prefix: "pga_12345678".to_owned(),
        }
    }

    /// The status class of a decision: 200, 401 or 403.
    fn outcome(result: Result<(), AccessError>) -> u16 {
        match result {
            Ok(()) => 200,
            Err(AccessError::Unauthenticated(_)) => 401,
            Err(AccessError::Forbidden(_)) => 403,
            Err(_) => 0,
        }
    }

    #[test]
    fn each_access_needs_its_scope_or_the_operator() {
        let cases = [
            (None, Access::Read, 200),
            (None, Access::Manage, 401),
            (None, Access::Ingest, 401),
            (Some(Principal::Operator), Access::Read, 200),
            (Some(Principal::Operator), Access::Manage, 200),
            (Some(Principal::Operator), Access::Ingest, 403),
        ];
        for (principal, access, expected) in cases {
            assert_eq!(
                outcome(AccessPolicy::authorize(principal.as_ref(), access)),
                expected,
                "{access:?} by {principal:?}"
            );
        }
        for access in [Access::Read, Access::Manage, Access::Ingest] {
            let with = key_with(&[access.scope()]);
            assert_eq!(
                outcome(AccessPolicy::authorize(Some(&with), access)),
                200,
                "a key with the scope of {access:?}"
            );
            let others: Vec<Scope> = Scope::ALL
                .into_iter()
                .filter(|scope| *scope != access.scope())
                .collect();
            assert_eq!(
                outcome(AccessPolicy::authorize(Some(&key_with(&others)), access)),
                403,
                "a key with every scope but that of {access:?}"
            );
        }
    }

    #[test]
    fn the_management_key_matches_only_itself() {
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
    fn a_principal_acts_as_its_key_or_as_the_management_api() {
        assert_eq!(key_with(&[]).actor().as_str(), "api-key:pga_12345678");
        assert_eq!(Principal::Operator.actor().as_str(), "management-api");
    }
}

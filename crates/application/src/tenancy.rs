//! Tenants, their sources and API keys: administration and authentication.

use std::{sync::Arc, time::Duration};

use domain::{
    ApiKey, Description, DisplayName, EventSource, KeyHash, KeyPrefix, Scope, SourceSlug, Tenant,
    TenantId, TenantSlug, ValidationError,
};

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::ports::{
    ApiKeyStore, AuditLog, Clock, NewApiKey, SourceStore, StoreError, TenancyError, TenantStore,
};
use crate::{digest::key_digest, expiring::ExpiringCache};

/// The failure of a tenancy use case.
#[derive(Debug, thiserror::Error)]
pub enum TenancyServiceError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No tenant (or key) with this name.
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("tenancy storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<TenancyError> for TenancyServiceError {
    fn from(err: TenancyError) -> Self {
        match err {
            TenancyError::AlreadyExists(what) => TenancyServiceError::AlreadyExists(what),
            TenancyError::Unavailable(e) => TenancyServiceError::Unavailable(e),
            TenancyError::Unexpected(e) => TenancyServiceError::Unexpected(e),
        }
    }
}

/// Who a request acts as, once its credentials are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The holder of the management key: any tenant, every scope.
    Operator,
    /// The holder of a tenant's API key: that tenant, the key's scopes.
    Tenant {
        tenant: TenantId,
        scopes: Vec<Scope>,
        key_prefix: String,
    },
}

/// A newly created key: shown once, never stored, and never printed by `{:?}`.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: ApiKey,
    pub secret: SecretString,
}

/// `N` bytes from the operating system's random source, as `2 * N` lowercase hex digits: key
/// material.
///
/// # Errors
/// When the random source fails.
pub fn random_hex<const N: usize>() -> Result<String, TenancyServiceError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|err| TenancyServiceError::Unexpected(anyhow::anyhow!("random source: {err}")))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The SHA-256 (hex) of a key, [`key_digest`](crate::digest::key_digest) as stored and looked
/// up.
pub fn hash_key(secret: &str) -> KeyHash {
    KeyHash::from_digest(key_digest(secret.as_bytes()))
}

/// How long this process trusts what it learnt of a key, unless configured
/// (`API_KEY_CACHE_SECS`' default).
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// How long a key verified before the key store became unreachable stays accepted while it
/// is, unless configured (`API_KEY_OUTAGE_GRACE_SECS`' default).
pub const DEFAULT_KEY_OUTAGE_GRACE: Duration = Duration::from_secs(900);

/// The most keys (known or unknown) remembered at once; past it unknown keys are forgotten
/// first, then every key.
const MAX_REMEMBERED_KEYS: usize = 10_000;

/// The most tenants remembered by slug at once.
const MAX_REMEMBERED_TENANTS: usize = 10_000;

/// What the process remembers of API keys, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCacheSettings {
    /// A key looked up less than this long ago (found, unknown or revoked) is not looked up
    /// again: the longest a revocation made elsewhere takes to reach this process. Zero looks
    /// every key up on every request.
    pub ttl: Duration,
    /// While the key store cannot be reached, a key this process verified less than this long
    /// ago is still accepted, so reads served from caches keep working through an outage.
    /// Zero refuses every key the store cannot confirm.
    pub outage_grace: Duration,
}

impl Default for KeyCacheSettings {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_KEY_CACHE_TTL,
            outage_grace: DEFAULT_KEY_OUTAGE_GRACE,
        }
    }
}

/// One remembered lookup: the principal of a key (`None`: unknown or revoked), and when.
#[derive(Debug, Clone)]
struct KnownKey {
    principal: Option<Principal>,
    looked_up_at: OffsetDateTime,
}

/// The ports a [`TenancyService`] works with.
#[derive(Clone)]
pub struct TenancyPorts {
    pub tenants: Arc<dyn TenantStore>,
    pub sources: Arc<dyn SourceStore>,
    pub keys: Arc<dyn ApiKeyStore>,
    /// Where the changes it makes (`source.created`) are audited.
    pub audit: Arc<dyn AuditLog>,
    pub clock: Arc<dyn Clock>,
}

/// Manages tenants, sources and keys, and authenticates keys.
#[derive(Clone)]
pub struct TenancyService {
    tenants: Arc<dyn TenantStore>,
    sources: Arc<dyn SourceStore>,
    keys: Arc<dyn ApiKeyStore>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditLog>,
    key_cache: KeyCacheSettings,
    /// Lookups of keys by hash, shared by every clone of the service, each kept for the
    /// longer of the TTL and the outage grace.
    known_keys: Arc<ExpiringCache<KeyHash, KnownKey, OffsetDateTime>>,
    /// Tenants by slug: a tenant is never renamed or removed, so a found one stays true.
    known_tenants: Arc<ExpiringCache<TenantSlug, Tenant, OffsetDateTime>>,
    /// Slugs by tenant id, for the logs.
    known_slugs: Arc<ExpiringCache<TenantId, TenantSlug, OffsetDateTime>>,
}

impl std::fmt::Debug for TenancyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancyService").finish_non_exhaustive()
    }
}

impl TenancyService {
    /// A service over `ports`, remembering key lookups as `key_cache` says.
    pub fn new(ports: TenancyPorts, key_cache: KeyCacheSettings) -> Self {
        Self {
            tenants: ports.tenants,
            sources: ports.sources,
            keys: ports.keys,
            clock: ports.clock,
            audit: ports.audit,
            key_cache,
            known_keys: Arc::new(ExpiringCache::new(MAX_REMEMBERED_KEYS as u64, 1)),
            known_tenants: Arc::new(ExpiringCache::new(MAX_REMEMBERED_TENANTS as u64, 1)),
            known_slugs: Arc::new(ExpiringCache::new(MAX_REMEMBERED_TENANTS as u64, 1)),
        }
    }

    /// The tenant called `slug` (`default` when `None`).
    ///
    /// # Errors
    /// [`TenancyServiceError::Invalid`] for a malformed slug, `NotFound` for an unknown one.
    pub async fn resolve(&self, slug: Option<&str>) -> Result<Tenant, TenancyServiceError> {
        let slug = match slug {
            Some(raw) => TenantSlug::parse("tenant", raw)?,
            None => TenantSlug::default_tenant(),
        };
        // A found tenant stays true, so its expiry never matters: any age will do.
        let now = self.clock.now();
        if let Some((tenant, _)) = self.known_tenants.any_age(&slug, now) {
            return Ok(tenant);
        }
        let tenant = self
            .tenants
            .find(&slug)
            .await?
            .ok_or_else(|| TenancyServiceError::NotFound(format!("tenant {slug}")))?;
        self.known_tenants.insert(slug, tenant.clone(), now, 1);
        Ok(tenant)
    }

    /// The slug of `tenant`, for the logs: remembered once read (a tenant is never renamed),
    /// read with every other tenant's when unknown; `None` when the store cannot say.
    pub async fn slug_of(&self, tenant: TenantId) -> Option<TenantSlug> {
        if tenant == TenantId::DEFAULT {
            return Some(TenantSlug::default_tenant());
        }
        let now = self.clock.now();
        if let Some((slug, _)) = self.known_slugs.any_age(&tenant, now) {
            return Some(slug);
        }
        let tenants = self.tenants.list().await.ok()?;
        let mut found = None;
        for listed in tenants {
            if listed.id == tenant {
                found = Some(listed.slug.clone());
            }
            self.known_slugs.insert(listed.id, listed.slug, now, 1);
        }
        found
    }

    /// Creates a tenant.
    ///
    /// # Errors
    /// Invalid slug or name, `AlreadyExists`, storage failures.
    pub async fn create_tenant(
        &self,
        slug: &str,
        name: Option<&str>,
    ) -> Result<Tenant, TenancyServiceError> {
        let slug = TenantSlug::parse("tenant", slug)?;
        let name = DisplayName::parse("name", name.unwrap_or(slug.as_str()))?;
        Ok(self.tenants.create(&slug, &name).await?)
    }

    /// The tenants, by id.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, TenancyServiceError> {
        Ok(self.tenants.list().await?)
    }

    /// The sources of `tenant`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sources(&self, tenant: TenantId) -> Result<Vec<EventSource>, TenancyServiceError> {
        Ok(self.sources.list(tenant).await?)
    }

    /// Adds a source to `tenant` on behalf of `actor`, and audits `source.created`.
    ///
    /// # Errors
    /// Invalid slug or name, `AlreadyExists`, storage failures (if the audit entry cannot be
    /// written the source exists all the same, and the error says the store is unavailable).
    pub async fn create_source(
        &self,
        tenant: TenantId,
        slug: &str,
        provider_name: Option<&str>,
        description: Option<&str>,
        actor: &domain::Actor,
    ) -> Result<EventSource, TenancyServiceError> {
        let slug = SourceSlug::parse("slug", slug)?;
        let provider = DisplayName::parse("provider_name", provider_name.unwrap_or(slug.as_str()))?;
        let description = Description::parse("description", description.unwrap_or_default())?;
        let source = self
            .sources
            .create(tenant, &slug, &provider, &description)
            .await?;
        let entry = domain::NewAuditEntry {
            tenant,
            actor: actor.clone(),
            action: domain::AuditAction::SourceCreated,
            resource_type: domain::audit::RESOURCE_EVENT_SOURCE.to_owned(),
            resource_id: source.slug.to_string(),
            metadata: serde_json::json!({ "provider_name": source.provider_name }),
        };
        self.audit.record(entry).await.map_err(|err| match err {
            StoreError::Unavailable(e) => TenancyServiceError::Unavailable(e),
            StoreError::Unexpected(e) => TenancyServiceError::Unexpected(e),
        })?;
        Ok(source)
    }

    /// Issues a key for `tenant` with `scopes`; the secret is returned once and never stored.
    ///
    /// # Errors
    /// No scope, storage failures.
    pub async fn issue_key(
        &self,
        tenant: TenantId,
        scopes: &[Scope],
        name: &str,
    ) -> Result<IssuedKey, TenancyServiceError> {
        let mut scopes: Vec<Scope> = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(ValidationError::new(
                "scope",
                "at least one of ingest, read, manage is required",
            )
            .into());
        }
        let name = Description::parse("name", name)?;
        let secret = format!("pga_{}", random_hex::<32>()?);
        let key = self
            .keys
            .create(&NewApiKey {
                tenant,
                prefix: KeyPrefix::of(&secret),
                key_hash: hash_key(&secret),
                scopes,
                name,
                created_at: self.clock.now(),
            })
            .await?;
        Ok(IssuedKey {
            key,
            secret: SecretString::from(secret),
        })
    }

    /// The keys of `tenant`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn keys(&self, tenant: TenantId) -> Result<Vec<ApiKey>, TenancyServiceError> {
        Ok(self.keys.list(tenant).await?)
    }

    /// Revokes the key of `tenant` shown as `prefix`; it stops working at once.
    ///
    /// # Errors
    /// `NotFound` when the tenant has no such key; storage failures.
    pub async fn revoke_key(
        &self,
        tenant: TenantId,
        prefix: &str,
    ) -> Result<ApiKey, TenancyServiceError> {
        let prefix = KeyPrefix::parse("prefix", prefix)?;
        let revoked = self
            .keys
            .revoke(tenant, &prefix, self.clock.now())
            .await?
            .ok_or_else(|| TenancyServiceError::NotFound(format!("api key {prefix}")))?;
        // This process forgets the key at once; others within the cache's TTL.
        self.known_keys.retain(|_, known| {
            !matches!(&known.principal, Some(Principal::Tenant { tenant: t, key_prefix, .. })
                if *t == tenant && *key_prefix == revoked.prefix)
        });
        Ok(revoked)
    }

    /// The principal of an `X-API-Key`; `None` for an unknown or revoked key.
    ///
    /// A lookup is remembered for the key cache's TTL, so a revocation made by another process
    /// takes effect here within it. When the key store cannot be reached, a key this process
    /// verified within the outage grace is still accepted.
    ///
    /// # Errors
    /// Storage failures, for a key the process cannot vouch for without the store.
    pub async fn authenticate(
        &self,
        secret: &str,
    ) -> Result<Option<Principal>, TenancyServiceError> {
        let hash = hash_key(secret.trim());
        let now = self.clock.now();
        let remembered = self.known_keys.any_age(&hash, now).map(|(known, _)| known);
        if let Some(known) = &remembered
            && now - known.looked_up_at < self.key_cache.ttl
        {
            return Ok(known.principal.clone());
        }
        let key = match self.keys.find_by_hash(&hash).await {
            Ok(key) => key,
            Err(TenancyError::Unavailable(err)) => {
                return match remembered {
                    Some(KnownKey {
                        principal: Some(principal),
                        looked_up_at,
                    }) if now - looked_up_at < self.key_cache.outage_grace => {
                        tracing::debug!(error = %err, "key store unavailable; accepting a key verified before");
                        Ok(Some(principal))
                    }
                    _ => Err(TenancyServiceError::Unavailable(err)),
                };
            }
            Err(other) => return Err(other.into()),
        };
        let principal = key
            .filter(|k| k.revoked_at.is_none())
            .map(|k| Principal::Tenant {
                tenant: k.tenant,
                scopes: k.scopes,
                key_prefix: k.prefix,
            });
        let kept = self.key_cache.ttl.max(self.key_cache.outage_grace);
        if !kept.is_zero() {
            // A flood of made-up keys is read once each: the eviction drops such entries
            // before the keys in use.
            let known = KnownKey {
                principal: principal.clone(),
                looked_up_at: now,
            };
            self.known_keys.insert(hash, known, now + kept, 1);
        }
        Ok(principal)
    }
}

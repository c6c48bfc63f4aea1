//! [`ApiKeyStore`]: keys are found by hash, listed per tenant and revoked by their tenant only.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use domain::{ApiKey, Scope, TenantId};
use time::{OffsetDateTime, macros::datetime};

use crate::ports::{ApiKeyStore, NewApiKey, TenancyError};

/// An API key store with no keys for `tenant` and `other`.
pub struct Fixture {
    pub keys: Arc<dyn ApiKeyStore>,
    pub tenant: TenantId,
    pub other: TenantId,
}

const CREATED_AT: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
const REVOKED_AT: OffsetDateTime = datetime!(2026-11-21 13:00 UTC);

/// The tenant's ingest and read key.
fn new_key(f: &Fixture) -> Result<NewApiKey> {
    Ok(NewApiKey {
        tenant: f.tenant,
        prefix: domain::KeyPrefix::parse("prefix", "pga_a1b2c3d4")?,
        key_hash: domain::KeyHash::from_digest([0xaa; 32]),
        scopes: vec![Scope::Ingest, Scope::Read],
        name: super::text("producer")?,
        created_at: CREATED_AT,
    })
}

/// Creates the tenant's key; what was asked for and what was stored.
async fn created(f: &Fixture) -> Result<(NewApiKey, ApiKey)> {
    let new = new_key(f)?;
    let key = f.keys.create(&new).await?;
    Ok((new, key))
}

/// As [`created`], then revoked by the tenant at `REVOKED_AT`; the revoked key.
async fn revoked(f: &Fixture) -> Result<(NewApiKey, ApiKey)> {
    let (new, _) = created(f).await?;
    let revoked = f
        .keys
        .revoke(f.tenant, &new.prefix, REVOKED_AT)
        .await?
        .context("revoked")?;
    Ok((new, revoked))
}

pub async fn a_created_key_keeps_its_scopes_and_time(f: &Fixture) -> Result<()> {
    let (new, key) = created(f).await?;
    ensure!(
        key.scopes == new.scopes && key.revoked_at.is_none() && key.created_at == CREATED_AT,
        "{key:?}"
    );
    Ok(())
}

pub async fn a_key_is_found_by_hash(f: &Fixture) -> Result<()> {
    let (new, key) = created(f).await?;
    ensure!(
        f.keys.find_by_hash(&new.key_hash).await?.as_ref() == Some(&key),
        "found by hash"
    );
    Ok(())
}

pub async fn an_unknown_hash_is_none(f: &Fixture) -> Result<()> {
    created(f).await?;
    ensure!(
        f.keys
            .find_by_hash(&domain::KeyHash::from_digest([0xbb; 32]))
            .await?
            .is_none(),
        "an unknown hash is None"
    );
    Ok(())
}

pub async fn a_hash_is_stored_once(f: &Fixture) -> Result<()> {
    let (new, _) = created(f).await?;
    ensure!(
        matches!(
            f.keys.create(&new).await,
            Err(TenancyError::AlreadyExists(_))
        ),
        "a hash is stored once"
    );
    ensure!(
        f.keys.list(f.tenant).await?.len() == 1,
        "a refused key is not stored"
    );
    Ok(())
}

pub async fn keys_are_listed_per_tenant(f: &Fixture) -> Result<()> {
    created(f).await?;
    ensure!(
        f.keys.list(f.tenant).await?.len() == 1 && f.keys.list(f.other).await?.is_empty(),
        "listed per tenant"
    );
    Ok(())
}

pub async fn another_tenant_cannot_revoke_a_key(f: &Fixture) -> Result<()> {
    let (new, _) = created(f).await?;
    ensure!(
        f.keys
            .revoke(f.other, &new.prefix, CREATED_AT)
            .await?
            .is_none(),
        "another tenant cannot revoke it"
    );
    Ok(())
}

pub async fn revoking_stamps_the_time(f: &Fixture) -> Result<()> {
    let (_, revoked) = revoked(f).await?;
    ensure!(revoked.revoked_at == Some(REVOKED_AT), "{revoked:?}");
    Ok(())
}

pub async fn a_revoked_key_is_still_found_and_allows_nothing(f: &Fixture) -> Result<()> {
    let (new, _) = revoked(f).await?;
    let found = f
        .keys
        .find_by_hash(&new.key_hash)
        .await?
        .context("still found")?;
    ensure!(!found.allows(Scope::Ingest), "a revoked key allows nothing");
    Ok(())
}

pub async fn the_first_revocation_time_stays(f: &Fixture) -> Result<()> {
    let (new, _) = revoked(f).await?;
    let again = f
        .keys
        .revoke(f.tenant, &new.prefix, REVOKED_AT + time::Duration::hours(1))
        .await?
        .context("again")?;
    ensure!(
        again.revoked_at == Some(REVOKED_AT),
        "the first revocation time stays"
    );
    Ok(())
}

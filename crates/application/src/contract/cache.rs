//! [`ResponseCache`]: values come back until they expire; a miss is `None`.

use std::{sync::Arc, time::Duration};

use anyhow::{Result, ensure};
use domain::TenantId;

use super::slug;
use crate::ports::{CacheKey, ResponseCache};

/// A response cache holding nothing for `tenant`.
pub struct Fixture {
    pub cache: Arc<dyn ResponseCache>,
    pub tenant: TenantId,
}

/// The key of version `version` of a status counts result.
fn key(f: &Fixture, version: u64, hash: &str) -> Result<CacheKey> {
    Ok(CacheKey::report(
        f.tenant,
        &slug("status-counts")?,
        version,
        hash,
    ))
}

/// Stores `first` and then `second` under the same key; the key.
async fn replaced(f: &Fixture) -> Result<CacheKey> {
    let key = key(f, 1, "abc")?;
    f.cache
        .put(&key, b"first".to_vec(), Duration::from_secs(60))
        .await?;
    f.cache
        .put(&key, b"second".to_vec(), Duration::from_secs(60))
        .await?;
    Ok(key)
}

pub async fn a_fresh_key_misses(f: &Fixture) -> Result<()> {
    ensure!(
        f.cache.get(&key(f, 1, "abc")?).await?.is_none(),
        "a fresh key misses"
    );
    Ok(())
}

pub async fn a_stored_value_hits(f: &Fixture) -> Result<()> {
    let key = key(f, 1, "abc")?;
    f.cache
        .put(&key, b"first".to_vec(), Duration::from_secs(60))
        .await?;
    ensure!(
        f.cache.get(&key).await?.as_deref() == Some(&b"first"[..]),
        "a stored value hits"
    );
    Ok(())
}

pub async fn put_replaces(f: &Fixture) -> Result<()> {
    let key = replaced(f).await?;
    ensure!(
        f.cache.get(&key).await?.as_deref() == Some(&b"second"[..]),
        "put replaces"
    );
    Ok(())
}

pub async fn another_version_is_another_key(f: &Fixture) -> Result<()> {
    replaced(f).await?;
    ensure!(
        f.cache.get(&key(f, 2, "abc")?).await?.is_none(),
        "another version is another key"
    );
    Ok(())
}

pub async fn an_expired_value_misses(f: &Fixture) -> Result<()> {
    let short = key(f, 1, "short-lived")?;
    f.cache
        .put(&short, b"soon gone".to_vec(), Duration::from_millis(50))
        .await?;
    std::thread::sleep(Duration::from_millis(150));
    ensure!(
        f.cache.get(&short).await?.is_none(),
        "an expired value misses"
    );
    Ok(())
}

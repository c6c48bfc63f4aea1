//! Recompute scope locks: `SET key token NX PX ttl`, released and extended only by the owner.

use std::time::Duration;

use application::ports::{CacheError, ScopeLock};
use async_trait::async_trait;
use deadpool_redis::redis::{AsyncCommands, ExistenceCheck, Script, SetExpiry, SetOptions};
use domain::{LockToken, RecomputeScope};

use crate::RedisClient;

/// Deletes the key only if it still holds the caller's token: a lock that expired and was taken
/// by someone else is left alone.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Resets the expiry only if the key still holds the caller's token.
const EXTEND: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Scope locks in Redis, keyed `recompute:lock:{tenant}:{slug}:{window}:{from}:{to}`.
#[derive(Debug, Clone)]
pub struct RedisScopeLock {
    client: RedisClient,
}

impl RedisScopeLock {
    /// The locks over `client`.
    pub fn new(client: RedisClient) -> Self {
        Self { client }
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl ScopeLock for RedisScopeLock {
    async fn acquire(
        &self,
        scope: &RecomputeScope,
        token: &LockToken,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let key = self.client.key(&scope.lock_key());
        let token = token.as_str().to_owned();
        let options = SetOptions::default()
            .conditional_set(ExistenceCheck::NX)
            .with_expiration(SetExpiry::PX(millis(ttl)));
        let set: Option<String> = self
            .client
            .run("SET NX lock", |mut c| async move {
                c.set_options(key, token, options).await
            })
            .await?;
        Ok(set.is_some())
    }

    async fn release(&self, scope: &RecomputeScope, token: &LockToken) -> Result<bool, CacheError> {
        let key = self.client.key(&scope.lock_key());
        let token = token.as_str().to_owned();
        let deleted: i64 = self
            .client
            .run("release lock", |mut c| async move {
                Script::new(RELEASE)
                    .key(key)
                    .arg(token)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(deleted == 1)
    }

    async fn extend(
        &self,
        scope: &RecomputeScope,
        token: &LockToken,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let key = self.client.key(&scope.lock_key());
        let token = token.as_str().to_owned();
        let extended: i64 = self
            .client
            .run("extend lock", |mut c| async move {
                Script::new(EXTEND)
                    .key(key)
                    .arg(token)
                    .arg(millis(ttl))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(extended == 1)
    }
}

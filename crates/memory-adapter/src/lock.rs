//! Scope locks in memory.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use application::ports::{CacheError, ScopeLock};
use async_trait::async_trait;
use domain::{LockToken, RecomputeScope};

use crate::{FailSwitch, lock};

/// Locks by key with an owner token and an expiry, like `SET NX PX` in Redis.
#[derive(Debug, Default)]
pub struct InMemoryScopeLock {
    held: Mutex<HashMap<String, (LockToken, Instant)>>,
    failure: FailSwitch,
}

impl InMemoryScopeLock {
    /// No lock held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }

    /// Whether the lock of `scope` is held by anyone right now.
    pub fn is_held(&self, scope: &RecomputeScope) -> bool {
        lock(&self.held)
            .get(&scope.lock_key())
            .is_some_and(|(_, expires)| *expires > Instant::now())
    }
}

#[async_trait]
impl ScopeLock for InMemoryScopeLock {
    async fn acquire(
        &self,
        scope: &RecomputeScope,
        token: &LockToken,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.failure.check("scope lock").map_err(CacheError)?;
        let now = Instant::now();
        let mut held = lock(&self.held);
        let key = scope.lock_key();
        if held.get(&key).is_some_and(|(_, expires)| *expires > now) {
            return Ok(false);
        }
        held.insert(key, (token.clone(), now + ttl));
        Ok(true)
    }

    async fn release(&self, scope: &RecomputeScope, token: &LockToken) -> Result<bool, CacheError> {
        self.failure.check("scope lock").map_err(CacheError)?;
        let mut held = lock(&self.held);
        let key = scope.lock_key();
        let owned = held
            .get(&key)
            .is_some_and(|(owner, expires)| owner == token && *expires > Instant::now());
        if owned {
            held.remove(&key);
        }
        Ok(owned)
    }

    async fn extend(
        &self,
        scope: &RecomputeScope,
        token: &LockToken,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.failure.check("scope lock").map_err(CacheError)?;
        let now = Instant::now();
        let mut held = lock(&self.held);
        match held.get_mut(&scope.lock_key()) {
            Some((owner, expires)) if owner == token && *expires > now => {
                *expires = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

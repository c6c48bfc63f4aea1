//! The shared pool, command timeout and circuit breaker.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use application::ports::CacheError;
use deadpool_redis::{Connection, Pool, Runtime};
use tracing::warn;

/// Connection settings.
#[derive(Clone)]
pub struct RedisConfig {
    /// A `redis://` URL.
    pub url: String,
    /// Prepended to every key, to share one Redis between deployments (or tests).
    pub key_prefix: String,
    /// The longest any command (including getting a connection) may take.
    pub command_timeout: Duration,
    /// How long the adapters leave Redis alone after a failure before trying again.
    pub retry_after: Duration,
    /// The most connections the pool opens.
    pub max_connections: usize,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisConfig")
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("retry_after", &self.retry_after)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// A pool with a timeout on every command and a breaker that opens after a failure.
#[derive(Clone)]
pub struct RedisClient {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    prefix: String,
    timeout: Duration,
    retry_after: Duration,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not asked; 0 when closed.
    open_until_ms: AtomicU64,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// A client for `config`; connections open lazily, so this does not touch the server.
    ///
    /// # Errors
    /// When the URL cannot be parsed.
    pub fn new(config: &RedisConfig) -> anyhow::Result<Self> {
        let pool = deadpool_redis::Config::from_url(config.url.clone())
            .builder()
            .context("REDIS_URL is not a valid Redis URL")?
            .max_size(config.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.command_timeout))
            .create_timeout(Some(config.command_timeout))
            .recycle_timeout(Some(config.command_timeout))
            .build()
            .context("building the Redis pool")?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                prefix: config.key_prefix.clone(),
                timeout: config.command_timeout,
                retry_after: config.retry_after,
                started: Instant::now(),
                open_until_ms: AtomicU64::new(0),
            }),
        })
    }

    /// `key` with the configured prefix.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `command` on a pooled connection within the command timeout, unless the breaker is
    /// open. A failure opens the breaker for `retry_after`; a success closes it.
    ///
    /// # Errors
    /// [`CacheError`] when the breaker is open, no connection can be had in time, the command
    /// fails or it times out.
    pub async fn run<T, F, Fut>(&self, what: &'static str, command: F) -> Result<T, CacheError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, deadpool_redis::redis::RedisError>>,
    {
        if self.now_ms() < self.inner.open_until_ms.load(Ordering::Relaxed) {
            return Err(CacheError(anyhow::anyhow!(
                "Redis is paused after a failure ({what} skipped)"
            )));
        }
        self.attempt(what, command).await
    }

    /// As [`RedisClient::run`], ignoring an open breaker: for health checks, whose success
    /// closes it again.
    ///
    /// # Errors
    /// As [`RedisClient::run`].
    pub async fn run_now<T, F, Fut>(&self, what: &'static str, command: F) -> Result<T, CacheError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, deadpool_redis::redis::RedisError>>,
    {
        self.attempt(what, command).await
    }

    async fn attempt<T, F, Fut>(&self, what: &'static str, command: F) -> Result<T, CacheError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, deadpool_redis::redis::RedisError>>,
    {
        let outcome = tokio::time::timeout(self.inner.timeout, async {
            let connection = self.inner.pool.get().await.map_err(anyhow::Error::new)?;
            command(connection).await.map_err(anyhow::Error::new)
        })
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {:?}", self.inner.timeout)));
        match outcome {
            Ok(value) => {
                self.inner.open_until_ms.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Err(err) => {
                let retry_ms =
                    u64::try_from(self.inner.retry_after.as_millis()).unwrap_or(u64::MAX);
                let was_closed = self
                    .inner
                    .open_until_ms
                    .swap(self.now_ms() + retry_ms, Ordering::Relaxed)
                    == 0;
                if was_closed {
                    warn!(error = %err, command = what, "Redis failed; serving without it for a moment");
                }
                Err(CacheError(err.context(what)))
            }
        }
    }
}

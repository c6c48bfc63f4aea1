//! Whether Redis answers.

use application::ports::{DependencyStatus, HealthProbe};
use async_trait::async_trait;
use deadpool_redis::redis;

use crate::RedisClient;

/// Sends `PING`, bypassing the circuit breaker; a success closes it, so health checks also
/// bring the cache back as soon as Redis returns.
#[derive(Debug, Clone)]
pub struct RedisHealthProbe {
    client: RedisClient,
}

impl RedisHealthProbe {
    /// A probe over `client`.
    pub fn new(client: RedisClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl HealthProbe for RedisHealthProbe {
    async fn check(&self) -> DependencyStatus {
        let pong = self
            .client
            .run_now("PING", |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await;
        match pong {
            Ok(_) => DependencyStatus::Ok,
            Err(_) => DependencyStatus::Unavailable,
        }
    }
}

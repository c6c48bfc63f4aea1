//! The system clock.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::ports::Clock;

/// The real UTC clock. Pausing needs an async timer, so the binary supplies it.
pub struct SystemClock<S> {
    sleep: S,
}

impl<S> std::fmt::Debug for SystemClock<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemClock")
    }
}

impl<S, F> SystemClock<S>
where
    S: Fn(Duration) -> F + Send + Sync,
    F: Future<Output = ()> + Send,
{
    /// A clock whose pauses are `sleep` (for example `tokio::time::sleep`).
    pub fn new(sleep: S) -> Self {
        Self { sleep }
    }
}

#[async_trait]
impl<S, F> Clock for SystemClock<S>
where
    S: Fn(Duration) -> F + Send + Sync,
    F: Future<Output = ()> + Send,
{
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    async fn pause(&self, duration: Duration) {
        (self.sleep)(duration).await;
    }
}

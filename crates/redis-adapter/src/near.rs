//! The report versions one process remembers between reads, so that looking a version up costs
//! no round trip to Redis.
//!
//! Versions are held only while a subscription to the version-change channel is up. Every bump
//! publishes `{tenant}:{slug}:{version}` on the channel (in the same script as the `INCR`, so
//! notices arrive in bump order), and each process sets what it remembers from the notice. A
//! version read from Redis is remembered only if no notice arrived while it was being read, so
//! a late answer never overwrites a newer notice.
//!
//! When the subscription drops, or a ping on it goes unanswered, everything is forgotten and
//! lookups go to Redis again until it is re-established (which forgets everything once more,
//! since notices may have been missed meanwhile).

use std::{
    collections::HashMap,
    future::poll_fn,
    sync::{
        Arc, PoisonError, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use deadpool_redis::redis::{self, aio::PubSubStream};
use futures_core::Stream;
use tracing::{info, warn};

/// How often the subscription is pinged, to notice a connection that died silently.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The versions one process remembers.
#[derive(Clone)]
pub struct NearCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// Whether the layer follows notices at all.
    enabled: bool,
    /// Whether the subscription is up: nothing is served from memory otherwise.
    live: AtomicBool,
    state: RwLock<Versions>,
}

#[derive(Default)]
struct Versions {
    /// Moves with every notice, forgetting and (re)subscription.
    generation: u64,
    by_report: HashMap<String, Known>,
}

/// A version held, and whether a notice (rather than a read of Redis) told it.
#[derive(Clone, Copy)]
struct Known {
    version: u64,
    noticed: bool,
}

impl Default for NearCache {
    /// A disabled layer.
    fn default() -> Self {
        Self::disabled()
    }
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("enabled", &self.inner.enabled)
            .field("live", &self.is_live())
            .finish_non_exhaustive()
    }
}

/// Which report a version belongs to, as named in notices.
pub(crate) fn report_id(tenant: impl std::fmt::Display, slug: impl std::fmt::Display) -> String {
    format!("{tenant}:{slug}")
}

impl NearCache {
    /// A layer that serves versions once [`NearCache::listen`] has subscribed.
    pub fn new() -> Self {
        Self::with_enabled(true)
    }

    /// A layer that never serves anything: every lookup asks Redis.
    pub fn disabled() -> Self {
        Self::with_enabled(false)
    }

    fn with_enabled(enabled: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                enabled,
                live: AtomicBool::new(false),
                state: RwLock::default(),
            }),
        }
    }

    /// Whether versions are being served from memory.
    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::Acquire)
    }

    fn versions(&self) -> std::sync::RwLockWriteGuard<'_, Versions> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The remembered version of `report`, if the layer is live and knows it.
    pub(crate) fn version(&self, report: &str) -> Option<u64> {
        if !self.is_live() {
            return None;
        }
        let state = self
            .inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        state.by_report.get(report).map(|known| known.version)
    }

    /// The generation to hand back to [`NearCache::remember_version`] after reading Redis.
    pub(crate) fn generation(&self) -> u64 {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    /// Remembers `version`, read from Redis, unless a notice arrived since `generation`.
    pub(crate) fn remember_version(&self, report: &str, version: u64, generation: u64) {
        if !self.is_live() {
            return;
        }
        let mut state = self.versions();
        if state.generation == generation {
            state.by_report.insert(
                report.to_owned(),
                Known {
                    version,
                    noticed: false,
                },
            );
        }
    }

    /// Forgets `report`'s version (this process just bumped it; the notice will tell).
    pub(crate) fn forget_version(&self, report: &str) {
        let mut state = self.versions();
        state.generation += 1;
        state.by_report.remove(report);
    }

    /// Applies a notice `{tenant}:{slug}:{version}`.
    fn apply(&self, notice: &str) {
        let Some((report, version)) = notice
            .rsplit_once(':')
            .and_then(|(report, v)| Some((report, v.parse::<u64>().ok()?)))
        else {
            warn!(notice, "ignoring a malformed cache version notice");
            return;
        };
        let mut state = self.versions();
        state.generation += 1;
        let known = Known {
            version,
            noticed: true,
        };
        match state.by_report.get(report).copied() {
            // A read of Redis may run ahead of the notices: a late notice changes nothing.
            // Notices arrive in bump order, so a lower one after a notice can only come from a
            // counter that restarted: it is the current version.
            Some(previous) if version < previous.version && !previous.noticed => {}
            _ => {
                state.by_report.insert(report.to_owned(), known);
            }
        }
    }

    /// Forgets everything and sets whether the layer serves from memory.
    fn reset(&self, live: bool) {
        let mut state = self.versions();
        state.generation += 1;
        state.by_report.clear();
        self.inner.live.store(live, Ordering::Release);
    }

    /// Subscribes to `channel` on `url` in the background and keeps the subscription up for as
    /// long as this layer exists, retrying every `retry_after` after a failure. Each wait on
    /// Redis is bounded by `timeout`. Does nothing when the layer is disabled or there is no
    /// Tokio runtime.
    ///
    /// # Errors
    /// When `url` cannot be parsed.
    pub fn listen(
        &self,
        url: &str,
        channel: String,
        retry_after: Duration,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        if !self.inner.enabled {
            return Ok(());
        }
        let client = redis::Client::open(url)?;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!("no async runtime: version lookups will always ask Redis");
            return Ok(());
        };
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            // Said once per outage, not once per attempt.
            let mut quiet = false;
            while weak.strong_count() > 0 {
                let lost = match subscribe(&client, &channel, timeout).await {
                    Ok((sink, stream)) => {
                        if quiet {
                            info!(
                                "following cache version notices again: versions are read from memory"
                            );
                            quiet = false;
                        }
                        follow(&weak, sink, stream, timeout).await
                    }
                    Err(err) => Some(format!("cannot subscribe: {err}")),
                };
                if let Some(inner) = weak.upgrade() {
                    NearCache { inner }.reset(false);
                }
                if let Some(reason) = lost
                    && !quiet
                {
                    warn!(
                        reason,
                        "not following cache version notices; version lookups ask Redis"
                    );
                    quiet = true;
                }
                tokio::time::sleep(retry_after).await;
            }
        });
        Ok(())
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
) -> anyhow::Result<(redis::aio::PubSubSink, PubSubStream)> {
    tokio::time::timeout(timeout, async {
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        sink.subscribe(channel).await?;
        Ok::<_, redis::RedisError>((sink, stream))
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out after {timeout:?}"))?
    .map_err(anyhow::Error::new)
}

/// Applies notices until the connection fails, a ping goes unanswered (the reason is
/// returned) or the layer is dropped (`None`).
async fn follow(
    weak: &Weak<Inner>,
    mut sink: redis::aio::PubSubSink,
    mut stream: PubSubStream,
    timeout: Duration,
) -> Option<String> {
    // Subscribed: anything remembered before may have missed notices.
    NearCache {
        inner: weak.upgrade()?,
    }
    .reset(true);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            message = poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)) => {
                let Some(message) = message else {
                    return Some("the connection closed".to_owned());
                };
                let near = NearCache { inner: weak.upgrade()? };
                match std::str::from_utf8(message.get_payload_bytes()) {
                    Ok(notice) => near.apply(notice),
                    Err(_) => warn!("ignoring a cache version notice that is not UTF-8"),
                }
            }
            _ = ping.tick() => {
                weak.upgrade()?;
                // A subscribed connection answers PING with an array, hence `Value`.
                match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Some(format!("ping failed: {err}")),
                    Err(_) => return Some(format!("no answer to a ping within {timeout:?}")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> NearCache {
        let near = NearCache::new();
        near.reset(true);
        near
    }

    #[test]
    fn serves_nothing_until_subscribed() {
        let near = NearCache::new();
        near.remember_version("1:a", 3, near.generation());
        assert_eq!(near.version("1:a"), None);
    }

    #[test]
    fn notices_set_versions_and_win_over_late_reads() {
        let near = live();
        let before = near.generation();
        near.apply("1:a:5");
        near.remember_version("1:a", 4, before);
        assert_eq!(
            near.version("1:a"),
            Some(5),
            "a read older than a notice is dropped"
        );
        let now = near.generation();
        near.remember_version("1:b", 2, now);
        assert_eq!(near.version("1:b"), Some(2));
        near.forget_version("1:b");
        assert_eq!(near.version("1:b"), None);
    }

    #[test]
    fn a_lower_notice_after_a_notice_is_the_current_version() {
        let near = live();
        near.apply("1:a:5");
        near.apply("1:a:5");
        assert_eq!(
            near.version("1:a"),
            Some(5),
            "a repeated notice is harmless"
        );
        near.apply("1:a:1");
        assert_eq!(near.version("1:a"), Some(1));
    }

    #[test]
    fn a_notice_later_than_a_read_changes_nothing() {
        let near = live();
        near.remember_version("1:a", 7, near.generation());
        near.apply("1:a:6");
        assert_eq!(near.version("1:a"), Some(7), "the read was newer");
        near.apply("1:a:8");
        assert_eq!(near.version("1:a"), Some(8));
    }

    #[test]
    fn malformed_notices_change_nothing() {
        let near = live();
        near.apply("1:a:5");
        near.apply("garbage");
        near.apply("1:a:x");
        assert_eq!(near.version("1:a"), Some(5));
    }

    #[test]
    fn losing_the_subscription_forgets_everything() {
        let near = live();
        near.apply("1:a:5");
        near.reset(false);
        assert_eq!(near.version("1:a"), None);
        near.reset(true);
        assert_eq!(
            near.version("1:a"),
            None,
            "nothing survives a resubscription"
        );
    }

    #[test]
    fn a_disabled_layer_never_listens() {
        let near = NearCache::disabled();
        near.listen(
            "redis://127.0.0.1:1",
            "c".to_owned(),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .expect("a valid url");
        assert!(!near.is_live());
    }
}

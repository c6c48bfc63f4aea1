//! What one process remembers of Redis between reads, so that a cache hit costs no round trip.
//!
//! Two things are held, and only while a subscription to the version-change channel is up:
//!
//! - **Versions.** Every bump publishes `{tenant}:{slug}:{version}` on the channel (in the same
//!   script as the `INCR`, so notices arrive in bump order), and each process sets what it
//!   remembers from the notice. A version read from Redis is remembered only if no notice
//!   arrived while it was being read, so a late answer never overwrites a newer notice.
//! - **Entries.** Entry keys carry their version, so an entry never changes under its key: it
//!   can be held until its TTL ends, within a byte budget ([`ExpiringCache`]: entries read
//!   least go first).
//!
//! When the subscription drops, or a ping on it goes unanswered, everything is forgotten and
//! reads go to Redis again until it is re-established (which forgets everything once more,
//! since notices may have been missed meanwhile). A version lower than the one remembered
//! means Redis lost its data: the entries are forgotten too, since their keys may be reused.

use std::{
    collections::HashMap,
    future::poll_fn,
    sync::{
        Arc, PoisonError, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use application::{ExpiringCache, ports::Decoded};
use deadpool_redis::redis::{self, aio::PubSubStream};
use futures_core::Stream;
use tracing::{info, warn};

/// How often the subscription is pinged, to notice a connection that died silently.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The in-process layer shared by the response cache and the versions of one process.
#[derive(Clone)]
pub struct NearCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// The byte budget of entries; 0 disables the layer.
    capacity: usize,
    /// Whether the subscription is up: nothing is served from memory otherwise.
    live: AtomicBool,
    state: RwLock<Versions>,
    entries: ExpiringCache<String, Arc<Held>>,
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

/// An entry held in memory.
struct Held {
    value: Arc<[u8]>,
    /// Its decoded form, once the reader attached one.
    decoded: Option<Decoded>,
}

/// What an entry costs beyond its value and key bytes: the cache's slot, the `Held` record and
/// the allocator's rounding, measured roughly.
const ENTRY_OVERHEAD: usize = 192;

/// The bytes an entry of `key` and a `value` of this length is charged: the value, the key
/// and the overhead. A decoded form attached later is charged as much again as the value,
/// which is what the decoded rows of a report take.
fn entry_cost(key: &str, value_len: usize) -> usize {
    value_len + key.len() + ENTRY_OVERHEAD
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
            .field("capacity", &self.inner.capacity)
            .field("live", &self.is_live())
            .finish_non_exhaustive()
    }
}

/// Which report a version belongs to, as named in notices.
pub(crate) fn report_id(tenant: impl std::fmt::Display, slug: impl std::fmt::Display) -> String {
    format!("{tenant}:{slug}")
}

impl NearCache {
    /// A layer holding up to `capacity` bytes of entries; 0 disables it (every read then asks
    /// Redis). It serves nothing until [`NearCache::listen`] has subscribed.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity,
                live: AtomicBool::new(false),
                state: RwLock::default(),
                entries: ExpiringCache::new(capacity as u64, 4_096),
            }),
        }
    }

    /// A layer that never serves anything.
    pub fn disabled() -> Self {
        Self::new(0)
    }

    /// Whether reads are being served from memory.
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
            // Notices arrive in bump order, so a lower one after a notice means Redis lost
            // its versions: keys of old entries come back, and the entries must go.
            Some(previous) if version < previous.version && previous.noticed => {
                state.by_report.insert(report.to_owned(), known);
                drop(state);
                self.inner.entries.clear();
            }
            // A read of Redis may run ahead of the notices: a late notice changes nothing.
            Some(previous) if version < previous.version => {}
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
        self.inner.entries.clear();
        self.inner.live.store(live, Ordering::Release);
    }

    /// The entry under `key`, if the layer is live, holds it and it has not expired.
    pub(crate) fn entry(&self, key: &str) -> Option<Vec<u8>> {
        self.held(key).map(|held| held.value.to_vec())
    }

    /// The decoded form attached to the entry under `key`, on the same terms as
    /// [`NearCache::entry`].
    pub(crate) fn decoded(&self, key: &str) -> Option<Decoded> {
        self.held(key).and_then(|held| held.decoded.clone())
    }

    fn held(&self, key: &str) -> Option<Arc<Held>> {
        if !self.is_live() {
            return None;
        }
        self.inner.entries.fresh(key, Instant::now())
    }

    /// Attaches `decoded` to the entry held under `key`, if there is one, charging it to the
    /// budget as much as the value again (evicting other entries to stay within it).
    pub(crate) fn attach(&self, key: &str, decoded: Decoded) {
        self.inner.entries.update(key, |held, cost| {
            let extra = if held.decoded.is_none() {
                held.value.len() as u64
            } else {
                0
            };
            let held = Held {
                value: Arc::clone(&held.value),
                decoded: Some(decoded),
            };
            (Arc::new(held), cost + extra)
        });
    }

    /// Holds `value` under `key` for `ttl`, evicting other entries to stay in budget.
    pub(crate) fn remember_entry(&self, key: &str, value: &[u8], ttl: Duration) {
        let size = entry_cost(key, value.len());
        // One entry may take at most an eighth of the budget, decoded form included.
        if !self.is_live() || ttl.is_zero() || size + value.len() > self.inner.capacity / 8 {
            return;
        }
        let held = Held {
            value: Arc::from(value),
            decoded: None,
        };
        self.inner.entries.insert(
            key.to_owned(),
            Arc::new(held),
            Instant::now() + ttl,
            size as u64,
        );
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
        if self.inner.capacity == 0 {
            return Ok(());
        }
        let client = redis::Client::open(url)?;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!("no async runtime: cache hits will always ask Redis");
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
                                "following cache version notices again: hits are served from memory"
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
                        "not following cache version notices; cache hits ask Redis"
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

    fn live(capacity: usize) -> NearCache {
        let near = NearCache::new(capacity);
        near.reset(true);
        near
    }

    #[test]
    fn serves_nothing_until_subscribed() {
        let near = NearCache::new(1024);
        near.remember_version("1:a", 3, near.generation());
        near.remember_entry("k", b"v", Duration::from_secs(60));
        assert_eq!(near.version("1:a"), None);
        assert_eq!(near.entry("k"), None);
    }

    #[test]
    fn notices_set_versions_and_win_over_late_reads() {
        let near = live(1 << 16);
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
    fn a_lower_notice_after_a_notice_forgets_the_entries() {
        let near = live(1 << 16);
        near.apply("1:a:5");
        near.remember_entry("k", b"v", Duration::from_secs(60));
        assert_eq!(near.entry("k").as_deref(), Some(&b"v"[..]));
        near.apply("1:a:5");
        assert_eq!(
            near.entry("k").as_deref(),
            Some(&b"v"[..]),
            "a repeated notice is harmless"
        );
        near.apply("1:a:1");
        assert_eq!(near.entry("k"), None);
        assert_eq!(near.version("1:a"), Some(1));
    }

    #[test]
    fn a_notice_later_than_a_read_changes_nothing() {
        let near = live(1 << 16);
        near.remember_version("1:a", 7, near.generation());
        near.remember_entry("k", b"v", Duration::from_secs(60));
        near.apply("1:a:6");
        assert_eq!(near.version("1:a"), Some(7), "the read was newer");
        near.apply("1:a:7");
        assert_eq!(near.entry("k").as_deref(), Some(&b"v"[..]));
        near.apply("1:a:8");
        assert_eq!(near.version("1:a"), Some(8));
    }

    #[test]
    fn a_decoded_form_lives_and_dies_with_its_entry() {
        let near = live(1 << 16);
        near.attach("k", Arc::new(1u8));
        assert!(near.decoded("k").is_none(), "nothing to attach to");
        near.remember_entry("k", b"v", Duration::from_secs(60));
        near.attach("k", Arc::new(7u8));
        let decoded = near.decoded("k").and_then(|d| d.downcast::<u8>().ok());
        assert_eq!(decoded.as_deref(), Some(&7));
        near.remember_entry("k", b"w", Duration::from_secs(60));
        assert!(
            near.decoded("k").is_none(),
            "a new value drops the old decoded form"
        );
        near.attach("k", Arc::new(8u8));
        near.reset(false);
        assert!(near.decoded("k").is_none());
    }

    #[test]
    fn a_key_stored_again_and_again_is_held_once() {
        let near = live(1 << 20);
        for _ in 0..1_000 {
            near.remember_entry("hot", b"v", Duration::from_secs(60));
        }
        assert_eq!(near.inner.entries.len(), 1);
    }

    #[test]
    fn malformed_notices_change_nothing() {
        let near = live(1 << 16);
        near.apply("1:a:5");
        near.apply("garbage");
        near.apply("1:a:x");
        assert_eq!(near.version("1:a"), Some(5));
    }

    #[test]
    fn entries_expire_and_stay_within_budget() {
        let near = live(20_000);
        near.remember_entry("gone", b"v", Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(near.entry("gone"), None);
        for n in 0..30 {
            near.remember_entry(&format!("key-{n:02}"), &[0; 900], Duration::from_secs(60));
        }
        let held = near.inner.entries.cost();
        assert!(held <= 20_000, "{held} bytes held");
        assert!(near.entry("key-29").is_some(), "the newest entry stays");
        assert!(near.inner.entries.len() < 30, "older entries went");
        near.remember_entry("huge", &[0; 2_000], Duration::from_secs(60));
        assert_eq!(
            near.entry("huge"),
            None,
            "an entry over an eighth of the budget is not held"
        );
    }

    #[test]
    fn the_budget_counts_every_byte_an_entry_holds_its_decoded_form_included() {
        let near = live(20_000);
        near.remember_entry("a", &[0; 1_000], Duration::from_secs(60));
        let stored = near.inner.entries.cost();
        assert!(
            stored >= (1_000 + 1 + ENTRY_OVERHEAD) as u64,
            "the value, the key and the overhead: {stored}"
        );
        near.attach("a", Arc::new(vec![0u8; 1_000]));
        assert_eq!(
            near.inner.entries.cost(),
            stored + 1_000,
            "a decoded form costs as much as its value"
        );
        near.attach("a", Arc::new(vec![0u8; 1_000]));
        assert_eq!(near.inner.entries.cost(), stored + 1_000, "charged once");
        for n in 0..40 {
            near.remember_entry(&format!("k{n}"), &[0; 1_000], Duration::from_secs(60));
            near.attach(&format!("k{n}"), Arc::new(0u8));
        }
        assert!(
            near.inner.entries.cost() <= 20_000,
            "attaching evicts to stay within the budget: {}",
            near.inner.entries.cost()
        );
    }

    #[test]
    fn losing_the_subscription_forgets_everything() {
        let near = live(1 << 16);
        near.apply("1:a:5");
        near.remember_entry("k", b"v", Duration::from_secs(60));
        near.reset(false);
        assert_eq!(near.version("1:a"), None);
        assert_eq!(near.entry("k"), None);
        near.reset(true);
        assert_eq!(
            near.version("1:a"),
            None,
            "nothing survives a resubscription"
        );
    }
}

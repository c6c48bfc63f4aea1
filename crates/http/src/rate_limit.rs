//! Per-key rate limiting: one token bucket per API key, in process memory.
//!
//! Buckets live in this process only, so with several replicas a key may send up to the limit
//! to each of them; that is the documented trade-off for not touching Redis on every request.
//! The management key is never limited: it is the operator's way in when something is wrong.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How many buckets are kept before full ones are dropped. Only keys that authenticated get a
/// bucket, so this bounds memory without ever forgetting a key that is being limited.
const PRUNE_ABOVE: usize = 10_000;

/// A token bucket per API key (identified by its visible prefix), shared by every worker of the
/// server. Cloning shares the buckets.
#[derive(Clone)]
pub struct RateLimit {
    /// `None` when limiting is off.
    buckets: Option<Arc<Buckets>>,
}

struct Buckets {
    per_second: f64,
    burst: f64,
    by_key: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimit {
    /// Allows each key `burst` requests at once, refilled at `per_second` requests per second.
    ///
    /// A rate that is not a positive, finite number turns limiting off (the configuration
    /// treats 0 as "off"); a burst of 0 is taken as 1, since a bucket that can never hold a
    /// token would refuse every request forever.
    pub fn new(per_second: f64, burst: u32) -> Self {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Self::disabled();
        }
        Self {
            buckets: Some(Arc::new(Buckets {
                per_second,
                burst: f64::from(burst.max(1)),
                by_key: Mutex::new(HashMap::new()),
            })),
        }
    }

    /// No limit at all.
    pub fn disabled() -> Self {
        Self { buckets: None }
    }

    /// Whether requests are limited.
    pub fn is_enabled(&self) -> bool {
        self.buckets.is_some()
    }

    /// Takes a token from the bucket of `key`.
    ///
    /// # Errors
    /// When the bucket is empty: how long until it holds a token again, rounded up to whole
    /// seconds and at least one (the unit of `Retry-After`).
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        // A panic while holding the lock cannot leave a bucket half-updated in a way that
        // matters (the worst case is one token more or less), so a poisoned lock is used as is.
        let mut by_key = buckets
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if by_key.len() > PRUNE_ABOVE && !by_key.contains_key(key) {
            by_key.retain(|_, bucket| buckets.refill(*bucket, now).tokens < buckets.burst);
        }
        let bucket = by_key.entry(key.to_owned()).or_insert(Bucket {
            tokens: buckets.burst,
            refilled_at: now,
        });
        *bucket = buckets.refill(*bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / buckets.per_second).ceil();
        // `as` saturates; a day is already far beyond any sensible configuration.
        let secs = (wait as u64).clamp(1, 86_400);
        Err(Duration::from_secs(secs))
    }
}

impl Buckets {
    fn refill(&self, bucket: Bucket, now: Instant) -> Bucket {
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        Bucket {
            tokens: (bucket.tokens + elapsed * self.per_second).min(self.burst),
            refilled_at: now,
        }
    }
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.buckets {
            None => f.write_str("RateLimit(disabled)"),
            Some(buckets) => f
                .debug_struct("RateLimit")
                .field("per_second", &buckets.per_second)
                .field("burst", &buckets.burst)
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_for_the_rate() {
        let limit = RateLimit::new(2.0, 3);
        let start = Instant::now();
        for n in 0..3 {
            assert_eq!(
                limit.check_at("pga_a", start),
                Ok(()),
                "request {n} of the burst"
            );
        }
        assert_eq!(
            limit.check_at("pga_a", start),
            Err(Duration::from_secs(1)),
            "half a second to the next token, rounded up to a whole second"
        );
        assert_eq!(
            limit.check_at("pga_a", start + Duration::from_millis(500)),
            Ok(()),
            "refilled at two per second"
        );
        assert_eq!(
            limit.check_at("pga_b", start),
            Ok(()),
            "another key has its own bucket"
        );
    }

    #[test]
    fn a_slow_rate_asks_for_a_long_wait() {
        let limit = RateLimit::new(0.01, 1);
        let start = Instant::now();
        assert_eq!(limit.check_at("k", start), Ok(()));
        assert_eq!(
            limit.check_at("k", start),
            Err(Duration::from_secs(100)),
            "one token per 100 seconds"
        );
    }

    #[test]
    fn a_disabled_or_meaningless_limit_allows_everything() {
        for limit in [
            RateLimit::disabled(),
            RateLimit::new(0.0, 10),
            RateLimit::new(-1.0, 10),
            RateLimit::new(f64::NAN, 10),
        ] {
            assert!(!limit.is_enabled(), "{limit:?} is off");
            let now = Instant::now();
            assert!(
                (0..1_000).all(|_| limit.check_at("k", now).is_ok()),
                "{limit:?} never refuses"
            );
        }
    }

    #[test]
    fn clones_share_their_buckets() {
        let limit = RateLimit::new(0.01, 1);
        let clone = limit.clone();
        let now = Instant::now();
        assert_eq!(limit.check_at("k", now), Ok(()));
        assert!(
            clone.check_at("k", now).is_err(),
            "the clone sees the spent token"
        );
    }
}

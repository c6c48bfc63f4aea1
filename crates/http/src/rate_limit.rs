//! Per-key rate limiting: `governor`'s keyed GCRA limiter (a token bucket per API key, in
//! process memory).
//!
//! Limits live in this process only, so with several replicas a key may send up to the limit
//! to each of them; that is the documented trade-off for not touching Redis on every request.
//! The management key is never limited: it is the operator's way in when something is wrong.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

/// How many keys are remembered before those back to a full bucket are dropped. Only keys that
/// authenticated get one, so this bounds memory without forgetting a key that is being limited.
const PRUNE_ABOVE: usize = 10_000;

/// The longest `Retry-After` given: a day is already far beyond any sensible configuration.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

type Limiter<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A token bucket per API key (identified by its visible prefix), shared by every worker of the
/// server. Cloning shares the buckets.
#[derive(Clone)]
pub struct RateLimit<C: Clock + Clone = DefaultClock> {
    /// `None` when limiting is off.
    limiter: Option<Arc<Limiter<C>>>,
    clock: C,
    quota: Option<Quota>,
}

impl RateLimit {
    /// Allows each key `burst` requests at once, refilled at `per_second` requests per second.
    ///
    /// A rate that is not a positive, finite number turns limiting off (the configuration
    /// treats 0 as "off"); a burst of 0 is taken as 1, since a bucket that can never hold a
    /// token would refuse every request forever.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self::with_clock(per_second, burst, DefaultClock::default())
    }

    /// No limit at all.
    pub fn disabled() -> Self {
        Self {
            limiter: None,
            clock: DefaultClock::default(),
            quota: None,
        }
    }
}

impl<C: Clock + Clone> RateLimit<C> {
    /// [`RateLimit::new`] on `clock`.
    pub fn with_clock(per_second: f64, burst: u32, clock: C) -> Self {
        let quota = (per_second.is_finite() && per_second > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / per_second).ok())
            .flatten()
            .and_then(Quota::with_period)
            .map(|quota| quota.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)));
        let limiter = quota.map(|quota| {
            Arc::new(RateLimiter::new(
                quota,
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ))
        });
        Self {
            limiter,
            clock,
            quota,
        }
    }

    /// Whether requests are limited.
    pub fn is_enabled(&self) -> bool {
        self.limiter.is_some()
    }

    /// Takes a token from the bucket of `key`.
    ///
    /// # Errors
    /// When the bucket is empty: how long until it holds a token again, rounded up to whole
    /// seconds and at least one (the unit of `Retry-After`).
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Duration::from_secs(secs).clamp(Duration::from_secs(1), MAX_WAIT)
        })
    }
}

impl<C: Clock + Clone> std::fmt::Debug for RateLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.quota {
            None => f.write_str("RateLimit(disabled)"),
            Some(quota) => f
                .debug_struct("RateLimit")
                .field("refill_every", &quota.replenish_interval())
                .field("burst", &quota.burst_size())
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limit(per_second: f64, burst: u32) -> (RateLimit<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimit::with_clock(per_second, burst, clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_key_gets_its_burst_then_waits_for_the_rate() {
        let (limit, clock) = limit(2.0, 3);
        for n in 0..3 {
            assert_eq!(limit.check("pga_a"), Ok(()), "request {n} of the burst");
        }
        assert_eq!(
            limit.check("pga_a"),
            Err(Duration::from_secs(1)),
            "half a second to the next token, rounded up to a whole second"
        );
        clock.advance(Duration::from_millis(500));
        assert_eq!(limit.check("pga_a"), Ok(()), "refilled at two per second");
        assert!(limit.check("pga_a").is_err(), "and only one token");
        assert_eq!(
            limit.check("pga_b"),
            Ok(()),
            "another key has its own bucket"
        );
    }

    #[test]
    fn a_slow_rate_asks_for_a_long_wait() {
        let (limit, _clock) = limit(0.01, 1);
        assert_eq!(limit.check("k"), Ok(()));
        assert_eq!(
            limit.check("k"),
            Err(Duration::from_secs(100)),
            "one token per 100 seconds"
        );
    }

    #[test]
    fn a_burst_of_zero_is_one() {
        let (limit, _clock) = limit(1.0, 0);
        assert_eq!(limit.check("k"), Ok(()));
        assert!(limit.check("k").is_err());
    }

    #[test]
    fn a_disabled_or_meaningless_limit_allows_everything() {
        for limit in [
            RateLimit::disabled(),
            RateLimit::new(0.0, 10),
            RateLimit::new(-1.0, 10),
            RateLimit::new(f64::NAN, 10),
            RateLimit::new(f64::INFINITY, 10),
        ] {
            assert!(!limit.is_enabled(), "{limit:?} is off");
            assert!(
                (0..1_000).all(|_| limit.check("k").is_ok()),
                "{limit:?} never refuses"
            );
        }
    }

    #[test]
    fn clones_share_their_buckets() {
        let (limit, _clock) = limit(0.01, 1);
        let clone = limit.clone();
        assert_eq!(limit.check("k"), Ok(()));
        assert!(clone.check("k").is_err(), "the clone sees the spent token");
    }

    #[test]
    fn keys_back_to_a_full_bucket_are_forgotten_and_limited_ones_are_not() {
        let (limit, clock) = limit(1.0, 1);
        for n in 0..=PRUNE_ABOVE {
            assert_eq!(limit.check(&format!("k{n}")), Ok(()));
        }
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(limit.check("limited"), Ok(()));
        // A period after a bucket is full again, its state is that of a new key: forgotten at
        // the next check past the bound, while "limited" still waits for its token.
        clock.advance(Duration::from_millis(500));
        assert_eq!(limit.check("another"), Ok(()));
        let remembered = limit.limiter.as_ref().map_or(0, |limiter| limiter.len());
        assert_eq!(remembered, 2, "full buckets are forgotten");
        assert_eq!(
            limit.check("limited"),
            Err(Duration::from_secs(1)),
            "a limited key is remembered"
        );
    }
}

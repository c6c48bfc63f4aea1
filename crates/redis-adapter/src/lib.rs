//! Redis adapters of pg-analytics: the versioned response cache, the per-report cache versions,
//! the recompute scope locks and a health probe, over one `deadpool-redis` pool.
//!
//! Redis only makes reads faster and triggers safer; it never holds truth. Every command is
//! bounded by a short timeout, and after a failure the adapters stop asking Redis for a moment
//! (a circuit breaker) so that a dead or hanging Redis costs a read at most one timeout, not one
//! per request. The callers treat every [`application::ports::CacheError`] as a cache miss or an
//! unavailable lock, and the next attempt after the pause finds Redis again, without a restart.
//!
//! A [`NearCache`] shared by the response cache and the versions lets a process answer cache
//! hits from memory while it is subscribed to version changes (see its module).

mod cache;
mod client;
mod health;
mod lock;
mod near;
#[cfg(feature = "test-support")]
pub mod testing;

pub use cache::{RedisCacheVersions, RedisResponseCache, VERSION_CHANNEL};
pub use client::{RedisClient, RedisConfig};
pub use health::RedisHealthProbe;
pub use lock::RedisScopeLock;
pub use near::NearCache;

//! Redis adapters of pg-analytics: the versioned response cache, the per-report cache versions,
//! the recompute scope locks and a health probe, over one `deadpool-redis` pool.
//!
//! Redis only makes reads faster and triggers safer; it never holds truth. Every command is
//! bounded by a short timeout, and after a failure the adapters stop asking Redis for a moment
//! (a circuit breaker) so that a dead or hanging Redis costs a read at most one timeout, not one
//! per request. The callers treat every [`application::ports::CacheError`] as a cache miss or an
//! unavailable lock, and the next attempt after the pause finds Redis again, without a restart.

mod cache;
mod client;
mod health;
mod lock;

pub use cache::{RedisCacheVersions, RedisResponseCache};
pub use client::{RedisClient, RedisConfig};
pub use health::RedisHealthProbe;
pub use lock::RedisScopeLock;

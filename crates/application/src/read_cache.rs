//! The read cache: the one decorator around snapshot reads, for built-in reports and the
//! reports tenants define alike.
//!
//! A read is keyed by its tenant, report, the report's cache version and its normalized
//! parameters ([`CacheKey::report`]). It has two tiers, both internal:
//!
//! - **in this process**, the decoded page, held until the entry's TTL ends (counted from when
//!   the page was read from the snapshots, so never past the shared entry's own expiry), within
//!   a byte budget;
//! - **shared** by every process ([`ResponseCache`]: Redis, or this process's memory), the
//!   page encoded as JSON under the report's TTL.
//!
//! A finished run bumps the report's version ([`CacheVersions::bump`]): later reads look under
//! new keys, and entries of the old version are never read again. A bump never gives a version
//! given before, so an entry held here can never answer for another one. Version 0, before
//! any bump, is the one a counter that lost its data reads again: pages under it are not held
//! here, only shared.
//!
//! Cache failures are never read failures: a version that cannot be read skips both tiers, an
//! entry that cannot be read or written is a miss.

use std::{sync::Arc, time::Duration};

use domain::{ReportSlug, RollupPage, RollupQuery, RollupRow, TenantId};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use tracing::warn;

use crate::telemetry;
use crate::{
    ExpiringCache,
    digest::sha256_hex,
    ports::{CacheKey, CacheVersions, Clock, ResponseCache, RollupStore, SourceSystem, StoreError},
};

/// A page of a read as the cache holds it: everything that does not depend on how it was served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedPage {
    /// When the page was read from the snapshots.
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub rows: Vec<RollupRow>,
    /// Rows of the whole read, all pages.
    pub total_rows: u64,
    /// The newest `computed_at` among the snapshot rows read.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refreshed_at: Option<OffsetDateTime>,
    /// Some event the page should count was not counted yet (as of `generated_at`).
    pub stale: bool,
    /// When the oldest change the page does not count yet was committed (as of
    /// `generated_at`); `None` when it counts every event.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub uncounted_since: Option<OffsetDateTime>,
}

/// What every report result carries beside its rows: when and where its page was read, how
/// long that took, and how fresh it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadInfo {
    /// When the page was read from the snapshots; on a hit, when the original read was.
    pub generated_at: OffsetDateTime,
    /// Rows of the whole result, all pages.
    pub total_rows: u64,
    pub cache_hit: bool,
    pub execution_ms: f64,
    pub source_system: SourceSystem,
    /// The report's cache version the result belongs to; `None` when it could not be read.
    pub snapshot_version: Option<u64>,
    pub last_refreshed_at: Option<OffsetDateTime>,
    /// Some event dated in the range is not counted yet (as of `generated_at`): a refresh
    /// would change the result.
    pub stale: bool,
    /// When the oldest change the result does not count yet was committed; `None` when it
    /// counts every event.
    pub uncounted_since: Option<OffsetDateTime>,
    /// On a cache hit, what the result rests on: see [`HitBasis`]. `None` on a miss.
    pub basis: Option<HitBasis>,
}

impl ReadInfo {
    /// How long the oldest change the result does not count had waited when it was read, in
    /// whole seconds; 0 when it counts every event.
    pub fn lag_seconds(&self) -> u64 {
        self.uncounted_since.map_or(0, |since| {
            u64::try_from((self.generated_at - since).whole_seconds()).unwrap_or(0)
        })
    }

    /// The information of `served`, read in `execution_ms`; the hit's basis moves here.
    pub fn of(served: &mut Served, execution_ms: f64) -> Self {
        Self {
            generated_at: served.page.generated_at,
            total_rows: served.page.total_rows,
            cache_hit: served.cache_hit,
            execution_ms,
            source_system: served.source_system,
            snapshot_version: served.version,
            last_refreshed_at: served.page.last_refreshed_at,
            stale: served.page.stale,
            uncounted_since: served.page.uncounted_since,
            basis: served.basis.take(),
        }
    }
}

/// A page as served: where from, under which version, and on a hit, what the hit rests on.
#[derive(Debug, Clone)]
pub struct Served {
    pub page: Arc<CachedPage>,
    pub cache_hit: bool,
    /// The cache's system on a hit, the snapshots' on a miss.
    pub source_system: SourceSystem,
    /// The report's cache version the page belongs to; `None` when it could not be read.
    pub version: Option<u64>,
    /// On a hit, what it rests on; `None` on a miss.
    pub basis: Option<HitBasis>,
}

/// What a cache hit rests on besides the request itself: the report's cache version, the UTC
/// day the parameters were resolved on (a range without dates ends today), and a time after
/// which it is not vouched for: the cached page's `generated_at` plus the report's TTL, but at
/// most [`HIT_BASIS_LIFETIME`] after the hit, since the report's definition was read for it.
///
/// While all of these still hold ([`CachedReads::still_holds`]), the same request by the same
/// tenant gets the same answer, every field but `execution_ms` alike: a caller may keep what it
/// served for a hit and serve it again after asking, instead of reading again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitBasis {
    tenant: TenantId,
    slug: ReportSlug,
    version: u64,
    day: Date,
    until: OffsetDateTime,
}

/// How long a hit vouches for the definition it read. Definitions are held in process for a
/// minute (see [`CachedCatalog`](crate::CachedCatalog)), so every process sees a change
/// within a minute anyway; a kept hit adds at most this much to that.
pub const HIT_BASIS_LIFETIME: time::Duration = time::Duration::SECOND;

impl HitBasis {
    /// A hit of `slug` for `tenant` at cache `version`, resolved on `day`, vouched for until
    /// `until`. Holding one grants nothing: [`CachedReads::still_holds`] checks it against the
    /// current state.
    pub fn new(
        tenant: TenantId,
        slug: ReportSlug,
        version: u64,
        day: Date,
        until: OffsetDateTime,
    ) -> Self {
        Self {
            tenant,
            slug,
            version,
            day,
            until,
        }
    }
}

/// What an entry held in this process costs beyond twice its encoded size (the decoded rows
/// take about as much as their JSON): the key, the slot and the allocator's rounding, roughly.
const ENTRY_OVERHEAD: usize = 256;

/// The layout of entries ([`CachedPage`]) and of the normalized parameters, hashed into every
/// key: entries written by a process that stores another layout are never read, during a
/// rolling upgrade either.
const ENTRY_FORMAT: &str = "rollup:v1";

/// Snapshot reads through the two-tier, versioned cache.
#[derive(Clone)]
pub struct CachedReads {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn RollupStore>,
    shared: Arc<dyn ResponseCache>,
    versions: Arc<dyn CacheVersions>,
    clock: Arc<dyn Clock>,
    /// Decoded pages by key, expiring on the clock's time.
    near: ExpiringCache<CacheKey, Arc<CachedPage>, OffsetDateTime>,
}

impl std::fmt::Debug for CachedReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedReads")
            .field("near", &self.inner.near)
            .finish_non_exhaustive()
    }
}

/// The ports a [`CachedReads`] works with.
#[derive(Clone)]
pub struct ReadPorts {
    pub store: Arc<dyn RollupStore>,
    pub shared: Arc<dyn ResponseCache>,
    pub versions: Arc<dyn CacheVersions>,
    pub clock: Arc<dyn Clock>,
}

impl CachedReads {
    /// Reads of `ports.store`, cached in `ports.shared` and in this process within
    /// `near_bytes` (0: nothing held here, every hit decodes the shared entry).
    pub fn new(ports: ReadPorts, near_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: ports.store,
                shared: ports.shared,
                versions: ports.versions,
                clock: ports.clock,
                near: ExpiringCache::new(near_bytes as u64, 8 << 10),
            }),
        }
    }

    /// The page `query` asks for: from the cache when it holds it under the report's current
    /// version, else from the snapshots, then cached for `ttl_seconds` (0: never cached).
    ///
    /// # Errors
    /// As [`RollupStore::read`], on a miss; cache failures are logged and read through.
    pub async fn read(&self, query: &RollupQuery, ttl_seconds: u32) -> Result<Served, StoreError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let version = match inner.versions.current(query.tenant, &query.report).await {
            Ok(version) => Some(version),
            Err(err) => {
                warn!(error = %err, "cache versions unavailable; reading snapshots directly");
                None
            }
        };
        let ttl = time::Duration::seconds(i64::from(ttl_seconds));
        let key = version
            .filter(|_| ttl_seconds > 0)
            .map(|v| CacheKey::report(query.tenant, &query.report, v, &read_hash(query)));

        if let (Some(key), Some(version)) = (&key, version)
            && let Some(page) = self.lookup(key, version, ttl, now).await
        {
            let basis = HitBasis::new(
                query.tenant,
                query.report.clone(),
                version,
                now.date(),
                (page.generated_at + ttl).min(now + HIT_BASIS_LIFETIME),
            );
            return Ok(Served {
                page,
                cache_hit: true,
                source_system: inner.shared.system(),
                version: Some(version),
                basis: Some(basis),
            });
        }

        let started = std::time::Instant::now();
        let read = inner.store.read(query).await?;
        telemetry::snapshot_read(started.elapsed().as_secs_f64());
        let stale = read.is_stale();
        let RollupPage {
            rows,
            total_rows,
            last_refreshed_at,
            uncounted_since,
        } = read;
        let page = Arc::new(CachedPage {
            generated_at: inner.clock.now(),
            rows,
            total_rows,
            last_refreshed_at,
            stale,
            uncounted_since,
        });
        if let (Some(key), Some(version)) = (key, version) {
            self.store(key, version, &page, ttl).await;
        }
        Ok(Served {
            page,
            cache_hit: false,
            source_system: inner.store.system(),
            version,
            basis: None,
        })
    }

    /// Whether a hit served on `basis` would be served alike now: its time is not up, the UTC
    /// day is the same and the report's cache version has not moved. One version lookup; a
    /// version that cannot be read counts as moved.
    pub async fn still_holds(&self, basis: &HitBasis) -> bool {
        let now = self.inner.clock.now();
        if now >= basis.until || now.date() != basis.day {
            return false;
        }
        matches!(
            self.inner.versions.current(basis.tenant, &basis.slug).await,
            Ok(version) if version == basis.version
        )
    }

    /// The page under `key`, of `version`: held here, or read from the shared tier (and then
    /// held here until its TTL, `ttl` after it was generated, ends).
    async fn lookup(
        &self,
        key: &CacheKey,
        version: u64,
        ttl: time::Duration,
        now: OffsetDateTime,
    ) -> Option<Arc<CachedPage>> {
        let inner = &*self.inner;
        if version > 0 {
            let held = inner.near.fresh(key, now);
            telemetry::cache_lookup("local", held.is_some());
            if held.is_some() {
                return held;
            }
        }
        let bytes = match inner.shared.get(key).await {
            Ok(Some(bytes)) => {
                telemetry::cache_lookup("shared", true);
                bytes
            }
            Ok(None) => {
                telemetry::cache_lookup("shared", false);
                return None;
            }
            Err(err) => {
                warn!(error = %err, "response cache unavailable; serving from snapshots");
                return None;
            }
        };
        let page = match serde_json::from_slice::<CachedPage>(&bytes) {
            Ok(page) => Arc::new(page),
            Err(err) => {
                warn!(error = %err, "unreadable cache entry; serving from snapshots");
                return None;
            }
        };
        if version > 0 {
            self.hold(key.clone(), &page, ttl, bytes.len());
        }
        Some(page)
    }

    /// Stores `page` under `key`, of `version`, in both tiers for `ttl` (only shared, for
    /// version 0).
    async fn store(
        &self,
        key: CacheKey,
        version: u64,
        page: &Arc<CachedPage>,
        ttl: time::Duration,
    ) {
        let bytes = match serde_json::to_vec(page.as_ref()) {
            Ok(bytes) => bytes,
            Err(err) => {
                warn!(error = %err, "could not encode a report result for the cache");
                return;
            }
        };
        let len = bytes.len();
        let shared_ttl = Duration::try_from(ttl).unwrap_or_default();
        if let Err(err) = self.inner.shared.put(&key, bytes, shared_ttl).await {
            warn!(error = %err, "response cache unavailable; result not cached");
            return;
        }
        if version > 0 {
            self.hold(key, page, ttl, len);
        }
    }

    /// Holds `page`, `encoded_len` bytes as JSON, in this process until `ttl` after it was
    /// generated.
    fn hold(&self, key: CacheKey, page: &Arc<CachedPage>, ttl: time::Duration, encoded_len: usize) {
        let cost = 2 * encoded_len + key.as_str().len() + ENTRY_OVERHEAD;
        let expires = page.generated_at + ttl;
        self.inner
            .near
            .insert(key, Arc::clone(page), expires, cost as u64);
    }
}

/// The SHA-256 (hex) of the normalized parameters of `query`: every parameter resolved to its
/// effective value and written in a fixed order, so equivalent requests share one entry.
fn read_hash(query: &RollupQuery) -> String {
    let normalized = format!(
        "{ENTRY_FORMAT}&window={}&from={}&to={}&period={}&dimensions={:?}&filters={:?}&order={:?}&limit={}&offset={}",
        query.window,
        query.range.from(),
        query.range.to(),
        query.by_period,
        query.dimensions,
        query.filters,
        query.order,
        query.page.limit(),
        query.page.offset(),
    );
    sha256_hex(normalized.as_bytes())
}

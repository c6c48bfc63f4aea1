//! The one bounded, expiring in-process map behind every cache of this process: `quick_cache`'s
//! S3-FIFO eviction under a budget (bytes, or a count of entries), each entry stamped with the
//! moment it expires.
//!
//! Entries read least go first when a new one would not fit, so memory stays within the budget
//! whatever the number of distinct keys; one entry may take at most an eighth of it. The
//! moments are of any ordered type: `Instant` for caches on the monotonic clock, the
//! application [`Clock`](crate::ports::Clock)'s time where tests drive it.

use std::{hash::Hash, time::Instant};

use quick_cache::{
    DefaultHashBuilder, Equivalent, OptionsBuilder, Weighter,
    sync::{Cache, DefaultLifecycle},
};

/// An entry with its expiry and what it is charged.
#[derive(Clone)]
struct Stamped<V, T> {
    value: V,
    expires: T,
    cost: u64,
}

/// Charges an entry what its owner said it costs.
#[derive(Clone, Copy)]
struct ByCost;

impl<K, V, T> Weighter<K, Stamped<V, T>> for ByCost {
    fn weight(&self, _key: &K, entry: &Stamped<V, T>) -> u64 {
        entry.cost
    }
}

type Inner<K, V, T> =
    Cache<K, Stamped<V, T>, ByCost, DefaultHashBuilder, DefaultLifecycle<K, Stamped<V, T>>>;

/// A cache of `V` by `K` within a budget, each entry expiring at a moment of type `T`.
pub struct ExpiringCache<K, V, T = Instant> {
    /// `None` for a budget of 0, which holds nothing.
    inner: Option<Inner<K, V, T>>,
    budget: u64,
}

impl<K, V, T> std::fmt::Debug for ExpiringCache<K, V, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpiringCache")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<K, V, T> ExpiringCache<K, V, T>
where
    K: Eq + Hash + Clone,
    V: Clone,
    T: Copy + Ord,
{
    /// A cache holding entries that cost at most `budget` in all; `typical_cost` sizes its
    /// table up front. A budget of 0 holds nothing.
    pub fn new(budget: u64, typical_cost: u64) -> Self {
        // Few shards keep an eighth of the budget well within one shard's share; the locks
        // are held for a map lookup only.
        let shards = if budget >= 4 << 20 { 4 } else { 1 };
        let inner = OptionsBuilder::new()
            .shards(shards)
            .weight_capacity(budget)
            .estimated_items_capacity(
                usize::try_from(budget / typical_cost.max(1))
                    .unwrap_or(usize::MAX)
                    .clamp(16, 1 << 16),
            )
            .build()
            .ok()
            .filter(|_| budget > 0)
            .map(|options| {
                Cache::with_options(
                    options,
                    ByCost,
                    DefaultHashBuilder::default(),
                    DefaultLifecycle::default(),
                )
            });
        Self { inner, budget }
    }

    /// The entry under `key` if it has not expired at `now`; an expired one is dropped.
    pub fn fresh<Q>(&self, key: &Q, now: T) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let inner = self.inner.as_ref()?;
        let entry = inner.get(key)?;
        if entry.expires > now {
            return Some(entry.value);
        }
        inner.remove_if(key, |entry| entry.expires <= now);
        None
    }

    /// The entry under `key` however old, and whether it is still fresh at `now`: what was
    /// read before, for when the source cannot be reached.
    pub fn any_age<Q>(&self, key: &Q, now: T) -> Option<(V, bool)>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let entry = self.inner.as_ref()?.get(key)?;
        let fresh = entry.expires > now;
        Some((entry.value, fresh))
    }

    /// Holds `value` under `key` until `expires`, charged `cost`; an entry costing more than
    /// an eighth of the budget is not held (and one held before under `key` is dropped).
    pub fn insert(&self, key: K, value: V, expires: T, cost: u64) {
        let Some(inner) = &self.inner else {
            return;
        };
        if cost > self.budget / 8 {
            inner.remove(&key);
            return;
        }
        inner.insert(
            key,
            Stamped {
                value,
                expires,
                cost,
            },
        );
    }

    /// Changes the entry held under `key`, if there is one, to what `change` makes of it and
    /// its cost, keeping its expiry. Returns whether there was one.
    pub fn update<Q>(&self, key: &Q, change: impl FnOnce(V, u64) -> (V, u64)) -> bool
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
    {
        let Some(inner) = &self.inner else {
            return false;
        };
        let Some(entry) = inner.peek(key) else {
            return false;
        };
        let (value, cost) = change(entry.value, entry.cost);
        if cost > self.budget / 8 {
            inner.remove(key);
            return false;
        }
        let stamped = Stamped {
            value,
            expires: entry.expires,
            cost,
        };
        inner.replace(key.to_owned(), stamped, true).is_ok()
    }

    /// Keeps only the entries `keep` says to.
    pub fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        if let Some(inner) = &self.inner {
            inner.retain(|key, entry| keep(key, &entry.value));
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        if let Some(inner) = &self.inner {
            inner.clear();
        }
    }

    /// How many entries are held, expired or not.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, Cache::len)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the entries held are charged, within the budget.
    pub fn cost(&self) -> u64 {
        self.inner.as_ref().map_or(0, Cache::weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_at_their_moment() {
        let cache: ExpiringCache<String, u32, u64> = ExpiringCache::new(1_000, 10);
        cache.insert("a".to_owned(), 1, 10, 10);
        assert_eq!(cache.fresh("a", 9), Some(1));
        assert_eq!(
            cache.any_age("a", 10),
            Some((1, false)),
            "kept for a fallback"
        );
        assert_eq!(cache.fresh("a", 10), None);
        assert!(cache.is_empty(), "an expired entry read fresh is dropped");
    }

    #[test]
    fn many_distinct_entries_stay_within_the_budget_and_the_newest_is_held() {
        let cache: ExpiringCache<String, Vec<u8>, u64> = ExpiringCache::new(100_000, 1_000);
        for n in 0..1_000 {
            cache.insert(format!("k{n}"), vec![0; 1_000], u64::MAX, 1_100);
            assert!(cache.cost() <= 100_000, "{} after {n}", cache.cost());
        }
        assert!(cache.fresh("k999", 0).is_some(), "the newest is held");
        assert!(cache.len() < 100, "{} entries", cache.len());
    }

    #[test]
    fn an_entry_over_an_eighth_of_the_budget_is_not_held() {
        let cache: ExpiringCache<String, u8, u64> = ExpiringCache::new(8_000, 100);
        cache.insert("small".to_owned(), 1, u64::MAX, 1_000);
        cache.insert("small".to_owned(), 2, u64::MAX, 1_001);
        assert!(cache.is_empty(), "and it drops the one it would replace");
        let none: ExpiringCache<String, u8, u64> = ExpiringCache::new(0, 1);
        none.insert("a".to_owned(), 1, u64::MAX, 0);
        assert!(none.is_empty(), "a budget of 0 holds nothing");
    }

    #[test]
    fn an_update_keeps_the_expiry_and_charges_the_new_cost() {
        let cache: ExpiringCache<String, u32, u64> = ExpiringCache::new(1_000, 10);
        assert!(!cache.update("a", |v, c| (v, c)), "nothing to update");
        cache.insert("a".to_owned(), 1, 10, 10);
        assert!(cache.update("a", |v, c| (v + 1, c + 20)));
        assert_eq!(cache.fresh("a", 9), Some(2));
        assert_eq!(cache.cost(), 30);
        assert_eq!(cache.fresh("a", 10), None, "the expiry is kept");
    }
}

//! Report hits kept as they were sent, to be sent again.
//!
//! A cache hit still parses its parameters, hashes them into a key, looks the entry up and
//! renders the envelope around its rows: most of what it costs beyond a bare 404. Yet the same
//! request by the same tenant gets the same bytes back for as long as the hit's
//! [`HitBasis`] holds, all but `execution_ms`. So the body of a hit is kept, keyed by tenant,
//! report and raw query string, split around the `execution_ms` value; a repeat of the request
//! asks [`ReportService::still_holds`](application::ReportService::still_holds) and, if so,
//! is answered with those bytes and its own `execution_ms`.
//!
//! Bodies are held within a byte budget, oldest first out. A request spelled differently (other
//! parameter order, explicit defaults) is another key: it runs the report once, hits the
//! shared cache entry, and is kept in its own right.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, PoisonError},
};

use actix_web::{HttpResponse, http::header::ContentType, web::Bytes};
use application::HitBasis;
use domain::TenantId;

/// What splits a body around its `execution_ms` value.
const EXECUTION_MS: &str = "\"execution_ms\":";

/// What an entry costs beyond its bytes (the basis, the map and the listing), roughly.
const ENTRY_OVERHEAD: usize = 512;

/// The hit bodies held by one process.
#[derive(Clone, Default)]
pub struct HitReplays {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// The byte budget of held bodies.
    capacity: usize,
    hasher: RandomState,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    by_hash: HashMap<u64, Arc<Replay>>,
    /// Hashes by age, oldest first, each with the sequence number it was kept under; a listing
    /// whose number no longer matches the held body is stale and skipped.
    order: VecDeque<(u64, u64)>,
    next: u64,
    bytes: usize,
}

impl Held {
    fn remove(&mut self, hash: u64) {
        if let Some(replay) = self.by_hash.remove(&hash) {
            self.bytes -= replay.cost();
        }
    }
}

/// A body held for one request: where it belongs, what it rests on, and its bytes before and
/// after the `execution_ms` value.
#[derive(Debug)]
pub struct Replay {
    tenant: TenantId,
    slug: Box<str>,
    query: Box<str>,
    seq: u64,
    basis: HitBasis,
    head: Bytes,
    tail: Bytes,
}

impl Replay {
    /// What the body rests on; ask the report service whether it still holds before sending it.
    pub fn basis(&self) -> &HitBasis {
        &self.basis
    }

    /// The body, with `execution_ms` in place.
    pub fn body(&self, execution_ms: f64) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.head.len() + self.tail.len() + 24);
        body.extend_from_slice(&self.head);
        // Written as the serializer wrote the original, so the two never differ in form.
        if serde_json::to_writer(&mut body, &execution_ms).is_err() {
            body.push(b'0');
        }
        body.extend_from_slice(&self.tail);
        body
    }

    /// The 200 response carrying [`Replay::body`].
    pub fn respond(&self, execution_ms: f64) -> HttpResponse {
        HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(self.body(execution_ms))
    }

    fn cost(&self) -> usize {
        self.head.len() + self.tail.len() + self.slug.len() + self.query.len() + ENTRY_OVERHEAD
    }

    fn is_for(&self, tenant: TenantId, slug: &str, query: &str) -> bool {
        self.tenant == tenant && *self.slug == *slug && *self.query == *query
    }
}

impl std::fmt::Debug for HitReplays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HitReplays")
            .field("capacity", &self.inner.as_ref().map_or(0, |i| i.capacity))
            .finish_non_exhaustive()
    }
}

impl HitReplays {
    /// Holds up to `capacity` bytes of bodies; 0 holds none (every request runs the report).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: (capacity > 0).then(|| {
                Arc::new(Inner {
                    capacity,
                    hasher: RandomState::new(),
                    held: Mutex::default(),
                })
            }),
        }
    }

    /// Holds nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    fn held(inner: &Inner) -> std::sync::MutexGuard<'_, Held> {
        inner.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hash(inner: &Inner, tenant: TenantId, slug: &str, query: &str) -> u64 {
        inner.hasher.hash_one((tenant.get(), slug, query))
    }

    /// The body held for `query` on `slug` of `tenant`, if any. Whether it may still be sent
    /// is the caller's to ask.
    pub fn get(&self, tenant: TenantId, slug: &str, query: &str) -> Option<Arc<Replay>> {
        let inner = self.inner.as_ref()?;
        let hash = Self::hash(inner, tenant, slug, query);
        Self::held(inner)
            .by_hash
            .get(&hash)
            .filter(|replay| replay.is_for(tenant, slug, query))
            .cloned()
    }

    /// Drops `replay`, found no longer to hold (unless another body replaced it meanwhile).
    pub fn forget(&self, replay: &Replay) {
        let Some(inner) = &self.inner else {
            return;
        };
        let hash = Self::hash(inner, replay.tenant, &replay.slug, &replay.query);
        let mut held = Self::held(inner);
        if held.by_hash.get(&hash).is_some_and(|h| h.seq == replay.seq) {
            held.remove(hash);
        }
    }

    /// Keeps `body`, the body just sent for a hit resting on `basis`, for `query` on `slug` of
    /// `tenant` (sharing its bytes, not copying them). A body without exactly one
    /// `execution_ms`, or larger than the whole budget, is not kept.
    pub fn keep(&self, tenant: TenantId, slug: &str, query: &str, basis: HitBasis, body: &Bytes) {
        let Some(inner) = &self.inner else {
            return;
        };
        let Some((head_end, tail_start)) = split(body) else {
            return;
        };
        let mut replay = Replay {
            tenant,
            slug: slug.into(),
            query: query.into(),
            seq: 0,
            basis,
            head: body.slice(..head_end),
            tail: body.slice(tail_start..),
        };
        let cost = replay.cost();
        if cost > inner.capacity {
            return;
        }
        let hash = Self::hash(inner, tenant, slug, query);
        let mut held = Self::held(inner);
        replay.seq = held.next;
        held.next += 1;
        let (seq, replay) = (replay.seq, Arc::new(replay));
        held.remove(hash);
        while held.bytes + cost > inner.capacity {
            let Some((oldest, seq)) = held.order.pop_front() else {
                break;
            };
            if held.by_hash.get(&oldest).is_some_and(|r| r.seq == seq) {
                held.remove(oldest);
            }
        }
        held.bytes += cost;
        held.order.push_back((hash, seq));
        held.by_hash.insert(hash, replay);
        // Listings of replaced or forgotten bodies pile up only until they are this many.
        if held.order.len() > 2 * held.by_hash.len() + 64 {
            let Held { order, by_hash, .. } = &mut *held;
            order.retain(|(hash, seq)| by_hash.get(hash).is_some_and(|r| r.seq == *seq));
        }
    }
}

/// Where `body`'s one `execution_ms` value starts and where what follows it starts. The name
/// can only occur as a key: inside a JSON string its quotes would be escaped. Rows carry no
/// such key, so the one found is the envelope's.
fn split(body: &[u8]) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(EXECUTION_MS)? + EXECUTION_MS.len();
    if text[start..].contains(EXECUTION_MS) {
        return None;
    }
    let len = text[start..].find([',', '}'])?;
    Some((start, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basis() -> HitBasis {
        let at = time::macros::datetime!(2026-11-21 12:00 UTC);
        let slug = domain::ReportSlug::parse("top-entities").expect("a slug");
        HitBasis::new(TenantId::DEFAULT, slug, 1, at.date(), at)
    }

    fn body(rows: &str) -> String {
        format!(
            r#"{{"data":{{"rows":[{rows}],"cache_hit":true,"execution_ms":0.123,"stale":false}},"meta":{{"cache_hit":true}}}}"#
        )
    }

    #[test]
    fn a_kept_body_comes_back_with_its_own_execution_ms() {
        let replays = HitReplays::new(1 << 20);
        let sent = body(r#"{"entity_id":"a"}"#);
        replays.keep(
            TenantId::DEFAULT,
            "top-entities",
            "limit=5",
            basis(),
            &Bytes::from(sent.clone()),
        );
        let replay = replays
            .get(TenantId::DEFAULT, "top-entities", "limit=5")
            .expect("kept");
        let again: serde_json::Value = serde_json::from_slice(&replay.body(4.5)).unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(&sent).unwrap();
        expected["data"]["execution_ms"] = serde_json::json!(4.5);
        assert_eq!(again, expected);
        assert_eq!(replay.basis(), &basis());
    }

    #[test]
    fn another_tenant_report_or_query_is_another_body() {
        let replays = HitReplays::new(1 << 20);
        let tenant = TenantId::DEFAULT;
        replays.keep(
            tenant,
            "top-entities",
            "limit=5",
            basis(),
            &Bytes::from(body("")),
        );
        let other = TenantId::new(2);
        assert!(replays.get(other, "top-entities", "limit=5").is_none());
        assert!(replays.get(tenant, "status-counts", "limit=5").is_none());
        assert!(replays.get(tenant, "top-entities", "limit=6").is_none());
        assert!(replays.get(tenant, "top-entities", "").is_none());
        assert!(replays.get(tenant, "top-entities", "limit=5").is_some());
    }

    #[test]
    fn a_body_without_exactly_one_execution_ms_is_not_kept() {
        let replays = HitReplays::new(1 << 20);
        let tenant = TenantId::DEFAULT;
        replays.keep(
            tenant,
            "a",
            "",
            basis(),
            &Bytes::from_static(br#"{"data":{"stale":false}}"#),
        );
        assert!(replays.get(tenant, "a", "").is_none());
        let twice = body(r#"{"execution_ms":1}"#);
        replays.keep(tenant, "b", "", basis(), &Bytes::from(twice));
        assert!(replays.get(tenant, "b", "").is_none());
        // Quoted inside a string, the name is escaped and does not count.
        let quoted = body(r#"{"entity_id":"\"execution_ms\":7"}"#);
        replays.keep(tenant, "c", "", basis(), &Bytes::from(quoted));
        let replay = replays.get(tenant, "c", "").expect("kept");
        let again: serde_json::Value = serde_json::from_slice(&replay.body(2.0)).unwrap();
        assert_eq!(again["data"]["execution_ms"], 2.0);
        assert_eq!(again["data"]["rows"][0]["entity_id"], "\"execution_ms\":7");
    }

    #[test]
    fn the_budget_drops_the_oldest_bodies_first() {
        let one = body("").len() + "r".len() + 1 + ENTRY_OVERHEAD;
        let replays = HitReplays::new(3 * one);
        let tenant = TenantId::DEFAULT;
        for query in ["1", "2", "3"] {
            replays.keep(tenant, "r", query, basis(), &Bytes::from(body("")));
        }
        // Keeping "1" again makes it the newest; "2" is then the oldest.
        replays.keep(tenant, "r", "1", basis(), &Bytes::from(body("")));
        replays.keep(tenant, "r", "4", basis(), &Bytes::from(body("")));
        let kept: Vec<_> = ["1", "2", "3", "4"]
            .into_iter()
            .filter(|q| replays.get(tenant, "r", q).is_some())
            .collect();
        assert_eq!(kept, ["1", "3", "4"]);
    }

    #[test]
    fn forgetting_drops_only_the_body_it_names() {
        let replays = HitReplays::new(1 << 20);
        let tenant = TenantId::DEFAULT;
        replays.keep(tenant, "r", "q", basis(), &Bytes::from(body("")));
        let old = replays.get(tenant, "r", "q").expect("kept");
        replays.keep(tenant, "r", "q", basis(), &Bytes::from(body("")));
        replays.forget(&old);
        let new = replays.get(tenant, "r", "q").expect("the newer body stays");
        replays.forget(&new);
        assert!(replays.get(tenant, "r", "q").is_none());
    }

    #[test]
    fn a_disabled_store_keeps_nothing() {
        for replays in [
            HitReplays::disabled(),
            HitReplays::new(0),
            HitReplays::new(10),
        ] {
            replays.keep(TenantId::DEFAULT, "r", "", basis(), &Bytes::from(body("")));
            assert!(replays.get(TenantId::DEFAULT, "r", "").is_none());
        }
    }
}

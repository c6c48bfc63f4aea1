//! Report hits kept as they were served, to be served again: a middleware on report runs.
//!
//! A cache hit still parses its parameters, hashes them into a key, looks the entry up and
//! renders its rows: most of what it costs beyond a bare 404. Yet the same request by the same
//! tenant gets the same answer for as long as the hit's [`HitBasis`] holds, all but
//! `execution_ms`. So the handler attaches a [`KeptHit`] to the response of a hit (the
//! envelope with its rows rendered once, and the basis), and this middleware keeps it, keyed by
//! tenant, caller (anonymous, or with credentials: an anonymous caller sees only the public
//! reports), path and raw query string. A repeat of the request asks
//! [`ReportService::still_holds`](application::ReportService::still_holds) (one version lookup)
//! and, if it holds, is answered by rendering the kept envelope with its own `execution_ms`.
//! Repeats take about as long as each other, so the last few renderings are remembered by their
//! `execution_ms` (to the microsecond, as served) and sent again as they are.
//!
//! Hits are kept within a byte budget, oldest first out. A request spelled differently (other
//! parameter order, explicit defaults) is another key: it runs the report once, hits the
//! shared cache entry, and is kept in its own right.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use actix_web::{
    HttpMessage, HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, header::ContentType},
    middleware::Next,
    web::{self, Bytes},
};
use application::{HitBasis, elapsed_ms};
use domain::TenantId;
use serde::Serialize;

use crate::{AppState, ReadTenant};

/// What an entry costs beyond its bodies (the basis, the map and the listing), roughly.
const ENTRY_OVERHEAD: usize = 512;

/// How many renderings of a kept hit are remembered, each by its `execution_ms`.
const RENDERINGS: usize = 4;

/// Renders a kept envelope with a given `execution_ms`.
type Render = dyn Fn(f64) -> serde_json::Result<Vec<u8>> + Send + Sync;

/// A hit as the handler served it, attached to its response for the middleware to keep.
#[derive(Clone)]
pub struct KeptHit {
    basis: HitBasis,
    render: Arc<Render>,
    /// The size of the body served.
    size: usize,
    /// The last renderings, by the bits of their `execution_ms`, newest last.
    rendered: Arc<Mutex<Vec<(u64, Bytes)>>>,
}

impl std::fmt::Debug for KeptHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptHit")
            .field("basis", &self.basis)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The 200 response of a report read: `envelope` rendered with `execution_ms`, set by
/// `timing`. On a hit (`basis`), the envelope is attached to it to be served again.
///
/// # Errors
/// When the envelope cannot be rendered.
pub fn respond<E>(
    envelope: E,
    timing: fn(&mut E) -> &mut f64,
    basis: Option<HitBasis>,
) -> serde_json::Result<HttpResponse>
where
    E: Serialize + Clone + Send + Sync + 'static,
{
    let body = serde_json::to_vec(&envelope)?;
    let mut response = HttpResponse::Ok();
    response.content_type(ContentType::json());
    if let Some(basis) = basis {
        // Room for the body as first rendered and a longer `execution_ms`: rendered again
        // without growing.
        let capacity = body.len() + 32;
        let render = move |execution_ms: f64| {
            let mut envelope = envelope.clone();
            *timing(&mut envelope) = execution_ms;
            let mut body = Vec::with_capacity(capacity);
            serde_json::to_writer(&mut body, &envelope)?;
            Ok(body)
        };
        response.extensions_mut().insert(KeptHit {
            basis,
            render: Arc::new(render),
            size: body.len(),
            rendered: Arc::default(),
        });
    }
    Ok(response.body(body))
}

/// Whom a hit is kept for: a tenant, read anonymously or with credentials (an API key of the
/// tenant's with `read`, or the management key), which see different reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub anonymous: bool,
}

/// The hits kept by one process.
#[derive(Clone, Default)]
pub struct HitReplays {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// The byte budget of kept hits.
    capacity: usize,
    hasher: RandomState,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_hash: HashMap<u64, Arc<Replay>>,
    /// Hashes by age, oldest first, each with the sequence number it was kept under; a listing
    /// whose number no longer matches the kept hit is stale and skipped.
    order: VecDeque<(u64, u64)>,
    next: u64,
    bytes: usize,
}

impl Kept {
    fn remove(&mut self, hash: u64) {
        if let Some(replay) = self.by_hash.remove(&hash) {
            self.bytes -= replay.cost();
        }
    }
}

/// A hit kept for one request: where it belongs, and what it was.
#[derive(Debug)]
pub struct Replay {
    caller: Caller,
    path: Box<str>,
    query: Box<str>,
    seq: u64,
    hit: KeptHit,
}

impl Replay {
    /// What the hit rests on; ask the report service whether it still holds before serving it.
    pub fn basis(&self) -> &HitBasis {
        &self.hit.basis
    }

    /// The body, rendered with `execution_ms`, or as it was rendered with the same value.
    ///
    /// # Errors
    /// When the envelope cannot be rendered (it could the first time, so never in practice).
    pub fn body(&self, execution_ms: f64) -> serde_json::Result<Bytes> {
        let bits = execution_ms.to_bits();
        let remembered = |rendered: &[(u64, Bytes)]| {
            rendered
                .iter()
                .find(|(b, _)| *b == bits)
                .map(|(_, body)| body.clone())
        };
        if let Some(body) = remembered(&lock(&self.hit.rendered)) {
            return Ok(body);
        }
        let body = Bytes::from((self.hit.render)(execution_ms)?);
        let mut rendered = lock(&self.hit.rendered);
        if remembered(&rendered).is_none() {
            if rendered.len() == RENDERINGS {
                rendered.remove(0);
            }
            rendered.push((bits, body.clone()));
        }
        Ok(body)
    }

    /// The kept envelope (about a body) and the renderings remembered, at most.
    fn cost(&self) -> usize {
        (1 + RENDERINGS) * self.hit.size + self.path.len() + self.query.len() + ENTRY_OVERHEAD
    }

    fn is_for(&self, caller: Caller, path: &str, query: &str) -> bool {
        self.caller == caller && *self.path == *path && *self.query == *query
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
    /// Keeps up to `capacity` bytes of hits; 0 keeps none (every request runs the report).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: (capacity > 0).then(|| {
                Arc::new(Inner {
                    capacity,
                    hasher: RandomState::new(),
                    kept: Mutex::default(),
                })
            }),
        }
    }

    /// Keeps nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Whether anything is ever kept.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    fn kept(inner: &Inner) -> std::sync::MutexGuard<'_, Kept> {
        lock(&inner.kept)
    }

    fn hash(inner: &Inner, caller: Caller, path: &str, query: &str) -> u64 {
        inner
            .hasher
            .hash_one((caller.tenant.get(), caller.anonymous, path, query))
    }

    /// The hit kept for `query` on `path` for `caller`, if any. Whether it may still be served
    /// is the caller's to ask.
    pub fn get(&self, caller: Caller, path: &str, query: &str) -> Option<Arc<Replay>> {
        let inner = self.inner.as_ref()?;
        let hash = Self::hash(inner, caller, path, query);
        Self::kept(inner)
            .by_hash
            .get(&hash)
            .filter(|replay| replay.is_for(caller, path, query))
            .cloned()
    }

    /// Drops `replay`, found no longer to hold (unless another hit replaced it meanwhile).
    pub fn forget(&self, replay: &Replay) {
        let Some(inner) = &self.inner else {
            return;
        };
        let hash = Self::hash(inner, replay.caller, &replay.path, &replay.query);
        let mut kept = Self::kept(inner);
        if kept.by_hash.get(&hash).is_some_and(|h| h.seq == replay.seq) {
            kept.remove(hash);
        }
    }

    /// Keeps `hit`, just served for `query` on `path` for `caller`. A hit costing more than an
    /// eighth of the budget is not kept, so one large answer never empties the store.
    pub fn keep(&self, caller: Caller, path: &str, query: &str, hit: KeptHit) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut replay = Replay {
            caller,
            path: path.into(),
            query: query.into(),
            seq: 0,
            hit,
        };
        let cost = replay.cost();
        if cost > inner.capacity / 8 {
            return;
        }
        let hash = Self::hash(inner, caller, path, query);
        let mut kept = Self::kept(inner);
        replay.seq = kept.next;
        kept.next += 1;
        let (seq, replay) = (replay.seq, Arc::new(replay));
        kept.remove(hash);
        while kept.bytes + cost > inner.capacity {
            let Some((oldest, seq)) = kept.order.pop_front() else {
                break;
            };
            if kept.by_hash.get(&oldest).is_some_and(|r| r.seq == seq) {
                kept.remove(oldest);
            }
        }
        kept.bytes += cost;
        kept.order.push_back((hash, seq));
        kept.by_hash.insert(hash, replay);
        // Listings of replaced or forgotten hits pile up only until they are this many.
        if kept.order.len() > 2 * kept.by_hash.len() + 64 {
            let Kept { order, by_hash, .. } = &mut *kept;
            order.retain(|(hash, seq)| by_hash.get(hash).is_some_and(|r| r.seq == *seq));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves a GET of a report run from the hit kept for it while that hit still holds; otherwise
/// runs the handler and keeps the hit it attached, if any. The caller's tenant is resolved
/// here, once: the handler's [`ReadTenant`] reuses it.
pub(crate) async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(state) = state.filter(|s| s.replays.is_enabled() && req.method() == Method::GET)
    else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let tenant = match req.extract::<ReadTenant>().await {
        Ok(ReadTenant(tenant)) => tenant,
        Err(err) => return Ok(req.error_response(err)),
    };
    let caller = Caller {
        tenant,
        anonymous: req.extensions().get::<application::Principal>().is_none(),
    };
    if let Some(replay) = state.replays.get(caller, req.path(), req.query_string()) {
        if state.reports.still_holds(replay.basis()).await
            && let Ok(body) = replay.body(elapsed_ms(started))
        {
            application::telemetry::cache_lookup("replay", true);
            let response = HttpResponse::Ok()
                .content_type(ContentType::json())
                .body(body);
            return Ok(req.into_response(response));
        }
        state.replays.forget(&replay);
    }
    application::telemetry::cache_lookup("replay", false);
    let (path, query) = (req.path().to_owned(), req.query_string().to_owned());
    let mut response = next.call(req).await?;
    let hit = response.response_mut().extensions_mut().remove::<KeptHit>();
    if let Some(hit) = hit {
        state.replays.keep(caller, &path, &query, hit);
    }
    Ok(response.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(tenant: TenantId) -> Caller {
        Caller {
            tenant,
            anonymous: true,
        }
    }

    fn basis() -> HitBasis {
        let at = time::macros::datetime!(2026-11-21 12:00 UTC);
        let slug = domain::ReportSlug::parse("top-entities").expect("a slug");
        HitBasis::new(TenantId::DEFAULT, slug, 1, at.date(), at)
    }

    #[derive(Clone, Serialize)]
    struct Envelope {
        rows: Vec<u32>,
        execution_ms: f64,
    }

    fn hit(rows: usize) -> KeptHit {
        let envelope = Envelope {
            rows: vec![7; rows],
            execution_ms: 0.5,
        };
        let response = respond(envelope, |e| &mut e.execution_ms, Some(basis())).expect("renders");
        response
            .extensions()
            .get::<KeptHit>()
            .cloned()
            .expect("a hit is kept")
    }

    #[test]
    fn a_kept_hit_is_rendered_with_its_own_execution_ms() {
        let replays = HitReplays::new(1 << 20);
        replays.keep(caller(TenantId::DEFAULT), "/r", "limit=5", hit(2));
        let replay = replays
            .get(caller(TenantId::DEFAULT), "/r", "limit=5")
            .expect("kept");
        let again: serde_json::Value =
            serde_json::from_slice(&replay.body(4.5).expect("renders")).unwrap();
        assert_eq!(
            again,
            serde_json::json!({"rows": [7, 7], "execution_ms": 4.5})
        );
        assert_eq!(replay.basis(), &basis());
    }

    #[test]
    fn renderings_are_remembered_by_their_execution_ms() {
        let replays = HitReplays::new(1 << 20);
        replays.keep(caller(TenantId::DEFAULT), "/r", "", hit(2));
        let replay = replays
            .get(caller(TenantId::DEFAULT), "/r", "")
            .expect("kept");
        let first = replay.body(0.002).expect("renders");
        let same = replay.body(0.002).expect("renders");
        assert_eq!(
            first.as_ptr(),
            same.as_ptr(),
            "the same value is sent as rendered"
        );
        for ms in [0.003, 0.004, 0.005, 0.006] {
            let body = replay.body(ms).expect("renders");
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(value["execution_ms"], ms);
        }
        let again = replay.body(0.002).expect("renders");
        assert_ne!(
            first.as_ptr(),
            again.as_ptr(),
            "only the last few are remembered"
        );
        assert_eq!(first, again, "and a rendering is the same every time");
    }

    #[test]
    fn a_miss_attaches_nothing() {
        let envelope = Envelope {
            rows: vec![],
            execution_ms: 0.5,
        };
        let response = respond(envelope, |e| &mut e.execution_ms, None).expect("renders");
        assert!(response.extensions().get::<KeptHit>().is_none());
    }

    #[test]
    fn another_tenant_caller_path_or_query_is_another_hit() {
        let replays = HitReplays::new(1 << 20);
        let tenant = TenantId::DEFAULT;
        replays.keep(caller(tenant), "/a", "limit=5", hit(1));
        let other = TenantId::new(2);
        assert!(replays.get(caller(other), "/a", "limit=5").is_none());
        let credentialed = Caller {
            tenant,
            anonymous: false,
        };
        assert!(replays.get(credentialed, "/a", "limit=5").is_none());
        assert!(replays.get(caller(tenant), "/b", "limit=5").is_none());
        assert!(replays.get(caller(tenant), "/a", "limit=6").is_none());
        assert!(replays.get(caller(tenant), "/a", "").is_none());
        assert!(replays.get(caller(tenant), "/a", "limit=5").is_some());
    }

    #[test]
    fn the_budget_drops_the_oldest_hits_first() {
        let one = (1 + RENDERINGS) * hit(0).size + "r".len() + 1 + ENTRY_OVERHEAD;
        let replays = HitReplays::new(8 * one);
        let tenant = TenantId::DEFAULT;
        let queries = ["1", "2", "3", "4", "5", "6", "7", "8", "9"];
        for query in &queries[..8] {
            replays.keep(caller(tenant), "r", query, hit(0));
        }
        // Keeping "1" again makes it the newest; "2" is then the oldest.
        replays.keep(caller(tenant), "r", "1", hit(0));
        replays.keep(caller(tenant), "r", "9", hit(0));
        let dropped: Vec<_> = queries
            .into_iter()
            .filter(|q| replays.get(caller(tenant), "r", q).is_none())
            .collect();
        assert_eq!(dropped, ["2"]);
    }

    #[test]
    fn a_hit_over_an_eighth_of_the_budget_is_not_kept() {
        let one = (1 + RENDERINGS) * hit(0).size + "r".len() + ENTRY_OVERHEAD;
        let replays = HitReplays::new(8 * one - 1);
        replays.keep(caller(TenantId::DEFAULT), "r", "", hit(0));
        assert!(replays.get(caller(TenantId::DEFAULT), "r", "").is_none());
    }

    #[test]
    fn forgetting_drops_only_the_hit_it_names() {
        let replays = HitReplays::new(1 << 20);
        let tenant = TenantId::DEFAULT;
        replays.keep(caller(tenant), "r", "q", hit(1));
        let old = replays.get(caller(tenant), "r", "q").expect("kept");
        replays.keep(caller(tenant), "r", "q", hit(1));
        replays.forget(&old);
        let new = replays
            .get(caller(tenant), "r", "q")
            .expect("the newer hit stays");
        replays.forget(&new);
        assert!(replays.get(caller(tenant), "r", "q").is_none());
    }

    #[test]
    fn a_disabled_store_keeps_nothing() {
        for replays in [
            HitReplays::disabled(),
            HitReplays::new(0),
            HitReplays::new(10),
        ] {
            replays.keep(caller(TenantId::DEFAULT), "r", "", hit(1));
            assert!(replays.get(caller(TenantId::DEFAULT), "r", "").is_none());
        }
    }
}

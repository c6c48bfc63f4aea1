//! The shared port contracts, run against the in-memory adapters: one test per promise, each
//! against a fresh set of adapters.

use std::sync::Arc;

use application::contract::{
    Fresh, api_keys, audit, cache, catalog, definitions, events, freshness, ingestion, locks,
    queue, rollups, runs, snapshots, sources, tenants, versions,
};
use domain::TenantId;
use memory_adapter::{InMemoryAdapters, ManualClock};
use time::macros::datetime;

const TENANT: TenantId = TenantId::DEFAULT;

const OTHER: TenantId = TenantId::new(2);

const NOW: time::OffsetDateTime = datetime!(2026-11-21 12:00 UTC);

/// How many runs the queue holds.
const QUEUE_CAPACITY: usize = 4;

/// The fixture `build` makes of a fresh set of adapters, whose clock reads `NOW`.
async fn fresh<F>(build: impl FnOnce(InMemoryAdapters) -> F) -> anyhow::Result<Option<Fresh<F>>> {
    let adapters = InMemoryAdapters::new(Arc::new(ManualClock::new(NOW)), QUEUE_CAPACITY);
    Ok(Some(Fresh::new(build(adapters))))
}

application::contract_tests! {
    adapter = "memory";
    report_catalog => fresh(|a| catalog::Fixture { catalog: a.catalog });
    event_store => fresh(|a| events::Fixture {
        events: a.events,
        tenant: TENANT,
        other: OTHER,
    });
    snapshot_store => fresh(|a| snapshots::Fixture {
        events: a.events,
        snapshots: a.rollups,
        runs: a.runs,
        tenant: TENANT,
        other: OTHER,
    });
    rollup_store => fresh(|a| rollups::Fixture {
        events: a.events,
        rollups: a.rollups,
        definitions: a.definitions,
        tenant: TENANT,
        other: OTHER,
    });
    dirty_buckets => fresh(|a| freshness::Fixture {
        events: a.events,
        rollups: a.rollups,
        definitions: a.definitions,
        tenant: TENANT,
        other: OTHER,
    });
    rollup_definitions => fresh(|a| definitions::Fixture {
        definitions: a.definitions,
        tenant: TENANT,
        other: OTHER,
    });
    run_store => fresh(|a| runs::Fixture {
        runs: a.runs,
        tenant: TENANT,
        other: OTHER,
    });
    run_queue => fresh(|a| queue::Fixture {
        queue: a.queue,
        runs: a.runs,
        tenant: TENANT,
        capacity: QUEUE_CAPACITY,
        started_at: NOW,
    });
    audit_log => fresh(|a| audit::Fixture {
        log: a.audit,
        tenant: TENANT,
        other: OTHER,
    });
    response_cache => fresh(|a| cache::Fixture {
        cache: a.cache,
        tenant: TENANT,
    });
    cache_versions => fresh(|a| versions::Fixture {
        versions: a.versions,
        tenant: TENANT,
        other: OTHER,
    });
    scope_lock => fresh(|a| locks::Fixture {
        locks: a.locks,
        tenant: TENANT,
    });
    event_ingestion => fresh(|a| ingestion::Fixture {
        events: a.events,
        tenant: TENANT,
        other: OTHER,
    });
    tenant_store => fresh(|a| tenants::Fixture {
        tenants: a.tenants,
        sources: a.sources,
    });
    source_store => fresh(|a| sources::Fixture {
        sources: a.sources,
        tenant: TENANT,
        other: OTHER,
    });
    api_key_store => fresh(|a| api_keys::Fixture {
        keys: a.keys,
        tenant: TENANT,
        other: OTHER,
    });
}

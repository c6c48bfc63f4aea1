//! The shared port contracts, run against the in-memory adapters.

use std::sync::Arc;

use application::contract;
use domain::TenantId;
use memory_adapter::{InMemoryAdapters, ManualClock};
use time::macros::datetime;

const OTHER: TenantId = TenantId::new(2);

const NOW: time::OffsetDateTime = datetime!(2026-11-21 12:00 UTC);

fn adapters(queue_capacity: usize) -> InMemoryAdapters {
    InMemoryAdapters::new(Arc::new(ManualClock::new(NOW)), queue_capacity)
}

#[tokio::test]
async fn catalog_honours_the_contract() -> anyhow::Result<()> {
    contract::report_catalog(adapters(8).catalog.as_ref()).await
}

#[tokio::test]
async fn event_store_honours_the_contract() -> anyhow::Result<()> {
    contract::event_store(adapters(8).events.as_ref(), TenantId::DEFAULT, OTHER).await
}

#[tokio::test]
async fn snapshot_store_honours_the_contract() -> anyhow::Result<()> {
    let a = adapters(8);
    contract::snapshot_store(
        a.events.as_ref(),
        a.snapshots.as_ref(),
        a.runs.as_ref(),
        TenantId::DEFAULT,
        OTHER,
    )
    .await
}

#[tokio::test]
async fn run_store_honours_the_contract() -> anyhow::Result<()> {
    contract::run_store(adapters(8).runs.as_ref(), TenantId::DEFAULT, OTHER).await
}

#[tokio::test]
async fn run_queue_honours_the_contract() -> anyhow::Result<()> {
    let a = adapters(4);
    contract::run_queue(a.queue.as_ref(), a.runs.as_ref(), TenantId::DEFAULT, 4, NOW).await
}

#[tokio::test]
async fn audit_log_honours_the_contract() -> anyhow::Result<()> {
    contract::audit_log(adapters(8).audit.as_ref(), TenantId::DEFAULT, OTHER).await
}

#[tokio::test]
async fn response_cache_honours_the_contract() -> anyhow::Result<()> {
    contract::response_cache(adapters(8).cache.as_ref(), TenantId::DEFAULT).await
}

#[tokio::test]
async fn cache_versions_honour_the_contract() -> anyhow::Result<()> {
    contract::cache_versions(adapters(8).versions.as_ref(), TenantId::DEFAULT, OTHER).await
}

#[tokio::test]
async fn scope_lock_honours_the_contract() -> anyhow::Result<()> {
    contract::scope_lock(adapters(8).locks.as_ref(), TenantId::DEFAULT).await
}

#[tokio::test]
async fn event_ingestion_honours_the_contract() -> anyhow::Result<()> {
    contract::event_ingestion(adapters(8).events.as_ref(), TenantId::DEFAULT, OTHER).await
}

#[tokio::test]
async fn tenant_store_honours_the_contract() -> anyhow::Result<()> {
    contract::tenant_store(adapters(8).tenants.as_ref()).await
}

#[tokio::test]
async fn source_store_honours_the_contract() -> anyhow::Result<()> {
    contract::source_store(adapters(8).sources.as_ref(), TenantId::DEFAULT, OTHER).await
}

#[tokio::test]
async fn api_key_store_honours_the_contract() -> anyhow::Result<()> {
    contract::api_key_store(adapters(8).keys.as_ref(), TenantId::DEFAULT, OTHER).await
}

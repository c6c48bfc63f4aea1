//! Any bytes as the body of `POST /events` and `POST /events/bulk`: parsed as JSON, then
//! through the ingestion use case on the in-memory adapters. Nothing may panic; whatever is
//! accepted must be stored and read back as a duplicate.

#![no_main]

use std::sync::Arc;

use application::{Services, Settings, ports::Clock};
use domain::{IngestStatus, TenantId};
use libfuzzer_sys::fuzz_target;
use memory_adapter::{InMemoryAdapters, ManualClock};
use serde_json::Value;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(_) => return,
    };
    runtime.block_on(async {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
        let adapters = InMemoryAdapters::new(clock.clone(), 8);
        let ingest = Services::assemble(adapters.ports(clock), &Settings::default()).ingest;

        if let Ok(outcome) = ingest.ingest_one(TenantId::DEFAULT, &body, None).await {
            assert_eq!(
                outcome.status,
                IngestStatus::Created,
                "a first sending is created"
            );
            if body.get("event_id").is_some() {
                let again = ingest.ingest_one(TenantId::DEFAULT, &body, None).await;
                assert!(
                    matches!(again, Ok(ref o) if o.status == IngestStatus::Duplicate),
                    "the same event again is a duplicate: {again:?}"
                );
            }
        }
        let _ = ingest.ingest_bulk(TenantId::DEFAULT, body).await;
    });
});

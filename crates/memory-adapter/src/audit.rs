//! The audit trail in memory.

use std::sync::{Arc, Mutex};

use application::ports::{AuditLog, Clock, StoreError};
use async_trait::async_trait;
use domain::{AuditEntry, AuditFilter, NewAuditEntry, Page, PageRequest, TenantId};

use crate::{FailSwitch, lock};

/// Audit entries in insertion order, ids counting from 1.
pub struct InMemoryAuditLog {
    entries: Mutex<Vec<AuditEntry>>,
    clock: Arc<dyn Clock>,
    failure: FailSwitch,
}

impl std::fmt::Debug for InMemoryAuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryAuditLog")
            .field("entries", &lock(&self.entries).len())
            .finish_non_exhaustive()
    }
}

impl InMemoryAuditLog {
    /// An empty log stamping entries with `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Mutex::default(),
            clock,
            failure: FailSwitch::default(),
        }
    }

    /// Makes every call fail while `failing` is on.
    pub fn set_failing(&self, failing: bool) {
        self.failure.set(failing);
    }
}

#[async_trait]
impl AuditLog for InMemoryAuditLog {
    async fn record(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        self.failure
            .check("audit log")
            .map_err(StoreError::Unavailable)?;
        let mut entries = lock(&self.entries);
        let recorded = AuditEntry {
            id: entries.len() as i64 + 1,
            tenant: entry.tenant,
            actor: entry.actor,
            action: entry.action,
            resource_type: entry.resource_type,
            resource_id: entry.resource_id,
            metadata: entry.metadata,
            created_at: self.clock.now(),
        };
        entries.push(recorded.clone());
        Ok(recorded)
    }

    async fn list(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.failure
            .check("audit log")
            .map_err(StoreError::Unavailable)?;
        let mut matches: Vec<AuditEntry> = lock(&self.entries)
            .iter()
            .filter(|e| e.tenant == tenant && filter.matches(e))
            .cloned()
            .collect();
        matches.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        let total = matches.len() as u64;
        Ok(Page::new(page.slice(matches), total, page))
    }
}

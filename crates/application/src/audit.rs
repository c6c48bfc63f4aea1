//! Listing the audit trail.

use std::sync::Arc;

use domain::{AuditEntry, AuditFilter, Page, PageRequest, TenantId};

use crate::ports::{AuditLog, StoreError};

/// The failure of an audit listing.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<StoreError> for AuditError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(e) => AuditError::Unavailable(e),
            StoreError::Unexpected(e) => AuditError::Unexpected(e),
        }
    }
}

/// Reads the audit trail.
#[derive(Clone)]
pub struct AuditService {
    log: Arc<dyn AuditLog>,
}

impl std::fmt::Debug for AuditService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService").finish_non_exhaustive()
    }
}

impl AuditService {
    /// A service over `log`.
    pub fn new(log: Arc<dyn AuditLog>) -> Self {
        Self { log }
    }

    /// The entries of `tenant` passing `filter`, newest first.
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] or [`AuditError::Unexpected`] when the log cannot be read.
    #[tracing::instrument(skip_all, err)]
    pub async fn list(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, AuditError> {
        Ok(self.log.list(tenant, filter, page).await?)
    }
}

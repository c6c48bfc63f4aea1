//! Tenants own every row of data.

use serde::{Deserialize, Serialize};

/// The identifier of a tenant. Tenant `1` is `default`, created by the first migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TenantId(i64);

impl TenantId {
    /// The `default` tenant, which every request acts on until tenancy is configured.
    pub const DEFAULT: TenantId = TenantId(1);

    /// Wraps a stored tenant id.
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    /// The numeric id, as stored.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

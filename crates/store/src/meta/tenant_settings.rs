//! Per-tenant settings: its name and how long its time series are kept.

use async_trait::async_trait;
use tributary_model::TenantId;

use crate::StoreError;

/// A tenant's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantSettings {
    /// Its id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Days its time series are kept: `None` means the server's default, 0 forever.
    pub retention_days: Option<u32>,
}

/// Per-tenant settings (retention, limits).
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// The settings of one tenant, if it exists.
    async fn tenant_settings(&self, id: TenantId) -> Result<Option<TenantSettings>, StoreError>;

    /// The settings of every tenant (for the retention task).
    async fn all_tenant_settings(&self) -> Result<Vec<TenantSettings>, StoreError>;

    /// Changes a tenant's name and/or retention (`Some(None)`: back to the
    /// server's default); `None` when there is no such tenant.
    async fn update_tenant_settings(
        &self,
        id: TenantId,
        name: Option<&str>,
        retention_days: Option<Option<u32>>,
    ) -> Result<Option<TenantSettings>, StoreError>;
}

//! Device groups and their members.

use async_trait::async_trait;
use tributary_model::{DeviceId, TenantId};

use super::devices::Updated;
use super::page::{Keyed, ListParams, Page};
use crate::StoreError;

/// A named set of devices of one tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Its id.
    pub id: String,
    /// Name, unique within the tenant.
    pub name: String,
    /// Optional description.
    pub description: Option<String>,
    /// Incremented by every change (the ETag).
    pub version: i64,
    /// Creation time (ms).
    pub created_at: i64,
}

impl Keyed for Group {
    fn key_id(&self) -> String {
        self.id.clone()
    }
    fn key_name(&self) -> &str {
        &self.name
    }
    fn key_created_at(&self) -> i64 {
        self.created_at
    }
}

/// Device groups of a tenant.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates a group.
    async fn create_group(
        &self,
        tenant: TenantId,
        name: &str,
        description: Option<&str>,
    ) -> Result<Group, StoreError>;

    /// A page of the tenant's groups, optionally those whose name contains `name`.
    async fn list_groups(
        &self,
        tenant: TenantId,
        name: Option<&str>,
        params: &ListParams,
    ) -> Result<Page<Group>, StoreError>;

    /// One group of the tenant.
    async fn get_group(&self, tenant: TenantId, id: &str) -> Result<Option<Group>, StoreError>;

    /// Renames or re-describes a group if it is at `if_version` (when given).
    async fn update_group(
        &self,
        tenant: TenantId,
        id: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        if_version: Option<i64>,
    ) -> Result<Updated<Group>, StoreError>;

    /// Deletes a group (not its devices).
    async fn delete_group(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError>;

    /// Adds a device to a group; both must be in `tenant`. False when either is missing.
    async fn add_to_group(
        &self,
        tenant: TenantId,
        group: &str,
        device: DeviceId,
    ) -> Result<bool, StoreError>;

    /// Removes a device from a group; false when it was not a member.
    async fn remove_from_group(
        &self,
        tenant: TenantId,
        group: &str,
        device: DeviceId,
    ) -> Result<bool, StoreError>;
}

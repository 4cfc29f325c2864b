//! Device profiles: named telemetry key schemas enforced at ingest.

use async_trait::async_trait;
use tributary_model::profile::ProfileSchema;
use tributary_model::TenantId;

use super::devices::Updated;
use super::page::{Keyed, ListParams, Page};
use crate::StoreError;

/// A device profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Its id.
    pub id: String,
    /// Name, unique within the tenant.
    pub name: String,
    /// Optional description.
    pub description: Option<String>,
    /// The key schema.
    pub schema: ProfileSchema,
    /// Incremented by every change (the ETag).
    pub version: i64,
    /// Creation time (ms).
    pub created_at: i64,
}

impl Keyed for Profile {
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

/// Device profiles (key schemas) of a tenant.
#[async_trait]
pub trait ProfileStore: Send + Sync {
    /// Creates a profile.
    async fn create_profile(
        &self,
        tenant: TenantId,
        name: &str,
        description: Option<&str>,
        schema: &ProfileSchema,
    ) -> Result<Profile, StoreError>;

    /// A page of the tenant's profiles.
    async fn list_profiles(
        &self,
        tenant: TenantId,
        name: Option<&str>,
        params: &ListParams,
    ) -> Result<Page<Profile>, StoreError>;

    /// One profile of the tenant.
    async fn get_profile(&self, tenant: TenantId, id: &str) -> Result<Option<Profile>, StoreError>;

    /// Changes a profile if it is at `if_version` (when given).
    async fn update_profile(
        &self,
        tenant: TenantId,
        id: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        schema: Option<&ProfileSchema>,
        if_version: Option<i64>,
    ) -> Result<Updated<Profile>, StoreError>;

    /// Deletes a profile; its devices keep no profile.
    async fn delete_profile(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError>;
}

//! API keys: per tenant, scoped, stored hashed, listable by prefix, revocable.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tributary_model::TenantId;

use super::page::{Keyed, ListParams, Page};
use crate::StoreError;

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    /// Read everything a viewer can.
    Read,
    /// Read and write what an editor can.
    Write,
    /// Everything an admin can.
    Admin,
}

impl KeyScope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Read => "read",
            KeyScope::Write => "write",
            KeyScope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for KeyScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown scope {other:?} (use read, write or admin)"
            )),
        }
    }
}

/// An API key as stored (never the key itself).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKey {
    /// Its id.
    pub id: String,
    /// The tenant it acts in.
    pub tenant: TenantId,
    /// A name to recognise it by.
    pub name: String,
    /// The key's first characters, shown in lists.
    pub prefix: String,
    /// What it may do.
    pub scope: KeyScope,
    /// Who created it.
    pub created_by: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Expiry (ms), if any.
    pub expires_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

impl Keyed for ApiKey {
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

/// API keys of a tenant, stored hashed.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key whose secret hashes to `key_hash`.
    #[allow(clippy::too_many_arguments)]
    async fn create_api_key(
        &self,
        tenant: TenantId,
        name: &str,
        prefix: &str,
        key_hash: &str,
        scope: KeyScope,
        created_by: &str,
        expires_at: Option<i64>,
    ) -> Result<ApiKey, StoreError>;

    /// A page of the tenant's keys.
    async fn list_api_keys(
        &self,
        tenant: TenantId,
        name: Option<&str>,
        params: &ListParams,
    ) -> Result<Page<ApiKey>, StoreError>;

    /// Revokes a key of the tenant; false when there was no live key.
    async fn revoke_api_key(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError>;

    /// The live (unrevoked, unexpired) key whose secret hashes to `key_hash`.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;
}

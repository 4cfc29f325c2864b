//! The audit log: who did what to which resource, when, from where.

use async_trait::async_trait;
use tributary_model::TenantId;

use crate::StoreError;

/// One audit entry.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// Increasing id (the cursor).
    pub id: i64,
    /// When (ms).
    pub at: i64,
    /// Who: `user:<id>`, `api_key:<id>` or `system`.
    pub actor: String,
    /// What, e.g. `device.create`.
    pub action: String,
    /// Kind of resource, e.g. `device`.
    pub resource_type: String,
    /// Which one.
    pub resource_id: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// Extra facts (JSON).
    pub detail: Option<serde_json::Value>,
}

/// Filters of the audit query; entries come newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only this resource type.
    pub resource_type: Option<String>,
    /// Only this resource.
    pub resource_id: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Not before (ms).
    pub from: Option<i64>,
    /// Not after (ms).
    pub to: Option<i64>,
    /// Entries older than this id (the cursor).
    pub before_id: Option<i64>,
    /// Most entries.
    pub limit: u32,
}

/// A new entry.
#[derive(Clone, Debug, Default)]
pub struct NewAudit<'a> {
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// Kind of resource.
    pub resource_type: &'a str,
    /// Which one.
    pub resource_id: Option<&'a str>,
    /// From where.
    pub ip: Option<&'a str>,
    /// Extra facts.
    pub detail: Option<serde_json::Value>,
}

/// The audit log: who changed what, when.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry to the tenant's audit log.
    async fn audit(&self, tenant: TenantId, e: NewAudit<'_>) -> Result<(), StoreError>;

    /// The tenant's audit entries matching `f`, newest first.
    async fn audit_entries(
        &self,
        tenant: TenantId,
        f: &AuditFilter,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

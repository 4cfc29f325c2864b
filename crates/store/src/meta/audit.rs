//! The audit log: who did what to which resource, when, from where.

use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_model::TenantId;

use super::MetaStore;
use crate::{now_ms, StoreError};

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

impl MetaStore {
    /// Appends an entry to the tenant's audit log.
    pub async fn audit(&self, tenant: TenantId, e: NewAudit<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, at, actor, action, resource_type, resource_id, ip, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant.to_string())
        .bind(now_ms())
        .bind(e.actor)
        .bind(e.action)
        .bind(e.resource_type)
        .bind(e.resource_id)
        .bind(e.ip)
        .bind(e.detail.map(|d| d.to_string()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The tenant's audit entries matching `f`, newest first.
    pub async fn audit_entries(
        &self,
        tenant: TenantId,
        f: &AuditFilter,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, at, actor, action, resource_type, resource_id, ip, detail FROM audit_log WHERE tenant_id = ",
        );
        qb.push_bind(tenant.to_string());
        for (col, v) in [
            ("action", &f.action),
            ("resource_type", &f.resource_type),
            ("resource_id", &f.resource_id),
            ("actor", &f.actor),
        ] {
            if let Some(v) = v {
                qb.push(format!(" AND {col} = ")).push_bind(v.clone());
            }
        }
        if let Some(from) = f.from {
            qb.push(" AND at >= ").push_bind(from);
        }
        if let Some(to) = f.to {
            qb.push(" AND at <= ").push_bind(to);
        }
        if let Some(id) = f.before_id {
            qb.push(" AND id < ").push_bind(id);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(f.limit as i64);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let detail: Option<String> = r.try_get("detail")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    resource_type: r.try_get("resource_type")?,
                    resource_id: r.try_get("resource_id")?,
                    ip: r.try_get("ip")?,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                })
            })
            .collect()
    }
}

//! SQLite: the audit log: who changed what, when.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_model::TenantId;

use super::SqliteMeta;
use crate::meta::audit::*;
use crate::{now_ms, StoreError};

#[async_trait]
impl AuditStore for SqliteMeta {
    async fn audit(&self, tenant: TenantId, e: NewAudit<'_>) -> Result<(), StoreError> {
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

    async fn audit_entries(
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

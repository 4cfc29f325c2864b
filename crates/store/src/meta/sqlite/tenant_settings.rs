//! SQLite: per-tenant settings (retention, limits).

use async_trait::async_trait;
use sqlx::Row;
use tributary_model::TenantId;

use super::SqliteMeta;
use crate::meta::tenant_settings::*;
use crate::StoreError;

fn settings(r: &sqlx::sqlite::SqliteRow) -> Result<TenantSettings, StoreError> {
    let id: String = r.try_get("id")?;
    let days: Option<i64> = r.try_get("retention_days")?;
    Ok(TenantSettings {
        id: id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("tenant id {id:?}")))?,
        name: r.try_get("name")?,
        retention_days: days.map(|d| d.clamp(0, i64::from(u32::MAX)) as u32),
    })
}

#[async_trait]
impl SettingsStore for SqliteMeta {
    async fn tenant_settings(&self, id: TenantId) -> Result<Option<TenantSettings>, StoreError> {
        sqlx::query("SELECT id, name, retention_days FROM tenants WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(settings)
            .transpose()
    }

    async fn all_tenant_settings(&self) -> Result<Vec<TenantSettings>, StoreError> {
        sqlx::query("SELECT id, name, retention_days FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(settings)
            .collect()
    }

    async fn update_tenant_settings(
        &self,
        id: TenantId,
        name: Option<&str>,
        retention_days: Option<Option<u32>>,
    ) -> Result<Option<TenantSettings>, StoreError> {
        let Some(current) = self.tenant_settings(id).await? else {
            return Ok(None);
        };
        sqlx::query("UPDATE tenants SET name = ?, retention_days = ? WHERE id = ?")
            .bind(name.unwrap_or(&current.name))
            .bind(
                retention_days
                    .unwrap_or(current.retention_days)
                    .map(i64::from),
            )
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        self.tenant_settings(id).await
    }
}

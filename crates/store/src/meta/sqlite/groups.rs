//! SQLite: device groups of a tenant.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use tributary_model::{DeviceId, TenantId};
use uuid::Uuid;

use super::SqliteMeta;
use crate::meta::devices::Updated;
use crate::meta::groups::*;
use crate::meta::page::{ListParams, Page};
use crate::meta::DeviceStore;
use crate::{now_ms, StoreError};

fn group_from(r: &SqliteRow) -> Result<Group, StoreError> {
    Ok(Group {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl GroupStore for SqliteMeta {
    async fn create_group(
        &self,
        tenant: TenantId,
        name: &str,
        description: Option<&str>,
    ) -> Result<Group, StoreError> {
        let g = Group {
            id: Uuid::now_v7().to_string(),
            name: name.to_string(),
            description: description.map(str::to_string),
            version: 1,
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO device_groups (id, tenant_id, name, description, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&g.id)
            .bind(tenant.to_string())
            .bind(&g.name)
            .bind(&g.description)
            .bind(g.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::conflict_or(e, "group with this name"))?;
        Ok(g)
    }

    async fn list_groups(
        &self,
        tenant: TenantId,
        name: Option<&str>,
        params: &ListParams,
    ) -> Result<Page<Group>, StoreError> {
        self.list_by_name(
            "id, name, description, version, created_at",
            "device_groups",
            tenant,
            name,
            params,
            group_from,
        )
        .await
    }

    async fn get_group(&self, tenant: TenantId, id: &str) -> Result<Option<Group>, StoreError> {
        let row = sqlx::query("SELECT id, name, description, version, created_at FROM device_groups WHERE tenant_id = ? AND id = ?")
            .bind(tenant.to_string())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(group_from).transpose()
    }

    async fn update_group(
        &self,
        tenant: TenantId,
        id: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        if_version: Option<i64>,
    ) -> Result<Updated<Group>, StoreError> {
        let Some(cur) = self.get_group(tenant, id).await? else {
            return Ok(Updated::NotFound);
        };
        if if_version.is_some_and(|v| v != cur.version) {
            return Ok(Updated::Stale(cur));
        }
        let res = sqlx::query("UPDATE device_groups SET name = ?, description = ?, version = version + 1 WHERE tenant_id = ? AND id = ? AND version = ?")
            .bind(name.unwrap_or(&cur.name))
            .bind(description.map(|d| d.map(str::to_string)).unwrap_or(cur.description.clone()))
            .bind(tenant.to_string())
            .bind(id)
            .bind(cur.version)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::conflict_or(e, "group with this name"))?;
        Ok(Updated::after(
            res.rows_affected(),
            self.get_group(tenant, id).await?,
        ))
    }

    async fn delete_group(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError> {
        self.delete_scoped("device_groups", tenant, id).await
    }

    async fn add_to_group(
        &self,
        tenant: TenantId,
        group: &str,
        device: DeviceId,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT OR IGNORE INTO device_group_members (group_id, device_id) \
             SELECT g.id, d.id FROM device_groups g, devices d \
             WHERE g.tenant_id = ?1 AND g.id = ?2 AND d.tenant_id = ?1 AND d.id = ?3",
        )
        .bind(tenant.to_string())
        .bind(group)
        .bind(device.to_string())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() > 0 {
            return Ok(true);
        }
        // Already a member counts as success; a missing group or device does not.
        Ok(self.get_group(tenant, group).await?.is_some()
            && self.get_device(tenant, device).await?.is_some())
    }

    async fn remove_from_group(
        &self,
        tenant: TenantId,
        group: &str,
        device: DeviceId,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "DELETE FROM device_group_members WHERE group_id = ?2 AND device_id = ?3 \
             AND group_id IN (SELECT id FROM device_groups WHERE tenant_id = ?1)",
        )
        .bind(tenant.to_string())
        .bind(group)
        .bind(device.to_string())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }
}

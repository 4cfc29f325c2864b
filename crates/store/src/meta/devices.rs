//! Devices and their access-token credentials (stored as hashes).

use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use tributary_model::{DeviceId, TenantId};

use super::users::Tenant;
use super::MetaStore;
use crate::{now_ms, StoreError};

/// A device as stored (never with its token, only a hint of it).
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// Name, unique within the tenant.
    pub name: String,
    /// Optional free-text label.
    pub label: Option<String>,
    /// The first characters of the access token, to tell tokens apart.
    pub token_hint: String,
    /// Creation time (ms).
    pub created_at: i64,
}

/// What is needed to create a device.
#[derive(Clone, Debug)]
pub struct NewDevice {
    /// Name, unique within the tenant.
    pub name: String,
    /// Optional free-text label.
    pub label: Option<String>,
    /// Hash of the access token.
    pub token_hash: String,
    /// The first characters of the access token.
    pub token_hint: String,
}

const COLUMNS: &str = "id, tenant_id, name, label, token_hint, created_at";

fn device_from(r: &SqliteRow) -> Result<Device, StoreError> {
    let id: String = r.try_get("id")?;
    let tenant: String = r.try_get("tenant_id")?;
    Ok(Device {
        id: id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("device id {id:?}")))?,
        tenant: tenant
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("tenant id {tenant:?}")))?,
        name: r.try_get("name")?,
        label: r.try_get("label")?,
        token_hint: r.try_get("token_hint")?,
        created_at: r.try_get("created_at")?,
    })
}

impl MetaStore {
    /// Creates a device in `tenant`; a name already used there is a conflict.
    pub async fn create_device(
        &self,
        tenant: TenantId,
        new: NewDevice,
    ) -> Result<Device, StoreError> {
        let device = Device {
            id: DeviceId::new(),
            tenant,
            name: new.name,
            label: new.label,
            token_hint: new.token_hint,
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO devices (id, tenant_id, name, label, token_hash, token_hint, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(device.id.to_string())
        .bind(tenant.to_string())
        .bind(&device.name)
        .bind(&device.label)
        .bind(&new.token_hash)
        .bind(&device.token_hint)
        .bind(device.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::conflict_or(e, "device with this name"))?;
        Ok(device)
    }

    /// Devices of `tenant` ordered by id (creation order), after the `after` cursor.
    pub async fn list_devices(
        &self,
        tenant: TenantId,
        after: Option<DeviceId>,
        limit: u32,
    ) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM devices WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .bind(tenant.to_string())
        .bind(after.map(|d| d.to_string()).unwrap_or_default())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_from).collect()
    }

    /// One device of `tenant`; `None` when it does not exist or belongs to another tenant.
    pub async fn get_device(
        &self,
        tenant: TenantId,
        id: DeviceId,
    ) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM devices WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from).transpose()
    }

    /// Deletes a device of `tenant`; false when there was none.
    pub async fn delete_device(&self, tenant: TenantId, id: DeviceId) -> Result<bool, StoreError> {
        let res = sqlx::query("DELETE FROM devices WHERE tenant_id = ? AND id = ?")
            .bind(tenant.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    /// The device whose access token hashes to `token_hash` (this discovers the tenant).
    pub async fn device_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM devices WHERE token_hash = ?"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from).transpose()
    }

    /// Replaces a device's access token; the old one stops matching at once.
    pub async fn set_device_token(
        &self,
        tenant: TenantId,
        id: DeviceId,
        token_hash: &str,
        token_hint: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE devices SET token_hash = ?, token_hint = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(token_hash)
        .bind(token_hint)
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// A tenant by id.
    pub async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT name FROM tenants WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Tenant {
                id,
                name: r.try_get("name")?,
            })
        })
        .transpose()
    }
}

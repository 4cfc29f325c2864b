//! SQLite: devices of a tenant and their credentials.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_model::{DeviceId, TenantId};

use super::page;
use super::SqliteMeta;
use crate::meta::devices::*;
use crate::meta::page::{ListParams, Page};
use crate::meta::ProfileStore;
use crate::{now_ms, StoreError};

const COLUMNS: &str =
    "id, tenant_id, name, labels, tags, profile_id, token_hint, mqtt_login, mqtt_client_id, version, created_at";

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {v:?}"))
}

fn device_from(r: &SqliteRow) -> Result<Device, StoreError> {
    let id: String = r.try_get("id")?;
    let tenant: String = r.try_get("tenant_id")?;
    let labels: String = r.try_get("labels")?;
    let tags: String = r.try_get("tags")?;
    let mqtt_username: Option<String> = r.try_get("mqtt_login")?;
    Ok(Device {
        id: id.parse().map_err(|_| corrupt("device id", &id))?,
        tenant: tenant.parse().map_err(|_| corrupt("tenant id", &tenant))?,
        name: r.try_get("name")?,
        labels: serde_json::from_str(&labels).map_err(|_| corrupt("labels", &labels))?,
        tags: serde_json::from_str(&tags).map_err(|_| corrupt("tags", &tags))?,
        profile: r.try_get("profile_id")?,
        token_hint: r.try_get("token_hint")?,
        mqtt: mqtt_username.map(|username| MqttCredentials {
            username,
            client_id: r.try_get("mqtt_client_id").ok().flatten(),
        }),
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
    })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `SELECT columns FROM devices` of `tenant` matching `filter`.
fn filtered(
    columns: &str,
    tenant: TenantId,
    filter: &DeviceFilter,
) -> QueryBuilder<'static, Sqlite> {
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("SELECT {columns} FROM devices WHERE tenant_id = "));
    qb.push_bind(tenant.to_string());
    if let Some(name) = &filter.name_contains {
        qb.push(" AND instr(lower(name), lower(")
            .push_bind(name.clone())
            .push(")) > 0");
    }
    for (k, v) in &filter.labels {
        qb.push(" AND json_extract(labels, ")
            .push_bind(format!("$.\"{k}\""))
            .push(") = ")
            .push_bind(v.clone());
    }
    if let Some(tag) = &filter.tag {
        qb.push(" AND EXISTS (SELECT 1 FROM json_each(devices.tags) WHERE value = ")
            .push_bind(tag.clone())
            .push(")");
    }
    if let Some(group) = &filter.group {
        qb.push(" AND EXISTS (SELECT 1 FROM device_group_members m ")
            .push("WHERE m.device_id = devices.id AND m.group_id = ")
            .push_bind(group.clone())
            .push(")");
    }
    if let Some(profile) = &filter.profile {
        qb.push(" AND profile_id = ").push_bind(profile.clone());
    }
    qb
}

impl SqliteMeta {
    async fn check_profile(
        &self,
        tenant: TenantId,
        profile: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(p) = profile {
            if self.get_profile(tenant, p).await?.is_none() {
                return Err(StoreError::Invalid(format!(
                    "no device profile {p:?} in this tenant"
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl DeviceStore for SqliteMeta {
    async fn create_device(&self, tenant: TenantId, new: NewDevice) -> Result<Device, StoreError> {
        self.check_profile(tenant, new.profile.as_deref()).await?;
        let device = Device {
            id: DeviceId::new(),
            tenant,
            name: new.name,
            labels: new.labels,
            tags: new.tags,
            profile: new.profile,
            token_hint: new.token_hint,
            mqtt: None,
            version: 1,
            created_at: now_ms(),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO devices (id, tenant_id, name, labels, tags, profile_id, token_hash, token_hint, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(device.id.to_string())
        .bind(tenant.to_string())
        .bind(&device.name)
        .bind(json(&device.labels))
        .bind(json(&device.tags))
        .bind(&device.profile)
        .bind(&new.token_hash)
        .bind(&device.token_hint)
        .bind(device.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_or(e, "device with this name"))?;
        self.check_device_limit(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn ensure_devices(
        &self,
        tenant: TenantId,
        new: &[NewDevice],
    ) -> Result<Vec<Device>, StoreError> {
        let names: Vec<String> = new.iter().map(|d| d.name.clone()).collect();
        let mut tx = self.pool.begin().await?;
        for d in new {
            sqlx::query(
                "INSERT INTO devices (id, tenant_id, name, labels, tags, profile_id, token_hash, token_hint, created_at) \
                 VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?) ON CONFLICT (tenant_id, name) DO NOTHING",
            )
            .bind(DeviceId::new().to_string())
            .bind(tenant.to_string())
            .bind(&d.name)
            .bind(json(&d.labels))
            .bind(json(&d.tags))
            .bind(&d.token_hash)
            .bind(&d.token_hint)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        self.check_device_limit(&mut tx, tenant).await?;
        tx.commit().await?;
        self.devices_by_names(tenant, &names).await
    }

    async fn devices_by_names(
        &self,
        tenant: TenantId,
        names: &[String],
    ) -> Result<Vec<Device>, StoreError> {
        let mut out = Vec::with_capacity(names.len());
        // SQLite binds at most 32,766 parameters per statement.
        for chunk in names.chunks(1000) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("SELECT {COLUMNS} FROM devices WHERE tenant_id = "));
            qb.push_bind(tenant.to_string()).push(" AND name IN (");
            let mut list = qb.separated(", ");
            for n in chunk {
                list.push_bind(n.clone());
            }
            qb.push(")");
            for r in qb.build().fetch_all(&self.pool).await? {
                out.push(device_from(&r)?);
            }
        }
        Ok(out)
    }

    async fn list_devices(
        &self,
        tenant: TenantId,
        filter: &DeviceFilter,
        params: &ListParams,
    ) -> Result<Page<Device>, StoreError> {
        let mut qb = filtered(COLUMNS, tenant, filter);
        page::push_keyset(&mut qb, params, "name")?;
        page::push_order(&mut qb, params, "name");
        let rows = qb.build().fetch_all(&self.pool).await?;
        let devices = rows
            .iter()
            .map(device_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page::finish(devices, params))
    }

    async fn device_ids(
        &self,
        tenant: TenantId,
        filter: &DeviceFilter,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let ids: Vec<String> = filtered("id", tenant, filter)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt(format!("device id {id:?}")))
            })
            .collect()
    }

    async fn device_by_name(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM devices WHERE tenant_id = ? AND name = ?"
        ))
        .bind(tenant.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| device_from(&r)).transpose()
    }

    async fn get_device(
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

    async fn update_device(
        &self,
        tenant: TenantId,
        id: DeviceId,
        patch: DevicePatch,
        if_version: Option<i64>,
    ) -> Result<Updated<Device>, StoreError> {
        let Some(current) = self.get_device(tenant, id).await? else {
            return Ok(Updated::NotFound);
        };
        if if_version.is_some_and(|v| v != current.version) {
            return Ok(Updated::Stale(current));
        }
        if let Some(p) = &patch.profile {
            self.check_profile(tenant, p.as_deref()).await?;
        }
        let res = sqlx::query(
            "UPDATE devices SET name = ?, labels = ?, tags = ?, profile_id = ?, version = version + 1 \
             WHERE tenant_id = ? AND id = ? AND version = ?",
        )
        .bind(patch.name.as_ref().unwrap_or(&current.name))
        .bind(json(patch.labels.as_ref().unwrap_or(&current.labels)))
        .bind(json(patch.tags.as_ref().unwrap_or(&current.tags)))
        .bind(patch.profile.clone().unwrap_or(current.profile.clone()))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(current.version)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::conflict_or(e, "device with this name"))?;
        Ok(Updated::after(
            res.rows_affected(),
            self.get_device(tenant, id).await?,
        ))
    }

    async fn delete_device(&self, tenant: TenantId, id: DeviceId) -> Result<bool, StoreError> {
        self.delete_scoped("devices", tenant, &id.to_string()).await
    }

    async fn device_by_token_hash(&self, token_hash: &str) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM devices WHERE token_hash = ?"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from).transpose()
    }

    async fn devices_by_mqtt_username(
        &self,
        username: &str,
    ) -> Result<Vec<(Device, String)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, mqtt_password_hash FROM devices WHERE mqtt_login = ? ORDER BY created_at, id"
        ))
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    device_from(r)?,
                    r.try_get::<Option<String>, _>("mqtt_password_hash")?
                        .unwrap_or_default(),
                ))
            })
            .collect()
    }

    async fn set_device_token(
        &self,
        tenant: TenantId,
        id: DeviceId,
        token_hash: &str,
        token_hint: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE devices SET token_hash = ?, token_hint = ?, version = version + 1 WHERE tenant_id = ? AND id = ?",
        )
        .bind(token_hash)
        .bind(token_hint)
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn set_device_mqtt(
        &self,
        tenant: TenantId,
        id: DeviceId,
        creds: Option<(&MqttCredentials, &str)>,
    ) -> Result<bool, StoreError> {
        let (user, client, hash) = match creds {
            Some((c, hash)) => (
                Some(c.username.clone()),
                c.client_id.clone(),
                Some(hash.to_string()),
            ),
            None => (None, None, None),
        };
        let res = sqlx::query(
            "UPDATE devices SET mqtt_login = ?, mqtt_client_id = ?, mqtt_password_hash = ?, version = version + 1 \
             WHERE tenant_id = ? AND id = ?",
        )
        .bind(user)
        .bind(client)
        .bind(hash)
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::conflict_or(e, "MQTT username"))?;
        Ok(res.rows_affected() > 0)
    }
}

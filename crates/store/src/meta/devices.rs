//! Devices: names, labels, tags, profile, and credentials (stored as hashes).

use std::collections::BTreeMap;

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_model::{DeviceId, TenantId};

use super::page::{self, Keyed, ListParams, Page};
use super::MetaStore;
use crate::{now_ms, StoreError};

/// MQTT username/password credentials of a device (the password only as a hash).
#[derive(Clone, Debug, PartialEq)]
pub struct MqttCredentials {
    /// MQTT username, unique across the installation.
    pub username: String,
    /// When set, only this MQTT client id may use the credentials.
    pub client_id: Option<String>,
}

/// A device as stored (never with its token, only a hint of it).
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// Name, unique within the tenant.
    pub name: String,
    /// Key/value labels for selection (`site=berlin`).
    pub labels: BTreeMap<String, String>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// The device profile whose key schema applies at ingest.
    pub profile: Option<String>,
    /// The first characters of the access token, to tell tokens apart.
    pub token_hint: String,
    /// MQTT username/password credentials, if configured.
    pub mqtt: Option<MqttCredentials>,
    /// Incremented by every change (the ETag).
    pub version: i64,
    /// Creation time (ms).
    pub created_at: i64,
}

impl Keyed for Device {
    fn key_id(&self) -> String {
        self.id.to_string()
    }
    fn key_name(&self) -> &str {
        &self.name
    }
    fn key_created_at(&self) -> i64 {
        self.created_at
    }
}

/// What is needed to create a device.
#[derive(Clone, Debug, Default)]
pub struct NewDevice {
    /// Name, unique within the tenant.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Profile id (must be in the same tenant).
    pub profile: Option<String>,
    /// Hash of the access token.
    pub token_hash: String,
    /// The first characters of the access token.
    pub token_hint: String,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct DevicePatch {
    /// New name.
    pub name: Option<String>,
    /// New labels (replaces all).
    pub labels: Option<BTreeMap<String, String>>,
    /// New tags (replaces all).
    pub tags: Option<Vec<String>>,
    /// New profile (`Some(None)` removes it).
    pub profile: Option<Option<String>>,
}

/// Filters of the device list.
#[derive(Clone, Debug, Default)]
pub struct DeviceFilter {
    /// Name contains this (case-insensitive).
    pub name_contains: Option<String>,
    /// Every one of these labels matches.
    pub labels: Vec<(String, String)>,
    /// Has this tag.
    pub tag: Option<String>,
    /// Member of this group.
    pub group: Option<String>,
    /// Uses this profile.
    pub profile: Option<String>,
}

/// Result of a conditional update.
#[derive(Debug)]
pub enum Updated<T> {
    /// Done; the new state.
    Ok(T),
    /// No such item in the tenant.
    NotFound,
    /// `If-Match` named an older version; the current one is attached.
    Stale(T),
}

impl<T> Updated<T> {
    /// The outcome of an UPDATE conditional on the version: applied when it
    /// changed a row, else stale (or gone), with the state read after it.
    pub(crate) fn after(rows_affected: u64, now: Option<T>) -> Self {
        match (rows_affected, now) {
            (1, Some(t)) => Updated::Ok(t),
            (_, Some(t)) => Updated::Stale(t),
            (_, None) => Updated::NotFound,
        }
    }
}

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

impl MetaStore {
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

    /// Creates a device in `tenant`; a name already used there is a conflict.
    pub async fn create_device(
        &self,
        tenant: TenantId,
        new: NewDevice,
    ) -> Result<Device, StoreError> {
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

    /// Creates, in one transaction, those of `new` whose name the tenant
    /// does not use yet (others are left as they are), then returns every
    /// named device. Profiles are not checked: these come without one. None
    /// is created when all would pass the tenant's device limit.
    pub async fn ensure_devices(
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

    /// The tenant's devices with these names (those that exist).
    pub async fn devices_by_names(
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

    /// A page of the tenant's devices matching `filter`.
    pub async fn list_devices(
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

    /// The ids of every device of `tenant` that matches `filter`.
    pub async fn device_ids(
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

    /// The device named `name` in `tenant`.
    pub async fn device_by_name(
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

    /// Applies `patch` if the device is at `if_version` (when given).
    pub async fn update_device(
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

    /// Deletes a device of `tenant`; false when there was none.
    pub async fn delete_device(&self, tenant: TenantId, id: DeviceId) -> Result<bool, StoreError> {
        self.delete_scoped("devices", tenant, &id.to_string()).await
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

    /// The devices (one per tenant at most) with this MQTT username, each
    /// with its password hash, oldest first.
    pub async fn devices_by_mqtt_username(
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

    /// Replaces a device's access token; the old one stops matching at once.
    pub async fn set_device_token(
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

    /// Sets (or with `None`, removes) a device's MQTT username/password credentials.
    pub async fn set_device_mqtt(
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

//! Devices: names, labels, tags, profile, and credentials (stored as hashes).

use std::collections::BTreeMap;

use async_trait::async_trait;
use tributary_model::{DeviceId, TenantId};

use super::page::{Keyed, ListParams, Page};
use crate::StoreError;

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

/// Devices of a tenant and their credentials.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Creates a device in `tenant`; a name already used there is a conflict.
    async fn create_device(&self, tenant: TenantId, new: NewDevice) -> Result<Device, StoreError>;

    /// Creates, in one transaction, those of `new` whose name the tenant
    /// does not use yet (others are left as they are), then returns every
    /// named device. Profiles are not checked: these come without one. None
    /// is created when all would pass the tenant's device limit.
    async fn ensure_devices(
        &self,
        tenant: TenantId,
        new: &[NewDevice],
    ) -> Result<Vec<Device>, StoreError>;

    /// The tenant's devices with these names (those that exist).
    async fn devices_by_names(
        &self,
        tenant: TenantId,
        names: &[String],
    ) -> Result<Vec<Device>, StoreError>;

    /// A page of the tenant's devices matching `filter`.
    async fn list_devices(
        &self,
        tenant: TenantId,
        filter: &DeviceFilter,
        params: &ListParams,
    ) -> Result<Page<Device>, StoreError>;

    /// The ids of every device of `tenant` that matches `filter`.
    async fn device_ids(
        &self,
        tenant: TenantId,
        filter: &DeviceFilter,
    ) -> Result<Vec<DeviceId>, StoreError>;

    /// The device named `name` in `tenant`.
    async fn device_by_name(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Option<Device>, StoreError>;

    /// One device of `tenant`; `None` when it does not exist or belongs to another tenant.
    async fn get_device(
        &self,
        tenant: TenantId,
        id: DeviceId,
    ) -> Result<Option<Device>, StoreError>;

    /// Applies `patch` if the device is at `if_version` (when given).
    async fn update_device(
        &self,
        tenant: TenantId,
        id: DeviceId,
        patch: DevicePatch,
        if_version: Option<i64>,
    ) -> Result<Updated<Device>, StoreError>;

    /// Deletes a device of `tenant`; false when there was none.
    async fn delete_device(&self, tenant: TenantId, id: DeviceId) -> Result<bool, StoreError>;

    /// The device whose access token hashes to `token_hash` (this discovers the tenant).
    async fn device_by_token_hash(&self, token_hash: &str) -> Result<Option<Device>, StoreError>;

    /// The devices (one per tenant at most) with this MQTT username, each
    /// with its password hash, oldest first.
    async fn devices_by_mqtt_username(
        &self,
        username: &str,
    ) -> Result<Vec<(Device, String)>, StoreError>;

    /// Replaces a device's access token; the old one stops matching at once.
    async fn set_device_token(
        &self,
        tenant: TenantId,
        id: DeviceId,
        token_hash: &str,
        token_hint: &str,
    ) -> Result<bool, StoreError>;

    /// Sets (or with `None`, removes) a device's MQTT username/password credentials.
    async fn set_device_mqtt(
        &self,
        tenant: TenantId,
        id: DeviceId,
        creds: Option<(&MqttCredentials, &str)>,
    ) -> Result<bool, StoreError>;
}

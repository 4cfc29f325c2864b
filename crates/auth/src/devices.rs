//! Device credentials: access tokens (SHA-256 look-up, cached) and MQTT
//! username/password (argon2id, cached after a successful check).

use std::sync::atomic::Ordering;

use tributary_model::DeviceId;
use tributary_store::Device;

use crate::service::Authenticator;
use crate::{password, token, AuthError};

/// Length of device access tokens (≈ 149 bits of entropy).
const DEVICE_TOKEN_LEN: usize = 25;

impl Authenticator {
    fn cached(&self, key: &str) -> Option<Device> {
        self.devices.read().ok().and_then(|c| c.get(key).cloned())
    }

    fn cache(&self, key: String, device: &Device, generation: u64) {
        if let Ok(mut cache) = self.devices.write() {
            if self.device_generation.load(Ordering::Acquire) != generation {
                return;
            }
            if cache.len() >= self.config.device_cache_entries {
                cache.clear();
            }
            cache.insert(key, device.clone());
        }
    }

    /// The device an access token belongs to, or `None` when unknown.
    pub async fn device(&self, access_token: &str) -> Result<Option<Device>, AuthError> {
        let hash = token::hash(access_token);
        if let Some(d) = self.cached(&hash) {
            return Ok(Some(d));
        }
        let generation = self.device_generation.load(Ordering::Acquire);
        let Some(device) = self.meta.device_by_token_hash(&hash).await? else {
            return Ok(None);
        };
        self.cache(hash, &device, generation);
        Ok(Some(device))
    }

    /// The device whose MQTT credentials these are (and whose client-id
    /// binding holds). Usernames are unique per tenant only, so every device
    /// of that name is tried; the password decides, and two that both match
    /// (which [`Authenticator::mqtt_credentials_clash`] prevents) match none.
    pub async fn device_by_mqtt(
        &self,
        username: &str,
        pw: &str,
        client_id: &str,
    ) -> Result<Option<Device>, AuthError> {
        let key = format!("mqtt:{username}:{}", token::hash(pw));
        let bound = |d: &Device| {
            d.mqtt.as_ref().is_some_and(|m| {
                m.username == username && m.client_id.as_deref().is_none_or(|c| c == client_id)
            })
        };
        if let Some(d) = self.cached(&key) {
            return Ok(bound(&d).then_some(d));
        }
        let generation = self.device_generation.load(Ordering::Acquire);
        let mut matched = None;
        for (device, phc) in self.meta.devices_by_mqtt_username(username).await? {
            if Self::verify_password(pw, phc).await? {
                if matched.is_some() {
                    tracing::warn!(
                        "MQTT credentials of two tenants' devices are identical; refused"
                    );
                    return Ok(None);
                }
                matched = Some(device);
            }
        }
        let Some(device) = matched else {
            return Ok(None);
        };
        self.cache(key, &device, generation);
        Ok(bound(&device).then_some(device))
    }

    /// Whether a device of another tenant than `tenant` already has this
    /// username and password, so that setting them would make a CONNECT
    /// ambiguous. Tells nothing to a caller who does not know that password.
    pub async fn mqtt_credentials_clash(
        &self,
        tenant: tributary_model::TenantId,
        username: &str,
        pw: &str,
    ) -> Result<bool, AuthError> {
        for (device, phc) in self.meta.devices_by_mqtt_username(username).await? {
            if device.tenant != tenant && Self::verify_password(pw, phc).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Drops a device's cached credentials (after delete, rotation or a credential change).
    pub fn forget_device(&self, id: DeviceId) {
        if let Ok(mut cache) = self.devices.write() {
            self.device_generation.fetch_add(1, Ordering::AcqRel);
            cache.retain(|_, d| d.id != id);
        }
    }

    /// Drops every cached credential of a tenant's devices (after the tenant is deleted).
    pub fn forget_tenant(&self, tenant: tributary_model::TenantId) {
        if let Ok(mut cache) = self.devices.write() {
            self.device_generation.fetch_add(1, Ordering::AcqRel);
            cache.retain(|_, d| d.tenant != tenant);
        }
    }

    /// A new device access token and its stored forms: (token, hash, hint).
    pub fn new_device_token() -> (String, String, String) {
        let t = token::generate(DEVICE_TOKEN_LEN);
        let (h, hint) = (token::hash(&t), token::hint(&t));
        (t, h, hint)
    }

    /// Hashes an MQTT password (argon2id) on a blocking thread; 8 to 1024 characters.
    pub async fn hash_device_password(pw: &str) -> Result<String, AuthError> {
        if !(8..=1024).contains(&pw.chars().count()) {
            return Err(AuthError::WeakPassword(
                "MQTT password must be 8 to 1024 characters".into(),
            ));
        }
        let pw = pw.to_string();
        tokio::task::spawn_blocking(move || password::hash(&pw))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
    }
}

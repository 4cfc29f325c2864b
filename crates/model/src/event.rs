//! Events: everything that happens and that a part of Tributary may act on.
//! Each is appended to the event log (and made durable) before it is
//! acknowledged; consumers read them in log order.
//!
//! Every kind has a stable number ([`Event::kind`]): the log stores it in
//! front of the event's body, so kinds added later are new numbers, and a
//! reader that does not know a number skips that event ([`Event::Unknown`])
//! rather than failing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, TenantId};
use crate::point::Batch;

/// Who writes an attribute: the device (client), the platform (server), or
/// the platform for the device to read (shared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeScope {
    /// Reported by the device.
    Client,
    /// Kept by the platform, invisible to the device.
    Server,
    /// Set by the platform, readable by the device.
    Shared,
}

impl AttributeScope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeScope::Client => "client",
            AttributeScope::Server => "server",
            AttributeScope::Shared => "shared",
        }
    }
}

impl std::str::FromStr for AttributeScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client" => Ok(Self::Client),
            "server" => Ok(Self::Server),
            "shared" => Ok(Self::Shared),
            other => Err(format!(
                "unknown attribute scope {other:?} (use client, server or shared)"
            )),
        }
    }
}

/// Attributes of one device set or deleted in one scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeChange {
    /// The device's tenant.
    pub tenant: TenantId,
    /// The device.
    pub device: DeviceId,
    /// The scope written.
    pub scope: AttributeScope,
    /// Keys set, each with its value as JSON text (the log's encoding keeps
    /// no JSON tree).
    pub set: BTreeMap<String, String>,
    /// Keys deleted.
    pub deleted: Vec<String>,
    /// When it happened (ms since the epoch).
    pub at_ms: i64,
}

impl AttributeChange {
    /// The keys set, with their values parsed back into JSON.
    pub fn values(&self) -> BTreeMap<String, serde_json::Value> {
        self.set
            .iter()
            .map(|(k, v)| {
                let value = serde_json::from_str(v).unwrap_or(serde_json::Value::Null);
                (k.clone(), value)
            })
            .collect()
    }

    /// The change as subscribers see it: keys set with their values, keys
    /// deleted as `null`.
    pub fn update(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = self.values();
        for k in &self.deleted {
            out.insert(k.clone(), serde_json::Value::Null);
        }
        out
    }
}

/// What happened to a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChange {
    /// It was created (named so).
    Created {
        /// Its name.
        name: String,
    },
    /// It was deleted, with its data.
    Deleted,
    /// Its access token or MQTT credentials were replaced: the old ones no
    /// longer work.
    CredentialsRotated,
    /// Its name, labels, tags or device profile changed.
    Updated {
        /// Its name now.
        name: String,
        /// The profile now in force, if any.
        profile: Option<String>,
    },
}

/// A device's lifecycle event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    /// The device's tenant.
    pub tenant: TenantId,
    /// The device.
    pub device: DeviceId,
    /// What happened.
    pub change: DeviceChange,
}

/// What happened to a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantChange {
    /// It was created.
    Created,
    /// It was deleted, with everything it owned.
    Deleted,
    /// Its settings (retention, limits) changed.
    SettingsChanged,
    /// A device profile of the tenant was changed or deleted: devices using
    /// it are checked against its new schema from now on.
    ProfileChanged {
        /// The profile's id.
        profile: String,
    },
}

/// A tenant's lifecycle event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantEvent {
    /// The tenant.
    pub tenant: TenantId,
    /// What happened.
    pub change: TenantChange,
}

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A device's telemetry batch.
    Telemetry(Batch),
    /// Attributes set or deleted.
    Attributes(AttributeChange),
    /// A device was created, deleted, re-keyed or re-profiled.
    Device(DeviceEvent),
    /// A tenant was created, deleted or changed.
    Tenant(TenantEvent),
    /// An event of a kind this version does not know (written by a newer
    /// one): consumers pass over it.
    Unknown {
        /// Its kind number.
        kind: u8,
    },
}

impl Event {
    /// Kind number of telemetry.
    pub const TELEMETRY: u8 = 0;
    /// Kind number of attribute changes.
    pub const ATTRIBUTES: u8 = 1;
    /// Kind number of device lifecycle events.
    pub const DEVICE: u8 = 2;
    /// Kind number of tenant lifecycle events.
    pub const TENANT: u8 = 3;

    /// The stable number of the event's kind, stored in the log.
    pub fn kind(&self) -> u8 {
        match self {
            Event::Telemetry(_) => Self::TELEMETRY,
            Event::Attributes(_) => Self::ATTRIBUTES,
            Event::Device(_) => Self::DEVICE,
            Event::Tenant(_) => Self::TENANT,
            Event::Unknown { kind } => *kind,
        }
    }

    /// The tenant the event belongs to (`None` for an unknown kind).
    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            Event::Telemetry(b) => Some(b.tenant),
            Event::Attributes(a) => Some(a.tenant),
            Event::Device(d) => Some(d.tenant),
            Event::Tenant(t) => Some(t.tenant),
            Event::Unknown { .. } => None,
        }
    }

    /// The telemetry batch, when the event is one.
    pub fn telemetry(&self) -> Option<&Batch> {
        match self {
            Event::Telemetry(b) => Some(b),
            _ => None,
        }
    }

    /// Approximate memory taken by the event, for bounded queues.
    pub fn size_hint(&self) -> usize {
        match self {
            Event::Telemetry(b) => b.size_hint(),
            Event::Attributes(a) => {
                std::mem::size_of::<AttributeChange>()
                    + a.set
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 48)
                        .sum::<usize>()
                    + a.deleted.iter().map(|k| k.len() + 24).sum::<usize>()
            }
            _ => std::mem::size_of::<Self>() + 64,
        }
    }
}

impl From<Batch> for Event {
    fn from(batch: Batch) -> Self {
        Event::Telemetry(batch)
    }
}

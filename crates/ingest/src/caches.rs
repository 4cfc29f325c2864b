//! [`Caches`]: every cache in front of the metadata store that ingest
//! reads (device credentials, profile schemas, line-protocol series keys),
//! and [`Caches::apply`], the one place they are invalidated, from a device
//! or tenant lifecycle event. The gateway applies each change it records at
//! once (see [`crate::Gateway::device_changed`]), so a deleted device or a
//! rotated token stops working everywhere before the admin gets an answer;
//! [`CachesConsumer`] applies the same events from the log, which is how a
//! change made on another node reaches this one.

use std::sync::Arc;

use async_trait::async_trait;
use tributary_auth::Authenticator;
use tributary_log::{Committed, Consumer, ConsumerError};
use tributary_model::{DeviceChange, DeviceEvent, Event, TenantChange, TenantEvent};
use tributary_store::meta::ProfileCache;

use crate::revocation::{Revocations, Revoked};
use crate::series_devices::SeriesDevices;

/// The name of the consumer that invalidates the caches.
pub const CACHES_CONSUMER: &str = "caches";

/// The seam of cache invalidation: whatever holds state derived from the
/// metadata store makes it agree with each lifecycle event it is given, at
/// once (`tributary-contracts::caches` is the contract).
pub trait Invalidate: Send + Sync + 'static {
    /// Makes the held state agree with `event` having happened.
    fn apply(&self, event: &Event);
}

/// The caches ingest reads, and the notices that tell open connections.
pub struct Caches {
    /// Device credentials (inside the authenticator).
    pub auth: Arc<Authenticator>,
    /// Profile schemas.
    pub profiles: Arc<ProfileCache>,
    /// Devices of line-protocol series keys.
    pub series_devices: Arc<SeriesDevices>,
    /// Notices to open device connections.
    pub revocations: Revocations,
}

impl Caches {
    /// Empty caches in front of `auth`'s credentials.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self {
            auth,
            profiles: Arc::default(),
            series_devices: Arc::default(),
            revocations: Revocations::default(),
        }
    }
}

impl Invalidate for Caches {
    fn apply(&self, event: &Event) {
        match event {
            Event::Device(DeviceEvent {
                tenant,
                device,
                change,
            }) => {
                // A created device has nothing cached; anything else may
                // change what a cached entry says about it.
                if matches!(change, DeviceChange::Created { .. }) {
                    return;
                }
                self.auth.forget_device(*device);
                self.series_devices.forget(*device);
                // Its open connections check their credential again, and
                // take the device as it is now (its profile, say).
                self.revocations.send(Revoked {
                    tenant: *tenant,
                    device: Some(*device),
                });
            }
            Event::Tenant(TenantEvent { tenant, change }) => match change {
                TenantChange::Created | TenantChange::SettingsChanged => {}
                TenantChange::Deleted => {
                    self.auth.forget_tenant(*tenant);
                    self.series_devices.forget_tenant(*tenant);
                    self.revocations.send(Revoked {
                        tenant: *tenant,
                        device: None,
                    });
                }
                TenantChange::ProfileChanged { profile } => {
                    self.profiles.forget(profile);
                    // A deleted profile leaves its devices with none: the
                    // cached devices, and open connections, still name it.
                    self.auth.forget_tenant(*tenant);
                    self.revocations.send(Revoked {
                        tenant: *tenant,
                        device: None,
                    });
                }
            },
            Event::Telemetry(_) | Event::Attributes(_) | Event::Unknown { .. } => {}
        }
    }
}

/// The log consumer that keeps caches ([`Caches`]) current. Its checkpoint
/// is kept by the log; after a restart the caches are empty, so applying an
/// event again changes nothing.
pub struct CachesConsumer(pub Arc<dyn Invalidate>);

#[async_trait]
impl Consumer for CachesConsumer {
    fn name(&self) -> &str {
        CACHES_CONSUMER
    }

    async fn apply(&self, entries: &[Arc<Committed>]) -> Result<(), ConsumerError> {
        for e in entries {
            self.0.apply(&e.event);
        }
        Ok(())
    }
}

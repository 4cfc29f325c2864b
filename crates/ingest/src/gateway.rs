//! [`Gateway`]: what every device-facing transport calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tributary_auth::Authenticator;
use tributary_log::{Durable, EventLog};
use tributary_model::time::now_ns;
use tributary_model::{
    parse_telemetry, AttributeChange, AttributeScope, Batch, DeviceChange, DeviceEvent, DeviceId,
    Event, ParseError, ParseLimits, Point, TenantChange, TenantEvent, TenantId,
};
use tributary_store::meta::prelude::*;
use tributary_store::Device;

use crate::attributes;
use crate::caches::{Caches, Invalidate};
use crate::error::count_rejected;
use crate::revocation::Listener;
use crate::series_devices::SeriesDevices;
use crate::IngestError;

/// The consumer that stores attribute changes: an attribute write waits for
/// it, so a read right after the acknowledgement sees the write.
pub const ATTRIBUTES_CONSUMER: &str = "attributes";

/// Limits of the gateway; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Limits on device payloads.
    pub parse_limits: ParseLimits,
    /// Longest an attribute write waits for the attribute store to hold it
    /// (it is durable in the log either way).
    pub attributes_catch_up: Duration,
    /// Longest a metadata change waits for the log to take its event.
    pub lifecycle_append_timeout: Duration,
}

/// The ingest gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    auth: Arc<Authenticator>,
    meta: Arc<dyn MetaStore>,
    caches: Arc<Caches>,
    log: Arc<dyn EventLog>,
    config: Arc<GatewayConfig>,
}

/// Counts `e` under its reason and passes it on.
fn refused(e: IngestError) -> IngestError {
    count_rejected(e.reason());
    e
}

impl Gateway {
    /// A gateway appending to `log`, reading through `caches` (which the
    /// log's [`crate::CachesConsumer`] keeps current).
    pub fn new(
        meta: Arc<dyn MetaStore>,
        caches: Arc<Caches>,
        log: Arc<dyn EventLog>,
        config: GatewayConfig,
    ) -> Self {
        Self {
            auth: caches.auth.clone(),
            meta,
            caches,
            log,
            config: Arc::new(config),
        }
    }

    /// The limits on device payloads.
    pub fn parse_limits(&self) -> &ParseLimits {
        &self.config.parse_limits
    }

    /// The devices of line-protocol series keys.
    pub fn series_devices(&self) -> &SeriesDevices {
        &self.caches.series_devices
    }

    /// Notices of revoked credentials, for a connection to check its own
    /// at once.
    pub fn revocations(&self) -> Listener {
        self.caches.revocations.subscribe()
    }

    /// Records that a device was created, changed, re-keyed or deleted (in
    /// the metadata store, already): this node's caches forget what it
    /// changed and open connections are told at once, then the event is
    /// appended to the log for every other consumer (the `caches` consumer
    /// applies it again on every node: applying it twice changes nothing).
    /// The change is committed either way, so a log that refuses or is slow
    /// (a consumer at its disk budget) is reported, not answered.
    pub async fn device_changed(&self, tenant: TenantId, device: DeviceId, change: DeviceChange) {
        self.lifecycle(vec![Event::Device(DeviceEvent {
            tenant,
            device,
            change,
        })])
        .await
    }

    /// Records devices created in one go (by a line-protocol write), as
    /// [`Gateway::device_changed`] does one: their events share group commits.
    pub async fn devices_created(&self, tenant: TenantId, devices: &[(DeviceId, String)]) {
        let events = devices
            .iter()
            .map(|(device, name)| {
                Event::Device(DeviceEvent {
                    tenant,
                    device: *device,
                    change: DeviceChange::Created { name: name.clone() },
                })
            })
            .collect();
        self.lifecycle(events).await
    }

    /// Records that a tenant was created, changed or deleted, as
    /// [`Gateway::device_changed`] does for a device.
    pub async fn tenant_changed(&self, tenant: TenantId, change: TenantChange) {
        self.lifecycle(vec![Event::Tenant(TenantEvent { tenant, change })])
            .await
    }

    async fn lifecycle(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        // No cache here may answer from the old state, whatever the log does.
        for e in &events {
            self.caches.apply(e);
        }
        let appended = async {
            let mut durable = Vec::with_capacity(events.len());
            for e in events {
                durable.push(self.log.submit_event(e).await?);
            }
            let mut last = 0;
            for d in durable {
                last = d.await?;
            }
            Ok::<u64, tributary_log::WalError>(last)
        };
        match tokio::time::timeout(self.config.lifecycle_append_timeout, appended).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a metadata change is committed but not in the event log")
            }
            Err(_) => tracing::warn!(
                "the event log did not take a metadata change in time (a consumer is at its disk budget); it is committed, but its event may be missing from the log"
            ),
        }
    }

    /// The device an access token belongs to.
    pub async fn device(&self, access_token: &str) -> Result<Device, IngestError> {
        match self.auth.device(access_token).await {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(refused(IngestError::UnknownDevice)),
            Err(e) => Err(refused(IngestError::Unavailable(e.to_string()))),
        }
    }

    /// A telemetry payload of `device` (any ThingsBoard form), parsed and
    /// checked against the limits and the device's profile: the batch to append.
    pub async fn telemetry(&self, device: &Device, payload: &[u8]) -> Result<Batch, IngestError> {
        let points =
            parse_telemetry(payload, now_ns(), &self.config.parse_limits).map_err(|e| {
                refused(match e {
                    ParseError::Json(_) => IngestError::Malformed {
                        detail: e.to_string(),
                    },
                    _ => IngestError::Invalid {
                        field: e.field().map(str::to_string),
                        detail: e.to_string(),
                    },
                })
            })?;
        self.check(device, &points).await.map_err(refused)?;
        Ok(Batch {
            tenant: device.tenant,
            device: device.id,
            points,
        })
    }

    /// Checks `points` against `device`'s profile.
    pub async fn check(&self, device: &Device, points: &[Point]) -> Result<(), IngestError> {
        match self
            .caches
            .profiles
            .check(self.meta.as_ref(), device, points)
            .await?
        {
            Ok(()) => Ok(()),
            Err(v) => Err(IngestError::Profile {
                field: v.key.clone(),
                detail: v.to_string(),
            }),
        }
    }

    /// Queues a checked batch for the log; what it returns resolves once
    /// the batch is durable (so a transport may have several in flight and
    /// acknowledge them in order).
    pub async fn submit(&self, batch: Batch) -> Result<Durable, IngestError> {
        self.log
            .submit_event(Event::Telemetry(batch))
            .await
            .map_err(|e| refused(IngestError::NotStored(e)))
    }

    /// Parses, checks and appends a telemetry payload; its LSN once durable.
    pub async fn ingest_telemetry(
        &self,
        device: &Device,
        payload: &[u8],
    ) -> Result<u64, IngestError> {
        let batch = self.telemetry(device, payload).await?;
        self.submit(batch)
            .await?
            .await
            .map_err(|e| refused(IngestError::NotStored(e)))
    }

    /// Client attributes a device reports (a JSON object): durable, and
    /// stored, when this returns.
    pub async fn client_attributes(
        &self,
        device: &Device,
        payload: &[u8],
    ) -> Result<u64, IngestError> {
        let values = attributes::parse(payload).map_err(refused)?;
        self.set_attributes(device.tenant, device.id, AttributeScope::Client, &values)
            .await
    }

    /// Sets attributes of `device` (checked by [`attributes::check_values`]).
    pub async fn set_attributes(
        &self,
        tenant: TenantId,
        device: DeviceId,
        scope: AttributeScope,
        values: &BTreeMap<String, serde_json::Value>,
    ) -> Result<u64, IngestError> {
        attributes::check_values(values).map_err(refused)?;
        let set = values
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        self.attribute_change(tenant, device, scope, set, Vec::new())
            .await
    }

    /// Deletes attributes of `device` by key.
    pub async fn delete_attributes(
        &self,
        tenant: TenantId,
        device: DeviceId,
        scope: AttributeScope,
        keys: Vec<String>,
    ) -> Result<u64, IngestError> {
        self.attribute_change(tenant, device, scope, BTreeMap::new(), keys)
            .await
    }

    async fn attribute_change(
        &self,
        tenant: TenantId,
        device: DeviceId,
        scope: AttributeScope,
        set: BTreeMap<String, String>,
        deleted: Vec<String>,
    ) -> Result<u64, IngestError> {
        let change = AttributeChange {
            tenant,
            device,
            scope,
            set,
            deleted,
            at_ms: now_ns().div_euclid(1_000_000),
        };
        let lsn = self
            .log
            .append_event(Event::Attributes(change))
            .await
            .map_err(|e| refused(IngestError::NotStored(e)))?;
        // Read-your-writes: the next read of the attributes sees this one.
        if !self
            .log
            .wait_consumed(ATTRIBUTES_CONSUMER, lsn, self.config.attributes_catch_up)
            .await
        {
            tracing::warn!(
                lsn,
                "attribute store is behind; the write is durable in the log"
            );
        }
        Ok(lsn)
    }
}

//! [`Gateway`]: what every device-facing transport calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tributary_auth::Authenticator;
use tributary_model::time::now_ns;
use tributary_model::{
    parse_telemetry, AttributeChange, AttributeScope, Batch, DeviceId, Event, ParseError,
    ParseLimits, Point, TenantId,
};
use tributary_pipeline::{Durable, Pipeline};
use tributary_store::meta::ProfileCache;
use tributary_store::{Device, MetaStore};

use crate::attributes;
use crate::error::count_rejected;
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
}

/// The ingest gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    auth: Arc<Authenticator>,
    meta: MetaStore,
    profiles: Arc<ProfileCache>,
    log: Arc<Pipeline>,
    config: Arc<GatewayConfig>,
}

/// Counts `e` under its reason and passes it on.
fn refused(e: IngestError) -> IngestError {
    count_rejected(e.reason());
    e
}

impl Gateway {
    /// A gateway appending to `log`.
    pub fn new(
        auth: Arc<Authenticator>,
        meta: MetaStore,
        profiles: Arc<ProfileCache>,
        log: Arc<Pipeline>,
        config: GatewayConfig,
    ) -> Self {
        Self {
            auth,
            meta,
            profiles,
            log,
            config: Arc::new(config),
        }
    }

    /// The limits on device payloads.
    pub fn parse_limits(&self) -> &ParseLimits {
        &self.config.parse_limits
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
        match self.profiles.check(&self.meta, device, points).await? {
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
            .submit(batch)
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

//! The log into the brokers: every committed telemetry batch is published
//! on `$devices/{device id}/telemetry` for the tenant's clients that
//! subscribed to it (a `$` topic, so `#` alone does not match it), and every
//! change of shared attributes is pushed to its device on
//! `v1/devices/me/attributes`, whoever made it.

use std::collections::BTreeMap;
use std::sync::Arc;

use rumqttc::v5::mqttbytes::QoS;
use tributary_log::{Committed, Listener};
use tributary_model::{AttributeScope, Event};

use crate::broker::Broker;
use crate::session::Space;

/// The log listener that feeds the brokers.
pub struct LogFeed(pub Arc<Broker>);

impl Listener for LogFeed {
    fn on_commit(&self, entries: &[Arc<Committed>]) {
        for entry in entries {
            let batch = match &entry.event {
                Event::Telemetry(batch) => batch,
                Event::Attributes(a) if a.scope == AttributeScope::Shared => {
                    self.0.push_shared_attributes(a.device, &a.update());
                    continue;
                }
                _ => continue,
            };
            let space = Space::Tenant(batch.tenant);
            let topic = format!("$devices/{}/telemetry", batch.device);
            // The JSON is built only when an application subscribes.
            self.0.publish_built(space, topic, QoS::AtLeastOnce, || {
                // ThingsBoard's form: [{"ts": ms, "values": {...}}, ...], one entry per timestamp.
                let mut by_ts: BTreeMap<i64, serde_json::Map<String, serde_json::Value>> =
                    BTreeMap::new();
                for p in &batch.points {
                    by_ts
                        .entry(p.ts.div_euclid(1_000_000))
                        .or_default()
                        .insert(p.key.to_string(), p.value.to_json());
                }
                let payload: Vec<serde_json::Value> = by_ts
                    .into_iter()
                    .map(|(ts, values)| serde_json::json!({"ts": ts, "values": values}))
                    .collect();
                serde_json::Value::Array(payload).to_string()
            });
        }
    }
}

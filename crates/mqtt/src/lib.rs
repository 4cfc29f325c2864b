//! MQTT 3.1.1 and 5.0 for Tributary: the ThingsBoard device API (telemetry
//! acknowledged only once durable, attributes, attribute requests, shared
//! attribute pushes, RPC both ways) and a complete broker inside each tenant
//! for clients that connect with an API key. See `docs/mqtt.md`.
//!
//! Packets are framed by the `rumqttc` codec (`codec`); sessions, routing,
//! authentication and durability are Tributary's.

mod broker;
mod codec;
mod connection;
mod device;
mod feed;
mod listener;
mod router;
mod rpc;
mod session;
mod shared;
mod topic;

pub use broker::{Broker, BrokerLimits};
pub use codec::decode_client_stream;
pub use feed::LogFeed;
pub use listener::{
    serve, serve_stream, slot, sweep, tls_acceptor, MqttConfig, MqttState, TlsError,
};
pub use rpc::RpcError;

use rumqttc::v5::mqttbytes::QoS;
use tributary_model::DeviceId;

/// Registers the listener's metrics so they are exported (at zero) from the start.
pub fn describe_metrics() {
    metrics::describe_gauge!("tributary_mqtt_connections", "Connected MQTT clients");
    metrics::gauge!("tributary_mqtt_connections").set(0.0);
    metrics::describe_gauge!(
        "tributary_mqtt_sessions",
        "MQTT sessions, attached or persistent"
    );
    metrics::gauge!("tributary_mqtt_sessions").set(0.0);
    metrics::describe_counter!(
        "tributary_mqtt_messages_routed_total",
        "Messages handed to MQTT sessions"
    );
    metrics::describe_counter!(
        "tributary_mqtt_messages_dropped_total",
        "Messages dropped: a session's queue was full, or a message exceeded the client's maximum packet size"
    );
}

impl Broker {
    /// Pushes changed shared attributes to the device (`v1/devices/me/attributes`);
    /// `null` values are sent as `{"deleted": [keys]}`.
    pub fn push_shared_attributes(
        &self,
        device: DeviceId,
        values: &std::collections::BTreeMap<String, serde_json::Value>,
    ) {
        let (deleted, set): (Vec<_>, Vec<_>) = values.iter().partition(|(_, v)| v.is_null());
        let space = session::Space::Device(device);
        if !set.is_empty() {
            let body: serde_json::Map<String, serde_json::Value> = set
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            self.publish(
                space,
                session::Message::server(
                    device::ATTRIBUTES.into(),
                    serde_json::Value::Object(body).to_string(),
                    QoS::AtLeastOnce,
                ),
            );
        }
        if !deleted.is_empty() {
            let keys: Vec<&String> = deleted.into_iter().map(|(k, _)| k).collect();
            self.publish(
                space,
                session::Message::server(
                    device::ATTRIBUTES.into(),
                    serde_json::json!({ "deleted": keys }).to_string(),
                    QoS::AtLeastOnce,
                ),
            );
        }
    }
}

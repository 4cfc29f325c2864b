//! MQTT 3.1.1 and 5.0 for Tributary: the ThingsBoard device API (telemetry
//! acknowledged only once durable, attributes, attribute requests, shared
//! attribute pushes, RPC both ways) and a complete broker inside each tenant
//! for clients that connect with an API key. See `docs/mqtt.md`.
//!
//! Packets are framed by the `rumqttc` codec (`codec`); sessions, routing,
//! authentication and durability are Tributary's.
//!
//! - `listener`: accepting TCP, TLS and WebSocket connections within the slots
//! - `state`: [`MqttState`], what every connection shares, and its limits
//! - `connection/`: one connection (CONNECT, the packet loop, PUBLISH,
//!   SUBSCRIBE); `device`: the ThingsBoard device topics, through the ingest
//!   gateway
//! - `codec`: MQTT 3.1.1 and 5 as one set of packets
//! - `broker`: sessions by tenant, retained messages, routing, RPC calls;
//!   `session`: one session's subscriptions, queue and in-flight window;
//!   `router`: the subscription trie; `shared`: shared subscriptions;
//!   `topic`: topic names and filters; `rpc`: calls waiting for answers
//! - `feed`: the log listener that publishes telemetry and shared attributes

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
mod state;
mod topic;

pub use broker::{Broker, BrokerLimits};
pub use codec::decode_client_stream;
pub use feed::LogFeed;
pub use listener::{serve, serve_stream, slot, sweep, tls_acceptor, TlsError};
pub use rpc::RpcError;
pub use state::{MqttConfig, MqttState};

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

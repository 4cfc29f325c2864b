//! The MQTT listener. Devices connect with their access token as the username
//! (or their MQTT username and password), publish telemetry and client
//! attributes on the ThingsBoard device topics, and get a PUBACK only once the
//! batch is durable in the write-ahead log — the same contract as HTTP.
//!
//! Packets are framed by the codec of the `rumqttc` crate (MQTT 3.1.1); the
//! sessions, authentication and durability are Tributary's (see
//! `docs/mqtt.md` for the decision and what is still to come).

mod connection;
mod listener;

pub use listener::{serve, serve_stream, MqttConfig, MqttState};

/// Registers the listener's metrics so they are exported (at zero) from the start.
pub fn describe_metrics() {
    metrics::describe_gauge!("tributary_mqtt_connections", "Connected MQTT clients");
    metrics::gauge!("tributary_mqtt_connections").set(0.0);
}

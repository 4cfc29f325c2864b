//! Where messages go: Tributary's device HTTP API or WebSocket ingest, an
//! MQTT broker, or an InfluxDB line-protocol endpoint.

mod http;
mod line;
mod mqtt;
pub mod provision;
mod ws;

use crate::generator::Message;

pub use http::HttpTarget;
pub use line::{lines, LineTarget};
pub use mqtt::{MqttOptions, MqttTarget};
pub use ws::WsTarget;

/// What happened to one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Accepted (HTTP 2xx, MQTT PUBACK, or written with QoS 0).
    Acked,
    /// Refused by the target, with its reason (e.g. `400 invalid ts`).
    Rejected(String),
    /// Not delivered (connection error, timeout).
    Failed(String),
}

/// A destination for simulated messages.
pub enum Target {
    /// Tributary's ThingsBoard-compatible device HTTP API.
    Http(HttpTarget),
    /// An MQTT broker (Tributary's device API topics, or any topic template).
    Mqtt(MqttTarget),
    /// InfluxDB line protocol over HTTP.
    Line(LineTarget),
    /// Tributary's WebSocket device ingest.
    Ws(WsTarget),
}

impl Target {
    /// Sends one device's message.
    pub async fn send(&self, msg: &Message) -> Outcome {
        match self {
            Target::Http(t) => t.send(msg).await,
            Target::Mqtt(t) => t.send(msg).await,
            Target::Line(t) => t.send(msg).await,
            Target::Ws(t) => t.send(msg).await,
        }
    }

    /// Waits for outstanding acknowledgements (MQTT QoS 1) and closes; returns how many never came.
    pub async fn finish(&self) -> u64 {
        match self {
            Target::Mqtt(t) => t.finish().await,
            Target::Ws(t) => {
                // Every frame sent was answered before its send returned.
                t.finish().await;
                0
            }
            _ => 0,
        }
    }
}

/// A message's readings as the ThingsBoard JSON payload.
pub fn telemetry_json(msg: &Message) -> serde_json::Value {
    serde_json::Value::Array(
        msg.readings
            .iter()
            .map(|r| serde_json::json!({"ts": r.ts, "values": r.values}))
            .collect(),
    )
}

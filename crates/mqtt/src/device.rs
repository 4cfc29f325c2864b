//! The ThingsBoard device API over MQTT: what a device's publishes on
//! `v1/devices/me/...` do, in MQTT's terms; what is decided about a payload
//! is decided by the ingest gateway. Telemetry is returned as a checked
//! batch for the connection to log (and acknowledge once durable).

use std::sync::Arc;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use rumqttc::v5::mqttbytes::QoS;
use tributary_ingest::IngestError;
use tributary_model::time::now_ns;
use tributary_model::Batch;
use tributary_store::meta::AttributeScope;
use tributary_store::Device;

use crate::session::{Message, Session};
use crate::state::MqttState;

/// Telemetry topic.
pub const TELEMETRY: &str = "v1/devices/me/telemetry";
/// Client attributes (publish) and shared-attribute updates (subscribe).
pub const ATTRIBUTES: &str = "v1/devices/me/attributes";
const ATTRIBUTE_REQUEST: &str = "v1/devices/me/attributes/request/";
const RPC_REQUEST: &str = "v1/devices/me/rpc/request/";
const RPC_RESPONSE: &str = "v1/devices/me/rpc/response/";
/// What every device topic starts with.
pub const PREFIX: &str = "v1/devices/me/";

/// Why a publish was refused: the MQTT 5 reason code and a text for the client.
#[derive(Debug)]
pub struct Refusal {
    /// Reason code for PUBACK/PUBREC (MQTT 5).
    pub code: PubAckReason,
    /// What was wrong.
    pub detail: String,
}

impl Refusal {
    /// A refusal, counted in `tributary_batches_rejected_total{reason}`.
    pub fn new(code: PubAckReason, reason: &'static str, detail: String) -> Self {
        tributary_ingest::error::count_rejected(reason);
        Self { code, detail }
    }
}

impl From<IngestError> for Refusal {
    /// The gateway's refusal (already counted) in MQTT's terms.
    fn from(e: IngestError) -> Self {
        let code = match e {
            IngestError::UnknownDevice => PubAckReason::NotAuthorized,
            IngestError::Malformed { .. }
            | IngestError::Invalid { .. }
            | IngestError::InvalidAttribute { .. }
            | IngestError::Profile { .. } => PubAckReason::PayloadFormatInvalid,
            IngestError::NotStored(_) | IngestError::Store(_) | IngestError::Unavailable(_) => {
                PubAckReason::ImplementationSpecificError
            }
        };
        Self {
            code,
            detail: e.to_string(),
        }
    }
}

/// What a device's publish turned into.
pub enum Handled {
    /// Done (attributes stored, request answered…).
    Done,
    /// Valid telemetry, to be made durable before it is acknowledged.
    Telemetry(Batch),
}

/// Handles a device's publish on `topic`; telemetry is parsed and validated
/// here and returned for the caller to log.
pub async fn publish(
    state: &MqttState,
    device: &Device,
    session: &Arc<Session>,
    topic: &str,
    payload: &Bytes,
) -> Result<Handled, Refusal> {
    if topic == TELEMETRY {
        return telemetry(state, device, payload)
            .await
            .map(Handled::Telemetry);
    }
    other(state, device, session, topic, payload)
        .await
        .map(|()| Handled::Done)
}

async fn other(
    state: &MqttState,
    device: &Device,
    session: &Arc<Session>,
    topic: &str,
    payload: &Bytes,
) -> Result<(), Refusal> {
    if topic == ATTRIBUTES {
        attributes(state, device, payload).await
    } else if let Some(id) = topic.strip_prefix(ATTRIBUTE_REQUEST) {
        attribute_request(state, device, session, id, payload).await
    } else if let Some(id) = topic.strip_prefix(RPC_RESPONSE) {
        if !state.broker.calls.answer(device.id, id, payload.clone()) {
            tracing::debug!(device = %device.id, id, "RPC answer for no waiting call (late or unknown)");
        }
        Ok(())
    } else if let Some(id) = topic.strip_prefix(RPC_REQUEST) {
        client_rpc(state, session, id, payload)
    } else {
        Err(Refusal::new(
            PubAckReason::TopicNameInvalid,
            "topic",
            format!("devices may not publish to {topic:?}"),
        ))
    }
}

/// Parses and validates a telemetry payload into a batch.
async fn telemetry(state: &MqttState, device: &Device, payload: &[u8]) -> Result<Batch, Refusal> {
    Ok(state.gateway.telemetry(device, payload).await?)
}

/// The refusal for telemetry the log could not take.
pub fn unavailable(detail: String) -> Refusal {
    Refusal::new(
        PubAckReason::ImplementationSpecificError,
        "unavailable",
        detail,
    )
}

/// Stores client attributes (durable in the log, then stored, when this returns).
async fn attributes(state: &MqttState, device: &Device, payload: &[u8]) -> Result<(), Refusal> {
    state.gateway.client_attributes(device, payload).await?;
    Ok(())
}

/// `{"clientKeys":"a,b","sharedKeys":"c"}` → `{"client":{…},"shared":{…}}` on
/// `v1/devices/me/attributes/response/{id}`. No keys named: all of that scope.
async fn attribute_request(
    state: &MqttState,
    device: &Device,
    session: &Arc<Session>,
    id: &str,
    payload: &[u8],
) -> Result<(), Refusal> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        client_keys: Option<String>,
        shared_keys: Option<String>,
    }
    let req: Request = if payload.is_empty() {
        Request {
            client_keys: None,
            shared_keys: None,
        }
    } else {
        serde_json::from_slice(payload).map_err(|e| {
            Refusal::new(
                PubAckReason::PayloadFormatInvalid,
                "malformed",
                format!(
                    "an attribute request is {{\"clientKeys\":\"a,b\",\"sharedKeys\":\"c\"}}: {e}"
                ),
            )
        })?
    };
    let mut out = serde_json::Map::new();
    for (name, scope, keys) in [
        ("client", AttributeScope::Client, &req.client_keys),
        ("shared", AttributeScope::Shared, &req.shared_keys),
    ] {
        let keys: Vec<String> = keys
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect();
        let found = state
            .meta
            .get_attributes(device.tenant, device.id, &[scope], &keys)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let values: serde_json::Map<String, serde_json::Value> = found
            .into_values()
            .flatten()
            .map(|(k, a)| (k, a.value))
            .collect();
        out.insert(name.into(), values.into());
    }
    state.broker.deliver_to(
        session,
        Message::server(
            format!("v1/devices/me/attributes/response/{id}"),
            serde_json::Value::Object(out).to_string(),
            QoS::AtLeastOnce,
        ),
    );
    Ok(())
}

/// Client-side RPC: the device asks, the server answers on
/// `v1/devices/me/rpc/response/{id}`. Built in: `getCurrentTime`.
fn client_rpc(
    state: &MqttState,
    session: &Arc<Session>,
    id: &str,
    payload: &[u8],
) -> Result<(), Refusal> {
    #[derive(serde::Deserialize)]
    struct Call {
        method: String,
    }
    let call: Call = serde_json::from_slice(payload).map_err(|e| {
        Refusal::new(
            PubAckReason::PayloadFormatInvalid,
            "malformed",
            format!("an RPC request is {{\"method\":…,\"params\":…}}: {e}"),
        )
    })?;
    let answer = match call.method.as_str() {
        "getCurrentTime" => serde_json::json!({ "time": now_ns() / 1_000_000 }),
        other => serde_json::json!({ "error": format!("unknown method {other:?}") }),
    };
    state.broker.deliver_to(
        session,
        Message::server(
            format!("{RPC_RESPONSE}{id}"),
            answer.to_string(),
            QoS::AtLeastOnce,
        ),
    );
    Ok(())
}

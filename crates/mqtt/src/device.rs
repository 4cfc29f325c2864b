//! The ThingsBoard device API over MQTT: what a device's publishes on
//! `v1/devices/me/...` do. Telemetry is durable before this returns, so the
//! caller can acknowledge it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use rumqttc::v5::mqttbytes::QoS;
use tributary_model::time::now_ns;
use tributary_model::{parse_telemetry, Batch, ParseError};
use tributary_store::meta::AttributeScope;
use tributary_store::Device;

use crate::listener::MqttState;
use crate::session::{Message, Session};

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
        metrics::counter!("tributary_batches_rejected_total", "reason" => reason).increment(1);
        Self { code, detail }
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
    let points = parse_telemetry(payload, now_ns(), &state.config.parse_limits).map_err(|e| {
        let reason = if matches!(e, ParseError::Json(_)) {
            "malformed"
        } else {
            "invalid"
        };
        Refusal::new(PubAckReason::PayloadFormatInvalid, reason, e.to_string())
    })?;
    match state.profiles.check(&state.meta, device, &points).await {
        Ok(Ok(())) => {}
        Ok(Err(v)) => {
            return Err(Refusal::new(
                PubAckReason::PayloadFormatInvalid,
                "profile",
                v.to_string(),
            ))
        }
        Err(e) => return Err(unavailable(e.to_string())),
    }
    Ok(Batch {
        tenant: device.tenant,
        device: device.id,
        points,
    })
}

/// The refusal for telemetry the log could not take.
pub fn unavailable(detail: String) -> Refusal {
    Refusal::new(
        PubAckReason::ImplementationSpecificError,
        "unavailable",
        detail,
    )
}

/// Stores client attributes.
async fn attributes(state: &MqttState, device: &Device, payload: &[u8]) -> Result<(), Refusal> {
    let values: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(payload).map_err(|e| {
            Refusal::new(
                PubAckReason::PayloadFormatInvalid,
                "malformed",
                format!("attributes must be a JSON object: {e}"),
            )
        })?;
    if values.is_empty() || values.values().any(serde_json::Value::is_null) {
        return Err(Refusal::new(
            PubAckReason::PayloadFormatInvalid,
            "invalid",
            "attributes must be a non-empty object without nulls".into(),
        ));
    }
    state
        .meta
        .set_attributes(device.tenant, device.id, AttributeScope::Client, &values)
        .await
        .map(|_| ())
        .map_err(|e| unavailable(e.to_string()))
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

//! MQTT over WebSocket at `/mqtt` (subprotocol `mqtt`): binary frames are
//! bridged to the same connection handling as MQTT over TCP.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::problem::ApiError;
use crate::state::AppState;

/// Upgrades to MQTT over WebSocket.
pub async fn mqtt_ws(
    State(s): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let mqtt = s
        .mqtt
        .clone()
        .ok_or_else(|| ApiError::not_found("MQTT is not enabled on this server"))?;
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("expected a WebSocket upgrade: {}", e.body_text()))
    })?;
    let Some(permit) = tributary_mqtt::slot(&mqtt) else {
        return Err(ApiError::unavailable(
            "the MQTT connection limit is reached",
        ));
    };
    let shutdown = s.shutdown.clone();
    let max = mqtt.config.max_packet_bytes + 16;
    Ok(ws
        .protocols(["mqtt"])
        .max_message_size(max)
        .on_upgrade(move |socket| async move {
            bridge(socket, mqtt, shutdown).await;
            drop(permit);
        }))
}

/// Pumps WebSocket frames to an in-memory stream that the MQTT session reads, and back.
async fn bridge(
    socket: WebSocket,
    mqtt: tributary_mqtt::MqttState,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (session_side, bridge_side) = tokio::io::duplex(64 * 1024);
    let (mut from_session, mut to_session) = tokio::io::split(bridge_side);
    let (mut ws_tx, mut ws_rx) = socket.split();
    let session = tokio::spawn(tributary_mqtt::serve_stream(session_side, mqtt, shutdown));
    let inbound = async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let bytes = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            if to_session.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to_session.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_session.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.send(Message::Close(None)).await;
    };
    tokio::join!(inbound, outbound);
    let _ = session.await;
}

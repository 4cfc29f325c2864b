//! Tributary's WebSocket device ingest: one connection per device to
//! `/api/v1/{token}/ws`, opened on the device's first message; each message
//! is a frame, answered by the server with an ack or an error.

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::{telemetry_json, Outcome};
use crate::generator::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends to a Tributary server over one WebSocket per device.
pub struct WsTarget {
    base: String,
    tokens: Vec<String>,
    conns: Vec<Mutex<Option<Ws>>>,
}

impl WsTarget {
    /// A target at `base` (`http://…` or `ws://…`) with the devices' tokens in device order.
    pub fn new(base: &str, tokens: Vec<String>) -> Self {
        let base = base.trim_end_matches('/');
        let base = match base.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}"),
            Some(("http", rest)) => format!("ws://{rest}"),
            _ => base.to_string(),
        };
        let conns = tokens.iter().map(|_| Mutex::new(None)).collect();
        Self {
            base,
            tokens,
            conns,
        }
    }

    pub(super) async fn send(&self, msg: &Message) -> Outcome {
        let (Some(token), Some(slot)) = (self.tokens.get(msg.device), self.conns.get(msg.device))
        else {
            return Outcome::Failed("no token for device".into());
        };
        let mut slot = slot.lock().await;
        if slot.is_none() {
            let url = format!("{}/api/v1/{token}/ws", self.base);
            match tokio_tungstenite::connect_async(url).await {
                Ok((ws, _)) => *slot = Some(ws),
                Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                    return Outcome::Rejected(format!("{} upgrade refused", res.status().as_u16()))
                }
                Err(_) => return Outcome::Failed("connection".into()),
            }
        }
        let Some(ws) = slot.as_mut() else {
            return Outcome::Failed("connection".into());
        };
        let outcome = exchange(ws, telemetry_json(msg).to_string()).await;
        if matches!(outcome, Outcome::Failed(_)) {
            // Reconnect on the next message.
            *slot = None;
        }
        outcome
    }

    /// Closes every connection.
    pub(super) async fn finish(&self) {
        for slot in &self.conns {
            if let Some(mut ws) = slot.lock().await.take() {
                let _ = ws.close(None).await;
            }
        }
    }
}

/// Sends one frame and reads its reply.
async fn exchange(ws: &mut Ws, frame: String) -> Outcome {
    if ws.send(Frame::Text(frame.into())).await.is_err() {
        return Outcome::Failed("connection".into());
    }
    loop {
        match ws.next().await {
            Some(Ok(Frame::Text(t))) => {
                let reply: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                return match reply["type"].as_str() {
                    Some("ack") => Outcome::Acked,
                    Some("error") => Outcome::Rejected(
                        format!(
                            "{} {}",
                            reply["status"].as_u64().unwrap_or(0),
                            reply["detail"].as_str().unwrap_or_default()
                        )
                        .trim()
                        .to_string(),
                    ),
                    _ => Outcome::Failed("unexpected reply".into()),
                };
            }
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
            Some(Ok(Frame::Close(f))) => {
                return Outcome::Failed(
                    f.map(|f| format!("closed: {}", f.reason))
                        .unwrap_or_else(|| "closed".into()),
                )
            }
            _ => return Outcome::Failed("connection".into()),
        }
    }
}

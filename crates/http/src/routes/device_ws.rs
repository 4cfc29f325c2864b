//! WebSocket device ingest, `GET /api/v1/{token}/ws`: one connection carries
//! many payloads. Each text frame is a telemetry payload in any ThingsBoard
//! form, or `{"attributes": {...}}` for client attributes; each is answered,
//! in the order sent, with `{"type":"ack","seq":n}` once durable or
//! `{"type":"error","seq":n,"status":…,"detail":…}`. `n` counts the
//! client's frames from 1, or is the `"id"` the client put in the frame.
//! Several frames may be on their way into the log at once, so one
//! connection fills group commits as several HTTP clients would.

use std::borrow::Cow;
use std::pin::Pin;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use tributary_ingest::{Gateway, IngestError};
use tributary_store::Device;

use crate::live::ws::{message_too_big, until_shutdown, ws_error, CLOSE_TOO_BIG};
use crate::problem::ApiError;
use crate::state::AppState;

/// Frames a connection may have on their way into the log before the
/// server stops reading from it (the client's back-pressure).
const MAX_IN_FLIGHT: usize = 256;
/// Close code of a credential that stopped working (RFC 6455 7.4.1: policy violation).
const CLOSE_POLICY: u16 = 1008;
/// Close code of a text frame that is not UTF-8.
const CLOSE_NOT_UTF8: u16 = 1007;
/// Close code of a server that is stopping.
const CLOSE_GOING_AWAY: u16 = 1001;

/// Send telemetry and client attributes over one WebSocket: a frame per payload,
/// answered in order with `{"type":"ack","seq":n}` or `{"type":"error","seq":n,…}` (docs/api.md).
#[utoipa::path(get, path = "/api/v1/{token}/ws", tag = "device-api",
    params(("token" = String, Path, description = "The device's access token")),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
              (status = 400, body = ApiError, description = "not a WebSocket upgrade"), (status = 401, body = ApiError)))]
pub async fn device_ws(
    State(s): State<AppState>,
    Path(token): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let device = s.gateway.device(&token).await?;
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("expected a WebSocket upgrade: {}", e.body_text()))
    })?;
    Ok(ws
        .max_message_size(s.config.max_body_bytes)
        .max_frame_size(s.config.max_body_bytes)
        .on_upgrade(move |socket| run(s, device, token, socket)))
}

/// A reply on its way: resolves when the frame it answers is durable (or refused).
type Reply = Pin<Box<dyn std::future::Future<Output = Json> + Send>>;

/// One connection: frames in, replies out in frame order, until the client
/// leaves, its credential stops working or the server stops.
async fn run(s: AppState, mut device: Device, token: String, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    let mut replies: FuturesOrdered<Reply> = FuturesOrdered::new();
    let mut frames: u64 = 0;
    let mut revocations = s.gateway.revocations();
    let mut shutdown = s.shutdown.clone();
    let mut ping = tokio::time::interval(s.config.live_ping);
    // The notices cover changes from now on; one made since the upgrade's
    // check is caught by checking again at once (the first tick).
    let mut recheck = tokio::time::interval(s.config.live_auth_recheck);
    for t in [&mut ping, &mut recheck] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    ping.tick().await;
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };

    let ending = loop {
        tokio::select! {
            biased;
            // Before frames: a client that sends without pause must not
            // hold off its own revocation.
            _ = until_shutdown(&mut shutdown) => break Some(close(CLOSE_GOING_AWAY, "server shutting down")),
            _ = revocations.concerns(device.tenant, Some(device.id)) => {
                match current(&s.gateway, &token, &device).await {
                    Some(now) => device = now,
                    None => break Some(close(CLOSE_POLICY, "device credentials revoked")),
                }
            }
            _ = recheck.tick() => {
                match current(&s.gateway, &token, &device).await {
                    Some(now) => device = now,
                    None => break Some(close(CLOSE_POLICY, "device credentials revoked")),
                }
            }
            Some(reply) = replies.next(), if !replies.is_empty() => {
                if tx.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            msg = rx.next(), if replies.len() < MAX_IN_FLIGHT => match msg {
                Some(Ok(Message::Text(text))) => {
                    frames += 1;
                    replies.push_back(frame(&s.gateway, &device, frames, text.as_str()).await);
                }
                Some(Ok(Message::Binary(_))) => {
                    frames += 1;
                    let e = ApiError::bad_request("send each payload as a JSON text frame, not binary");
                    replies.push_back(ready(error(&Json::from(frames), &e)));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) if message_too_big(&e) => break Some(close(CLOSE_TOO_BIG, "frame larger than http_max_body_bytes")),
                Some(Err(e)) if matches!(ws_error(&e), Some(tungstenite::Error::Utf8(_))) => break Some(close(CLOSE_NOT_UTF8, "text frame is not UTF-8")),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    };
    // What was taken before the end is still answered (it is durable or
    // refused either way), then the close says why.
    while let Some(reply) = replies.next().await {
        if tx
            .send(Message::Text(reply.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    if let Some(close) = ending {
        let _ = tx.send(close).await;
    }
}

/// The connection's device as it is now; `None` once its token no longer
/// names it (deleted, rotated, its tenant gone). A store that cannot answer
/// now keeps the connection as it is.
async fn current(gateway: &Gateway, token: &str, device: &Device) -> Option<Device> {
    match gateway.device(token).await {
        Ok(d) if d.id == device.id => Some(d),
        Ok(_) | Err(IngestError::UnknownDevice) => None,
        Err(_) => Some(device.clone()),
    }
}

/// Takes one text frame: its reply, pending until the frame is durable.
async fn frame(gateway: &Gateway, device: &Device, n: u64, text: &str) -> Reply {
    let (seq, payload) = split_id(text, n);
    let submitted = match attributes_of(&payload) {
        Some(attrs) => match gateway.client_attributes(device, attrs.as_bytes()).await {
            Ok(_) => return ready(json!({"type": "ack", "seq": seq})),
            Err(e) => Err(e),
        },
        None => match gateway.telemetry(device, payload.as_bytes()).await {
            Ok(batch) => gateway.submit(batch).await,
            Err(e) => Err(e),
        },
    };
    match submitted {
        Ok(durable) => Box::pin(async move {
            match durable.await {
                Ok(_) => json!({"type": "ack", "seq": seq}),
                Err(e) => error(&seq, &ApiError::from(IngestError::NotStored(e))),
            }
        }),
        Err(e) => ready(error(&seq, &ApiError::from(e))),
    }
}

/// A reply known now.
fn ready(reply: Json) -> Reply {
    Box::pin(std::future::ready(reply))
}

/// The error reply to frame `seq`.
fn error(seq: &Json, e: &ApiError) -> Json {
    let mut reply = json!({"type": "error", "seq": seq, "status": e.status, "detail": e.detail});
    if let Some(field) = &e.field {
        reply["field"] = Json::from(field.as_str());
    }
    reply
}

/// The frame's sequence (its `"id"`, or `n`) and the payload without the id.
fn split_id(text: &str, n: u64) -> (Json, Cow<'_, str>) {
    // Most frames carry no id: they are passed on as they are, parsed once.
    if !text.contains("\"id\"") {
        return (Json::from(n), Cow::Borrowed(text));
    }
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(mut map)) => match map.remove("id") {
            Some(id) if id.is_number() || id.is_string() => {
                (id, Cow::Owned(Json::Object(map).to_string()))
            }
            _ => (Json::from(n), Cow::Borrowed(text)),
        },
        _ => (Json::from(n), Cow::Borrowed(text)),
    }
}

/// The attributes object of a `{"attributes": {...}}` frame.
fn attributes_of(payload: &str) -> Option<String> {
    if !payload.contains("\"attributes\"") {
        return None;
    }
    match serde_json::from_str::<Json>(payload) {
        Ok(Json::Object(map)) if map.len() == 1 => match map.get("attributes") {
            Some(attrs @ Json::Object(_)) => Some(attrs.to_string()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_without_an_id_is_numbered_and_passed_on_unchanged() {
        let (seq, payload) = split_id(r#"{"temp":1}"#, 7);
        assert_eq!(seq, json!(7));
        assert!(matches!(payload, Cow::Borrowed(r#"{"temp":1}"#)));
    }

    #[test]
    fn an_id_is_echoed_and_taken_out_of_the_payload() {
        let (seq, payload) = split_id(r#"{"id":"a-1","temp":1}"#, 7);
        assert_eq!(seq, json!("a-1"));
        assert_eq!(payload, r#"{"temp":1}"#);
        let (seq, payload) = split_id(r#"{"id":42,"ts":1,"values":{"t":2}}"#, 1);
        assert_eq!(seq, json!(42));
        let v: Json = serde_json::from_str(&payload).unwrap();
        assert_eq!(v, json!({"ts":1,"values":{"t":2}}));
    }

    #[test]
    fn an_id_that_is_not_a_number_or_string_or_is_nested_is_not_taken() {
        assert_eq!(split_id(r#"{"id":{"x":1},"t":1}"#, 3).0, json!(3));
        assert_eq!(split_id(r#"{"id":true,"t":1}"#, 6).0, json!(6));
        assert_eq!(split_id(r#"{"id":null,"t":1}"#, 7).0, json!(7));
        assert_eq!(split_id(r#"[{"id":1,"t":1}]"#, 4).0, json!(4));
        assert_eq!(split_id(r#"{"values":{"id":1}}"#, 5).0, json!(5));
    }

    #[test]
    fn only_a_lone_attributes_object_is_an_attribute_write() {
        assert_eq!(
            attributes_of(r#"{"attributes":{"fw":"1.2"}}"#).as_deref(),
            Some(r#"{"fw":"1.2"}"#)
        );
        assert_eq!(attributes_of(r#"{"attributes":1}"#), None);
        assert_eq!(attributes_of(r#"{"attributes":{"a":1},"t":2}"#), None);
        assert_eq!(attributes_of(r#"{"t":2}"#), None);
    }
}

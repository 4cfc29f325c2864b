//! The live WebSocket `/api/v1/live`: JSON messages both ways.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tributary_auth::policy::Action;

use super::session::{error_msg, Close, Session, SubscribeRequest, CLOSE_GOING_AWAY};
use crate::extract::{bearer, Auth};
use crate::problem::ApiError;
use crate::state::AppState;

/// The credential, for clients that cannot set headers.
#[derive(Deserialize)]
pub struct LiveParams {
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Subscribe(SubscribeRequest),
    Unsubscribe(SubscribeRequest),
    Ping,
}

/// Live WebSocket: subscribe to devices, groups, labels or the tenant; get a snapshot
/// (or resume from a sequence number), then every update (see docs/live-protocol.md).
#[utoipa::path(get, path = "/api/v1/live", tag = "telemetry",
    params(("token" = Option<String>, Query, description = "Access token or API key, when the Authorization header cannot be set")),
    responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 429, body = ApiError)))]
pub async fn websocket(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<LiveParams>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = bearer(&headers)
        .map(str::to_string)
        .or(params.token)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing credentials: send Authorization: Bearer <token> or ?token=",
            )
        })?;
    let auth = Auth(s.auth.authenticate(&token).await?);
    auth.require(Action::Read)?;
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("expected a WebSocket upgrade: {}", e.body_text()))
    })?;
    let session = Session::open(s.clone(), auth.0, token)?;
    Ok(ws
        .max_message_size(s.config.live_max_message)
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| run(s, session, socket)))
}

/// Close code of a message larger than the server takes (RFC 6455 section 7.4.1).
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;

/// Whether a WebSocket read failed on the message size limit.
pub(crate) fn message_too_big(e: &axum::Error) -> bool {
    matches!(ws_error(e), Some(tungstenite::Error::Capacity(_)))
}

/// The WebSocket protocol error under a failed read, if that is what it was.
pub(crate) fn ws_error(e: &axum::Error) -> Option<&tungstenite::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(ws) = err.downcast_ref::<tungstenite::Error>() {
            return Some(ws);
        }
        cur = err.source();
    }
    None
}

/// Resolves once the server starts shutting down.
pub(crate) async fn until_shutdown(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let down = *rx.borrow_and_update();
        if down || rx.changed().await.is_err() {
            return;
        }
    }
}

/// One connection: client requests, hub events, pings, re-checks, expiry and shutdown.
async fn run(s: AppState, mut session: Session, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    let mut ping = tokio::time::interval(s.config.live_ping);
    let mut recheck = tokio::time::interval(s.config.live_auth_recheck);
    let mut refresh = tokio::time::interval(s.config.live_selector_refresh);
    for t in [&mut ping, &mut recheck, &mut refresh] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t.tick().await;
    }
    let expiry = tokio::time::sleep(session.time_left());
    tokio::pin!(expiry);
    let mut shutdown = s.shutdown.clone();
    let close_with = |c: Close| {
        Message::Close(Some(CloseFrame {
            code: c.code,
            reason: c.reason.into(),
        }))
    };

    loop {
        let outgoing: Vec<Json> = tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMessage>(text.as_str()) {
                    Ok(ClientMessage::Subscribe(req)) => session.subscribe(req).await,
                    Ok(ClientMessage::Unsubscribe(req)) => session.unsubscribe(req),
                    Ok(ClientMessage::Ping) => vec![json!({"type": "pong"})],
                    Err(e) => vec![error_msg("bad_request", format!("invalid message: {e}"))],
                },
                Some(Ok(Message::Binary(_))) => vec![error_msg("bad_request", "send JSON text messages")],
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Err(e)) => {
                    if message_too_big(&e) {
                        let _ = tx.send(close_with(Close { code: CLOSE_TOO_BIG, reason: "message too big" })).await;
                    }
                    break;
                }
                Some(Ok(Message::Close(_))) | None => break,
            },
            event = session.next_event() => match event {
                Some(e) => session.on_event(e),
                None => break,
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Default::default())).await.is_err() { break; }
                continue;
            }
            _ = recheck.tick() => match session.recheck().await {
                Some(close) => {
                    let _ = tx.send(close_with(close)).await;
                    break;
                }
                None => continue,
            },
            _ = refresh.tick() => session.refresh().await,
            _ = &mut expiry => {
                let _ = tx.send(close_with(Close { code: super::session::CLOSE_TOKEN_EXPIRED, reason: "token expired" })).await;
                break;
            }
            _ = until_shutdown(&mut shutdown) => {
                let _ = tx.send(close_with(Close { code: CLOSE_GOING_AWAY, reason: "server shutting down" })).await;
                break;
            }
        };
        for msg in outgoing {
            if tx
                .send(Message::Text(msg.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

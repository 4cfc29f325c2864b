//! The live WebSocket `/api/v1/live`: subscribe to devices, get a snapshot of
//! latest values, then an update per committed batch.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json_};
use tributary_auth::policy::Action;
use tributary_auth::Principal;
use tributary_live::{Event, SubscribeError, Subscription, Update};
use tributary_model::time::{now_ns, ns_to_ms};
use tributary_model::DeviceId;

use crate::extract::{bearer, Auth};
use crate::problem::ApiError;
use crate::state::AppState;

/// Close code sent when the connection's credential expires.
const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code sent when the server shuts down ("going away").
const CLOSE_GOING_AWAY: u16 = 1001;

/// The credential, for clients that cannot set headers.
#[derive(Deserialize)]
pub struct LiveParams {
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        device: String,
        #[serde(default)]
        keys: Vec<String>,
    },
    Unsubscribe {
        device: String,
    },
    Ping,
}

/// Live WebSocket: subscribe to devices, get a snapshot, then every update (see docs/api.md).
#[utoipa::path(get, path = "/api/v1/live", tag = "telemetry",
    params(("token" = Option<String>, Query, description = "Access token or API key, when the Authorization header cannot be set")),
    responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 403, body = ApiError)))]
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
    let principal = auth.0;
    Ok(ws
        .max_message_size(s.config.live_max_message)
        .on_upgrade(move |socket| session(s, principal, socket)))
}

fn error_msg(code: &str, detail: impl Into<String>) -> Json_ {
    json!({"type": "error", "code": code, "detail": detail.into()})
}

fn update_msg(u: &Update) -> Json_ {
    let mut points: Map<String, Json_> = Map::new();
    for p in &u.points {
        let entry = points
            .entry(p.key.clone())
            .or_insert_with(|| Json_::Array(Vec::new()));
        if let Json_::Array(list) = entry {
            list.push(json!({"ts": ns_to_ms(p.ts), "value": p.value.to_json()}));
        }
    }
    json!({"type": "update", "device": u.device.to_string(), "seq": u.seq, "points": points})
}

/// One connection: client requests, hub events, pings, expiry and shutdown.
async fn session(s: AppState, principal: Principal, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    let sub = s.hub.connect(principal.tenant);
    // Per device: the sequence its snapshot already covers.
    let mut covered: HashMap<DeviceId, u64> = HashMap::new();
    let mut ping = tokio::time::interval(s.config.live_ping);
    ping.tick().await;
    // Credentials that never expire (API keys without expiry) get a far-off deadline.
    let ttl_ms = principal
        .expires_at
        .map(|exp| exp.saturating_mul(1000) - ns_to_ms(now_ns()))
        .unwrap_or(i64::from(u32::MAX) * 1000);
    let expiry = tokio::time::sleep(Duration::from_millis(ttl_ms.max(0) as u64));
    tokio::pin!(expiry);
    let mut shutdown = s.shutdown.clone();

    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        let outgoing: Vec<Json_> = tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(text))) => handle(&s, &principal, &sub, &mut covered, text.as_str()).await,
                Some(Ok(Message::Binary(_))) => vec![error_msg("bad_request", "send JSON text messages")],
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            event = sub.recv() => match event {
                Some(Event::Update(u)) => {
                    if covered.get(&u.device).is_some_and(|seq| u.seq <= *seq) {
                        continue;
                    }
                    vec![update_msg(&u)]
                }
                Some(Event::Lagged(updates)) => {
                    let mut out = vec![json!({"type": "lagged", "detail": "updates were coalesced to the latest value per key"})];
                    out.extend(updates.iter().map(update_msg));
                    out
                }
                None => break,
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Default::default())).await.is_err() { break; }
                continue;
            }
            _ = &mut expiry => {
                let _ = tx.send(close(CLOSE_TOKEN_EXPIRED, "token expired")).await;
                break;
            }
            _ = until_shutdown(&mut shutdown) => {
                let _ = tx.send(close(CLOSE_GOING_AWAY, "server shutting down")).await;
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

/// Resolves once the server starts shutting down.
async fn until_shutdown(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let down = *rx.borrow_and_update();
        if down || rx.changed().await.is_err() {
            // A dropped sender also means the server is going away.
            return;
        }
    }
}

/// Handles one client message; returns the messages to send back.
async fn handle(
    s: &AppState,
    principal: &Principal,
    sub: &Subscription,
    covered: &mut HashMap<DeviceId, u64>,
    text: &str,
) -> Vec<Json_> {
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return vec![error_msg("bad_request", format!("invalid message: {e}"))],
    };
    match msg {
        ClientMessage::Ping => vec![json!({"type": "pong"})],
        ClientMessage::Unsubscribe { device } => {
            let Ok(id) = device.parse::<DeviceId>() else {
                return vec![error_msg("not_found", format!("no device {device:?}"))];
            };
            covered.remove(&id);
            if sub.unsubscribe(id) {
                vec![json!({"type": "unsubscribed", "device": id.to_string()})]
            } else {
                vec![error_msg(
                    "not_subscribed",
                    format!("not subscribed to {id}"),
                )]
            }
        }
        ClientMessage::Subscribe { device, keys } => {
            let not_found = || vec![error_msg("not_found", format!("no device {device:?}"))];
            let Ok(id) = device.parse::<DeviceId>() else {
                return not_found();
            };
            match s.meta.get_device(principal.tenant, id).await {
                Ok(Some(_)) => {}
                Ok(None) => return not_found(),
                Err(e) => return vec![error_msg("internal", ApiError::internal(e).detail)],
            }
            // Subscribe first, then read the snapshot: nothing falls between them.
            if let Err(SubscribeError::TooMany(n)) = sub.subscribe(id, &keys) {
                return vec![error_msg(
                    "too_many_subscriptions",
                    format!("at most {n} subscriptions per connection"),
                )];
            }
            s.catch_up().await;
            let seq = s.pipeline.applied_lsn();
            match s.series.latest(principal.tenant, id, &keys).await {
                Ok(latest) => {
                    covered.insert(id, seq);
                    let values: Map<String, Json_> = latest
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({"ts": ns_to_ms(v.ts), "value": v.value.to_json()}),
                            )
                        })
                        .collect();
                    vec![
                        json!({"type": "snapshot", "device": id.to_string(), "seq": seq, "values": values}),
                    ]
                }
                Err(e) => vec![error_msg("internal", ApiError::internal(e).detail)],
            }
        }
    }
}

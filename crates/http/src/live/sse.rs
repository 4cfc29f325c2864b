//! Server-Sent Events `/api/v1/live/sse`: the same feed for clients that cannot
//! use WebSockets. Subscriptions come from the query string; each update's
//! `id` is its sequence number, so `Last-Event-ID` resumes after a reconnect.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::Value as Json;
use tributary_auth::policy::Action;
use utoipa::IntoParams;

use super::session::{Close, Session, SubscribeRequest, CLOSE_GOING_AWAY, CLOSE_TOKEN_EXPIRED};
use super::ws::until_shutdown;
use crate::extract::{bearer, Auth};
use crate::problem::ApiError;
use crate::state::AppState;

/// What to stream; exactly one of `device`, `devices`, `group`, `label`, `tenant`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SseParams {
    /// Access token or API key, when the Authorization header cannot be set.
    token: Option<String>,
    /// One device id.
    device: Option<String>,
    /// Comma-separated device ids.
    devices: Option<String>,
    /// A group id.
    group: Option<String>,
    /// Label selector `key=value`, several joined with `,`.
    label: Option<String>,
    /// `true`: every device of the tenant.
    tenant: Option<bool>,
    /// Comma-separated keys (all when omitted).
    keys: Option<String>,
    /// Resume after this sequence number (the `Last-Event-ID` header does the same).
    since: Option<u64>,
}

fn csv(raw: Option<&str>) -> Vec<String> {
    raw.map(|r| {
        r.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn request(p: &SseParams, headers: &HeaderMap) -> Result<SubscribeRequest, ApiError> {
    let labels = p
        .label
        .as_deref()
        .map(|raw| {
            raw.split(',')
                .filter(|x| !x.is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| {
                            ApiError::validation(
                                "label",
                                format!("label selector {pair:?} must be key=value"),
                            )
                        })
                })
                .collect::<Result<_, _>>()
        })
        .transpose()?;
    let last_event = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::validation("Last-Event-ID", "Last-Event-ID must be a sequence number")
            })
        })
        .transpose()?;
    let req = SubscribeRequest {
        device: p.device.clone(),
        devices: p.devices.as_deref().map(|d| csv(Some(d))),
        group: p.group.clone(),
        labels,
        tenant: p.tenant,
        keys: csv(p.keys.as_deref()),
        since: last_event.or(p.since),
    };
    req.selector()
        .map_err(|e| ApiError::validation("device", e))?;
    Ok(req)
}

fn event(msg: &Json) -> Event {
    let kind = msg["type"].as_str().unwrap_or("message");
    let mut e = Event::default().event(kind).data(msg.to_string());
    if kind == "update" || kind == "subscribed" {
        if let Some(seq) = msg["seq"].as_u64() {
            e = e.id(seq.to_string());
        }
    }
    e
}

fn close_event(c: Close) -> Event {
    Event::default()
        .event("close")
        .data(serde_json::json!({"code": c.code, "reason": c.reason}).to_string())
}

/// Server-Sent Events: the live feed of the selected devices (see docs/live-protocol.md).
#[utoipa::path(get, path = "/api/v1/live/sse", tag = "telemetry", params(SseParams),
    responses((status = 200, content_type = "text/event-stream", description = "snapshot, update, attributes, lagged, subscribed, error and close events"),
              (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 429, body = ApiError)))]
pub async fn sse(
    State(s): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<SseParams>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let token = bearer(&headers)
        .map(str::to_string)
        .or(params.token.clone())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing credentials: send Authorization: Bearer <token> or ?token=",
            )
        })?;
    let auth = Auth(s.auth.authenticate(&token).await?);
    auth.require(Action::Read)?;
    let req = request(&params, &headers)?;
    let mut session = Session::open(s.clone(), auth.0, token)?;
    let first = session.subscribe(req).await;
    if let Some(err) = first.iter().find(|m| m["type"] == "error") {
        let detail = err["detail"]
            .as_str()
            .unwrap_or("cannot subscribe")
            .to_string();
        return Err(match err["code"].as_str() {
            Some("not_found") => ApiError::not_found(detail),
            _ => ApiError::bad_request(detail),
        });
    }
    let keep_alive = KeepAlive::new().interval(s.config.live_ping).text("ping");
    Ok(Sse::new(stream(s, session, first)).keep_alive(keep_alive))
}

fn stream(
    s: AppState,
    mut session: Session,
    first: Vec<Json>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream(move |tx| async move {
        for m in &first {
            if tx.send(event(m)).await.is_err() {
                return;
            }
        }
        let mut recheck = tokio::time::interval(s.config.live_auth_recheck);
        let mut refresh = tokio::time::interval(s.config.live_selector_refresh);
        recheck.tick().await;
        refresh.tick().await;
        let expiry = tokio::time::sleep(session.time_left());
        tokio::pin!(expiry);
        let mut shutdown = s.shutdown.clone();
        loop {
            let out: Vec<Event> = tokio::select! {
                e = session.next_event() => match e {
                    Some(e) => session.on_event(e).iter().map(event).collect(),
                    None => return,
                },
                _ = recheck.tick() => match session.recheck().await {
                    Some(c) => { let _ = tx.send(close_event(c)).await; return; }
                    None => continue,
                },
                _ = refresh.tick() => session.refresh().await.iter().map(event).collect(),
                _ = &mut expiry => {
                    let _ = tx.send(close_event(Close { code: CLOSE_TOKEN_EXPIRED, reason: "token expired" })).await;
                    return;
                }
                _ = until_shutdown(&mut shutdown) => {
                    let _ = tx.send(close_event(Close { code: CLOSE_GOING_AWAY, reason: "server shutting down" })).await;
                    return;
                }
            };
            for e in out {
                // A slow reader backs up here; the hub coalesces meanwhile.
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// A stream fed by a task through a small bounded channel (the task ends when the client goes).
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}

//! Server-side RPC to devices connected over MQTT (ThingsBoard's
//! `v1/devices/me/rpc/request/{id}` → `v1/devices/me/rpc/response/{id}`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tributary_auth::policy::Action;
use tributary_mqtt::RpcError;
use utoipa::ToSchema;

use super::devices::find;
use crate::audit::Audited;
use crate::extract::{ApiJson, Auth};
use crate::problem::ApiError;
use crate::state::AppState;

/// Longest an RPC call may wait for the device.
const MAX_TIMEOUT_MS: u64 = 60_000;

/// An RPC request for a device.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RpcRequest {
    /// Method name the device understands, e.g. `setGpio`.
    #[schema(min_length = 1, max_length = 255)]
    method: String,
    /// Parameters (any JSON; default `{}`).
    #[serde(default)]
    params: Option<serde_json::Value>,
    /// Milliseconds to wait for the answer (default 10000, at most 60000).
    #[serde(default, deserialize_with = "crate::validate::whole::option")]
    #[schema(minimum = 1, maximum = 60000)]
    timeout_ms: Option<u64>,
    /// Do not wait for an answer: 202 once the request is queued for the device.
    #[serde(default)]
    oneway: bool,
}

/// Call a method on a device connected over MQTT and wait for its answer (or not, with `oneway`).
#[utoipa::path(post, path = "/api/v1/devices/{id}/rpc", tag = "devices", security(("bearer" = [])),
    request_body = RpcRequest,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The device's answer, as it sent it (JSON)", body = Object),
        (status = 202, description = "One-way request queued for the device"),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "No session of the device is subscribed to RPC requests", body = ApiError),
        (status = 504, description = "The device did not answer in time", body = ApiError)))]
pub async fn call(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RpcRequest>,
) -> Result<Response, ApiError> {
    let p = auth.require(Action::Write)?;
    let device = find(&s, p.tenant, &id).await?;
    if !(1..=255).contains(&req.method.chars().count()) {
        return Err(ApiError::validation("method", "1 to 255 characters"));
    }
    let timeout_ms = req.timeout_ms.unwrap_or(10_000);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(ApiError::validation(
            "timeout_ms",
            format!("between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    let mqtt = s
        .mqtt
        .as_ref()
        .ok_or_else(|| ApiError::not_found("MQTT is not enabled on this server"))?;
    let audited = Audited::new(p, "device.rpc", "device", &id)
        .detail(serde_json::json!({"method": req.method, "oneway": req.oneway}));
    let request = serde_json::json!({
        "method": req.method,
        "params": req.params.unwrap_or_else(|| serde_json::json!({})),
    });
    let outcome = mqtt
        .broker
        .call(
            device.id,
            request,
            Duration::from_millis(timeout_ms),
            req.oneway,
        )
        .await;
    match outcome {
        Ok(None) => Ok((audited, StatusCode::ACCEPTED).into_response()),
        Ok(Some(answer)) => {
            // The answer as the device sent it; text that is not JSON becomes a JSON string.
            let body = serde_json::from_slice::<serde_json::Value>(&answer).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&answer).into_owned())
            });
            Ok((audited, Json(body)).into_response())
        }
        Err(RpcError::Offline) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "device-offline",
            "Device offline",
            RpcError::Offline.to_string(),
        )),
        // The request reached the device even though no answer came back.
        Err(e @ RpcError::Timeout(_)) => Ok((
            audited.even_if_failed(),
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "rpc-timeout",
                "RPC timed out",
                e.to_string(),
            ),
        )
            .into_response()),
    }
}

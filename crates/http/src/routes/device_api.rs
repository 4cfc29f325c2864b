//! The ThingsBoard-compatible device HTTP API, authenticated by the device's
//! access token in the path: telemetry and attributes.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::Value as Json_;
use tributary_store::meta::AttributeScope;
use tributary_store::Device;
use utoipa::IntoParams;

use super::attributes::csv;
use crate::extract::read_body;
use crate::problem::ApiError;
use crate::state::AppState;

/// The device of `token` and the request body (a body refused here is
/// counted as the gateway counts its refusals).
async fn device_and_body(
    s: &AppState,
    token: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Device, axum::body::Bytes), ApiError> {
    let device = s.gateway.device(token).await?;
    let bytes = read_body(headers, body, s.config.max_body_bytes)
        .await
        .inspect_err(|e| {
            tributary_ingest::error::count_rejected(if e.status == 413 {
                "too_large"
            } else {
                "malformed"
            });
        })?;
    Ok((device, bytes))
}

/// Send telemetry: `{"temp":21.5}`, `{"ts":<ms>,"values":{…}}`, or an array of either. 200 means durable.
#[utoipa::path(post, path = "/api/v1/{token}/telemetry", tag = "device-api",
    params(("token" = String, Path, description = "The device's access token")),
    request_body(content = Object, description = "ThingsBoard telemetry payload"),
    responses((status = 200, description = "The whole batch is in the fsynced write-ahead log"),
              (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 413, body = ApiError),
              (status = 503, body = ApiError, description = "not stored; retry (Retry-After)"),
              (status = 507, body = ApiError, description = "not stored: the disk of the log is full; retry (Retry-After)")))]
pub async fn telemetry(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let (device, bytes) = device_and_body(&s, &token, &headers, body).await?;
    s.gateway.ingest_telemetry(&device, &bytes).await?;
    Ok(StatusCode::OK)
}

/// Report client attributes: `{"firmware":"1.2","serial":"A1"}`.
#[utoipa::path(post, path = "/api/v1/{token}/attributes", tag = "device-api",
    params(("token" = String, Path, description = "The device's access token")),
    request_body(content = super::attributes::AttributeValues, description = "Attribute keys and JSON values"),
    responses((status = 200), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 413, body = ApiError)))]
pub async fn post_attributes(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let (device, bytes) = device_and_body(&s, &token, &headers, body).await?;
    s.gateway.client_attributes(&device, &bytes).await?;
    Ok(StatusCode::OK)
}

/// Which attributes a device asks for (ThingsBoard parameter names).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DeviceAttributeQuery {
    /// Comma-separated client attribute keys.
    client_keys: Option<String>,
    /// Comma-separated shared attribute keys.
    shared_keys: Option<String>,
}

/// Read the device's client and shared attributes (`{"client":{…},"shared":{…}}`).
#[utoipa::path(get, path = "/api/v1/{token}/attributes", tag = "device-api",
    params(("token" = String, Path, description = "The device's access token"), DeviceAttributeQuery),
    responses((status = 200, body = Object), (status = 401, body = ApiError)))]
pub async fn get_attributes(
    State(s): State<AppState>,
    Path(token): Path<String>,
    q: Result<Query<DeviceAttributeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let device = s.gateway.device(&token).await?;
    let mut out = serde_json::Map::new();
    for (scope, name, keys) in [
        (
            AttributeScope::Client,
            "client",
            csv(q.client_keys.as_deref()),
        ),
        (
            AttributeScope::Shared,
            "shared",
            csv(q.shared_keys.as_deref()),
        ),
    ] {
        let attrs = s
            .meta
            .get_attributes(device.tenant, device.id, &[scope], &keys)
            .await?;
        let values: serde_json::Map<String, Json_> = attrs
            .into_values()
            .flatten()
            .map(|(k, a)| (k, a.value))
            .collect();
        out.insert(name.to_string(), Json_::Object(values));
    }
    Ok(Json(Json_::Object(out)))
}

//! Device management: create, list, read, delete, rotate the access token.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use tributary_auth::Authenticator;
use tributary_model::DeviceId;
use tributary_store::{Device, NewDevice};

use crate::extract::{ApiJson, Auth};
use crate::problem::ApiError;
use crate::state::AppState;

const MAX_NAME: usize = 128;
const MAX_LABEL: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    name: String,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// A device as the API shows it.
#[derive(Serialize)]
pub struct DeviceView {
    id: String,
    name: String,
    label: Option<String>,
    token_hint: String,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
}

impl From<Device> for DeviceView {
    fn from(d: Device) -> Self {
        Self {
            id: d.id.to_string(),
            name: d.name,
            label: d.label,
            token_hint: d.token_hint,
            created_at: d.created_at,
            access_token: None,
        }
    }
}

#[derive(Serialize)]
pub struct DeviceList {
    data: Vec<DeviceView>,
    next_cursor: Option<String>,
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::validation(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > max {
        return Err(ApiError::validation(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Parses a device id from a path; a malformed id is just a device that does not exist.
pub fn device_id(raw: &str) -> Result<DeviceId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("no device {raw:?}")))
}

/// `POST /api/v1/devices`
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateDevice>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::WriteDevices)?;
    check_text("name", &req.name, MAX_NAME)?;
    if let Some(label) = &req.label {
        check_text("label", label, MAX_LABEL)?;
    }
    let (token, hash, hint) = Authenticator::new_device_token();
    let device = s
        .meta
        .create_device(
            p.tenant,
            NewDevice {
                name: req.name.trim().to_string(),
                label: req.label,
                token_hash: hash,
                token_hint: hint,
            },
        )
        .await?;
    tracing::info!(device = %device.id, tenant = %p.tenant, "device created");
    let location = format!("/api/v1/devices/{}", device.id);
    let mut view = DeviceView::from(device);
    view.access_token = Some(token);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    ))
}

/// `GET /api/v1/devices?limit=&cursor=`
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeviceList>, ApiError> {
    let p = auth.require(Action::ReadDevices)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            "limit must be between 1 and 1000",
        ));
    }
    let after = params
        .cursor
        .as_deref()
        .map(|c| {
            c.parse()
                .map_err(|_| ApiError::validation("cursor", "cursor is not one this API returned"))
        })
        .transpose()?;
    let devices = s.meta.list_devices(p.tenant, after, limit).await?;
    let next_cursor = (devices.len() == limit as usize)
        .then(|| devices.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(Json(DeviceList {
        data: devices.into_iter().map(DeviceView::from).collect(),
        next_cursor,
    }))
}

/// `GET /api/v1/devices/{id}`
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let p = auth.require(Action::ReadDevices)?;
    let id = device_id(&id)?;
    let device = s
        .meta
        .get_device(p.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    Ok(Json(device.into()))
}

/// `DELETE /api/v1/devices/{id}`: the device, its credentials and its data.
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let p = auth.require(Action::WriteDevices)?;
    let id = device_id(&id)?;
    if !s.meta.delete_device(p.tenant, id).await? {
        return Err(ApiError::not_found(format!("no device {id}")));
    }
    s.auth.forget_device(id);
    s.series.delete_device(p.tenant, id).await?;
    tracing::info!(device = %id, tenant = %p.tenant, "device deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/devices/{id}/token`: a new access token; the old one stops working at once.
pub async fn rotate_token(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let p = auth.require(Action::WriteDevices)?;
    let id = device_id(&id)?;
    let (token, hash, hint) = Authenticator::new_device_token();
    if !s.meta.set_device_token(p.tenant, id, &hash, &hint).await? {
        return Err(ApiError::not_found(format!("no device {id}")));
    }
    s.auth.forget_device(id);
    let device = s
        .meta
        .get_device(p.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    let mut view = DeviceView::from(device);
    view.access_token = Some(token);
    Ok(Json(view))
}

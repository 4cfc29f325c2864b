//! Devices: create, list (filter, sort, paginate), read, change, delete,
//! and their credentials.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use tributary_auth::Authenticator;
use tributary_model::{DeviceChange, DeviceId};
use tributary_store::meta::{DeviceFilter, DevicePatch, MqttCredentials, Sort, SortField, Updated};
use tributary_store::{Device, NewDevice};
use utoipa::{IntoParams, ToSchema};

use crate::audit::Audited;
use crate::extract::{etag, list_params, ApiJson, Auth, IfMatch};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validate;

const MAX_NAME: usize = 128;

/// A new device.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    /// Unique within the tenant, at most 128 characters.
    #[schema(schema_with = crate::validate::schema::name)]
    name: String,
    /// Key/value labels, e.g. `{"site":"berlin"}`.
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::labels)]
    labels: BTreeMap<String, String>,
    /// Free-form tags.
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::tags)]
    tags: Vec<String>,
    /// Id of a device profile whose key schema applies at ingest.
    #[serde(default)]
    profile_id: Option<String>,
}

/// A change to a device; omitted fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDevice {
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::name_or_null)]
    name: Option<String>,
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::labels_or_null)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::tags_or_null)]
    tags: Option<Vec<String>>,
    /// A profile id, or null to remove the profile.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    profile_id: Option<Option<String>>,
}

/// Tells a missing field (no change) from an explicit null (remove).
pub(crate) mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Ok(Some(Option::deserialize(d)?))
    }
}

/// A device's MQTT credentials (the password is never shown).
#[derive(Serialize, ToSchema)]
pub struct MqttView {
    username: String,
    client_id: Option<String>,
}

/// A device as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct DeviceView {
    id: String,
    name: String,
    labels: BTreeMap<String, String>,
    tags: Vec<String>,
    profile_id: Option<String>,
    /// The first 4 characters of the access token.
    token_hint: String,
    mqtt: Option<MqttView>,
    /// Incremented by every change; the ETag is `"v<version>"`.
    version: i64,
    created_at: i64,
    /// The access token: only in the creation and rotation responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
}

impl From<Device> for DeviceView {
    fn from(d: Device) -> Self {
        Self {
            id: d.id.to_string(),
            name: d.name,
            labels: d.labels,
            tags: d.tags,
            profile_id: d.profile,
            token_hint: d.token_hint,
            mqtt: d.mqtt.map(|m| MqttView {
                username: m.username,
                client_id: m.client_id,
            }),
            version: d.version,
            created_at: d.created_at,
            access_token: None,
        }
    }
}

/// A page of devices.
#[derive(Serialize, ToSchema)]
pub struct DeviceList {
    data: Vec<DeviceView>,
    next_cursor: Option<String>,
}

/// Filters, order and page of the device list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// 1–1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `name`, `created_at` (default), or either with `-` for descending.
    #[param(pattern = "^-?(name|created_at)$")]
    sort: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    filter: DeviceFilterParams,
}

/// Which devices: every condition given must hold.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilterParams {
    /// Name contains this (case-insensitive).
    name: Option<String>,
    /// Label selector `key=value`; several joined with `,` must all match.
    #[param(schema_with = crate::validate::schema::label_selector)]
    label: Option<String>,
    /// Has this tag.
    tag: Option<String>,
    /// Member of this group.
    group: Option<String>,
    /// Uses this profile.
    profile: Option<String>,
}

impl DeviceFilterParams {
    /// Whether no condition is given.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.label.is_none()
            && self.tag.is_none()
            && self.group.is_none()
            && self.profile.is_none()
    }

    /// The store's filter; a malformed label selector is a 400.
    pub fn into_filter(self) -> Result<DeviceFilter, ApiError> {
        Ok(DeviceFilter {
            name_contains: self.name,
            labels: self
                .label
                .as_deref()
                .map(label_selector)
                .transpose()?
                .unwrap_or_default(),
            tag: self.tag,
            group: self.group,
            profile: self.profile,
        })
    }
}

/// MQTT username/password credentials for a device.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMqtt {
    /// Unique within the tenant, 1–128 characters.
    #[schema(schema_with = crate::validate::schema::name)]
    username: String,
    /// 8–1024 characters; stored as an argon2id hash.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
    /// When set, only this MQTT client id may use the credentials.
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::name_or_null)]
    client_id: Option<String>,
}

/// Parses a device id from a path; a malformed id is just a device that does not exist.
pub fn device_id(raw: &str) -> Result<DeviceId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("no device {raw:?}")))
}

/// The device `raw` of the caller's tenant, or 404.
pub async fn find(
    s: &AppState,
    tenant: tributary_model::TenantId,
    raw: &str,
) -> Result<Device, ApiError> {
    let id = device_id(raw)?;
    s.meta
        .get_device(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {raw:?}")))
}

fn with_etag(d: Device) -> impl IntoResponse {
    let tag = etag(d.version);
    (
        [(
            header::ETAG,
            HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\"")),
        )],
        Json(DeviceView::from(d)),
    )
}

fn label_selector(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    raw.split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                ApiError::validation(
                    "label",
                    format!("label selector {pair:?} must be key=value"),
                )
            })?;
            validate::key("label", k)?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Create a device; the response carries its access token (once).
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), request_body = CreateDevice,
    responses((status = 201, body = DeviceView, headers(("Location" = String), ("ETag" = String))), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateDevice>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    validate::text("name", &req.name, MAX_NAME)?;
    validate::labels(&req.labels)?;
    validate::tags(&req.tags)?;
    let (token, hash, hint) = Authenticator::new_device_token();
    let device = s
        .meta
        .create_device(
            p.tenant,
            NewDevice {
                name: req.name.trim().to_string(),
                labels: req.labels,
                tags: req.tags,
                profile: req.profile_id,
                token_hash: hash,
                token_hint: hint,
            },
        )
        .await?;
    s.gateway
        .device_changed(
            p.tenant,
            device.id,
            DeviceChange::Created {
                name: device.name.clone(),
            },
        )
        .await;
    let audited = Audited::new(p, "device.create", "device", &device.id)
        .detail(serde_json::json!({"name": device.name}));
    let location = format!("/api/v1/devices/{}", device.id);
    let tag = etag(device.version);
    let mut view = DeviceView::from(device);
    view.access_token = Some(token);
    Ok((
        StatusCode::CREATED,
        audited,
        [(header::LOCATION, location), (header::ETAG, tag)],
        Json(view),
    ))
}

/// Devices of the current tenant, filtered, sorted and paginated.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), params(DeviceQuery, DeviceFilterParams),
    responses((status = 200, body = DeviceList), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    q: Result<Query<DeviceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeviceList>, ApiError> {
    let p = auth.require(Action::Read)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let params = list_params(
        q.limit.as_deref(),
        q.cursor.as_deref(),
        q.sort.as_deref(),
        Sort {
            field: SortField::CreatedAt,
            desc: false,
        },
    )?;
    let filter = q.filter.into_filter()?;
    let page = s.meta.list_devices(p.tenant, &filter, &params).await?;
    Ok(Json(DeviceList {
        data: page.items.into_iter().map(DeviceView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One device (with its ETag).
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceView, headers(("ETag" = String))), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Read)?;
    Ok(with_etag(find(&s, p.tenant, &id).await?))
}

/// Change a device. Send `If-Match` with the ETag you read to refuse lost updates (412).
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])), request_body = UpdateDevice,
    params(("id" = String, Path, description = "Device id"), ("If-Match" = Option<String>, Header, description = "ETag from a previous read", pattern = "^(\\*|(W/)?\"v[0-9]{1,18}\")$")),
    responses((status = 200, body = DeviceView, headers(("ETag" = String))), (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 412, body = ApiError)))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    IfMatch(if_version): IfMatch,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateDevice>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    let device = device_id(&id)?;
    if let Some(n) = &req.name {
        validate::text("name", n, MAX_NAME)?;
    }
    if let Some(l) = &req.labels {
        validate::labels(l)?;
    }
    if let Some(t) = &req.tags {
        validate::tags(t)?;
    }
    let patch = DevicePatch {
        name: req.name.map(|n| n.trim().to_string()),
        labels: req.labels,
        tags: req.tags,
        profile: req.profile_id,
    };
    match s
        .meta
        .update_device(p.tenant, device, patch, if_version)
        .await?
    {
        Updated::Ok(d) => {
            let change = DeviceChange::Updated {
                name: d.name.clone(),
                profile: d.profile.clone(),
            };
            s.gateway.device_changed(p.tenant, d.id, change).await;
            Ok((
                Audited::new(p, "device.update", "device", &id),
                with_etag(d),
            ))
        }
        Updated::Stale(d) => Err(ApiError::precondition_failed(etag(d.version))),
        Updated::NotFound => Err(ApiError::not_found(format!("no device {id:?}"))),
    }
}

/// Delete a device, its credentials and its data.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    let device = device_id(&id)?;
    if !s.meta.delete_device(p.tenant, device).await? {
        return Err(ApiError::not_found(format!("no device {id:?}")));
    }
    s.gateway
        .device_changed(p.tenant, device, DeviceChange::Deleted)
        .await;
    s.series.delete_device(p.tenant, device).await?;
    let audited = Audited::new(p, "device.delete", "device", &id);
    Ok((audited, StatusCode::NO_CONTENT))
}

/// Rotate the access token; the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/devices/{id}/token", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceView), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn rotate_token(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    let device = device_id(&id)?;
    let (token, hash, hint) = Authenticator::new_device_token();
    if !s
        .meta
        .set_device_token(p.tenant, device, &hash, &hint)
        .await?
    {
        return Err(ApiError::not_found(format!("no device {id:?}")));
    }
    s.gateway
        .device_changed(p.tenant, device, DeviceChange::CredentialsRotated)
        .await;
    let audited = Audited::new(p, "device.token_rotate", "device", &id);
    let mut view = DeviceView::from(find(&s, p.tenant, &id).await?);
    view.access_token = Some(token);
    Ok((audited, Json(view)))
}

/// Set MQTT username/password credentials (optionally bound to a client id).
#[utoipa::path(put, path = "/api/v1/devices/{id}/mqtt-credentials", tag = "devices", security(("bearer" = [])), request_body = SetMqtt,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceView), (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn set_mqtt(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetMqtt>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    let device = find(&s, p.tenant, &id).await?;
    validate::text("username", &req.username, 128)?;
    if let Some(c) = &req.client_id {
        validate::text("client_id", c, 128)?;
    }
    let hash = Authenticator::hash_device_password(&req.password).await?;
    if s.auth
        .mqtt_credentials_clash(p.tenant, &req.username, &req.password)
        .await?
    {
        return Err(ApiError::conflict(
            "these MQTT credentials cannot be used; choose another password",
        ));
    }
    let creds = MqttCredentials {
        username: req.username,
        client_id: req.client_id,
    };
    s.meta
        .set_device_mqtt(p.tenant, device.id, Some((&creds, &hash)))
        .await?;
    s.gateway
        .device_changed(p.tenant, device.id, DeviceChange::CredentialsRotated)
        .await;
    let audited = Audited::new(p, "device.mqtt_credentials_set", "device", &id)
        .detail(serde_json::json!({"username": creds.username}));
    let view: DeviceView = find(&s, p.tenant, &id).await?.into();
    Ok((audited, Json(view)))
}

/// Remove the MQTT username/password credentials.
#[utoipa::path(delete, path = "/api/v1/devices/{id}/mqtt-credentials", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn delete_mqtt(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    let device = find(&s, p.tenant, &id).await?;
    s.meta.set_device_mqtt(p.tenant, device.id, None).await?;
    s.gateway
        .device_changed(p.tenant, device.id, DeviceChange::CredentialsRotated)
        .await;
    let audited = Audited::new(p, "device.mqtt_credentials_delete", "device", &id);
    Ok((audited, StatusCode::NO_CONTENT))
}

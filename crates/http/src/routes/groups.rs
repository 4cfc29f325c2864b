//! Device groups and membership.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use tributary_store::meta::{Group, Sort, SortField, Updated};
use utoipa::ToSchema;

use super::devices::{device_id, double_option};
use super::NamedPageQuery;
use crate::audit::Audited;
use crate::extract::{etag, ApiJson, Auth, IfMatch};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validate;

/// A new group.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    #[schema(schema_with = crate::validate::schema::name)]
    name: String,
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::description)]
    description: Option<String>,
}

/// A change to a group; omitted fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::name_or_null)]
    name: Option<String>,
    /// A description, or null to remove it.
    #[serde(default, with = "double_option")]
    #[schema(schema_with = crate::validate::schema::description)]
    description: Option<Option<String>>,
}

/// A group as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct GroupView {
    id: String,
    name: String,
    description: Option<String>,
    version: i64,
    created_at: i64,
}

impl From<Group> for GroupView {
    fn from(g: Group) -> Self {
        Self {
            id: g.id,
            name: g.name,
            description: g.description,
            version: g.version,
            created_at: g.created_at,
        }
    }
}

/// A page of groups.
#[derive(Serialize, ToSchema)]
pub struct GroupList {
    data: Vec<GroupView>,
    next_cursor: Option<String>,
}

async fn find(
    s: &AppState,
    tenant: tributary_model::TenantId,
    id: &str,
) -> Result<Group, ApiError> {
    s.meta
        .get_group(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group {id:?}")))
}

fn with_etag(g: Group) -> impl IntoResponse {
    ([(header::ETAG, etag(g.version))], Json(GroupView::from(g)))
}

/// Create a group.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", security(("bearer" = [])), request_body = CreateGroup,
    responses((status = 201, body = GroupView), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateGroup>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    validate::text("name", &req.name, 128)?;
    validate::description(req.description.as_deref())?;
    let g = s
        .meta
        .create_group(p.tenant, req.name.trim(), req.description.as_deref())
        .await?;
    let audited = Audited::new(p, "group.create", "group", &g.id);
    Ok((
        StatusCode::CREATED,
        audited,
        [(header::ETAG, etag(g.version))],
        Json(GroupView::from(g)),
    ))
}

/// Groups of the current tenant.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", security(("bearer" = [])), params(NamedPageQuery),
    responses((status = 200, body = GroupList), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    q: Result<Query<NamedPageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<GroupList>, ApiError> {
    let p = auth.require(Action::Read)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let params = super::named_page_params(
        &q,
        Sort {
            field: SortField::Name,
            desc: false,
        },
    )?;
    let page = s
        .meta
        .list_groups(p.tenant, q.name.as_deref(), &params)
        .await?;
    Ok(Json(GroupList {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One group (with its ETag).
#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, body = GroupView), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Read)?;
    Ok(with_etag(find(&s, p.tenant, &id).await?))
}

/// Change a group (`If-Match` supported).
#[utoipa::path(patch, path = "/api/v1/groups/{id}", tag = "groups", security(("bearer" = [])), request_body = UpdateGroup,
    params(("id" = String, Path, description = "Group id"), ("If-Match" = Option<String>, Header, description = "ETag from a previous read", pattern = "^(\\*|(W/)?\"v[0-9]{1,18}\")$")),
    responses((status = 200, body = GroupView), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
              (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 412, body = ApiError)))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    IfMatch(if_version): IfMatch,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateGroup>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    if let Some(n) = &req.name {
        validate::text("name", n, 128)?;
    }
    if let Some(d) = &req.description {
        validate::description(d.as_deref())?;
    }
    let description = req.description.as_ref().map(|d| d.as_deref());
    match s
        .meta
        .update_group(
            p.tenant,
            &id,
            req.name.as_deref().map(str::trim),
            description,
            if_version,
        )
        .await?
    {
        Updated::Ok(g) => Ok((Audited::new(p, "group.update", "group", &id), with_etag(g))),
        Updated::Stale(g) => Err(ApiError::precondition_failed(etag(g.version))),
        Updated::NotFound => Err(ApiError::not_found(format!("no group {id:?}"))),
    }
}

/// Delete a group (its devices stay).
#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    if !s.meta.delete_group(p.tenant, &id).await? {
        return Err(ApiError::not_found(format!("no group {id:?}")));
    }
    let audited = Audited::new(p, "group.delete", "group", &id);
    Ok((audited, StatusCode::NO_CONTENT))
}

/// Add a device to a group (idempotent).
#[utoipa::path(put, path = "/api/v1/groups/{id}/devices/{device_id}", tag = "groups", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id"), ("device_id" = String, Path, description = "Device id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn add_device(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, device)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    let d = device_id(&device)?;
    if !s.meta.add_to_group(p.tenant, &id, d).await? {
        return Err(ApiError::not_found(format!(
            "no group {id:?} or no device {device:?}"
        )));
    }
    let audited = Audited::new(p, "group.add_device", "group", &id)
        .detail(serde_json::json!({"device": device}));
    Ok((audited, StatusCode::NO_CONTENT))
}

/// Remove a device from a group.
#[utoipa::path(delete, path = "/api/v1/groups/{id}/devices/{device_id}", tag = "groups", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id"), ("device_id" = String, Path, description = "Device id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn remove_device(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, device)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    let d = device_id(&device)?;
    if !s.meta.remove_from_group(p.tenant, &id, d).await? {
        return Err(ApiError::not_found(format!(
            "device {device:?} is not in group {id:?}"
        )));
    }
    let audited = Audited::new(p, "group.remove_device", "group", &id)
        .detail(serde_json::json!({"device": device}));
    Ok((audited, StatusCode::NO_CONTENT))
}

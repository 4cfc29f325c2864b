//! Device profiles: telemetry key schemas enforced at ingest.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use tributary_model::profile::ProfileSchema;
use tributary_model::TenantChange;
use tributary_store::meta::{Profile, Sort, SortField, Updated};
use utoipa::ToSchema;

use super::devices::double_option;
use super::NamedPageQuery;
use crate::audit::Audited;
use crate::extract::{etag, ApiJson, Auth, IfMatch};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validate;

/// A new profile.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProfile {
    #[schema(schema_with = crate::validate::schema::name)]
    name: String,
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::description)]
    description: Option<String>,
    /// The key schema.
    #[serde(default)]
    schema: ProfileSchema,
}

/// A change to a profile; omitted fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::name_or_null)]
    name: Option<String>,
    /// A description, or null to remove it.
    #[serde(default, with = "double_option")]
    #[schema(schema_with = crate::validate::schema::description)]
    description: Option<Option<String>>,
    #[serde(default)]
    schema: Option<ProfileSchema>,
}

/// A profile as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct ProfileView {
    id: String,
    name: String,
    description: Option<String>,
    schema: ProfileSchema,
    version: i64,
    created_at: i64,
}

impl From<Profile> for ProfileView {
    fn from(p: Profile) -> Self {
        Self {
            id: p.id,
            name: p.name,
            description: p.description,
            schema: p.schema,
            version: p.version,
            created_at: p.created_at,
        }
    }
}

/// A page of profiles.
#[derive(Serialize, ToSchema)]
pub struct ProfileList {
    data: Vec<ProfileView>,
    next_cursor: Option<String>,
}

fn check_schema(schema: &ProfileSchema) -> Result<(), ApiError> {
    if schema.keys.len() > 1000 {
        return Err(ApiError::validation(
            "schema",
            "at most 1000 keys per profile",
        ));
    }
    for (k, rule) in &schema.keys {
        if k.is_empty() || k.len() > 255 {
            return Err(ApiError::validation(
                "schema",
                format!("key {k:?} must be 1-255 bytes"),
            ));
        }
        if rule.unit.as_ref().is_some_and(|u| u.chars().count() > 32) {
            return Err(ApiError::validation(
                "schema",
                format!("key {k:?}: unit must be at most 32 characters"),
            ));
        }
    }
    schema
        .check()
        .map_err(|e| ApiError::validation("schema", e))
}

fn with_etag(p: Profile) -> impl IntoResponse {
    (
        [(header::ETAG, etag(p.version))],
        Json(ProfileView::from(p)),
    )
}

/// Create a profile.
#[utoipa::path(post, path = "/api/v1/profiles", tag = "profiles", security(("bearer" = [])), request_body = CreateProfile,
    responses((status = 201, body = ProfileView), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateProfile>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    validate::text("name", &req.name, 128)?;
    validate::description(req.description.as_deref())?;
    check_schema(&req.schema)?;
    let profile = s
        .meta
        .create_profile(
            p.tenant,
            req.name.trim(),
            req.description.as_deref(),
            &req.schema,
        )
        .await?;
    let audited = Audited::new(p, "profile.create", "profile", &profile.id);
    Ok((
        StatusCode::CREATED,
        audited,
        [(header::ETAG, etag(profile.version))],
        Json(ProfileView::from(profile)),
    ))
}

/// Profiles of the current tenant.
#[utoipa::path(get, path = "/api/v1/profiles", tag = "profiles", security(("bearer" = [])), params(NamedPageQuery),
    responses((status = 200, body = ProfileList), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    q: Result<Query<NamedPageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ProfileList>, ApiError> {
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
        .list_profiles(p.tenant, q.name.as_deref(), &params)
        .await?;
    Ok(Json(ProfileList {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One profile (with its ETag).
#[utoipa::path(get, path = "/api/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile id")),
    responses((status = 200, body = ProfileView), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Read)?;
    let profile = s
        .meta
        .get_profile(p.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile {id:?}")))?;
    Ok(with_etag(profile))
}

/// Change a profile (`If-Match` supported); new batches are checked against the new schema.
#[utoipa::path(patch, path = "/api/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])), request_body = UpdateProfile,
    params(("id" = String, Path, description = "Profile id"), ("If-Match" = Option<String>, Header, description = "ETag from a previous read", pattern = "^(\\*|(W/)?\"v[0-9]{1,18}\")$")),
    responses((status = 200, body = ProfileView), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
              (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 412, body = ApiError)))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    IfMatch(if_version): IfMatch,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateProfile>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    if let Some(n) = &req.name {
        validate::text("name", n, 128)?;
    }
    if let Some(schema) = &req.schema {
        check_schema(schema)?;
    }
    if let Some(d) = &req.description {
        validate::description(d.as_deref())?;
    }
    let description = req.description.as_ref().map(|d| d.as_deref());
    match s
        .meta
        .update_profile(
            p.tenant,
            &id,
            req.name.as_deref().map(str::trim),
            description,
            req.schema.as_ref(),
            if_version,
        )
        .await?
    {
        Updated::Ok(profile) => {
            let change = TenantChange::ProfileChanged {
                profile: id.clone(),
            };
            s.gateway.tenant_changed(p.tenant, change).await;
            let audited = Audited::new(p, "profile.update", "profile", &id);
            Ok((audited, with_etag(profile)))
        }
        Updated::Stale(profile) => Err(ApiError::precondition_failed(etag(profile.version))),
        Updated::NotFound => Err(ApiError::not_found(format!("no profile {id:?}"))),
    }
}

/// Delete a profile; its devices keep no profile.
#[utoipa::path(delete, path = "/api/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    if !s.meta.delete_profile(p.tenant, &id).await? {
        return Err(ApiError::not_found(format!("no profile {id:?}")));
    }
    let change = TenantChange::ProfileChanged {
        profile: id.clone(),
    };
    s.gateway.tenant_changed(p.tenant, change).await;
    let audited = Audited::new(p, "profile.delete", "profile", &id);
    Ok((audited, StatusCode::NO_CONTENT))
}

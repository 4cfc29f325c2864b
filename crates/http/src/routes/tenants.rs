//! Tenants: list one's own, create one, delete the current one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use utoipa::ToSchema;

use super::auth::MembershipView;
use crate::extract::{ApiJson, Auth, ClientIp};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validate;

/// A new tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    name: String,
}

/// A tenant.
#[derive(Serialize, ToSchema)]
pub struct TenantView {
    id: String,
    name: String,
}

/// The caller's tenants and roles.
#[derive(Serialize, ToSchema)]
pub struct TenantList {
    data: Vec<MembershipView>,
}

/// The tenants the calling user belongs to.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = TenantList), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list(State(s): State<AppState>, auth: Auth) -> Result<Json<TenantList>, ApiError> {
    let (user, _) = auth.0.user()?;
    let data = s
        .meta
        .memberships(user)
        .await?
        .into_iter()
        .map(|(t, r)| super::auth::membership(t, r))
        .collect();
    Ok(Json(TenantList { data }))
}

/// Create a tenant; the calling user becomes its owner.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", security(("bearer" = [])), request_body = CreateTenant,
    responses((status = 201, body = TenantView), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let (user, _) = auth.0.user()?;
    validate::text("name", &req.name, 128)?;
    let tenant = s.meta.create_tenant_for(user, req.name.trim()).await?;
    let mut p = auth.0.clone();
    p.tenant = tenant.id;
    s.audit(
        &p,
        &ip,
        "tenant.create",
        "tenant",
        Some(&tenant.id.to_string()),
        None,
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(TenantView {
            id: tenant.id.to_string(),
            name: tenant.name,
        }),
    ))
}

/// Delete the current tenant with all its devices, data and memberships (owner only).
#[utoipa::path(delete, path = "/api/v1/tenant", tag = "tenants", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn delete(State(s): State<AppState>, auth: Auth) -> Result<StatusCode, ApiError> {
    let p = auth.require(Action::DeleteTenant)?;
    s.meta.delete_tenant(p.tenant).await?;
    s.series.delete_tenant(p.tenant).await?;
    tracing::info!(tenant = %p.tenant, by = %p.audit_name(), "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

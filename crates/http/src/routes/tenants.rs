//! Tenants: list one's own, create one, read, configure and delete the current one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use tributary_model::TenantChange;
use tributary_store::meta::TenantSettings;
use utoipa::ToSchema;

use super::auth::MembershipView;
use crate::audit::Audited;
use crate::extract::{ApiJson, Auth};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validate;

/// A new tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(schema_with = crate::validate::schema::name)]
    name: String,
}

/// A tenant.
#[derive(Serialize, ToSchema)]
pub struct TenantView {
    id: String,
    name: String,
}

/// Longest retention a tenant may set (days).
const MAX_RETENTION_DAYS: u32 = 36_500;

/// The current tenant's settings.
#[derive(Serialize, ToSchema)]
pub struct TenantSettingsView {
    id: String,
    name: String,
    /// Days its time series are kept as set for it; null: the server's default.
    retention_days: Option<u32>,
    /// Days they are kept in effect (0: forever).
    effective_retention_days: u32,
}

/// A change to the current tenant's settings; omitted fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default)]
    #[schema(schema_with = crate::validate::schema::name_or_null)]
    name: Option<String>,
    /// Days to keep time series (0: forever), or null for the server's default.
    #[serde(default, deserialize_with = "crate::validate::whole::double_option")]
    #[schema(value_type = Option<u32>, maximum = 36500)]
    retention_days: Option<Option<u32>>,
}

fn settings_view(t: TenantSettings, default_days: u32) -> TenantSettingsView {
    TenantSettingsView {
        id: t.id.to_string(),
        name: t.name,
        retention_days: t.retention_days,
        effective_retention_days: t.retention_days.unwrap_or(default_days),
    }
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
    ApiJson(req): ApiJson<CreateTenant>,
) -> Result<impl IntoResponse, ApiError> {
    let (user, _) = auth.0.user()?;
    validate::text("name", &req.name, 128)?;
    let tenant = s.meta.create_tenant_for(user, req.name.trim()).await?;
    s.gateway
        .tenant_changed(tenant.id, TenantChange::Created)
        .await;
    let mut p = auth.0.clone();
    p.tenant = tenant.id;
    let audited = Audited::new(&p, "tenant.create", "tenant", &tenant.id);
    Ok((
        StatusCode::CREATED,
        audited,
        Json(TenantView {
            id: tenant.id.to_string(),
            name: tenant.name,
        }),
    ))
}

/// The current tenant's settings, with the retention in effect.
#[utoipa::path(get, path = "/api/v1/tenant", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = TenantSettingsView), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
) -> Result<Json<TenantSettingsView>, ApiError> {
    let p = auth.require(Action::Read)?;
    let t = s
        .meta
        .tenant_settings(p.tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant not found"))?;
    Ok(Json(settings_view(t, s.config.default_retention_days)))
}

/// Change the current tenant's name or data retention (owner or admin). A
/// shorter retention drops the older time series within the retention check interval.
#[utoipa::path(patch, path = "/api/v1/tenant", tag = "tenants", security(("bearer" = [])), request_body = UpdateTenant,
    responses((status = 200, body = TenantSettingsView), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<UpdateTenant>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::ConfigureTenant)?;
    if let Some(name) = &req.name {
        validate::text("name", name, 128)?;
    }
    if let Some(Some(days)) = req.retention_days {
        if days > MAX_RETENTION_DAYS {
            return Err(ApiError::validation(
                "retention_days",
                format!(
                    "retention_days must be at most {MAX_RETENTION_DAYS} (0 keeps data forever)"
                ),
            ));
        }
    }
    let t = s
        .meta
        .update_tenant_settings(
            p.tenant,
            req.name.as_deref().map(str::trim),
            req.retention_days,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("tenant not found"))?;
    s.gateway
        .tenant_changed(p.tenant, TenantChange::SettingsChanged)
        .await;
    let audited = Audited::new(p, "tenant.update", "tenant", &t.id)
        .detail(serde_json::json!({ "name": t.name, "retention_days": t.retention_days }));
    Ok((
        audited,
        Json(settings_view(t, s.config.default_retention_days)),
    ))
}

/// Delete the current tenant with all its devices, data and memberships (owner only).
#[utoipa::path(delete, path = "/api/v1/tenant", tag = "tenants", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn delete(State(s): State<AppState>, auth: Auth) -> Result<StatusCode, ApiError> {
    let p = auth.require(Action::DeleteTenant)?;
    s.meta.delete_tenant(p.tenant).await?;
    // Its device credentials stop working at once, on every transport.
    s.gateway
        .tenant_changed(p.tenant, TenantChange::Deleted)
        .await;
    s.series.delete_tenant(p.tenant).await?;
    tracing::info!(tenant = %p.tenant, by = %p.audit_name(), "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}

//! API keys of the current tenant.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use tributary_model::time::{now_ns, ns_to_ms};
use tributary_store::meta::{ApiKey, KeyScope, Sort, SortField};
use utoipa::ToSchema;

use super::NamedPageQuery;
use crate::audit::Audited;
use crate::extract::{ApiJson, Auth};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validate;

/// A new API key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(schema_with = crate::validate::schema::name)]
    name: String,
    /// read, write or admin.
    #[schema(schema_with = crate::validate::schema::key_scope)]
    scope: String,
    /// Expiry (ms since the epoch), in the future; never when omitted.
    #[serde(default, deserialize_with = "crate::validate::whole::option")]
    expires_at: Option<i64>,
}

/// An API key as the API shows it (never the secret, except at creation).
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    id: String,
    name: String,
    /// The key's first characters.
    prefix: String,
    scope: String,
    created_by: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    /// The key itself: shown only in the creation response.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scope: k.scope.as_str().to_string(),
            created_by: k.created_by,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            key: None,
        }
    }
}

/// A page of API keys.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    data: Vec<ApiKeyView>,
    next_cursor: Option<String>,
}

/// Create an API key; the response carries the key (once).
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])), request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyView), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::ManageApiKeys)?;
    validate::text("name", &req.name, 128)?;
    let scope: KeyScope = req
        .scope
        .parse()
        .map_err(|e: String| ApiError::validation("scope", e))?;
    if req.expires_at.is_some_and(|t| t <= ns_to_ms(now_ns())) {
        return Err(ApiError::validation(
            "expires_at",
            "expires_at must be in the future (ms since the epoch)",
        ));
    }
    let (key, secret) = s
        .auth
        .create_api_key(p, req.name.trim(), scope, req.expires_at)
        .await?;
    let audited = Audited::new(p, "api_key.create", "api_key", &key.id)
        .detail(serde_json::json!({"scope": scope}));
    let mut view = ApiKeyView::from(key);
    view.key = Some(secret);
    Ok((StatusCode::CREATED, audited, Json(view)))
}

/// API keys of the current tenant (prefixes only).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])), params(NamedPageQuery),
    responses((status = 200, body = ApiKeyList), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    q: Result<Query<NamedPageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ApiKeyList>, ApiError> {
    let p = auth.require(Action::ManageApiKeys)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let params = super::named_page_params(
        &q,
        Sort {
            field: SortField::CreatedAt,
            desc: true,
        },
    )?;
    let page = s
        .meta
        .list_api_keys(p.tenant, q.name.as_deref(), &params)
        .await?;
    Ok(Json(ApiKeyList {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = String, Path, description = "API key id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn revoke(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::ManageApiKeys)?;
    if !s.meta.revoke_api_key(p.tenant, &id).await? {
        return Err(ApiError::not_found(format!("no live API key {id:?}")));
    }
    let audited = Audited::new(p, "api_key.revoke", "api_key", &id);
    Ok((audited, StatusCode::NO_CONTENT))
}

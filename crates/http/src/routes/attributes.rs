//! Device attributes through the user API.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use tributary_store::meta::{Attribute, AttributeScope};
use utoipa::{IntoParams, ToSchema};

use super::devices::find;
use crate::audit::Audited;
use crate::extract::{ApiJson, Auth};
use crate::problem::ApiError;
use crate::state::AppState;

pub use tributary_ingest::attributes::MAX_ATTRIBUTES;

/// One attribute value and when it was set.
#[derive(Serialize, ToSchema)]
pub struct AttributeView {
    /// Any JSON value.
    #[schema(schema_with = crate::validate::schema::any)]
    value: serde_json::Value,
    /// Last update (ms).
    updated_at: i64,
}

/// Attributes by scope, then key.
#[derive(Serialize, ToSchema)]
pub struct AttributesView {
    client: BTreeMap<String, AttributeView>,
    server: BTreeMap<String, AttributeView>,
    shared: BTreeMap<String, AttributeView>,
}

/// Which attributes to read.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttributeQuery {
    /// Comma-separated scopes (client, server, shared); all when omitted.
    #[param(pattern = "^\\s*(client|server|shared)?\\s*(,\\s*(client|server|shared)?\\s*)*$")]
    scope: Option<String>,
    /// Comma-separated keys; all when omitted.
    keys: Option<String>,
}

/// Which attributes to delete.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Comma-separated keys (required).
    #[param(required = true, pattern = "[^,\\s]")]
    keys: Option<String>,
}

/// Splits a comma-separated list, dropping empty items.
pub fn csv(raw: Option<&str>) -> Vec<String> {
    raw.map(|r| {
        r.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// Parses a scope name, naming the field on error.
pub fn scope(raw: &str) -> Result<AttributeScope, ApiError> {
    raw.parse()
        .map_err(|e: String| ApiError::validation("scope", e))
}

/// The attributes grouped as the API shows them.
pub fn view(mut by_scope: BTreeMap<AttributeScope, BTreeMap<String, Attribute>>) -> AttributesView {
    let mut take = |s| {
        by_scope
            .remove(&s)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, a)| {
                (
                    k,
                    AttributeView {
                        value: a.value,
                        updated_at: a.updated_at,
                    },
                )
            })
            .collect()
    };
    AttributesView {
        client: take(AttributeScope::Client),
        server: take(AttributeScope::Server),
        shared: take(AttributeScope::Shared),
    }
}

/// A device's attributes.
#[utoipa::path(get, path = "/api/v1/devices/{id}/attributes", tag = "attributes", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id"), AttributeQuery),
    responses((status = 200, body = AttributesView), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    q: Result<Query<AttributeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AttributesView>, ApiError> {
    let p = auth.require(Action::Read)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let device = find(&s, p.tenant, &id).await?;
    let scopes = csv(q.scope.as_deref())
        .iter()
        .map(|s| scope(s))
        .collect::<Result<Vec<_>, _>>()?;
    let attrs = s
        .meta
        .get_attributes(p.tenant, device.id, &scopes, &csv(q.keys.as_deref()))
        .await?;
    Ok(Json(view(attrs)))
}

/// Set server or shared attributes (`{"key": value, …}`); client attributes come from the device.
#[utoipa::path(post, path = "/api/v1/devices/{id}/attributes/{scope}", tag = "attributes", security(("bearer" = [])),
    request_body(content = AttributeValues, description = "Attribute keys and JSON values"),
    params(("id" = String, Path, description = "Device id"), ("scope" = String, Path, description = "server or shared", pattern = "^(server|shared)$")),
    responses((status = 204), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn set(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, raw_scope)): Path<(String, String)>,
    ApiJson(values): ApiJson<BTreeMap<String, serde_json::Value>>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    let device = find(&s, p.tenant, &id).await?;
    let scope = scope(&raw_scope)?;
    if scope == AttributeScope::Client {
        return Err(ApiError::validation(
            "scope",
            "client attributes are written by the device; use server or shared",
        ));
    }
    s.gateway
        .set_attributes(p.tenant, device.id, scope, &values)
        .await?;
    let keys: Vec<&String> = values.keys().collect();
    let audited = Audited::new(p, "attributes.set", "device", &id)
        .detail(serde_json::json!({"scope": scope, "keys": keys}));
    Ok((audited, StatusCode::NO_CONTENT))
}

/// Delete attributes of one scope by key.
#[utoipa::path(delete, path = "/api/v1/devices/{id}/attributes/{scope}", tag = "attributes", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id"), ("scope" = String, Path, description = "client, server or shared", pattern = "^(client|server|shared)$"), DeleteQuery),
    responses((status = 204), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, raw_scope)): Path<(String, String)>,
    q: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::Write)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let device = find(&s, p.tenant, &id).await?;
    let scope = scope(&raw_scope)?;
    let keys = csv(q.keys.as_deref());
    if keys.is_empty() {
        return Err(ApiError::validation(
            "keys",
            "name the keys to delete: ?keys=a,b",
        ));
    }
    // Live clients and devices (shared scope) see removed attributes as null.
    s.gateway
        .delete_attributes(p.tenant, device.id, scope, keys.clone())
        .await?;
    let audited = Audited::new(p, "attributes.delete", "device", &id)
        .detail(serde_json::json!({"scope": scope, "keys": keys}));
    Ok((audited, StatusCode::NO_CONTENT))
}

/// The body of an attribute write: 1 to 1000 keys as [`crate::validate::key`], any JSON
/// value but null.
pub struct AttributeValues;

impl utoipa::PartialSchema for AttributeValues {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{RefOr, Schema};
        let not_null = Schema::Object(
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::String,
                    Type::Number,
                    Type::Integer,
                    Type::Boolean,
                    Type::Object,
                    Type::Array,
                ]))
                .build(),
        );
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property_names(Some(crate::validate::schema::key()))
                .additional_properties(Some(RefOr::T(not_null)))
                .min_properties(Some(1))
                .max_properties(Some(MAX_ATTRIBUTES))
                .description(Some("Attribute keys and JSON values (not null)"))
                .build(),
        ))
    }
}

impl utoipa::ToSchema for AttributeValues {}

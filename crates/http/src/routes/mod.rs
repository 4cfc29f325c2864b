//! The route table: one module per area. Every route is registered together
//! with its OpenAPI description, so the document covers what is served.

mod admin;
mod api_keys;
mod attributes;
mod audit;
mod auth;
mod device_api;
mod device_ws;
mod devices;
mod groups;
mod line_write;
mod members;
mod ops;
mod profiles;
mod rpc;
mod telemetry;
mod tenants;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use serde::Deserialize;
use tributary_store::meta::{ListParams, Sort};
use utoipa::openapi::OpenApi as Document;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::list_params;
use crate::openapi::ApiDoc;
use crate::problem::ApiError;
use crate::state::AppState;

/// Common list parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `name`, `created_at`, or either with `-` for descending.
    #[param(pattern = "^-?(name|created_at)$")]
    sort: Option<String>,
}

/// List parameters with a name filter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NamedPageQuery {
    /// 1–1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `name`, `created_at`, or either with `-` for descending.
    #[param(pattern = "^-?(name|created_at)$")]
    sort: Option<String>,
    /// Name contains this (case-insensitive).
    name: Option<String>,
}

/// The store parameters of a [`NamedPageQuery`].
fn named_page_params(q: &NamedPageQuery, default: Sort) -> Result<ListParams, ApiError> {
    list_params(
        q.limit.as_deref(),
        q.cursor.as_deref(),
        q.sort.as_deref(),
        default,
    )
}

/// The store parameters of a [`PageQuery`].
fn page_params(q: &PageQuery, default: Sort) -> Result<ListParams, ApiError> {
    list_params(
        q.limit.as_deref(),
        q.cursor.as_deref(),
        q.sort.as_deref(),
        default,
    )
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .routes(routes!(ops::reference))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::switch))
        .routes(routes!(auth::accept_invite))
        .routes(routes!(auth::me))
        .routes(routes!(tenants::list, tenants::create))
        .routes(routes!(tenants::get, tenants::update, tenants::delete))
        .routes(routes!(members::list))
        .routes(routes!(members::get, members::update, members::remove))
        .routes(routes!(members::create_invite, members::list_invites))
        .routes(routes!(members::revoke_invite))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(devices::create, devices::list))
        .routes(routes!(devices::get, devices::update, devices::delete))
        .routes(routes!(devices::rotate_token))
        .routes(routes!(devices::set_mqtt, devices::delete_mqtt))
        .routes(routes!(rpc::call))
        .routes(routes!(attributes::get))
        .routes(routes!(attributes::set, attributes::delete))
        .routes(routes!(telemetry::history))
        .routes(routes!(telemetry::latest))
        .routes(routes!(telemetry::fleet_latest))
        .routes(routes!(groups::create, groups::list))
        .routes(routes!(groups::get, groups::update, groups::delete))
        .routes(routes!(groups::add_device, groups::remove_device))
        .routes(routes!(profiles::create, profiles::list))
        .routes(routes!(profiles::get, profiles::update, profiles::delete))
        .routes(routes!(audit::list))
        .routes(routes!(admin::log))
        .routes(routes!(crate::live::ws::websocket))
        .routes(routes!(crate::live::sse::sse))
        .routes(routes!(device_api::telemetry))
        .routes(routes!(device_ws::device_ws))
        .routes(routes!(line_write::write_v1))
        .routes(routes!(line_write::write_v2))
        .routes(routes!(line_write::ping))
        .routes(routes!(line_write::query))
        .routes(routes!(
            device_api::post_attributes,
            device_api::get_attributes
        ))
}

/// The OpenAPI document of every route [`router`] serves.
pub fn openapi_document() -> Document {
    let (_, doc) = api().split_for_parts();
    finish(doc)
}

/// What the route table's document still needs to say exactly what the
/// server does: unique operation ids and the error contract.
fn finish(mut doc: Document) -> Document {
    unique_operation_ids(&mut doc);
    crate::openapi::error_contract(&mut doc);
    doc
}

/// Operation ids default to handler names (`list`, `get`…); prefix the tag to make them unique.
fn unique_operation_ids(doc: &mut Document) {
    for op in crate::openapi::operations_mut(doc) {
        let tag = op
            .tags
            .as_ref()
            .and_then(|t| t.first())
            .cloned()
            .unwrap_or_default()
            .replace('-', "_");
        if let Some(id) = &op.operation_id {
            op.operation_id = Some(format!("{tag}_{id}"));
        }
    }
}

/// Every route Tributary serves over HTTP.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let (routes, doc) = api().split_for_parts();
    let doc = finish(doc);
    let doc = ops::OpenApiJson(Arc::new(doc.to_pretty_json().unwrap_or_default()));
    routes
        .route("/mqtt", axum::routing::get(crate::mqtt_ws::mqtt_ws))
        .route("/", axum::routing::get(crate::web::index))
        .route("/{*path}", axum::routing::get(crate::web::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(doc))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::audit::record,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this endpoint does not support the request's method",
    )
}

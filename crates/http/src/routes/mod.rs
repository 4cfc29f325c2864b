//! The route table: one module per area.

mod auth;
mod device_api;
mod devices;
mod live;
mod ops;
mod telemetry;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::problem::ApiError;
use crate::state::AppState;

/// Every route Tributary serves over HTTP.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/devices", post(devices::create).get(devices::list))
        .route(
            "/api/v1/devices/{id}",
            get(devices::get).delete(devices::delete),
        )
        .route("/api/v1/devices/{id}/token", post(devices::rotate_token))
        .route("/api/v1/devices/{id}/telemetry", get(telemetry::history))
        .route("/api/v1/devices/{id}/latest", get(telemetry::latest))
        .route("/api/v1/live", get(live::websocket))
        .route("/api/v1/{token}/telemetry", post(device_api::telemetry))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
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

//! Health, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::problem::ApiError;
use crate::state::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: started, not draining, and the metadata store answers.
pub async fn readyz(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if !s.is_ready() {
        return Err(ApiError::unavailable("starting up or shutting down"));
    }
    s.meta
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(format!("metadata store: {e}")))?;
    Ok((
        StatusCode::OK,
        Json(
            json!({"status": "ready", "committed_lsn": s.pipeline.committed_lsn(), "applied_lsn": s.pipeline.applied_lsn()}),
        ),
    ))
}

/// Prometheus text exposition.
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

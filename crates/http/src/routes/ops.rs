//! Health, readiness, Prometheus metrics, the OpenAPI document and its reference page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::ApiError;
use crate::state::AppState;

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// Readiness and how far the pipeline has got.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    status: &'static str,
    committed_lsn: u64,
    applied_lsn: u64,
}

/// The OpenAPI document, rendered once at start.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<String>);

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: started, not draining, and the metadata store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Ready), (status = 503, body = ApiError)))]
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
        Json(Ready {
            status: "ready",
            committed_lsn: s.pipeline.committed_lsn(),
            applied_lsn: s.pipeline.applied_lsn(),
        }),
    ))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    s.pipeline.report_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
}

/// The interactive API reference.
#[utoipa::path(get, path = "/api/docs", tag = "operations", responses((status = 200, content_type = "text/html", body = String)))]
pub async fn reference() -> Html<&'static str> {
    Html(crate::openapi::REFERENCE_PAGE)
}

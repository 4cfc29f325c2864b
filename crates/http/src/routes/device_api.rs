//! The ThingsBoard-compatible device HTTP API: `POST /api/v1/{token}/telemetry`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use tributary_model::time::now_ns;
use tributary_model::{parse_telemetry, Batch};

use crate::extract::read_body;
use crate::problem::ApiError;
use crate::state::AppState;

fn rejected(reason: &'static str, e: ApiError) -> ApiError {
    metrics::counter!("tributary_batches_rejected_total", "reason" => reason).increment(1);
    e
}

/// Authenticates the device, parses the payload, and acknowledges once it is durable.
pub async fn telemetry(
    State(s): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let limit = s.config.max_body_bytes;
    let device = s.auth.device(&token).await?.ok_or_else(|| {
        rejected(
            "unauthorized",
            ApiError::unauthorized("unknown device access token"),
        )
    })?;
    let bytes = read_body(&headers, body, limit).await.map_err(|e| {
        rejected(
            if e.status == 413 {
                "too_large"
            } else {
                "malformed"
            },
            e,
        )
    })?;
    let points = parse_telemetry(&bytes, now_ns(), &s.config.parse_limits).map_err(|e| {
        let reason = match e {
            tributary_model::ParseError::Json(_) => "malformed",
            _ => "invalid",
        };
        let field = e.field().map(str::to_string);
        let mut err = ApiError::invalid_payload(e.to_string());
        err.field = field;
        rejected(reason, err)
    })?;
    s.pipeline
        .append(Batch {
            tenant: device.tenant,
            device: device.id,
            points,
        })
        .await
        .map_err(|e| {
            rejected(
                "unavailable",
                ApiError::unavailable(format!("telemetry not stored: {e}")),
            )
        })?;
    Ok(StatusCode::OK)
}

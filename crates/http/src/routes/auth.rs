//! Login and session refresh.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::Session;

use crate::extract::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Serialize)]
pub struct SessionResponse {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: i64,
}

impl From<Session> for SessionResponse {
    fn from(s: Session) -> Self {
        Self {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            token_type: "Bearer",
            expires_in: s.expires_in,
        }
    }
}

/// `POST /api/v1/auth/login`: email + password → access and refresh tokens.
pub async fn login(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    if req.email.len() > 320 || req.password.len() > 1024 {
        return Err(tributary_auth::AuthError::BadCredentials.into());
    }
    Ok(Json(s.auth.login(&req.email, &req.password).await?.into()))
}

/// `POST /api/v1/auth/refresh`: a refresh token → a new pair (the old one is spent).
pub async fn refresh(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    Ok(Json(s.auth.refresh(&req.refresh_token).await?.into()))
}

//! Request extractors that turn every failure into a problem response.

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use tributary_auth::policy::{allows, Action};
use tributary_auth::Principal;

use crate::problem::ApiError;
use crate::state::AppState;

/// A JSON body whose rejections are problem responses naming what was wrong.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == 413 => Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                e.body_text(),
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "expected Content-Type: application/json",
            )),
            Err(e) => Err(ApiError::invalid_json(e.body_text())),
        }
    }
}

/// The caller, authenticated by `Authorization: Bearer <access token>`.
pub struct Auth(pub Principal);

impl Auth {
    /// Fails with 403 unless the caller's role allows `action`.
    pub fn require(&self, action: Action) -> Result<&Principal, ApiError> {
        if allows(self.0.role, action) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!(
                "role {} may not {}",
                self.0.role,
                match action {
                    Action::ReadDevices => "read devices",
                    Action::WriteDevices => "change devices",
                }
            )))
        }
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("missing credentials: send Authorization: Bearer <access token>")
        })?;
        Ok(Auth(state.auth.principal(token)?))
    }
}

/// Reads a whole body, refusing it with 413 past `limit` bytes.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // to_bytes fails either on the limit or on a broken connection.
        if is_length_limit(&e) {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request(format!("could not read request body: {e}"))
        }
    })
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

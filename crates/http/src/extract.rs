//! Request extractors that turn every failure into a problem response.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, IF_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use tributary_auth::policy::Action;
use tributary_auth::Principal;
use tributary_store::meta::{ListParams, Sort};

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
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                e.body_text(),
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "expected Content-Type: application/json",
            )),
            Err(e) => Err(ApiError::invalid_json(e.body_text())),
        }
    }
}

/// The caller, authenticated by `Authorization: Bearer <access token or API key>`.
pub struct Auth(pub Principal);

impl Auth {
    /// Fails with 403 unless the caller's role allows `action`.
    pub fn require(&self, action: Action) -> Result<&Principal, ApiError> {
        self.0.require(action)?;
        Ok(&self.0)
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
            ApiError::unauthorized(
                "missing credentials: send Authorization: Bearer <access token or API key>",
            )
        })?;
        Ok(Auth(state.auth.authenticate(token).await?))
    }
}

/// The client's address, for rate limits and the audit log.
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "unknown".into()),
        ))
    }
}

/// The version an `If-Match` header names (`"v3"`), if any; `*` matches anything.
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get(IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let raw = raw.to_str().unwrap_or_default().trim();
        if raw == "*" {
            return Ok(IfMatch(None));
        }
        let tag = raw.trim_start_matches("W/").trim_matches('"');
        tag.strip_prefix('v')
            .and_then(|v| v.parse().ok())
            .map(|v| IfMatch(Some(v)))
            .ok_or_else(|| {
                ApiError::validation(
                    "If-Match",
                    format!("If-Match {raw:?} is not an ETag this API returned"),
                )
            })
    }
}

/// The ETag of a resource at `version`.
pub fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// Turns the common list parameters into store parameters, with errors naming the field.
pub fn list_params(
    limit: Option<&str>,
    cursor: Option<&str>,
    sort: Option<&str>,
    default_sort: Sort,
) -> Result<ListParams, ApiError> {
    let limit = match limit {
        None => 100,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                ApiError::validation("limit", "limit must be a whole number between 1 and 1000")
            })?,
    };
    let sort = match sort {
        None => default_sort,
        Some(s) => s
            .parse()
            .map_err(|e: String| ApiError::validation("sort", e))?,
    };
    Ok(ListParams {
        limit,
        cursor: cursor.map(str::to_string),
        sort,
    })
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

//! Request extractors that turn every failure into a problem response.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
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

/// A JSON object body whose rejections are problem responses naming what
/// was wrong. Only an object is taken: serde would read an array into a
/// struct field by field (`["x"]` as a rename).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "expected Content-Type: application/json",
            ));
        }
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) if caused_by::<crate::server::BodyTimeout>(&e) => return Err(body_timeout()),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                    e.body_text(),
                ))
            }
            Err(e) => return Err(ApiError::bad_request(e.body_text())),
        };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::invalid_json(
                "the body must be a JSON object ({...})",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(ApiError::invalid_json(e.body_text())),
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or `…+json`).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
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

/// A request without `Authorization` has no caller; one with a bad credential is refused.
impl axum::extract::OptionalFromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Ok(None);
        }
        <Auth as FromRequestParts<AppState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// The client's address, for rate limits and the audit log (behind a
/// trusted proxy, the one it names).
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let forwarded = parts.headers.get("x-forwarded-for");
        Ok(ClientIp(client_ip(peer, forwarded, state)))
    }
}

/// The client's address as the audit log and rate limits name it: the
/// peer's, or behind a trusted proxy the one it forwards for.
pub(crate) fn client_ip(
    peer: Option<SocketAddr>,
    forwarded: Option<&axum::http::HeaderValue>,
    state: &AppState,
) -> String {
    let Some(peer) = peer else {
        return "unknown".into();
    };
    let forwarded = forwarded.and_then(|v| v.to_str().ok());
    crate::client_addr::client_ip(peer.ip(), forwarded, &state.config.trusted_proxies).to_string()
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
        // to_bytes fails on the limit, the body deadline or a broken connection.
        if caused_by::<http_body_util::LengthLimitError>(&e) {
            ApiError::too_large(limit)
        } else if caused_by::<crate::server::BodyTimeout>(&e) {
            body_timeout()
        } else {
            ApiError::bad_request(format!("could not read request body: {e}"))
        }
    })
}

/// Whether `e` or an error behind it is a `T`.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The 408 of a body that did not arrive in time.
fn body_timeout() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request-timeout",
        "Request timeout",
        "the request body did not arrive in time",
    )
}

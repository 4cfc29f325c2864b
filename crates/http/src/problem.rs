//! Errors as `application/problem+json` (RFC 9457) with a stable `type`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Headers that go with some problems.
#[derive(Debug, Clone, Default)]
pub struct ProblemHeaders {
    /// Seconds to wait before retrying, for 429 and 503.
    pub retry_after: Option<u64>,
    /// Current entity tag, for 412.
    pub etag: Option<String>,
}

/// An API error: becomes a problem+json response (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiError {
    /// Stable identifier of the kind of problem, e.g. `/problems/invalid-payload`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: &'static str,
    /// HTTP status code.
    pub status: u16,
    /// What exactly was wrong, for a human.
    pub detail: String,
    /// The offending field, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Response headers some problems carry (`Retry-After`, `ETag`).
    #[serde(skip)]
    #[schema(ignore)]
    pub headers: Option<Box<ProblemHeaders>>,
}

impl ApiError {
    /// A problem of `slug` kind with `status`.
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            headers: None,
        }
    }

    /// Names the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 400: the body is not valid JSON of the expected shape.
    pub fn invalid_json(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-json",
            "Invalid JSON body",
            detail,
        )
    }

    /// 400: a device payload was rejected.
    pub fn invalid_payload(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-payload",
            "Invalid telemetry payload",
            detail,
        )
    }

    /// 400: a field fails validation.
    pub fn validation(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "validation",
            "Validation failed",
            detail,
        )
        .with_field(field)
    }

    /// 401: no valid credential.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 403: valid credential, not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 404: no such resource (in the caller's tenant).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 409: conflicts with existing state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 413: body over the configured limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 412: `If-Match` named an older version.
    pub fn precondition_failed(current_etag: String) -> Self {
        let mut e = Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            "Precondition failed",
            format!("the resource changed since you read it; it is now {current_etag}: read it again and retry"),
        );
        e.headers = Some(Box::new(ProblemHeaders {
            retry_after: None,
            etag: Some(current_etag),
        }));
        e
    }

    /// 429: too many attempts.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            detail,
        );
        e.headers = Some(Box::new(ProblemHeaders {
            retry_after: Some(retry_after),
            etag: None,
        }));
        e
    }

    /// 503: cannot serve now; retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        e.headers = Some(Box::new(ProblemHeaders {
            retry_after: Some(1),
            etag: None,
        }));
        e
    }

    /// A write the log refused: 507 when its disk is full, else 503; both
    /// with `Retry-After`, since the log takes writes again by itself.
    pub fn not_stored(what: &str, e: &tributary_log::WalError) -> Self {
        let mut err = Self::unavailable(format!("{what} not stored: {e}"));
        if matches!(e, tributary_log::WalError::DiskFull) {
            err.status = StatusCode::INSUFFICIENT_STORAGE.as_u16();
            err.kind = "/problems/insufficient-storage".into();
            err.title = "Insufficient storage";
        }
        err
    }

    /// 500: a fault of the server; details go to the log, not the client.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "the server failed to handle the request; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let extra = self.headers.as_deref().cloned().unwrap_or_default();
        if let Some(secs) = extra.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(etag) = extra
            .etag
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            h.insert(header::ETAG, etag);
        }
        res
    }
}

impl From<tributary_store::StoreError> for ApiError {
    fn from(e: tributary_store::StoreError) -> Self {
        match e {
            tributary_store::StoreError::Conflict(what) => {
                ApiError::conflict(format!("{what} already exists"))
            }
            tributary_store::StoreError::Invalid(detail) => ApiError::bad_request(detail),
            tributary_store::StoreError::LimitReached(detail) => ApiError::new(
                StatusCode::FORBIDDEN,
                "limit-reached",
                "Limit reached",
                detail,
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<tributary_ingest::IngestError> for ApiError {
    fn from(e: tributary_ingest::IngestError) -> Self {
        use tributary_ingest::IngestError as I;
        match e {
            I::UnknownDevice => ApiError::unauthorized(e.to_string()),
            I::Malformed { detail } => ApiError::invalid_payload(detail),
            I::Invalid { field, detail } => {
                let err = ApiError::invalid_payload(detail);
                match field {
                    Some(f) => err.with_field(f),
                    None => err,
                }
            }
            I::InvalidAttribute { field, detail } => ApiError::validation(&field, detail),
            I::Profile { field, detail } => ApiError::invalid_payload(detail).with_field(field),
            I::NotStored(wal) => ApiError::not_stored("write", &wal),
            I::Store(s) => s.into(),
            I::Unavailable(detail) => ApiError::unavailable(detail),
        }
    }
}

impl From<tributary_auth::AuthError> for ApiError {
    fn from(e: tributary_auth::AuthError) -> Self {
        use tributary_auth::AuthError as A;
        match e {
            A::BadCredentials | A::InvalidToken | A::TokenReuse | A::SessionRevoked => {
                ApiError::unauthorized(e.to_string())
            }
            A::NoTenant | A::Forbidden(_) => ApiError::forbidden(e.to_string()),
            A::RateLimited { retry_after } => ApiError::rate_limited(e.to_string(), retry_after),
            A::InvalidInvite => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-invite",
                "Invalid invitation",
                e.to_string(),
            ),
            A::WeakPassword(detail) => ApiError::validation("password", detail),
            A::Store(s) => s.into(),
            A::Internal(_) => ApiError::internal(e),
        }
    }
}

//! Login, sessions, invitations and the caller's own account.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::{Actor, Session};
use tributary_model::TenantId;
use utoipa::ToSchema;

use crate::audit::Audited;
use crate::extract::{ApiJson, Auth, ClientIp};
use crate::problem::ApiError;
use crate::state::AppState;

/// Email and password, optionally the tenant to act in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    /// Tenant id; the user's first tenant when omitted.
    #[serde(default)]
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    tenant_id: Option<String>,
}

/// A refresh token to exchange.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// A new pair of tokens.
#[derive(Serialize, ToSchema)]
pub struct SessionResponse {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
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

/// Current and new password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// The tenant to switch to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchTenant {
    #[schema(format = Uuid)]
    tenant_id: String,
}

/// An invitation token, and the password to log in with unless the request
/// carries the invited user's own session (`Authorization: Bearer`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvite {
    #[schema(max_length = 256)]
    token: String,
    /// For a new user: the password to set. For an existing user: their
    /// password (not needed when logged in as them).
    #[serde(default)]
    #[schema(max_length = 1024)]
    password: Option<String>,
}

/// One tenant membership of the caller.
#[derive(Serialize, ToSchema)]
pub struct MembershipView {
    tenant_id: String,
    name: String,
    role: String,
}

/// Who the caller is.
#[derive(Serialize, ToSchema)]
pub struct MeView {
    user_id: String,
    email: String,
    tenant_id: String,
    role: String,
    tenants: Vec<MembershipView>,
}

fn tenant_id(raw: &str, field: &str) -> Result<TenantId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::validation(field, format!("{field} is not a tenant id")))
}

/// Log in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionResponse), (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 403, body = ApiError, description = "not a member of the tenant asked for"),
              (status = 429, body = ApiError, description = "too many failures; see Retry-After")))]
pub async fn login(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    if req.email.len() > 320 || req.password.len() > 1024 {
        return Err(tributary_auth::AuthError::BadCredentials.into());
    }
    let tenant = req
        .tenant_id
        .as_deref()
        .map(|t| tenant_id(t, "tenant_id"))
        .transpose()?;
    Ok(Json(
        s.auth
            .login(&req.email, &req.password, tenant, &ip)
            .await?
            .into(),
    ))
}

/// Exchange a refresh token for a new pair (the old one is spent).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = SessionResponse), (status = 400, body = ApiError), (status = 401, body = ApiError)))]
pub async fn refresh(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    Ok(Json(s.auth.refresh(&req.refresh_token).await?.into()))
}

/// End the current session: its access and refresh tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn logout(State(s): State<AppState>, auth: Auth) -> Result<StatusCode, ApiError> {
    s.auth.logout(&auth.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the caller's password; their other sessions end.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", security(("bearer" = [])), request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn change_password(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<impl IntoResponse, ApiError> {
    s.auth
        .change_password(&auth.0, &req.current_password, &req.new_password)
        .await?;
    let user = auth.0.user()?.0.to_string();
    let audited = Audited::new(&auth.0, "user.password_change", "user", &user);
    Ok((audited, StatusCode::NO_CONTENT))
}

/// Open a session in another tenant the caller belongs to.
#[utoipa::path(post, path = "/api/v1/auth/switch", tag = "auth", security(("bearer" = [])), request_body = SwitchTenant,
    responses((status = 200, body = SessionResponse), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn switch(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<SwitchTenant>,
) -> Result<Json<SessionResponse>, ApiError> {
    let tenant = tenant_id(&req.tenant_id, "tenant_id")?;
    Ok(Json(s.auth.switch_tenant(&auth.0, tenant).await?.into()))
}

/// Accept an invitation and log in (as the caller, when the request carries a user session).
#[utoipa::path(post, path = "/api/v1/auth/accept-invite", tag = "auth", request_body = AcceptInvite,
    security((), ("bearer" = [])),
    responses((status = 200, body = SessionResponse), (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 403, body = ApiError, description = "the invitation names another account than the caller's"),
              (status = 429, body = ApiError, description = "too many failures; see Retry-After")))]
pub async fn accept_invite(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: Option<Auth>,
    ApiJson(req): ApiJson<AcceptInvite>,
) -> Result<(Option<Audited>, Json<SessionResponse>), ApiError> {
    let password = req.password.as_deref();
    if req.token.len() > 256 || password.is_some_and(|p| p.len() > 1024) {
        return Err(tributary_auth::AuthError::InvalidInvite.into());
    }
    let caller = caller.map(|Auth(p)| p);
    let (invite, session) = s
        .auth
        .accept_invite(&req.token, password, caller.as_ref(), &ip)
        .await?;
    // The new session is the one who accepted: the entry names it.
    let audited = s
        .auth
        .authenticate(&session.access_token)
        .await
        .ok()
        .map(|p| {
            Audited::new(&p, "invite.accept", "invite", &invite.id)
                .detail(serde_json::json!({"role": invite.role}))
        });
    Ok((audited, Json(session.into())))
}

/// The caller: user, tenant, role, and every tenant they belong to.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeView), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn me(State(s): State<AppState>, auth: Auth) -> Result<Json<MeView>, ApiError> {
    let Actor::User { id, .. } = &auth.0.actor else {
        return Err(tributary_auth::AuthError::Forbidden(
            "this action needs a user session, not an API key".into(),
        )
        .into());
    };
    let user = s
        .meta
        .user_by_id(*id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    let tenants = s
        .meta
        .memberships(*id)
        .await?
        .into_iter()
        .map(|(t, r)| membership(t, r))
        .collect();
    Ok(Json(MeView {
        user_id: id.to_string(),
        email: user.email,
        tenant_id: auth.0.tenant.to_string(),
        role: auth.0.role.to_string(),
        tenants,
    }))
}

/// The view of one membership.
pub fn membership(t: tributary_store::Tenant, r: tributary_store::Role) -> MembershipView {
    MembershipView {
        tenant_id: t.id.to_string(),
        name: t.name,
        role: r.to_string(),
    }
}

//! Members of the current tenant, and invitations.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use tributary_model::time::{now_ns, ns_to_ms};
use tributary_model::UserId;
use tributary_store::meta::{Invite, Member, Sort, SortField};
use tributary_store::Role;
use utoipa::{IntoParams, ToSchema};

use super::PageQuery;
use crate::audit::Audited;
use crate::extract::{list_params, ApiJson, Auth};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validate;

/// A member as the API shows them.
#[derive(Serialize, ToSchema)]
pub struct MemberView {
    user_id: String,
    email: String,
    /// owner, admin, editor or viewer.
    role: String,
    /// When they joined (ms).
    created_at: i64,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        Self {
            user_id: m.user.to_string(),
            email: m.email,
            role: m.role.to_string(),
            created_at: m.created_at,
        }
    }
}

/// A page of members.
#[derive(Serialize, ToSchema)]
pub struct MemberList {
    data: Vec<MemberView>,
    next_cursor: Option<String>,
}

/// List parameters of members.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemberQuery {
    /// 1–1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `name` (email), `created_at`, or either with `-` for descending.
    #[param(pattern = "^-?(name|created_at)$")]
    sort: Option<String>,
    /// Only this role.
    #[param(schema_with = crate::validate::schema::role)]
    role: Option<String>,
    /// Email contains this.
    email: Option<String>,
}

/// A role change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// owner, admin, editor or viewer.
    #[schema(schema_with = crate::validate::schema::role)]
    role: String,
}

/// A new invitation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    #[schema(schema_with = crate::validate::schema::email)]
    email: String,
    /// owner, admin, editor or viewer.
    #[schema(schema_with = crate::validate::schema::role)]
    role: String,
    /// Lifetime in seconds (60 to 30 days; default 7 days).
    #[serde(default, deserialize_with = "crate::validate::whole::option")]
    #[schema(minimum = 60, maximum = 2592000)]
    expires_in: Option<i64>,
}

/// An invitation as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct InviteView {
    id: String,
    email: String,
    role: String,
    invited_by: String,
    created_at: i64,
    expires_at: i64,
    /// pending, accepted, revoked or expired.
    status: &'static str,
    /// The invitation token: shown only in the creation response.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<Invite> for InviteView {
    fn from(i: Invite) -> Self {
        let status = if i.accepted_at.is_some() {
            "accepted"
        } else if i.revoked_at.is_some() {
            "revoked"
        } else if i.expires_at <= ns_to_ms(now_ns()) {
            "expired"
        } else {
            "pending"
        };
        Self {
            id: i.id,
            email: i.email,
            role: i.role.to_string(),
            invited_by: i.invited_by,
            created_at: i.created_at,
            expires_at: i.expires_at,
            status,
            token: None,
        }
    }
}

/// A page of invitations.
#[derive(Serialize, ToSchema)]
pub struct InviteList {
    data: Vec<InviteView>,
    next_cursor: Option<String>,
}

fn role(field: &str, raw: &str) -> Result<Role, ApiError> {
    raw.parse()
        .map_err(|e: String| ApiError::validation(field, e))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("no member {raw:?}")))
}

/// Members of the current tenant.
#[utoipa::path(get, path = "/api/v1/users", tag = "members", security(("bearer" = [])), params(MemberQuery),
    responses((status = 200, body = MemberList), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    q: Result<Query<MemberQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MemberList>, ApiError> {
    let p = auth.require(Action::ManageMembers)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let params = list_params(
        q.limit.as_deref(),
        q.cursor.as_deref(),
        q.sort.as_deref(),
        Sort {
            field: SortField::Name,
            desc: false,
        },
    )?;
    let role = q.role.as_deref().map(|r| role("role", r)).transpose()?;
    let page = s
        .meta
        .list_members(p.tenant, role, q.email.as_deref(), &params)
        .await?;
    Ok(Json(MemberList {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One member of the current tenant.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "members", security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = MemberView), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<MemberView>, ApiError> {
    let p = auth.require(Action::ManageMembers)?;
    let user = user_id(&id)?;
    let m = s
        .meta
        .member(p.tenant, user)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no member {id:?}")))?;
    Ok(Json(m.into()))
}

/// Change a member's role. Only owners grant or take away the owner role; the last owner stays.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "members", security(("bearer" = [])), request_body = RoleChange,
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = MemberView), (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn update(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RoleChange>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::ManageMembers)?;
    let user = user_id(&id)?;
    let new_role = role("role", &req.role)?;
    let member = s
        .meta
        .member(p.tenant, user)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no member {id:?}")))?;
    if member.role == Role::Owner || new_role == Role::Owner {
        auth.require(Action::ManageOwners)?;
    }
    if member.role == Role::Owner
        && new_role != Role::Owner
        && s.meta.owner_count(p.tenant).await? <= 1
    {
        return Err(ApiError::conflict(
            "the last owner cannot be demoted; make another member owner first",
        ));
    }
    s.meta.set_role(p.tenant, user, new_role).await?;
    let audited = Audited::new(p, "user.role_change", "user", &id)
        .detail(serde_json::json!({"from": member.role, "to": new_role}));
    let m = s
        .meta
        .member(p.tenant, user)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no member {id:?}")))?;
    Ok((audited, Json(MemberView::from(m))))
}

/// Remove a member from the current tenant (their sessions there end at once).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "members", security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn remove(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::ManageMembers)?;
    let user = user_id(&id)?;
    let member = s
        .meta
        .member(p.tenant, user)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no member {id:?}")))?;
    if member.role == Role::Owner {
        auth.require(Action::ManageOwners)?;
        if s.meta.owner_count(p.tenant).await? <= 1 {
            return Err(ApiError::conflict("the last owner cannot be removed"));
        }
    }
    s.meta.remove_member(p.tenant, user).await?;
    let audited = Audited::new(p, "user.remove", "user", &id);
    Ok((audited, StatusCode::NO_CONTENT))
}

/// Invite someone into the current tenant; the response carries the token (once).
#[utoipa::path(post, path = "/api/v1/invites", tag = "members", security(("bearer" = [])), request_body = CreateInvite,
    responses((status = 201, body = InviteView), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn create_invite(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateInvite>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::ManageMembers)?;
    validate::email(&req.email)?;
    let role = role("role", &req.role)?;
    if role == Role::Owner {
        auth.require(Action::ManageOwners)?;
    }
    if let Some(ttl) = req.expires_in {
        if !(60..=30 * 24 * 3600).contains(&ttl) {
            return Err(ApiError::validation(
                "expires_in",
                "expires_in must be between 60 seconds and 30 days",
            ));
        }
    }
    let (invite, token) = s.auth.invite(p, &req.email, role, req.expires_in).await?;
    let audited = Audited::new(p, "invite.create", "invite", &invite.id)
        .detail(serde_json::json!({"email": invite.email, "role": role}));
    let mut view = InviteView::from(invite);
    view.token = Some(token);
    Ok((StatusCode::CREATED, audited, Json(view)))
}

/// Invitations of the current tenant.
#[utoipa::path(get, path = "/api/v1/invites", tag = "members", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = InviteList), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list_invites(
    State(s): State<AppState>,
    auth: Auth,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InviteList>, ApiError> {
    let p = auth.require(Action::ManageMembers)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let params = super::page_params(
        &q,
        Sort {
            field: SortField::CreatedAt,
            desc: true,
        },
    )?;
    let page = s.meta.list_invites(p.tenant, &params).await?;
    Ok(Json(InviteList {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Revoke a pending invitation.
#[utoipa::path(delete, path = "/api/v1/invites/{id}", tag = "members", security(("bearer" = [])),
    params(("id" = String, Path, description = "Invitation id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn revoke_invite(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = auth.require(Action::ManageMembers)?;
    if !s.meta.revoke_invite(p.tenant, &id).await? {
        return Err(ApiError::not_found(format!("no pending invitation {id:?}")));
    }
    let audited = Audited::new(p, "invite.revoke", "invite", &id);
    Ok((audited, StatusCode::NO_CONTENT))
}

//! The installation's own state, for its operators (the users named in
//! `system_admins`): not tied to any tenant.

use axum::extract::State;
use axum::Json;
use tributary_auth::Actor;
use tributary_log::LogStatus;

use crate::extract::Auth;
use crate::problem::ApiError;
use crate::state::AppState;

/// Fails with 403 unless the caller is a user named in `system_admins`.
async fn require_system_admin(s: &AppState, auth: &Auth) -> Result<(), ApiError> {
    let denied =
        || ApiError::forbidden("only the installation's system administrators may do this");
    let Actor::User { id, .. } = &auth.0.actor else {
        return Err(denied());
    };
    let user = s.meta.user_by_id(*id).await?.ok_or_else(denied)?;
    let email = user.email.to_ascii_lowercase();
    if s.config
        .system_admins
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&email))
    {
        Ok(())
    } else {
        Err(denied())
    }
}

/// The event log: the last durable LSN, its bytes on disk against the budget,
/// and every consumer's checkpoint and lag (events and bytes).
#[utoipa::path(get, path = "/api/v1/admin/log", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = LogStatus), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn log(State(s): State<AppState>, auth: Auth) -> Result<Json<LogStatus>, ApiError> {
    require_system_admin(&s, &auth).await?;
    Ok(Json(s.pipeline.status()))
}

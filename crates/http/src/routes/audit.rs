//! The audit log query.

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tributary_auth::policy::Action;
use tributary_store::meta::{AuditEntry, AuditFilter};
use utoipa::{IntoParams, ToSchema};

use crate::extract::Auth;
use crate::problem::ApiError;
use crate::state::AppState;

/// One audit entry.
#[derive(Serialize, ToSchema)]
pub struct AuditView {
    id: i64,
    /// When (ms).
    at: i64,
    /// `user:<id>` or `api_key:<id>`.
    actor: String,
    /// e.g. `device.create`.
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    /// Client address.
    ip: Option<String>,
    #[schema(value_type = Option<Object>)]
    detail: Option<serde_json::Value>,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            resource_type: e.resource_type,
            resource_id: e.resource_id,
            ip: e.ip,
            detail: e.detail,
        }
    }
}

/// A page of audit entries, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditList {
    data: Vec<AuditView>,
    next_cursor: Option<String>,
}

/// Filters of the audit log.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// 1–1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<i64>)]
    cursor: Option<String>,
    /// Only this action, e.g. `device.create`.
    action: Option<String>,
    /// Only this resource type, e.g. `device`.
    resource_type: Option<String>,
    /// Only this resource id.
    resource_id: Option<String>,
    /// Only this actor, e.g. `user:<id>`.
    actor: Option<String>,
    /// Not before (ms).
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// Not after (ms).
    #[param(value_type = Option<i64>)]
    to: Option<String>,
}

fn num(field: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|r| {
        r.parse::<i64>()
            .map_err(|_| ApiError::validation(field, format!("{field} must be a whole number")))
    })
    .transpose()
}

/// The tenant's audit log, newest first (admins and owners).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Auth,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    let p = auth.require(Action::ReadAudit)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = num("limit", q.limit.as_deref())?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            "limit must be between 1 and 1000",
        ));
    }
    let filter = AuditFilter {
        action: q.action,
        resource_type: q.resource_type,
        resource_id: q.resource_id,
        actor: q.actor,
        from: num("from", q.from.as_deref())?,
        to: num("to", q.to.as_deref())?,
        before_id: num("cursor", q.cursor.as_deref())?,
        limit: limit as u32,
    };
    let entries = s.meta.audit_entries(p.tenant, &filter).await?;
    let next_cursor = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(AuditList {
        data: entries.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

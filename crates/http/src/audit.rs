//! Recording who did what, in one place. A handler that changed something
//! says so by returning an [`Audited`] among its response parts; the
//! [`record`] layer writes it to the audit log once the response is a
//! success, with the client's address. No handler writes the log itself,
//! and a refused or failed request is not recorded as done (unless what it
//! did took effect regardless: [`Audited::even_if_failed`]).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponseParts, Response, ResponseParts};
use tributary_auth::Principal;
use tributary_model::TenantId;
use tributary_store::meta::NewAudit;

use crate::extract::client_ip;
use crate::state::AppState;

/// One change, as the audit log records it: by whom, in which tenant, what
/// was done to which resource.
#[derive(Clone, Debug)]
pub struct Audited {
    tenant: TenantId,
    actor: String,
    action: &'static str,
    resource_type: &'static str,
    resource_id: Option<String>,
    detail: Option<serde_json::Value>,
    even_if_failed: bool,
}

impl Audited {
    /// `p` did `action` (`device.delete`) to the `resource_type` with `resource_id`.
    pub fn new(
        p: &Principal,
        action: &'static str,
        resource_type: &'static str,
        resource_id: &(impl ToString + ?Sized),
    ) -> Self {
        Self {
            tenant: p.tenant,
            actor: p.audit_name(),
            action,
            resource_type,
            resource_id: Some(resource_id.to_string()),
            detail: None,
            even_if_failed: false,
        }
    }

    /// The same, recorded whatever the response's status: for an action
    /// that took effect although the request failed (an RPC that reached
    /// the device but timed out).
    pub fn even_if_failed(self) -> Self {
        Self {
            even_if_failed: true,
            ..self
        }
    }

    /// The same, with what else the entry should say (never a secret).
    pub fn detail(self, detail: serde_json::Value) -> Self {
        Self {
            detail: Some(detail),
            ..self
        }
    }
}

impl IntoResponseParts for Audited {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// The layer that writes a successful response's [`Audited`] to the audit
/// log; a failure to write is logged, never shown to the caller.
pub async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    // Only what the address is made of is kept: most responses record nothing.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let forwarded = req.headers().get("x-forwarded-for").cloned();
    let mut res = next.run(req).await;
    let Some(a) = res.extensions_mut().remove::<Audited>() else {
        return res;
    };
    if !res.status().is_success() && !a.even_if_failed {
        return res;
    }
    let ip = client_ip(peer, forwarded.as_ref(), &s);
    let entry = NewAudit {
        actor: &a.actor,
        action: a.action,
        resource_type: a.resource_type,
        resource_id: a.resource_id.as_deref(),
        ip: Some(&ip),
        detail: a.detail,
    };
    if let Err(e) = s.meta.audit(a.tenant, entry).await {
        tracing::error!(error = %e, action = a.action, "cannot write audit entry");
    }
    res
}

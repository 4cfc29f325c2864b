//! Recording who did what: one call per successful change.

use tributary_auth::Principal;
use tributary_store::meta::NewAudit;

use crate::state::AppState;

impl AppState {
    /// Appends an audit entry; a failure is logged, never shown to the caller.
    pub async fn audit(
        &self,
        p: &Principal,
        ip: &str,
        action: &str,
        resource_type: &str,
        resource_id: Option<&str>,
        detail: Option<serde_json::Value>,
    ) {
        let actor = p.audit_name();
        let entry = NewAudit {
            actor: &actor,
            action,
            resource_type,
            resource_id,
            ip: Some(ip),
            detail,
        };
        if let Err(e) = self.meta.audit(p.tenant, entry).await {
            tracing::error!(error = %e, action, "cannot write audit entry");
        }
    }
}

//! Who is calling: a user in a session, or an API key.

use tributary_model::{TenantId, UserId};
use tributary_store::Role;

use crate::policy::{allows, Action};
use crate::AuthError;

/// The credential behind a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Actor {
    /// A logged-in user and their session (refresh family).
    User {
        /// The user.
        id: UserId,
        /// The session.
        session: String,
    },
    /// An API key.
    ApiKey {
        /// The key's id.
        id: String,
    },
}

/// Who is calling, in which tenant, with which role.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// User or API key.
    pub actor: Actor,
    /// The tenant the call acts in.
    pub tenant: TenantId,
    /// The role (for API keys: the role of the key's scope).
    pub role: Role,
    /// When the credential expires (seconds since the epoch), if ever.
    pub expires_at: Option<i64>,
}

impl Principal {
    /// Fails unless the role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), AuthError> {
        if allows(self.role, action) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "role {} may not {}",
                self.role,
                action.name()
            )))
        }
    }

    /// The user and session, or a refusal for API keys.
    pub fn user(&self) -> Result<(UserId, &str), AuthError> {
        match &self.actor {
            Actor::User { id, session } => Ok((*id, session)),
            Actor::ApiKey { .. } => Err(AuthError::Forbidden(
                "this action needs a user session, not an API key".into(),
            )),
        }
    }

    /// How the audit log names the actor.
    pub fn audit_name(&self) -> String {
        match &self.actor {
            Actor::User { id, .. } => format!("user:{id}"),
            Actor::ApiKey { id } => format!("api_key:{id}"),
        }
    }
}

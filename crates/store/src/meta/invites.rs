//! Invitations: an admin invites an email with a role; the invitee accepts
//! with the token (stored hashed) before it expires.

use async_trait::async_trait;
use tributary_model::{TenantId, UserId};

use super::page::{Keyed, ListParams, Page};
use super::users::Role;
use crate::StoreError;

/// An invitation.
#[derive(Clone, Debug, PartialEq)]
pub struct Invite {
    /// Its id.
    pub id: String,
    /// The tenant it grants access to.
    pub tenant: TenantId,
    /// The invited email.
    pub email: String,
    /// The role it grants.
    pub role: Role,
    /// Who invited.
    pub invited_by: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Expiry (ms).
    pub expires_at: i64,
    /// When it was accepted.
    pub accepted_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

impl Keyed for Invite {
    fn key_id(&self) -> String {
        self.id.clone()
    }
    fn key_name(&self) -> &str {
        &self.email
    }
    fn key_created_at(&self) -> i64 {
        self.created_at
    }
}

/// Invitations to join a tenant.
#[async_trait]
pub trait InviteStore: Send + Sync {
    /// Stores an invitation whose token hashes to `token_hash`.
    async fn create_invite(
        &self,
        tenant: TenantId,
        email: &str,
        role: Role,
        token_hash: &str,
        invited_by: &str,
        expires_at: i64,
    ) -> Result<Invite, StoreError>;

    /// A page of the tenant's invitations (newest first by default).
    async fn list_invites(
        &self,
        tenant: TenantId,
        params: &ListParams,
    ) -> Result<Page<Invite>, StoreError>;

    /// Revokes a pending invitation of the tenant.
    async fn revoke_invite(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError>;

    /// Marks a pending, unexpired invitation accepted and returns it (once only).
    async fn take_invite(&self, token_hash: &str) -> Result<Option<Invite>, StoreError>;

    /// Undoes [`MetaStore::take_invite`] when accepting failed afterwards.
    async fn untake_invite(&self, id: &str) -> Result<(), StoreError>;

    /// Adds (or changes) `user`'s membership from an accepted invitation.
    async fn join_tenant(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
    ) -> Result<(), StoreError>;
}

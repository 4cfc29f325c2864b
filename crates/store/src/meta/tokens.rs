//! Refresh tokens: stored hashed, single use, grouped in families so that a
//! reused token can revoke every token descended from the same login.

use async_trait::async_trait;
use tributary_model::{TenantId, UserId};

use crate::StoreError;

/// A stored refresh token.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshToken {
    /// Hash of the token.
    pub hash: String,
    /// The login this token descends from.
    pub family: String,
    /// Whose it is.
    pub user: UserId,
    /// The tenant it was issued for.
    pub tenant: TenantId,
    /// Expiry (ms).
    pub expires_at: i64,
}

/// What taking a refresh token found.
#[derive(Debug, PartialEq)]
pub enum TakeOutcome {
    /// Valid and now used up.
    Taken(RefreshToken),
    /// Already used or revoked: possible theft.
    Reused(RefreshToken),
    /// Unknown or expired.
    Invalid,
}

/// Refresh tokens and the sessions they make.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new refresh token.
    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError>;

    /// Marks the token used, if it is valid; reports reuse of a spent token.
    async fn take_refresh_token(&self, hash: &str) -> Result<TakeOutcome, StoreError>;

    /// Revokes every token of a family (a login and all its rotations).
    async fn revoke_refresh_family(&self, family: &str) -> Result<u64, StoreError>;

    /// Revokes every session of a user except `keep` (a family), e.g. after a password change.
    async fn revoke_user_sessions(
        &self,
        user: UserId,
        keep: Option<&str>,
    ) -> Result<u64, StoreError>;
}

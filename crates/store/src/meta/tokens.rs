//! Refresh tokens: stored hashed, single use, grouped in families so that a
//! reused token can revoke every token descended from the same login.

use sqlx::Row;
use tributary_model::{TenantId, UserId};

use super::MetaStore;
use crate::{now_ms, StoreError};

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

impl MetaStore {
    /// Stores a new refresh token.
    pub async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family, user_id, tenant_id, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&t.hash)
        .bind(&t.family)
        .bind(t.user.to_string())
        .bind(t.tenant.to_string())
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the token used, if it is valid; reports reuse of a spent token.
    pub async fn take_refresh_token(&self, hash: &str) -> Result<TakeOutcome, StoreError> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT family, user_id, tenant_id, expires_at, used_at, revoked_at \
             FROM refresh_tokens WHERE token_hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(TakeOutcome::Invalid);
        };
        let parse_err = |what: &str| StoreError::Corrupt(what.to_string());
        let token = RefreshToken {
            hash: hash.to_string(),
            family: r.try_get("family")?,
            user: r
                .try_get::<String, _>("user_id")?
                .parse()
                .map_err(|_| parse_err("refresh token user"))?,
            tenant: r
                .try_get::<String, _>("tenant_id")?
                .parse()
                .map_err(|_| parse_err("refresh token tenant"))?,
            expires_at: r.try_get("expires_at")?,
        };
        if token.expires_at <= now {
            return Ok(TakeOutcome::Invalid);
        }
        // Only one caller can flip used_at from NULL: a concurrent reuse loses.
        let res = sqlx::query(
            "UPDATE refresh_tokens SET used_at = ? \
             WHERE token_hash = ? AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(if res.rows_affected() == 1 {
            TakeOutcome::Taken(token)
        } else {
            TakeOutcome::Reused(token)
        })
    }

    /// Revokes every token of a family (a login and all its rotations).
    pub async fn revoke_refresh_family(&self, family: &str) -> Result<u64, StoreError> {
        let res = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(family)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }
}

impl MetaStore {
    /// Revokes every session of a user except `keep` (a family), e.g. after a password change.
    pub async fn revoke_user_sessions(
        &self,
        user: UserId,
        keep: Option<&str>,
    ) -> Result<u64, StoreError> {
        let res = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL AND family != ?",
        )
        .bind(now_ms())
        .bind(user.to_string())
        .bind(keep.unwrap_or(""))
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }
}

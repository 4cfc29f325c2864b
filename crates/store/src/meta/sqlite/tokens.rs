//! SQLite: refresh tokens and the sessions they make.

use async_trait::async_trait;
use sqlx::Row;
use tributary_model::UserId;

use super::SqliteMeta;
use crate::meta::tokens::*;
use crate::{now_ms, StoreError};

#[async_trait]
impl TokenStore for SqliteMeta {
    async fn insert_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError> {
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

    async fn take_refresh_token(&self, hash: &str) -> Result<TakeOutcome, StoreError> {
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

    async fn revoke_refresh_family(&self, family: &str) -> Result<u64, StoreError> {
        let res = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(family)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    async fn revoke_user_sessions(
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

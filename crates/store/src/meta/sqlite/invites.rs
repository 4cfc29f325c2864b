//! SQLite: invitations to join a tenant.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_model::{TenantId, UserId};
use uuid::Uuid;

use super::page;
use super::SqliteMeta;
use crate::meta::invites::*;
use crate::meta::page::{ListParams, Page};
use crate::meta::users::Role;
use crate::{now_ms, StoreError};

const COLUMNS: &str =
    "id, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at";

fn invite_from(r: &SqliteRow) -> Result<Invite, StoreError> {
    let tenant: String = r.try_get("tenant_id")?;
    let role: String = r.try_get("role")?;
    Ok(Invite {
        id: r.try_get("id")?,
        tenant: tenant
            .parse()
            .map_err(|_| StoreError::Corrupt("invite tenant".into()))?,
        email: r.try_get("email")?,
        role: role.parse().map_err(StoreError::Corrupt)?,
        invited_by: r.try_get("invited_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        accepted_at: r.try_get("accepted_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

#[async_trait]
impl InviteStore for SqliteMeta {
    async fn create_invite(
        &self,
        tenant: TenantId,
        email: &str,
        role: Role,
        token_hash: &str,
        invited_by: &str,
        expires_at: i64,
    ) -> Result<Invite, StoreError> {
        let inv = Invite {
            id: Uuid::now_v7().to_string(),
            tenant,
            email: email.to_string(),
            role,
            invited_by: invited_by.to_string(),
            created_at: now_ms(),
            expires_at,
            accepted_at: None,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO invites (id, tenant_id, email, role, token_hash, invited_by, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&inv.id)
        .bind(tenant.to_string())
        .bind(&inv.email)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(&inv.invited_by)
        .bind(inv.created_at)
        .bind(inv.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(inv)
    }

    async fn list_invites(
        &self,
        tenant: TenantId,
        params: &ListParams,
    ) -> Result<Page<Invite>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {COLUMNS} FROM invites WHERE tenant_id = "));
        qb.push_bind(tenant.to_string());
        page::push_keyset(&mut qb, params, "email")?;
        page::push_order(&mut qb, params, "email");
        let rows = qb.build().fetch_all(&self.pool).await?;
        Ok(page::finish(
            rows.iter().map(invite_from).collect::<Result<_, _>>()?,
            params,
        ))
    }

    async fn revoke_invite(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE invites SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(tenant.to_string())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn take_invite(&self, token_hash: &str) -> Result<Option<Invite>, StoreError> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE invites SET accepted_at = ?1 WHERE token_hash = ?2 AND accepted_at IS NULL \
             AND revoked_at IS NULL AND expires_at > ?1 RETURNING {COLUMNS}"
        ))
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(invite_from).transpose()
    }

    async fn untake_invite(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE invites SET accepted_at = NULL WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn join_tenant(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role",
        )
        .bind(user.to_string())
        .bind(tenant.to_string())
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

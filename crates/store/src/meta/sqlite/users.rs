//! SQLite: users, tenants, and who belongs to which in what role.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_model::{TenantId, UserId};

use super::page;
use super::SqliteMeta;
use crate::meta::page::{ListParams, Page};
use crate::meta::users::*;
use crate::{now_ms, StoreError};

fn parse<T: FromStr>(s: &str, what: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} {s:?}")))
}

fn member_from(r: &SqliteRow) -> Result<Member, StoreError> {
    Ok(Member {
        user: parse(&r.try_get::<String, _>("id")?, "user id")?,
        email: r.try_get("email")?,
        role: parse(&r.try_get::<String, _>("role")?, "role")?,
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl UserStore for SqliteMeta {
    async fn tenant_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tenants")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    async fn create_tenant_with_owner(
        &self,
        tenant_name: &str,
        email: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<(Tenant, User), StoreError> {
        let tenant = Tenant {
            id: TenantId::new(),
            name: tenant_name.to_string(),
        };
        let user = User {
            id: UserId::new(),
            email: email.to_string(),
            password_hash: password_hash.to_string(),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(tenant.id.to_string())
            .bind(&tenant.name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(user.id.to_string())
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::conflict_or(e, "user with this email"))?;
        sqlx::query(
            "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(user.id.to_string())
        .bind(tenant.id.to_string())
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((tenant, user))
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, password_hash FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(User {
                id: parse(&r.try_get::<String, _>("id")?, "user id")?,
                email: r.try_get("email")?,
                password_hash: r.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    async fn memberships(&self, user: UserId) -> Result<Vec<(Tenant, Role)>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, m.role FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
             WHERE m.user_id = ? ORDER BY t.created_at, t.id",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Tenant {
                        id: parse(&r.try_get::<String, _>("id")?, "tenant id")?,
                        name: r.try_get("name")?,
                    },
                    parse(&r.try_get::<String, _>("role")?, "role")?,
                ))
            })
            .collect()
    }

    async fn role_in(&self, user: UserId, tenant: TenantId) -> Result<Option<Role>, StoreError> {
        let row = sqlx::query("SELECT role FROM memberships WHERE user_id = ? AND tenant_id = ?")
            .bind(user.to_string())
            .bind(tenant.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| parse(&r.try_get::<String, _>("role")?, "role"))
            .transpose()
    }

    async fn create_tenant_for(&self, owner: UserId, name: &str) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: TenantId::new(),
            name: name.to_string(),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(tenant.id.to_string())
            .bind(name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES (?, ?, 'owner', ?)")
            .bind(owner.to_string())
            .bind(tenant.id.to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        // Counted after the insert, holding the write lock (see
        // `check_device_limit`); too many rolls the new tenant back.
        let (owned,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM memberships WHERE user_id = ? AND role = 'owner'")
                .bind(owner.to_string())
                .fetch_one(&mut *tx)
                .await?;
        let max = self.limits.tenants_per_user;
        if owned.max(0) as u64 > max {
            return Err(StoreError::LimitReached(format!(
                "you may own at most {max} tenants (max_tenants_per_user)"
            )));
        }
        tx.commit().await?;
        Ok(tenant)
    }

    async fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError> {
        let res = sqlx::query("DELETE FROM tenants WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM audit_log WHERE tenant_id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn create_user(&self, email: &str, password_hash: &str) -> Result<User, StoreError> {
        let user = User {
            id: UserId::new(),
            email: email.to_string(),
            password_hash: password_hash.to_string(),
        };
        sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(user.id.to_string())
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::conflict_or(e, "user with this email"))?;
        Ok(user)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, password_hash FROM users WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(User {
                id,
                email: r.try_get("email")?,
                password_hash: r.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_members(
        &self,
        tenant: TenantId,
        role: Option<Role>,
        email_contains: Option<&str>,
        params: &ListParams,
    ) -> Result<Page<Member>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT * FROM (SELECT u.id AS id, u.email AS email, m.role AS role, m.created_at AS created_at \
             FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = ",
        );
        qb.push_bind(tenant.to_string()).push(") WHERE 1 = 1");
        if let Some(r) = role {
            qb.push(" AND role = ").push_bind(r.as_str());
        }
        if let Some(e) = email_contains {
            qb.push(" AND instr(lower(email), lower(")
                .push_bind(e.to_string())
                .push(")) > 0");
        }
        page::push_keyset(&mut qb, params, "email")?;
        page::push_order(&mut qb, params, "email");
        let rows = qb.build().fetch_all(&self.pool).await?;
        Ok(page::finish(
            rows.iter().map(member_from).collect::<Result<_, _>>()?,
            params,
        ))
    }

    async fn member(&self, tenant: TenantId, user: UserId) -> Result<Option<Member>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id AS id, u.email AS email, m.role AS role, m.created_at AS created_at \
             FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = ? AND m.user_id = ?",
        )
        .bind(tenant.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(member_from).transpose()
    }

    async fn set_role(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
    ) -> Result<bool, StoreError> {
        let res =
            sqlx::query("UPDATE memberships SET role = ? WHERE tenant_id = ? AND user_id = ?")
                .bind(role.as_str())
                .bind(tenant.to_string())
                .bind(user.to_string())
                .execute(&self.pool)
                .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn remove_member(&self, tenant: TenantId, user: UserId) -> Result<bool, StoreError> {
        let res = sqlx::query("DELETE FROM memberships WHERE tenant_id = ? AND user_id = ?")
            .bind(tenant.to_string())
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn owner_count(&self, tenant: TenantId) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM memberships WHERE tenant_id = ? AND role = 'owner'",
        )
        .bind(tenant.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    async fn session_role(
        &self,
        user: UserId,
        tenant: TenantId,
        family: &str,
    ) -> Result<Option<(Role, bool)>, StoreError> {
        let row = sqlx::query(
            "SELECT m.role, EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family = ?3 AND r.revoked_at IS NOT NULL) AS revoked \
             FROM memberships m WHERE m.user_id = ?1 AND m.tenant_id = ?2",
        )
        .bind(user.to_string())
        .bind(tenant.to_string())
        .bind(family)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                parse(&r.try_get::<String, _>("role")?, "role")?,
                r.try_get::<i64, _>("revoked")? != 0,
            ))
        })
        .transpose()
    }
}

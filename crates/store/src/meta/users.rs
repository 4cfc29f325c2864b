//! Tenants, users and memberships.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tributary_model::{TenantId, UserId};

use super::MetaStore;
use crate::{now_ms, StoreError};

/// A user's role within one tenant, from most to least powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including deleting the tenant.
    Owner,
    /// Manages users, keys and all resources.
    Admin,
    /// Creates and changes devices and data.
    Editor,
    /// Reads only.
    Viewer,
}

impl Role {
    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "editor" => Ok(Role::Editor),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

/// A tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
}

/// A user account with its stored password hash.
#[derive(Clone, Debug)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Login email (unique, case-insensitive).
    pub email: String,
    /// PHC-format password hash.
    pub password_hash: String,
}

fn parse<T: FromStr>(s: &str, what: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} {s:?}")))
}

impl MetaStore {
    /// Number of tenants (0 on a fresh data directory).
    pub async fn tenant_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tenants")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Creates a tenant, a user and the user's membership in one transaction.
    pub async fn create_tenant_with_owner(
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
        sqlx::query("INSERT INTO memberships (user_id, tenant_id, role) VALUES (?, ?, ?)")
            .bind(user.id.to_string())
            .bind(tenant.id.to_string())
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((tenant, user))
    }

    /// Finds a user by email (case-insensitive).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
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

    /// The tenants a user belongs to and the role in each, oldest membership first.
    pub async fn memberships(&self, user: UserId) -> Result<Vec<(Tenant, Role)>, StoreError> {
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

    /// The user's role in `tenant`, if a member.
    pub async fn role_in(
        &self,
        user: UserId,
        tenant: TenantId,
    ) -> Result<Option<Role>, StoreError> {
        let row = sqlx::query("SELECT role FROM memberships WHERE user_id = ? AND tenant_id = ?")
            .bind(user.to_string())
            .bind(tenant.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| parse(&r.try_get::<String, _>("role")?, "role"))
            .transpose()
    }
}

//! Tenants, users and memberships.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tributary_model::{TenantId, UserId};

use super::page::{Keyed, ListParams, Page};
use crate::StoreError;

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

/// A user's membership in a tenant, as the user list shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The user.
    pub user: UserId,
    /// Their email.
    pub email: String,
    /// Their role in the tenant.
    pub role: Role,
    /// When they joined (ms).
    pub created_at: i64,
}

impl Keyed for Member {
    fn key_id(&self) -> String {
        self.user.to_string()
    }
    fn key_name(&self) -> &str {
        &self.email
    }
    fn key_created_at(&self) -> i64 {
        self.created_at
    }
}

/// Users, tenants, and who belongs to which in what role.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Number of tenants (0 on a fresh data directory).
    async fn tenant_count(&self) -> Result<i64, StoreError>;

    /// Creates a tenant, a user and the user's membership in one transaction.
    async fn create_tenant_with_owner(
        &self,
        tenant_name: &str,
        email: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<(Tenant, User), StoreError>;

    /// Finds a user by email (case-insensitive).
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;

    /// The tenants a user belongs to and the role in each, oldest membership first.
    async fn memberships(&self, user: UserId) -> Result<Vec<(Tenant, Role)>, StoreError>;

    /// The user's role in `tenant`, if a member.
    async fn role_in(&self, user: UserId, tenant: TenantId) -> Result<Option<Role>, StoreError>;

    /// Creates a tenant owned by an existing user.
    async fn create_tenant_for(&self, owner: UserId, name: &str) -> Result<Tenant, StoreError>;

    /// Deletes a tenant and, by cascade, everything it owns in this store.
    async fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError>;

    /// Creates a user with no membership yet.
    async fn create_user(&self, email: &str, password_hash: &str) -> Result<User, StoreError>;

    /// A user by id.
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;

    /// Replaces a user's password hash.
    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<(), StoreError>;

    /// A page of the tenant's members, optionally of one role or matching an email part.
    async fn list_members(
        &self,
        tenant: TenantId,
        role: Option<Role>,
        email_contains: Option<&str>,
        params: &ListParams,
    ) -> Result<Page<Member>, StoreError>;

    /// One member of the tenant.
    async fn member(&self, tenant: TenantId, user: UserId) -> Result<Option<Member>, StoreError>;

    /// Changes a member's role; false when not a member.
    async fn set_role(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
    ) -> Result<bool, StoreError>;

    /// Removes a member from the tenant; false when not a member.
    async fn remove_member(&self, tenant: TenantId, user: UserId) -> Result<bool, StoreError>;

    /// How many owners the tenant has.
    async fn owner_count(&self, tenant: TenantId) -> Result<i64, StoreError>;

    /// The user's current role in `tenant` and whether session `family` was revoked.
    async fn session_role(
        &self,
        user: UserId,
        tenant: TenantId,
        family: &str,
    ) -> Result<Option<(Role, bool)>, StoreError>;
}

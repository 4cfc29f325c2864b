//! The metadata store: tenants, users and their roles, devices and their
//! credentials, profiles, groups, attributes, API keys, invites, sessions
//! and the audit log. Every device query takes the tenant it is scoped to;
//! only credential look-ups (which discover the tenant) do not.
//!
//! [`MetaStore`] is the seam: one trait per concern, each in its own file
//! beside the types it speaks in, and `MetaStore` the sum of them. Callers
//! hold an `Arc<dyn MetaStore>` and bring the concern traits into scope with
//! `use tributary_store::meta::prelude::*`. [`SqliteMeta`] (in `sqlite/`) is
//! today's implementation; a PostgreSQL one is a sibling of it, and
//! `tributary-contracts::meta` is the suite both must pass.
//!
//! - [`devices`], [`profiles`], [`groups`], [`attributes`]: a tenant's fleet
//! - [`users`]: users, tenants, memberships and roles
//! - [`api_keys`], [`tokens`], [`invites`]: credentials people hold
//! - [`tenant_settings`], [`audit`]: per-tenant settings, who did what
//! - [`page`]: keyset pagination shared by every list
//! - [`profile_cache`]: profile schemas cached for ingest

pub mod api_keys;
pub mod attributes;
pub mod audit;
pub mod devices;
pub mod groups;
pub mod invites;
pub mod page;
mod profile_cache;
pub mod profiles;
mod sqlite;
pub mod tenant_settings;
pub mod tokens;
pub mod users;

use async_trait::async_trait;

pub use api_keys::{ApiKey, ApiKeyStore, KeyScope};
pub use attributes::{Attribute, AttributeScope, AttributeStore};
pub use audit::{AuditEntry, AuditFilter, AuditStore, NewAudit};
pub use devices::{
    Device, DeviceFilter, DevicePatch, DeviceStore, MqttCredentials, NewDevice, Updated,
};
pub use groups::{Group, GroupStore};
pub use invites::{Invite, InviteStore};
pub use page::{ListParams, Page, Sort, SortField};
pub use profile_cache::ProfileCache;
pub use profiles::{Profile, ProfileStore};
pub use sqlite::SqliteMeta;
pub use tenant_settings::{SettingsStore, TenantSettings};
pub use tokens::{RefreshToken, TakeOutcome, TokenStore};
pub use users::{Member, Role, Tenant, User, UserStore};

use crate::StoreError;

/// The whole metadata store: every concern's trait, plus its health.
#[async_trait]
pub trait MetaStore:
    ApiKeyStore
    + AttributeStore
    + AuditStore
    + DeviceStore
    + GroupStore
    + InviteStore
    + ProfileStore
    + SettingsStore
    + TokenStore
    + UserStore
    + Send
    + Sync
    + 'static
{
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes the database cleanly.
    async fn close(&self);
}

/// The concern traits, for `use tributary_store::meta::prelude::*`: what a
/// caller needs in scope to call methods on a `dyn MetaStore`.
pub mod prelude {
    pub use super::{
        ApiKeyStore as _, AttributeStore as _, AuditStore as _, DeviceStore as _, GroupStore as _,
        InviteStore as _, MetaStore, ProfileStore as _, SettingsStore as _, TokenStore as _,
        UserStore as _,
    };
}

/// How much one tenant or user may create; enforced by the store itself,
/// whichever API asks.
#[derive(Clone, Copy, Debug)]
pub struct MetaLimits {
    /// Devices one tenant may have.
    pub devices_per_tenant: u64,
    /// Tenants one user may own.
    pub tenants_per_user: u64,
}

impl Default for MetaLimits {
    fn default() -> Self {
        Self {
            devices_per_tenant: 100_000,
            tenants_per_user: 10,
        }
    }
}

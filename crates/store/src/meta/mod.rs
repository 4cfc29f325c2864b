//! The metadata store: tenants, users and their roles, devices, refresh tokens.
//! SQLite in the embedded mode; every device query is scoped by tenant here.

mod api_keys;
mod attributes;
mod audit;
mod devices;
mod groups;
mod invites;
pub mod page;
mod profile_cache;
mod profiles;
mod schema;
mod tenant_settings;
mod tokens;
mod users;

use std::path::Path;

use sqlx::SqlitePool;

pub use api_keys::{ApiKey, KeyScope};
pub use attributes::{Attribute, AttributeScope};
pub use audit::{AuditEntry, AuditFilter, NewAudit};
pub use devices::{Device, DeviceFilter, DevicePatch, MqttCredentials, NewDevice, Updated};
pub use groups::Group;
pub use invites::Invite;
pub use page::{ListParams, Page, Sort, SortField};
pub use profile_cache::ProfileCache;
pub use profiles::Profile;
pub use tenant_settings::TenantSettings;
pub use tokens::{RefreshToken, TakeOutcome};
pub use users::{Member, Role, Tenant, User};

use crate::StoreError;

/// Handle to the metadata database; cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    pool: SqlitePool,
}

impl MetaStore {
    /// Opens or creates the metadata database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = crate::sqlite::open(path, 8, 8 * 1024).await?;
        crate::sqlite::migrate(&pool, schema::STEPS).await?;
        Ok(Self { pool })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the database cleanly.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Deletes row `id` of `table` (one of ours, never user input) if it is
    /// in `tenant`; false when there was none.
    async fn delete_scoped(
        &self,
        table: &'static str,
        tenant: tributary_model::TenantId,
        id: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(&format!(
            "DELETE FROM {table} WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant.to_string())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }
}

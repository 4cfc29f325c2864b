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
    limits: MetaLimits,
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

impl MetaStore {
    /// Opens or creates the metadata database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = crate::sqlite::open(path, 8, 8 * 1024).await?;
        crate::sqlite::migrate(&pool, schema::STEPS).await?;
        Ok(Self {
            pool,
            limits: MetaLimits::default(),
        })
    }

    /// The same store under other creation limits.
    pub fn with_limits(self, limits: MetaLimits) -> Self {
        Self { limits, ..self }
    }

    /// Fails when the tenant has more devices than its limit; called inside
    /// the transaction that added them, after the insert, so that it already
    /// holds SQLite's write lock (a read first would deadlock concurrent
    /// writers upgrading their locks) and the caller rolls back.
    async fn check_device_limit(
        &self,
        conn: &mut sqlx::SqliteConnection,
        tenant: tributary_model::TenantId,
    ) -> Result<(), StoreError> {
        let (have,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM devices WHERE tenant_id = ?")
            .bind(tenant.to_string())
            .fetch_one(&mut *conn)
            .await?;
        let max = self.limits.devices_per_tenant;
        if have.max(0) as u64 > max {
            return Err(StoreError::LimitReached(format!(
                "this tenant may have at most {max} devices (max_devices_per_tenant)"
            )));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A database from before per-tenant MQTT usernames keeps its devices'
    /// credentials after the upgrade.
    #[tokio::test]
    async fn mqtt_usernames_survive_the_move_to_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let pool = crate::sqlite::open(&path, 1, 1024).await.unwrap();
            crate::sqlite::migrate(&pool, &schema::STEPS[..2])
                .await
                .unwrap();
            let tenant = tributary_model::TenantId::new().to_string();
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, 't', 0)")
                .bind(&tenant)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO devices (id, tenant_id, name, token_hash, token_hint, mqtt_username, mqtt_password_hash, created_at) \
                 VALUES (?, ?, 'd', 'h', 'x', 'plc', 'phc', 0)",
            )
            .bind(tributary_model::DeviceId::new().to_string())
            .bind(&tenant)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let meta = MetaStore::open(&path).await.unwrap();
        let found = meta.devices_by_mqtt_username("plc").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, "phc");
        assert_eq!(found[0].0.mqtt.as_ref().unwrap().username, "plc");
    }
}

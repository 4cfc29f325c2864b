//! The metadata store in SQLite: [`SqliteMeta`] implements every trait of
//! [`crate::meta`], one file per concern, with the schema and its
//! migrations in [`schema`] and keyset pagination in [`page`].

mod api_keys;
mod attributes;
mod audit;
mod devices;
mod groups;
mod invites;
pub(crate) mod page;
mod profiles;
pub(crate) mod schema;
mod tenant_settings;
mod tokens;
mod users;

use std::path::Path;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::meta::page::{Keyed, ListParams, Page};
use crate::meta::{MetaLimits, MetaStore};
use crate::StoreError;

/// The metadata store in SQLite (the embedded default); cheap to clone.
#[derive(Clone)]
pub struct SqliteMeta {
    pool: SqlitePool,
    limits: MetaLimits,
}

impl SqliteMeta {
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

    /// A page of the rows of `table` (one of ours, never user input) in
    /// `tenant` whose name contains `name` (any case), as `decode` reads them.
    async fn list_by_name<T: Keyed>(
        &self,
        columns: &str,
        table: &'static str,
        tenant: tributary_model::TenantId,
        name: Option<&str>,
        params: &ListParams,
        decode: fn(&SqliteRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {columns} FROM {table} WHERE tenant_id = "));
        qb.push_bind(tenant.to_string());
        if let Some(n) = name {
            qb.push(" AND instr(lower(name), lower(")
                .push_bind(n.to_string())
                .push(")) > 0");
        }
        page::push_keyset(&mut qb, params, "name")?;
        page::push_order(&mut qb, params, "name");
        let rows = qb.build().fetch_all(&self.pool).await?;
        Ok(page::finish(
            rows.iter().map(decode).collect::<Result<_, _>>()?,
            params,
        ))
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

#[async_trait]
impl MetaStore for SqliteMeta {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the database cleanly.
    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::DeviceStore;

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
        let meta = SqliteMeta::open(&path).await.unwrap();
        let found = meta.devices_by_mqtt_username("plc").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, "phc");
        assert_eq!(found[0].0.mqtt.as_ref().unwrap().username, "plc");
    }
}

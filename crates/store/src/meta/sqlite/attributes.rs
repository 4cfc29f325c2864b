//! SQLite: device attributes (client, shared, server scope).

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite};
use tributary_model::{AttributeChange, DeviceId, TenantId};

use super::SqliteMeta;
use crate::meta::attributes::*;
use crate::meta::DeviceStore;
use crate::StoreError;

#[async_trait]
impl AttributeStore for SqliteMeta {
    async fn apply_attribute_change(&self, c: &AttributeChange) -> Result<bool, StoreError> {
        if self.get_device(c.tenant, c.device).await?.is_none() {
            return Ok(false);
        }
        let mut tx = self.pool.begin().await?;
        for (k, v) in &c.set {
            sqlx::query(
                "INSERT INTO attributes (tenant_id, device_id, scope, key, value, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (device_id, scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(c.tenant.to_string())
            .bind(c.device.to_string())
            .bind(c.scope.as_str())
            .bind(k)
            .bind(v)
            .bind(c.at_ms)
            .execute(&mut *tx)
            .await?;
        }
        if !c.deleted.is_empty() {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("DELETE FROM attributes WHERE tenant_id = ");
            qb.push_bind(c.tenant.to_string())
                .push(" AND device_id = ")
                .push_bind(c.device.to_string())
                .push(" AND scope = ")
                .push_bind(c.scope.as_str())
                .push(" AND key IN (");
            let mut sep = qb.separated(", ");
            for k in &c.deleted {
                sep.push_bind(k.clone());
            }
            qb.push(")");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn get_attributes(
        &self,
        tenant: TenantId,
        device: DeviceId,
        scopes: &[AttributeScope],
        keys: &[String],
    ) -> Result<BTreeMap<AttributeScope, BTreeMap<String, Attribute>>, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT scope, key, value, updated_at FROM attributes WHERE tenant_id = ",
        );
        qb.push_bind(tenant.to_string())
            .push(" AND device_id = ")
            .push_bind(device.to_string());
        if !scopes.is_empty() {
            qb.push(" AND scope IN (");
            let mut sep = qb.separated(", ");
            for s in scopes {
                sep.push_bind(s.as_str());
            }
            qb.push(")");
        }
        if !keys.is_empty() {
            qb.push(" AND key IN (");
            let mut sep = qb.separated(", ");
            for k in keys {
                sep.push_bind(k.clone());
            }
            qb.push(")");
        }
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut out: BTreeMap<AttributeScope, BTreeMap<String, Attribute>> = BTreeMap::new();
        for r in rows {
            let scope: String = r.try_get("scope")?;
            let scope: AttributeScope = scope.parse().map_err(StoreError::Corrupt)?;
            let raw: String = r.try_get("value")?;
            out.entry(scope).or_default().insert(
                r.try_get("key")?,
                Attribute {
                    value: serde_json::from_str(&raw)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    updated_at: r.try_get("updated_at")?,
                },
            );
        }
        Ok(out)
    }
}

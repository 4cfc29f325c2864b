//! SQLite: device profiles (key schemas) of a tenant.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use tributary_model::profile::ProfileSchema;
use tributary_model::TenantId;
use uuid::Uuid;

use super::SqliteMeta;
use crate::meta::devices::Updated;
use crate::meta::page::{ListParams, Page};
use crate::meta::profiles::*;
use crate::{now_ms, StoreError};

const COLUMNS: &str = "id, name, description, schema, version, created_at";

fn profile_from(r: &SqliteRow) -> Result<Profile, StoreError> {
    let schema: String = r.try_get("schema")?;
    Ok(Profile {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        schema: serde_json::from_str(&schema)
            .map_err(|e| StoreError::Corrupt(format!("profile schema: {e}")))?,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl ProfileStore for SqliteMeta {
    async fn create_profile(
        &self,
        tenant: TenantId,
        name: &str,
        description: Option<&str>,
        schema: &ProfileSchema,
    ) -> Result<Profile, StoreError> {
        let p = Profile {
            id: Uuid::now_v7().to_string(),
            name: name.to_string(),
            description: description.map(str::to_string),
            schema: schema.clone(),
            version: 1,
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO device_profiles (id, tenant_id, name, description, schema, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&p.id)
            .bind(tenant.to_string())
            .bind(&p.name)
            .bind(&p.description)
            .bind(serde_json::to_string(&p.schema).unwrap_or_default())
            .bind(p.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::conflict_or(e, "profile with this name"))?;
        Ok(p)
    }

    async fn list_profiles(
        &self,
        tenant: TenantId,
        name: Option<&str>,
        params: &ListParams,
    ) -> Result<Page<Profile>, StoreError> {
        self.list_by_name(
            COLUMNS,
            "device_profiles",
            tenant,
            name,
            params,
            profile_from,
        )
        .await
    }

    async fn get_profile(&self, tenant: TenantId, id: &str) -> Result<Option<Profile>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM device_profiles WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant.to_string())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(profile_from).transpose()
    }

    async fn update_profile(
        &self,
        tenant: TenantId,
        id: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        schema: Option<&ProfileSchema>,
        if_version: Option<i64>,
    ) -> Result<Updated<Profile>, StoreError> {
        let Some(cur) = self.get_profile(tenant, id).await? else {
            return Ok(Updated::NotFound);
        };
        if if_version.is_some_and(|v| v != cur.version) {
            return Ok(Updated::Stale(cur));
        }
        let res = sqlx::query(
            "UPDATE device_profiles SET name = ?, description = ?, schema = ?, version = version + 1 \
             WHERE tenant_id = ? AND id = ? AND version = ?",
        )
        .bind(name.unwrap_or(&cur.name))
        .bind(description.map(|d| d.map(str::to_string)).unwrap_or(cur.description.clone()))
        .bind(serde_json::to_string(schema.unwrap_or(&cur.schema)).unwrap_or_default())
        .bind(tenant.to_string())
        .bind(id)
        .bind(cur.version)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::conflict_or(e, "profile with this name"))?;
        Ok(Updated::after(
            res.rows_affected(),
            self.get_profile(tenant, id).await?,
        ))
    }

    async fn delete_profile(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError> {
        self.delete_scoped("device_profiles", tenant, id).await
    }
}

//! SQLite: aPI keys of a tenant, stored hashed.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use tributary_model::TenantId;
use uuid::Uuid;

use super::SqliteMeta;
use crate::meta::api_keys::*;
use crate::meta::page::{ListParams, Page};
use crate::{now_ms, StoreError};

const COLUMNS: &str =
    "id, tenant_id, name, prefix, scope, created_by, created_at, expires_at, revoked_at";

fn key_from(r: &SqliteRow) -> Result<ApiKey, StoreError> {
    let tenant: String = r.try_get("tenant_id")?;
    let scope: String = r.try_get("scope")?;
    Ok(ApiKey {
        id: r.try_get("id")?,
        tenant: tenant
            .parse()
            .map_err(|_| StoreError::Corrupt("api key tenant".into()))?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        scope: scope.parse().map_err(StoreError::Corrupt)?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

#[async_trait]
impl ApiKeyStore for SqliteMeta {
    async fn create_api_key(
        &self,
        tenant: TenantId,
        name: &str,
        prefix: &str,
        key_hash: &str,
        scope: KeyScope,
        created_by: &str,
        expires_at: Option<i64>,
    ) -> Result<ApiKey, StoreError> {
        let k = ApiKey {
            id: Uuid::now_v7().to_string(),
            tenant,
            name: name.to_string(),
            prefix: prefix.to_string(),
            scope,
            created_by: created_by.to_string(),
            created_at: now_ms(),
            expires_at,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scope, created_by, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.id)
        .bind(tenant.to_string())
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(key_hash)
        .bind(scope.as_str())
        .bind(&k.created_by)
        .bind(k.created_at)
        .bind(k.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(k)
    }

    async fn list_api_keys(
        &self,
        tenant: TenantId,
        name: Option<&str>,
        params: &ListParams,
    ) -> Result<Page<ApiKey>, StoreError> {
        self.list_by_name(COLUMNS, "api_keys", tenant, name, params, key_from)
            .await
    }

    async fn revoke_api_key(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(tenant.to_string())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(key_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from).transpose()
    }
}

//! The metadata store: tenants, users and their roles, devices, refresh tokens.
//! SQLite in the embedded mode; every device query is scoped by tenant here.

mod devices;
mod schema;
mod tokens;
mod users;

use std::path::Path;

use sqlx::SqlitePool;

pub use devices::{Device, NewDevice};
pub use tokens::{RefreshToken, TakeOutcome};
pub use users::{Role, Tenant, User};

use crate::StoreError;

/// Handle to the metadata database; cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    pool: SqlitePool,
}

impl MetaStore {
    /// Opens or creates the metadata database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = crate::sqlite::open(path, 8).await?;
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
}

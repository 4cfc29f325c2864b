//! Storage, each part behind a trait that a second implementation can fill
//! (the suites it must pass are in `tributary-contracts`). Every query takes
//! the tenant it is scoped to; only credential look-ups (which discover the
//! tenant) do not.
//!
//! - [`meta`]: the metadata store — [`MetaStore`], one trait per concern
//!   (devices, users and tenants, profiles, keys, …), filled by
//!   [`SqliteMeta`]
//! - [`series`]: the series store — [`SeriesWriter`] (the ingest side) and
//!   [`SeriesReader`] (the query side), filled by Tributary's own
//!   [`Engine`] and by [`SqliteSeries`]
//! - [`retention`]: expiring each tenant's samples past its retention

pub mod meta;
pub mod retention;
pub mod series;
mod sqlite;

pub use meta::{Device, MetaStore, NewDevice, RefreshToken, Role, SqliteMeta, Tenant, User};
pub use meta::{ListParams, Page};
pub use series::engine::{Engine, EngineConfig, Expired};
pub use series::sqlite::SqliteSeries;
pub use series::{
    AggQuery, Aggregate, Change, DeviceLatest, Order, RawQuery, Sample, SeriesMap, SeriesReader,
    SeriesStore, SeriesWriter,
};

/// Errors of the stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A unique constraint was violated (e.g. a device name already in use).
    #[error("{0} already exists")]
    Conflict(String),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The caller passed something the store cannot use (e.g. a foreign cursor).
    #[error("{0}")]
    Invalid(String),
    /// A configured limit (devices per tenant, tenants per user) is reached.
    #[error("{0}")]
    LimitReached(String),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`].
    pub(crate) fn conflict_or(e: sqlx::Error, what: &str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(what.to_string())
            }
            _ => StoreError::Db(e),
        }
    }
}

/// Current time in milliseconds, for `created_at` columns.
pub(crate) fn now_ms() -> i64 {
    tributary_model::time::ns_to_ms(tributary_model::time::now_ns())
}

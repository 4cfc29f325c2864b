//! Opening SQLite databases the way both stores need them.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::StoreError;

/// Opens (creating if needed) a SQLite database in WAL mode with full sync and
/// a page cache of `cache_kib` per connection.
pub(crate) async fn open(
    path: &Path,
    max_connections: u32,
    cache_kib: u32,
) -> Result<SqlitePool, StoreError> {
    let opts = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit that records an applied LSN must survive power loss,
        // because the write-ahead log segments before it are then deleted.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // A cache too small for the index's working set makes every insert
        // spill and re-read pages (seen in profiles of MQTT ingest).
        .pragma("cache_size", format!("-{cache_kib}"))
        .pragma("temp_store", "memory")
        .busy_timeout(Duration::from_secs(10));
    Ok(SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(opts)
        .await?)
}

/// Applies the numbered schema steps that `PRAGMA user_version` says are missing.
pub(crate) async fn migrate(pool: &SqlitePool, steps: &[&str]) -> Result<(), StoreError> {
    let (version,): (i64,) = sqlx::query_as("PRAGMA user_version")
        .fetch_one(pool)
        .await?;
    for (i, step) in steps.iter().enumerate().skip(version.max(0) as usize) {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(step).execute(&mut *tx).await?;
        sqlx::raw_sql(&format!("PRAGMA user_version = {}", i + 1))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

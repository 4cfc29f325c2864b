//! The first series store: one SQLite table of points keyed by (series, ts).
//! Correct and simple; Tributary's own engine replaces it as the default.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use tributary_model::{Batch, DeviceId, TenantId, Value};

use super::{
    AggQuery, Aggregate, Change, DeviceLatest, Order, RawQuery, Sample, SeriesMap, SeriesReader,
    SeriesWriter,
};
use crate::StoreError;

const SCHEMA: &[&str] = &[r#"
CREATE TABLE series (
    id     INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    key    TEXT NOT NULL,
    UNIQUE (tenant, device, key)
);
CREATE TABLE points (
    series INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    kind   INTEGER NOT NULL,
    value,
    lsn    INTEGER NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;
CREATE INDEX points_lsn ON points (series, lsn);
CREATE TABLE checkpoint (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    lsn INTEGER NOT NULL
);
INSERT INTO checkpoint (id, lsn) VALUES (1, 0);
"#];

/// Value kinds as stored in the `kind` column.
const FLOAT: i64 = 0;
const INT: i64 = 1;
const BOOL: i64 = 2;
const STR: i64 = 3;

/// Rows per multi-row INSERT (4 parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 500;

type SeriesKey = (TenantId, DeviceId, String);

/// The SQLite-backed series store.
pub struct SqliteSeries {
    pool: SqlitePool,
    /// Series ids already known; one entry per series, dropped with the device.
    ids: Mutex<HashMap<SeriesKey, i64>>,
}

impl SqliteSeries {
    /// Opens or creates the store at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = crate::sqlite::open(path, 4, 32 * 1024).await?;
        crate::sqlite::migrate(&pool, SCHEMA).await?;
        Ok(Self {
            pool,
            ids: Mutex::new(HashMap::new()),
        })
    }

    fn cached_id(&self, key: &SeriesKey) -> Option<i64> {
        self.ids.lock().ok().and_then(|ids| ids.get(key).copied())
    }
}

fn kind_of(v: &Value) -> i64 {
    match v {
        Value::Float(_) => FLOAT,
        Value::Int(_) => INT,
        Value::Bool(_) => BOOL,
        Value::Str(_) => STR,
    }
}

fn decode_value(row: &SqliteRow, kind_col: &str, value_col: &str) -> Result<Value, StoreError> {
    let kind: i64 = row.try_get(kind_col)?;
    Ok(match kind {
        FLOAT => Value::Float(row.try_get(value_col)?),
        INT => Value::Int(row.try_get(value_col)?),
        BOOL => Value::Bool(row.try_get::<i64, _>(value_col)? != 0),
        STR => Value::Str(row.try_get(value_col)?),
        other => return Err(StoreError::Corrupt(format!("value kind {other}"))),
    })
}

fn order_sql(o: Order) -> &'static str {
    match o {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    }
}

impl SqliteSeries {
    /// Every series: (internal id, tenant, device, key); for moving the data
    /// to another store.
    pub async fn series(&self) -> Result<Vec<(i64, TenantId, DeviceId, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, tenant, device, key FROM series ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let parse = |col: &str| -> Result<uuid::Uuid, StoreError> {
                    let s: String = r.try_get(col)?;
                    s.parse()
                        .map_err(|_| StoreError::Corrupt(format!("{col} {s:?}")))
                };
                Ok((
                    r.try_get("id")?,
                    TenantId(parse("tenant")?),
                    DeviceId(parse("device")?),
                    r.try_get("key")?,
                ))
            })
            .collect()
    }

    /// Every point of series `id` as (ts, value, lsn), oldest first.
    pub async fn series_points(&self, id: i64) -> Result<Vec<(i64, Value, u64)>, StoreError> {
        let rows =
            sqlx::query("SELECT ts, kind, value, lsn FROM points WHERE series = ? ORDER BY ts")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("ts")?,
                    decode_value(r, "kind", "value")?,
                    r.try_get::<i64, _>("lsn")?.max(0) as u64,
                ))
            })
            .collect()
    }

    /// First or last value per interval, from the raw points.
    async fn first_or_last(
        &self,
        tenant: TenantId,
        device: DeviceId,
        q: &AggQuery,
    ) -> Result<SeriesMap, StoreError> {
        let raw = RawQuery {
            limit: u32::MAX,
            order: Order::Asc,
            ..q.range.clone()
        };
        let mut out = SeriesMap::new();
        for (key, samples) in self.query(tenant, device, &raw).await? {
            let mut buckets: BTreeMap<i64, Value> = BTreeMap::new();
            for s in samples {
                let b = s.ts.div_euclid(q.interval);
                if q.agg == Aggregate::Last || !buckets.contains_key(&b) {
                    buckets.insert(b, s.value);
                }
            }
            let mut samples: Vec<Sample> = buckets
                .into_iter()
                .map(|(b, value)| Sample {
                    ts: b * q.interval,
                    value,
                    saturated: false,
                })
                .collect();
            if q.range.order == Order::Desc {
                samples.reverse();
            }
            samples.truncate(q.range.limit as usize);
            out.insert(key, samples);
        }
        Ok(out)
    }

    /// The device's keys: `wanted` when given, else every stored key.
    async fn keys_of(
        &self,
        tenant: TenantId,
        device: DeviceId,
        wanted: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if !wanted.is_empty() {
            return Ok(wanted.to_vec());
        }
        let rows =
            sqlx::query("SELECT key FROM series WHERE tenant = ? AND device = ? ORDER BY key")
                .bind(tenant.to_string())
                .bind(device.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("key").map_err(StoreError::from))
            .collect()
    }
}

#[async_trait]
impl SeriesWriter for SqliteSeries {
    async fn apply(&self, batches: &[(u64, &Batch)]) -> Result<(), StoreError> {
        let Some(lsn) = batches.last().map(|(l, _)| *l) else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await?;
        // Resolve series ids, creating the series that are new.
        let mut rows: Vec<(i64, i64, &Value, u64)> = Vec::new();
        let mut fresh: Vec<(SeriesKey, i64)> = Vec::new();
        for (batch_lsn, batch) in batches {
            for p in &batch.points {
                let key = (batch.tenant, batch.device, p.key.to_string());
                let id = match self
                    .cached_id(&key)
                    .or_else(|| fresh.iter().find(|(k, _)| *k == key).map(|(_, id)| *id))
                {
                    Some(id) => id,
                    None => {
                        sqlx::query(
                            "INSERT INTO series (tenant, device, key) VALUES (?, ?, ?) \
                             ON CONFLICT (tenant, device, key) DO NOTHING",
                        )
                        .bind(batch.tenant.to_string())
                        .bind(batch.device.to_string())
                        .bind(p.key.as_str())
                        .execute(&mut *tx)
                        .await?;
                        let (id,): (i64,) = sqlx::query_as(
                            "SELECT id FROM series WHERE tenant = ? AND device = ? AND key = ?",
                        )
                        .bind(batch.tenant.to_string())
                        .bind(batch.device.to_string())
                        .bind(p.key.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                        fresh.push((key, id));
                        id
                    }
                };
                rows.push((id, p.ts, &p.value, *batch_lsn));
            }
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO points (series, ts, kind, value, lsn) ");
            qb.push_values(chunk, |mut b, (id, ts, v, row_lsn)| {
                b.push_bind(*id).push_bind(*ts).push_bind(kind_of(v));
                match v {
                    Value::Float(f) => b.push_bind(*f),
                    Value::Int(i) => b.push_bind(*i),
                    Value::Bool(x) => b.push_bind(*x as i64),
                    Value::Str(s) => b.push_bind(s.as_str()),
                };
                b.push_bind(*row_lsn as i64);
            });
            // Duplicate timestamps: the last write wins.
            qb.push(" ON CONFLICT (series, ts) DO UPDATE SET kind = excluded.kind, value = excluded.value, lsn = excluded.lsn");
            qb.build().execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE checkpoint SET lsn = ? WHERE id = 1")
            .bind(lsn as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Ok(mut ids) = self.ids.lock() {
            ids.extend(fresh);
        }
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn applied_lsn(&self) -> Result<u64, StoreError> {
        let (lsn,): (i64,) = sqlx::query_as("SELECT lsn FROM checkpoint WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(lsn.max(0) as u64)
    }

    async fn delete_device(&self, tenant: TenantId, device: DeviceId) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM points WHERE series IN \
             (SELECT id FROM series WHERE tenant = ? AND device = ?)",
        )
        .bind(tenant.to_string())
        .bind(device.to_string())
        .execute(&mut *tx)
        .await?;
        let res = sqlx::query("DELETE FROM series WHERE tenant = ? AND device = ?")
            .bind(tenant.to_string())
            .bind(device.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Ok(mut ids) = self.ids.lock() {
            ids.retain(|(t, d, _), _| !(*t == tenant && *d == device));
        }
        Ok(res.rows_affected())
    }

    async fn expire(&self, tenant: TenantId, before: i64) -> Result<(), StoreError> {
        let res = sqlx::query(
            "DELETE FROM points WHERE series IN (SELECT id FROM series WHERE tenant = ?) AND ts < ?",
        )
        .bind(tenant.to_string())
        .bind(before)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() > 0 {
            tracing::info!(%tenant, points = res.rows_affected(), "expired time series past the tenant's retention");
        }
        Ok(())
    }

    async fn delete_tenant(&self, tenant: TenantId) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM points WHERE series IN (SELECT id FROM series WHERE tenant = ?)")
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        let res = sqlx::query("DELETE FROM series WHERE tenant = ?")
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Ok(mut ids) = self.ids.lock() {
            ids.retain(|(t, _, _), _| *t != tenant);
        }
        Ok(res.rows_affected())
    }
}

#[async_trait]
impl SeriesReader for SqliteSeries {
    async fn query(
        &self,
        tenant: TenantId,
        device: DeviceId,
        q: &RawQuery,
    ) -> Result<SeriesMap, StoreError> {
        let mut out = SeriesMap::new();
        let sql = format!(
            "SELECT p.ts, p.kind, p.value FROM points p JOIN series s ON s.id = p.series \
             WHERE s.tenant = ? AND s.device = ? AND s.key = ? AND p.ts >= ? AND p.ts <= ? \
             ORDER BY p.ts {} LIMIT ?",
            order_sql(q.order)
        );
        for key in self.keys_of(tenant, device, &q.keys).await? {
            let rows = sqlx::query(&sql)
                .bind(tenant.to_string())
                .bind(device.to_string())
                .bind(&key)
                .bind(q.from)
                .bind(q.to)
                .bind(q.limit as i64)
                .fetch_all(&self.pool)
                .await?;
            let samples = rows
                .iter()
                .map(|r| {
                    Ok(Sample {
                        ts: r.try_get("ts")?,
                        value: decode_value(r, "kind", "value")?,
                        saturated: false,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            if !samples.is_empty() {
                out.insert(key, samples);
            }
        }
        Ok(out)
    }

    async fn aggregate(
        &self,
        tenant: TenantId,
        device: DeviceId,
        q: &AggQuery,
    ) -> Result<SeriesMap, StoreError> {
        if matches!(q.agg, Aggregate::First | Aggregate::Last) {
            return self.first_or_last(tenant, device, q).await;
        }
        let (func, filter) = match q.agg {
            Aggregate::Avg => ("AVG(p.value)", "AND p.kind IN (0, 1)"),
            Aggregate::Min => ("MIN(p.value)", "AND p.kind IN (0, 1)"),
            Aggregate::Max => ("MAX(p.value)", "AND p.kind IN (0, 1)"),
            Aggregate::Sum => ("SUM(p.value)", "AND p.kind IN (0, 1)"),
            Aggregate::Count => ("COUNT(*)", ""),
            Aggregate::First | Aggregate::Last => unreachable!("answered above"),
        };
        let sql = format!(
            "SELECT p.ts / ?1 AS bucket, CAST({func} AS REAL) AS f, CAST({func} AS INTEGER) AS i, \
             MIN(p.kind) AS kmin \
             FROM points p JOIN series s ON s.id = p.series \
             WHERE s.tenant = ?2 AND s.device = ?3 AND s.key = ?4 AND p.ts >= ?5 AND p.ts <= ?6 {filter} \
             GROUP BY bucket ORDER BY bucket {} LIMIT ?7",
            order_sql(q.range.order)
        );
        let mut out = SeriesMap::new();
        for key in self.keys_of(tenant, device, &q.range.keys).await? {
            let rows = sqlx::query(&sql)
                .bind(q.interval)
                .bind(tenant.to_string())
                .bind(device.to_string())
                .bind(&key)
                .bind(q.range.from)
                .bind(q.range.to)
                .bind(q.range.limit as i64)
                .fetch_all(&self.pool)
                .await?;
            let samples = rows
                .iter()
                .map(|r| {
                    let bucket: i64 = r.try_get("bucket")?;
                    let kmin: i64 = r.try_get("kmin")?;
                    // Integer results stay integers when every input was an integer.
                    let int_result = matches!(q.agg, Aggregate::Count)
                        || (kmin == INT && !matches!(q.agg, Aggregate::Avg));
                    let value = if int_result {
                        Value::Int(r.try_get("i")?)
                    } else {
                        Value::Float(r.try_get("f")?)
                    };
                    Ok(Sample {
                        ts: bucket * q.interval,
                        value,
                        saturated: false,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            if !samples.is_empty() {
                out.insert(key, samples);
            }
        }
        Ok(out)
    }

    async fn latest(
        &self,
        tenant: TenantId,
        device: DeviceId,
        keys: &[String],
    ) -> Result<BTreeMap<String, Sample>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.key, p.ts, p.kind, p.value FROM series s \
             JOIN points p ON p.series = s.id \
               AND p.ts = (SELECT MAX(ts) FROM points WHERE series = s.id) \
             WHERE s.tenant = ? AND s.device = ?",
        )
        .bind(tenant.to_string())
        .bind(device.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = BTreeMap::new();
        for r in &rows {
            let key: String = r.try_get("key")?;
            if !keys.is_empty() && !keys.contains(&key) {
                continue;
            }
            let sample = Sample {
                ts: r.try_get("ts")?,
                value: decode_value(r, "kind", "value")?,
                saturated: false,
            };
            out.insert(key, sample);
        }
        Ok(out)
    }

    async fn latest_many(
        &self,
        tenant: TenantId,
        only: Option<&[DeviceId]>,
        keys: &[String],
        after: Option<DeviceId>,
        limit: usize,
    ) -> Result<Vec<DeviceLatest>, StoreError> {
        let ids = match only {
            Some(ids) => ids.to_vec(),
            None => sqlx::query_scalar::<_, String>(
                "SELECT DISTINCT device FROM series WHERE tenant = ?",
            )
            .bind(tenant.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect(),
        };
        let mut out = Vec::new();
        for d in super::page_of_ids(ids, after) {
            if out.len() >= limit {
                break;
            }
            let latest = self.latest(tenant, d, keys).await?;
            if !latest.is_empty() {
                out.push((d, latest));
            }
        }
        Ok(out)
    }

    async fn changes_since(
        &self,
        tenant: TenantId,
        device: DeviceId,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.key, p.ts, p.kind, p.value, p.lsn FROM points p JOIN series s ON s.id = p.series \
             WHERE s.tenant = ? AND s.device = ? AND p.lsn > ? ORDER BY p.lsn, p.ts LIMIT ?",
        )
        .bind(tenant.to_string())
        .bind(device.to_string())
        .bind(since as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Change {
                    lsn: r.try_get::<i64, _>("lsn")?.max(0) as u64,
                    key: r.try_get("key")?,
                    sample: Sample {
                        ts: r.try_get("ts")?,
                        value: decode_value(r, "kind", "value")?,
                        saturated: false,
                    },
                })
            })
            .collect()
    }
}

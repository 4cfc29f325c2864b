//! The series store interface, in two sides: [`SeriesWriter`] (committed
//! batches from the log, deletions, retention) and [`SeriesReader`] (ranges,
//! aggregates, latest values, changes since an LSN), so a query node can
//! carry only the reader. Timestamps here are nanoseconds.
//!
//! - [`engine`]: Tributary's time-series engine (the default)
//! - [`sqlite`]: the first store, on SQLite
//! - the checks every implementation passes: the `tributary-contracts` crate

pub mod engine;
pub mod sqlite;

use std::collections::BTreeMap;

use async_trait::async_trait;
use tributary_model::{Batch, DeviceId, TenantId, Value};

use crate::StoreError;

/// One stored reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Timestamp in nanoseconds (for aggregates: the start of the interval).
    pub ts: i64,
    /// The value (for aggregates: the aggregate).
    pub value: Value,
    /// An aggregate beyond its type: an integer sum past i64 comes as a
    /// float, a float sum or mean past f64 as ±f64::MAX.
    pub saturated: bool,
}

/// A point as written, with the LSN of its batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The batch's log sequence number.
    pub lsn: u64,
    /// The key.
    pub key: String,
    /// The sample.
    pub sample: Sample,
}

/// Samples per key.
pub type SeriesMap = BTreeMap<String, Vec<Sample>>;

/// A device's newest sample per key.
pub type DeviceLatest = (DeviceId, BTreeMap<String, Sample>);

/// Device ids in order, deduplicated, from just after `after`.
pub(crate) fn page_of_ids(mut ids: Vec<DeviceId>, after: Option<DeviceId>) -> Vec<DeviceId> {
    ids.sort_unstable();
    ids.dedup();
    let start = after.map_or(0, |a| ids.partition_point(|d| *d <= a));
    ids.split_off(start)
}

/// Sort order of returned samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    #[default]
    Desc,
}

/// A raw range query; `keys` empty means every key of the device.
#[derive(Clone, Debug)]
pub struct RawQuery {
    /// Keys to return.
    pub keys: Vec<String>,
    /// Inclusive lower bound (ns).
    pub from: i64,
    /// Inclusive upper bound (ns).
    pub to: i64,
    /// Most samples per key.
    pub limit: u32,
    /// Sort order.
    pub order: Order,
}

/// An aggregate function over an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// Mean of numeric values.
    Avg,
    /// Smallest numeric value.
    Min,
    /// Largest numeric value.
    Max,
    /// Sum of numeric values.
    Sum,
    /// Number of values of any type.
    Count,
    /// The oldest value in the interval (any type).
    First,
    /// The newest value in the interval (any type).
    Last,
}

impl std::str::FromStr for Aggregate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "avg" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "sum" => Aggregate::Sum,
            "count" => Aggregate::Count,
            "first" => Aggregate::First,
            "last" => Aggregate::Last,
            other => {
                return Err(format!(
                    "unknown aggregate {other:?} (use avg, min, max, sum, count, first or last)"
                ))
            }
        })
    }
}

/// An aggregate query: one sample per `interval`, intervals aligned to the epoch.
#[derive(Clone, Debug)]
pub struct AggQuery {
    /// The raw range, limit and order (limit counts intervals).
    pub range: RawQuery,
    /// The function.
    pub agg: Aggregate,
    /// Interval length (ns), > 0.
    pub interval: i64,
}

/// The ingest side of a time-series store: points arrive only from the
/// log's `series` consumer, in log order; deletions and retention come from
/// the platform. A query node of a scaled-out deployment does not carry it.
#[async_trait]
pub trait SeriesWriter: Send + Sync + 'static {
    /// Stores the batches (each with its LSN, ascending) and records the last LSN as applied, atomically.
    async fn apply(&self, batches: &[(u64, &Batch)]) -> Result<(), StoreError>;
    /// The LSN from which the log must be replayed after a restart: every
    /// point up to it survives a crash (0 when none).
    async fn applied_lsn(&self) -> Result<u64, StoreError>;
    /// For a store that makes applied points visible before they are durable:
    /// the LSN up to which they are durable now. `None`: `apply` is durable.
    fn durable_lsn(&self) -> Option<u64> {
        None
    }
    /// Deletes every sample of a device; returns how many series went.
    async fn delete_device(&self, tenant: TenantId, device: DeviceId) -> Result<u64, StoreError>;
    /// Drops the tenant's samples older than `before` (ns): its retention.
    async fn expire(&self, tenant: TenantId, before: i64) -> Result<(), StoreError>;
    /// Deletes every sample of a tenant; returns how many series went.
    async fn delete_tenant(&self, tenant: TenantId) -> Result<u64, StoreError>;
    /// Makes everything applied durable and releases the store (at shutdown).
    async fn close(&self) {}
}

/// The query side of a time-series store. Every call is scoped to a tenant.
#[async_trait]
pub trait SeriesReader: Send + Sync + 'static {
    /// Raw samples per key in a range.
    async fn query(
        &self,
        tenant: TenantId,
        device: DeviceId,
        q: &RawQuery,
    ) -> Result<SeriesMap, StoreError>;
    /// One aggregate sample per interval that holds data.
    async fn aggregate(
        &self,
        tenant: TenantId,
        device: DeviceId,
        q: &AggQuery,
    ) -> Result<SeriesMap, StoreError>;
    /// The newest sample of each key (of `keys`, or all when empty).
    async fn latest(
        &self,
        tenant: TenantId,
        device: DeviceId,
        keys: &[String],
    ) -> Result<BTreeMap<String, Sample>, StoreError>;
    /// The newest samples (of `keys`, or all) of many devices of a tenant:
    /// those in `only` (every device with data when `None`), in device id
    /// order, starting after `after`, at most `limit` devices; devices
    /// without such samples are left out.
    async fn latest_many(
        &self,
        tenant: TenantId,
        only: Option<&[DeviceId]>,
        keys: &[String],
        after: Option<DeviceId>,
        limit: usize,
    ) -> Result<Vec<DeviceLatest>, StoreError>;
    /// Points of a device written after `since` (by LSN, oldest first), at most `limit`:
    /// what a live client that reconnects has missed.
    async fn changes_since(
        &self,
        tenant: TenantId,
        device: DeviceId,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Change>, StoreError>;
}

/// A whole time-series store (both sides), as a single-node server runs it.
pub trait SeriesStore: SeriesWriter + SeriesReader {}

impl<T: SeriesWriter + SeriesReader> SeriesStore for T {}

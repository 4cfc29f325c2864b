//! Tributary's time-series engine. Committed batches (already durable in the
//! pipeline's write-ahead log) go into in-memory head chunks per series and
//! are visible at once. When the head holds `max_head_points` or
//! `max_head_bytes`, or
//! `seal_interval` has passed, it is frozen and sealed in the background into
//! an immutable, checksummed block file; the manifest then records the
//! block and the LSN up to which everything is in blocks. That LSN is what
//! the pipeline may drop from its log, and where replay starts after a crash.
//!
//! Queries merge blocks (oldest first), the frozen head being sealed, and the
//! live head; for equal timestamps the newest write wins.
//!
//! - this module: the engine, opening it, and its [`SeriesWriter`] (apply,
//!   deletions, retention)
//! - `head`: in-memory heads per series; `seal`: heads into block files;
//!   `read`: the query side ([`SeriesReader`]); `aggregate`: aggregates over
//!   chunks and points
//! - `block`, `chunk`, `bits`, `rollup`: the block file, its compressed
//!   chunks, the bit codecs, the rollups
//! - `manifest`: the list of blocks and the durable LSN; `compact`: merging
//!   blocks; `expire`: retention; `merge`: newest-write-wins merging of runs

mod aggregate;
mod bits;
mod block;
mod chunk;
mod compact;
mod expire;
#[cfg(test)]
mod faults;
mod head;
mod manifest;
mod merge;
mod read;
mod rollup;
mod seal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tributary_model::{Batch, DeviceId, Point, TenantId, Value};

use self::block::{Block, SealInput};
use self::chunk::Entry;
use self::head::{Head, Spares};
use self::manifest::Manifest;
use super::{
    AggQuery, Change, DeviceLatest, Order, RawQuery, Sample, SeriesMap, SeriesReader, SeriesWriter,
};
use crate::StoreError;

pub use self::expire::Expired;

/// The engine's decoders of what it reads from disk, for fuzzing: any bytes
/// give a value or an error, never a panic (nor an allocation out of
/// proportion to the input).
pub mod decode {
    /// A compressed chunk; the number of points in it.
    pub fn chunk(bytes: &[u8]) -> Result<usize, String> {
        super::chunk::decode(bytes)
            .map(|points| points.len())
            .map_err(|e| e.0.to_string())
    }

    /// A chunk's rollup record; the number of buckets in it.
    pub fn rollup(bytes: &[u8]) -> Result<usize, String> {
        postcard::from_bytes::<Vec<(i64, super::rollup::Acc)>>(bytes)
            .map(|b| b.len())
            .map_err(|e| e.to_string())
    }

    /// A block file, with every chunk and rollup its index names; written
    /// as block 1 in `dir` (a scratch folder) to be opened.
    pub fn block(dir: &std::path::Path, bytes: &[u8]) -> Result<usize, String> {
        std::fs::write(super::block::block_path(dir, 1), bytes).map_err(|e| e.to_string())?;
        let block = super::block::Block::open(dir, 1).map_err(|e| e.to_string())?;
        let mut points = 0;
        for i in 0..block.index.len() {
            points += block.read(i).map_err(|e| e.to_string())?.len();
            for interval in super::rollup::ROLLUPS {
                let _ = block.read_rollup(i, interval);
            }
        }
        Ok(points)
    }
}

/// When the head is sealed into a block.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Points in memory that trigger a seal (and bound the head: at twice this,
    /// writes wait for the seal in flight).
    pub max_head_points: usize,
    /// Approximate bytes in memory that trigger a seal (bounding the head
    /// likewise when points carry long strings).
    pub max_head_bytes: usize,
    /// Longest time data stays only in the head and the log.
    pub seal_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_head_points: 1_000_000,
            max_head_bytes: 256 * 1024 * 1024,
            seal_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Default)]
struct Series {
    /// Points not yet frozen.
    head: Head,
    /// The part being sealed right now.
    frozen: Option<Arc<Vec<Entry>>>,
    /// Sealed chunks, oldest first.
    chunks: Vec<(Arc<Block>, usize)>,
    /// The newest point.
    latest: Option<(i64, Value)>,
}

type DeviceKey = (TenantId, DeviceId);

pub(crate) struct State {
    /// Series by device, in (tenant, device) order: one tenant's devices are a range.
    devices: BTreeMap<DeviceKey, BTreeMap<String, Series>>,
    blocks: BTreeMap<u64, Arc<Block>>,
    manifest: Manifest,
    visible_lsn: u64,
    head_points: usize,
    /// Approximate memory of the head's points (see [`point_bytes`]).
    head_bytes: usize,
    last_seal: Instant,
}

impl State {
    /// Whether the head holds `factor` times a limit of `config` or more.
    fn head_over(&self, config: &EngineConfig, factor: usize) -> bool {
        self.head_points >= factor.saturating_mul(config.max_head_points)
            || self.head_bytes >= factor.saturating_mul(config.max_head_bytes)
    }

    /// Sets the gauges of what the engine holds in memory.
    pub(crate) fn report(&self) {
        metrics::gauge!("tributary_tsdb_head_points").set(self.head_points as f64);
        metrics::gauge!("tributary_tsdb_head_bytes").set(self.head_bytes as f64);
        metrics::gauge!("tributary_tsdb_blocks").set(self.blocks.len() as f64);
        let entries: usize = self.blocks.values().map(|b| b.index.len()).sum();
        metrics::gauge!("tributary_tsdb_index_entries").set(entries as f64);
    }
}

/// Points of one key in one batch from which a new head starts in a kept
/// buffer (when one is large enough) rather than growing from nothing.
const MIN_POOLED_RUN: usize = 1024;

/// What one point costs in the head, roughly: the entry, its share of the
/// newest value, and a string's text.
fn point_bytes(v: &Value) -> usize {
    64 + match v {
        Value::Str(s) => 2 * s.len(),
        _ => 0,
    }
}

struct Inner {
    dir: PathBuf,
    config: EngineConfig,
    state: RwLock<State>,
    durable: AtomicU64,
    /// Held while a seal is being written.
    sealing: Arc<tokio::sync::Mutex<()>>,
    /// Serializes manifest writes; holds the version last saved.
    manifest_write: std::sync::Mutex<u64>,
    /// Point buffers of sealed heads, for the heads that follow.
    spares: std::sync::Mutex<Spares>,
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl Engine {
    /// Opens (creating if needed) the engine in `dir`. Damaged blocks are
    /// reported in the log and left out; everything else stays readable.
    pub async fn open(dir: &Path, config: EngineConfig) -> Result<Self, StoreError> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(dir, config))
            .await
            .map_err(io)?
    }

    fn open_blocking(dir: PathBuf, config: EngineConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&dir).map_err(io)?;
        let manifest = Manifest::load(&dir).map_err(io)?;
        let mut blocks = BTreeMap::new();
        let mut devices: BTreeMap<DeviceKey, BTreeMap<String, Series>> = BTreeMap::new();
        for &id in &manifest.blocks {
            let block = match Block::open(&dir, id) {
                Ok(b) => Arc::new(b),
                Err(e) => {
                    tracing::error!(error = %e, "time-series block unreadable; its data is left out");
                    continue;
                }
            };
            for (i, e) in block.index.iter().enumerate() {
                if manifest.is_deleted(e.tenant, e.device, e.max_lsn)
                    || e.max_ts < manifest.cutoff(e.tenant)
                {
                    continue;
                }
                let s = devices
                    .entry((e.tenant, e.device))
                    .or_default()
                    .entry(e.key.clone())
                    .or_default();
                s.chunks.push((block.clone(), i));
                if s.latest.as_ref().is_none_or(|(ts, _)| e.last.0 >= *ts) {
                    s.latest = Some(e.last.clone());
                }
            }
            blocks.insert(id, block);
        }
        // Blocks written but never recorded (a crash mid-seal) are dropped.
        manifest::remove_strays(&dir, &manifest);
        let durable = manifest.durable_lsn;
        // A head may hold twice the seal limit while a seal is in flight.
        let spares = Spares::new(2 * config.max_head_points);
        Ok(Engine(Arc::new(Inner {
            dir,
            config,
            state: RwLock::new(State {
                devices,
                blocks,
                visible_lsn: durable,
                manifest,
                head_points: 0,
                head_bytes: 0,
                last_seal: Instant::now(),
            }),
            durable: AtomicU64::new(durable),
            sealing: Arc::new(tokio::sync::Mutex::new(())),
            manifest_write: std::sync::Mutex::new(0),
            spares: std::sync::Mutex::new(spares),
        })))
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.0.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.0.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the engine holds nothing yet (no block, nothing applied).
    pub fn is_empty(&self) -> bool {
        let st = self.read();
        st.blocks.is_empty() && st.devices.is_empty() && st.manifest.durable_lsn == 0
    }

    /// Adds one series' points (ts, value, lsn) as they were stored elsewhere
    /// (moving from the SQLite store); sealed as the head fills.
    pub async fn import(
        &self,
        tenant: TenantId,
        device: DeviceId,
        key: &str,
        points: Vec<Entry>,
    ) -> Result<(), StoreError> {
        let full = {
            let mut st = self.write();
            let s = st
                .devices
                .entry((tenant, device))
                .or_default()
                .entry(key.to_string())
                .or_default();
            let (mut added, mut bytes) = (0, 0);
            for (ts, v, lsn) in points {
                if s.latest.as_ref().is_none_or(|(t, _)| ts >= *t) {
                    s.latest = Some((ts, v.clone()));
                }
                bytes += point_bytes(&v);
                if s.head.upsert(ts, v, lsn) {
                    added += 1;
                }
            }
            st.head_points += added;
            st.head_bytes += bytes;
            metrics::gauge!("tributary_tsdb_head_points").set(st.head_points as f64);
            st.head_over(&self.0.config, 1)
        };
        if full {
            self.seal(true).await?;
        }
        Ok(())
    }

    /// Ends an import: everything up to `lsn` counts as applied, and is sealed.
    pub async fn finish_import(&self, lsn: u64) -> Result<(), StoreError> {
        {
            let mut st = self.write();
            st.visible_lsn = st.visible_lsn.max(lsn);
        }
        self.seal(true).await?;
        // A seal writes the manifest only when there was something to seal.
        let manifest = {
            let mut st = self.write();
            st.manifest.durable_lsn = st.manifest.durable_lsn.max(lsn);
            st.manifest.version += 1;
            st.manifest.clone()
        };
        self.save_manifest(manifest).await?;
        self.0.durable.fetch_max(lsn, Ordering::AcqRel);
        Ok(())
    }

    /// The LSN up to which every applied point is in a block file.
    pub fn durable_lsn(&self) -> u64 {
        self.0.durable.load(Ordering::Acquire)
    }
}

#[async_trait]
impl SeriesWriter for Engine {
    async fn apply(&self, batches: &[(u64, &Batch)]) -> Result<(), StoreError> {
        let seal = {
            let mut st = self.write();
            let (mut added, mut bytes) = (0, 0);
            for (lsn, batch) in batches {
                if st.manifest.is_deleted(batch.tenant, batch.device, *lsn) {
                    continue;
                }
                let cutoff = st.manifest.cutoff(batch.tenant);
                let series = st.devices.entry((batch.tenant, batch.device)).or_default();
                // Runs of one key (a bulk write's usual shape) look their
                // series up once and set its newest point once.
                for run in batch.points.chunk_by(|a, b| a.key == b.key) {
                    let key = run[0].key.as_str();
                    let mut kept = run.iter().filter(|p| p.ts >= cutoff).peekable();
                    if kept.peek().is_none() {
                        continue;
                    }
                    let s = match series.get_mut(key) {
                        Some(s) => s,
                        None => series.entry(key.to_string()).or_default(),
                    };
                    if run.len() >= MIN_POOLED_RUN {
                        let mut spares = self.0.spares.lock().unwrap_or_else(|p| p.into_inner());
                        s.head.make_room(&mut spares, run.len());
                    }
                    let mut newest: Option<&Point> = None;
                    for p in kept {
                        if newest.is_none_or(|n| p.ts >= n.ts) {
                            newest = Some(p);
                        }
                        bytes += point_bytes(&p.value);
                        if s.head.upsert(p.ts, p.value.clone(), *lsn) {
                            added += 1;
                        }
                    }
                    if let Some(p) = newest {
                        if s.latest.as_ref().is_none_or(|(ts, _)| p.ts >= *ts) {
                            s.latest = Some((p.ts, p.value.clone()));
                        }
                    }
                }
            }
            if let Some((lsn, _)) = batches.last() {
                st.visible_lsn = st.visible_lsn.max(*lsn);
            }
            st.head_points += added;
            st.head_bytes += bytes;
            metrics::gauge!("tributary_tsdb_head_points").set(st.head_points as f64);
            st.head_over(&self.0.config, 1)
                || (st.head_points > 0 && st.last_seal.elapsed() >= self.0.config.seal_interval)
        };
        if seal {
            self.seal(false).await?;
        }
        Ok(())
    }

    /// Seals everything in the head now and waits for it.
    async fn close(&self) {
        if let Err(e) = self.seal(true).await {
            tracing::error!(error = %e, "final seal failed; the write-ahead log keeps the data");
        }
    }

    async fn applied_lsn(&self) -> Result<u64, StoreError> {
        Ok(self.durable_lsn())
    }

    fn durable_lsn(&self) -> Option<u64> {
        Some(Engine::durable_lsn(self))
    }

    async fn delete_device(&self, tenant: TenantId, device: DeviceId) -> Result<u64, StoreError> {
        let (removed, manifest) = {
            let mut st = self.write();
            let removed = st
                .devices
                .remove(&(tenant, device))
                .map(|s| s.len())
                .unwrap_or(0);
            let lsn = st.visible_lsn;
            st.manifest.delete_device(tenant, device, lsn);
            st.manifest.version += 1;
            (removed, st.manifest.clone())
        };
        self.save_manifest(manifest).await?;
        Ok(removed as u64)
    }

    async fn expire(&self, tenant: TenantId, before: i64) -> Result<(), StoreError> {
        let done = self.expire_before(tenant, before).await?;
        if done != Expired::default() {
            tracing::info!(%tenant, blocks_deleted = done.blocks_deleted,
                blocks_rewritten = done.blocks_rewritten, head_points = done.head_points,
                "expired time series past the tenant's retention");
        }
        Ok(())
    }

    async fn delete_tenant(&self, tenant: TenantId) -> Result<u64, StoreError> {
        let (removed, manifest) = {
            let mut st = self.write();
            let mut removed = 0;
            st.devices.retain(|(t, _), s| {
                if *t == tenant {
                    removed += s.len();
                    false
                } else {
                    true
                }
            });
            let lsn = st.visible_lsn;
            st.manifest.delete_tenant(tenant, lsn);
            st.manifest.version += 1;
            (removed, st.manifest.clone())
        };
        self.save_manifest(manifest).await?;
        Ok(removed as u64)
    }
}

//! Compaction: sealing makes one small block per interval; every time four
//! blocks of one level exist they are merged, series by series, into one
//! block of the next level (up to `MAX_LEVEL`), so a query reads a handful of
//! blocks rather than one per seal, and the in-memory block indexes stay
//! small. Deleted and expired points are dropped on the way.
//!
//! Crash safety: the merged block is complete and fsynced before the manifest
//! names it instead of its inputs, and the inputs are deleted only after
//! that; a crash in between leaves files that the next start removes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tributary_model::{DeviceId, TenantId};

use super::block::{block_path, Block, BlockWriter};
use super::manifest::Manifest;
use super::merge::merge_runs;
use super::Engine;

/// Blocks of one level merged at a time.
const FAN_IN: usize = 4;
/// Highest level made by merging (level 0 is a sealed head): with a 60 s
/// seal interval, a level-6 block holds about three days, so a year is about
/// 120 blocks (each block's index is kept in memory).
const MAX_LEVEL: u8 = 6;

type SeriesKey = (TenantId, DeviceId, String);

impl Engine {
    /// Merges blocks while some level has enough of them.
    pub(super) async fn compact(&self) {
        while let Some((level, inputs, id)) = self.pick() {
            let manifest = self.read().manifest.clone();
            let dir = self.0.dir.clone();
            let merging = inputs.clone();
            let merged =
                tokio::task::spawn_blocking(move || merge(&dir, id, &merging, &manifest)).await;
            match merged {
                Ok(Ok(block)) => self.replace(level + 1, &inputs, block).await,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "compaction failed; the blocks stay as they are");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "compaction task failed");
                    return;
                }
            }
        }
    }

    /// The lowest level with `FAN_IN` readable blocks, those blocks, and the new block's id.
    fn pick(&self) -> Option<(u8, Vec<Arc<Block>>, u64)> {
        let mut st = self.write();
        let mut by_level: BTreeMap<u8, Vec<Arc<Block>>> = BTreeMap::new();
        for id in &st.manifest.blocks {
            let level = st.manifest.levels.get(id).copied().unwrap_or(0);
            if let (true, Some(b)) = (level < MAX_LEVEL, st.blocks.get(id)) {
                by_level.entry(level).or_default().push(b.clone());
            }
        }
        let (level, blocks) = by_level.into_iter().find(|(_, b)| b.len() >= FAN_IN)?;
        let id = st.manifest.next_block;
        st.manifest.next_block += 1;
        Some((level, blocks.into_iter().take(FAN_IN).collect(), id))
    }

    /// Puts the merged block (of `level`) in place of its inputs, in memory and in the manifest.
    pub(super) async fn replace(&self, level: u8, inputs: &[Arc<Block>], merged: Block) {
        let merged = Arc::new(merged);
        let gone: HashSet<u64> = inputs.iter().map(|b| b.id).collect();
        let at: HashMap<(TenantId, DeviceId, &str), usize> = merged
            .index
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.tenant, e.device, e.key.as_str()), i))
            .collect();
        let manifest = {
            let mut st = self.write();
            for (&(tenant, device), series) in st.devices.iter_mut() {
                for (key, s) in series.iter_mut() {
                    let before = s.chunks.len();
                    s.chunks.retain(|(b, _)| !gone.contains(&b.id));
                    if s.chunks.len() != before {
                        if let Some(i) = at.get(&(tenant, device, key.as_str())) {
                            s.chunks.push((merged.clone(), *i));
                        }
                    }
                }
            }
            for id in &gone {
                st.blocks.remove(id);
                st.manifest.levels.remove(id);
            }
            st.manifest.blocks.retain(|id| !gone.contains(id));
            st.manifest.blocks.push(merged.id);
            st.manifest.levels.insert(merged.id, level);
            st.blocks.insert(merged.id, merged.clone());
            st.manifest.version += 1;
            st.manifest.clone()
        };
        if let Err(e) = self.save_manifest(manifest).await {
            tracing::error!(error = %e, "manifest not saved after compaction; the next start tidies up");
            return;
        }
        for id in gone {
            let _ = std::fs::remove_file(block_path(&self.0.dir, id));
        }
        metrics::counter!("tributary_tsdb_compactions_total").increment(1);
    }
}

/// Writes block `id` holding every live point of `inputs`, one series at a time.
pub(super) fn merge(
    dir: &std::path::Path,
    id: u64,
    inputs: &[Arc<Block>],
    manifest: &Manifest,
) -> Result<Block, super::block::BlockError> {
    let mut keys: BTreeSet<SeriesKey> = BTreeSet::new();
    let mut where_: Vec<HashMap<SeriesKey, usize>> = Vec::with_capacity(inputs.len());
    for b in inputs {
        let mut m = HashMap::new();
        for (i, e) in b.index.iter().enumerate() {
            let key = (e.tenant, e.device, e.key.clone());
            keys.insert(key.clone());
            m.insert(key, i);
        }
        where_.push(m);
    }
    let mut w = BlockWriter::create(dir, id)?;
    for key in keys {
        let cutoff = manifest.cutoff(key.0);
        let mut runs = Vec::with_capacity(inputs.len());
        for (b, m) in inputs.iter().zip(&where_) {
            let Some(&i) = m.get(&key) else { continue };
            match b.read(i) {
                Ok(mut chunk) => {
                    chunk.retain(|(ts, _, lsn)| {
                        *ts >= cutoff && !manifest.is_deleted(key.0, key.1, *lsn)
                    });
                    runs.push(chunk);
                }
                Err(e) => {
                    tracing::error!(error = %e, "unreadable chunk dropped while compacting")
                }
            }
        }
        w.add(key.0, key.1, &key.2, &merge_runs(runs))?;
    }
    w.finish()
}

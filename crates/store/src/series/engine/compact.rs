//! Compaction: sealing makes one small block per interval; every time four
//! blocks of one level exist they are merged, series by series, into one
//! block of the next level (up to `MAX_LEVEL`), so a query reads a handful of
//! blocks rather than one per seal, and the in-memory block indexes stay
//! small. Deleted and expired points are dropped on the way.
//!
//! Crash safety: the merged block is complete and fsynced before the manifest
//! names it instead of its inputs, and the inputs are deleted only after
//! that; a crash in between leaves files that the next start removes.

use std::collections::{BTreeMap, HashMap, HashSet};
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
        // A series may have several chunks in the merged block (copied ones).
        let mut at: HashMap<(TenantId, DeviceId, &str), Vec<usize>> = HashMap::new();
        for (i, e) in merged.index.iter().enumerate() {
            at.entry((e.tenant, e.device, e.key.as_str()))
                .or_default()
                .push(i);
        }
        let manifest = {
            let mut st = self.write();
            for (&(tenant, device), series) in st.devices.iter_mut() {
                for (key, s) in series.iter_mut() {
                    let before = s.chunks.len();
                    s.chunks.retain(|(b, _)| !gone.contains(&b.id));
                    if s.chunks.len() != before {
                        if let Some(is) = at.get(&(tenant, device, key.as_str())) {
                            s.chunks.extend(is.iter().map(|i| (merged.clone(), *i)));
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
            st.report();
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

/// Chunks with at least this many points are copied into a merged block as
/// they are (when nothing in them is dropped and no other chunk of their
/// series overlaps them) rather than decoded and encoded again: a busy
/// series is then compressed once, when sealed, and its chunks stay small
/// enough that a short query decodes little. Slower series merge as before
/// (1 Hz sealed every minute reaches this size only in level-6 blocks).
const COPY_MIN_POINTS: u32 = 65_536;

/// Writes block `id` holding every live point of `inputs`, one series at a time.
pub(super) fn merge(
    dir: &std::path::Path,
    id: u64,
    inputs: &[Arc<Block>],
    manifest: &Manifest,
) -> Result<Block, super::block::BlockError> {
    // Each series' chunks in the inputs: (input, index entry).
    let mut series: BTreeMap<SeriesKey, Vec<(usize, usize)>> = BTreeMap::new();
    for (b, block) in inputs.iter().enumerate() {
        for (i, e) in block.index.iter().enumerate() {
            series
                .entry((e.tenant, e.device, e.key.clone()))
                .or_default()
                .push((b, i));
        }
    }
    let mut w = BlockWriter::create(dir, id)?;
    for (key, mut chunks) in series {
        let cutoff = manifest.cutoff(key.0);
        if copyable(inputs, &mut chunks, cutoff, manifest) {
            for (b, i) in chunks {
                w.copy(&inputs[b], i)?;
            }
            continue;
        }
        let mut runs = Vec::with_capacity(chunks.len());
        for (b, i) in chunks {
            match inputs[b].read(i) {
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

/// Whether one series' `chunks` can be copied as they are: each is large,
/// nothing in them is expired or deleted, and sorted by time (which this
/// does) none overlaps the next.
fn copyable(
    inputs: &[Arc<Block>],
    chunks: &mut [(usize, usize)],
    cutoff: i64,
    manifest: &Manifest,
) -> bool {
    let entry = |&(b, i): &(usize, usize)| inputs[b].index.get(i);
    let whole = chunks.iter().all(|c| {
        entry(c).is_some_and(|e| {
            e.count >= COPY_MIN_POINTS
                && e.min_ts >= cutoff
                && !manifest.is_deleted(e.tenant, e.device, e.min_lsn)
        })
    });
    if !whole {
        return false;
    }
    chunks.sort_by_key(|c| entry(c).map_or(i64::MIN, |e| e.min_ts));
    chunks
        .windows(2)
        .all(|w| match (entry(&w[0]), entry(&w[1])) {
            (Some(a), Some(b)) => a.max_ts < b.min_ts,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::super::block::SealInput;
    use super::super::chunk::Entry;
    use super::super::rollup;
    use super::*;
    use tributary_model::Value;

    /// `n` points 10 ms apart (so minute rollups are kept) from the `from`th.
    fn points(from: i64, n: i64, lsn: u64, scale: f64) -> Vec<Entry> {
        (from..from + n)
            .map(|i| (i * 10_000_000, Value::Float(i as f64 * scale), lsn))
            .collect()
    }

    /// A busy series' chunks that follow one another are copied into the
    /// merged block as they are; small or overlapping ones are merged into
    /// one chunk, the newest write of a timestamp winning; the points read
    /// back are the same either way.
    #[test]
    fn large_chunks_are_copied_and_the_rest_merged() {
        let dir = tempfile::tempdir().unwrap();
        let (t, d) = (TenantId::new(), DeviceId::new());
        let n = i64::from(COPY_MIN_POINTS);
        let mut inputs = Vec::new();
        for b in 0..4i64 {
            let busy = points(b * n, n, b as u64 + 1, 0.5);
            let small = points(b * 10, 10, b as u64 + 1, 1.0);
            // Every block rewrites the same timestamps: the last one wins.
            let overlapping = points(0, n, b as u64 + 1, b as f64);
            let series = [
                ("busy", &busy),
                ("overlapping", &overlapping),
                ("small", &small),
            ];
            let inputs_of_block: Vec<SealInput<'_>> = series
                .iter()
                .map(|(key, p)| SealInput {
                    tenant: t,
                    device: d,
                    key,
                    points: p,
                })
                .collect();
            inputs.push(Arc::new(
                Block::write(dir.path(), b as u64, &inputs_of_block).unwrap(),
            ));
        }
        // Out of time order, as the level's blocks may be listed.
        inputs.swap(0, 2);
        let merged = merge(dir.path(), 9, &inputs, &Manifest::default()).unwrap();
        let entries = |key: &str| -> Vec<usize> {
            (0..merged.index.len())
                .filter(|i| merged.index[*i].key == key)
                .collect()
        };
        let busy = entries("busy");
        assert_eq!(busy.len(), 4, "copied chunk by chunk");
        let mut read: Vec<Entry> = busy.iter().flat_map(|i| merged.read(*i).unwrap()).collect();
        read.sort_by_key(|p| p.0);
        let written: Vec<Entry> = (0..4i64)
            .flat_map(|b| points(b * n, n, b as u64 + 1, 0.5))
            .collect();
        assert_eq!(read, written);
        let minute = rollup::ROLLUPS[0];
        for i in &busy {
            assert_eq!(
                merged.read_rollup(*i, minute).unwrap(),
                rollup::rollup(&merged.read(*i).unwrap(), minute),
                "rollups travel with their chunk"
            );
        }
        let overlapping = entries("overlapping");
        assert_eq!(overlapping.len(), 1, "overlapping chunks are merged");
        assert_eq!(merged.read(overlapping[0]).unwrap(), points(0, n, 4, 3.0));
        let small = entries("small");
        assert_eq!(small.len(), 1, "small chunks are merged");
        assert_eq!(merged.read(small[0]).unwrap().len(), 40);
    }
}

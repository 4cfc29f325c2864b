//! Retention: a tenant's points older than a cutoff expire. The cutoff is
//! recorded in the manifest, so expired points vanish from every answer at
//! once and stay gone after a restart; then block files that hold nothing
//! live any more are deleted, and blocks that are mostly expired are
//! rewritten without the expired points. Compaction drops the rest as it
//! merges.

use std::collections::HashSet;
use std::sync::Arc;

use tributary_model::{DeviceId, TenantId};
use uuid::Uuid;

use super::block::{block_path, Block};
use super::manifest::Manifest;
use super::{compact, io, Engine};
use crate::StoreError;

/// What expiring a tenant's old points reclaimed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Block files deleted because nothing in them was live.
    pub blocks_deleted: usize,
    /// Blocks rewritten without their expired points.
    pub blocks_rewritten: usize,
    /// Points dropped from the in-memory head.
    pub head_points: usize,
}

impl Engine {
    /// Expires the tenant's points with a timestamp before `before` (ns).
    pub async fn expire_before(
        &self,
        tenant: TenantId,
        before: i64,
    ) -> Result<Expired, StoreError> {
        // No seal or compaction runs meanwhile, so no block is being read
        // to be merged and no head is half frozen.
        let _sealing = self.0.sealing.clone().lock_owned().await;
        let mut out = Expired::default();
        let (manifest, dead, rewrite) = {
            let mut st = self.write();
            if before <= st.manifest.cutoff(tenant) {
                return Ok(out);
            }
            st.manifest.expire(tenant, before);
            let (lo, hi) = (DeviceId(Uuid::nil()), DeviceId(Uuid::max()));
            let mut emptied = Vec::new();
            for ((_, d), series) in st.devices.range_mut((tenant, lo)..=(tenant, hi)) {
                series.retain(|_, s| {
                    s.chunks
                        .retain(|(b, i)| b.index.get(*i).is_some_and(|e| e.max_ts >= before));
                    out.head_points += s.head.drop_before(before);
                    if s.latest.as_ref().is_some_and(|(ts, _)| *ts < before) {
                        s.latest = None;
                    }
                    !(s.chunks.is_empty() && s.head.is_empty() && s.latest.is_none())
                });
                if series.is_empty() {
                    emptied.push(*d);
                }
            }
            for d in emptied {
                st.devices.remove(&(tenant, d));
            }
            st.head_points = st.head_points.saturating_sub(out.head_points);
            let (mut dead, mut rewrite) = (Vec::new(), Vec::new());
            for (id, b) in &st.blocks {
                match live_share(b, &st.manifest) {
                    (0, _) => dead.push(*id),
                    (live, total) if live * 2 <= total => rewrite.push(b.clone()),
                    _ => {}
                }
            }
            let gone: HashSet<u64> = dead.iter().copied().collect();
            for id in &dead {
                st.blocks.remove(id);
                st.manifest.levels.remove(id);
            }
            st.manifest.blocks.retain(|id| !gone.contains(id));
            st.manifest.version += 1;
            st.report();
            (st.manifest.clone(), dead, rewrite)
        };
        self.save_manifest(manifest.clone()).await?;
        for id in &dead {
            let _ = std::fs::remove_file(block_path(&self.0.dir, *id));
        }
        out.blocks_deleted = dead.len();
        for block in rewrite {
            let level = manifest.levels.get(&block.id).copied().unwrap_or(0);
            let id = {
                let mut st = self.write();
                st.manifest.next_block += 1;
                st.manifest.next_block - 1
            };
            let dir = self.0.dir.clone();
            let (input, snapshot) = (vec![block.clone()], manifest.clone());
            let merged =
                tokio::task::spawn_blocking(move || compact::merge(&dir, id, &input, &snapshot))
                    .await
                    .map_err(io)?;
            match merged {
                Ok(merged) => {
                    self.replace(level, &[block], merged).await;
                    out.blocks_rewritten += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, "rewriting an expired block failed; it stays")
                }
            }
        }
        metrics::counter!("tributary_tsdb_blocks_expired_total")
            .increment((out.blocks_deleted + out.blocks_rewritten) as u64);
        Ok(out)
    }
}

/// Points of a block still live (not deleted, not expired), and all its points.
fn live_share(b: &Arc<Block>, m: &Manifest) -> (u64, u64) {
    b.index.iter().fold((0, 0), |(live, total), e| {
        let n = u64::from(e.count);
        let dead = m.is_deleted(e.tenant, e.device, e.max_lsn) || e.max_ts < m.cutoff(e.tenant);
        (if dead { live } else { live + n }, total + n)
    })
}

//! Sealing: the frozen head written into a block file in the background,
//! the manifest replaced, the head's vectors kept for reuse.

use super::*;

impl Engine {
    /// Freezes the head and writes it as a block: in the background unless
    /// `wait`. With a seal already in flight, only a full head (2 × the limit)
    /// or `wait` makes this wait for it.
    pub(super) async fn seal(&self, wait: bool) -> Result<(), StoreError> {
        let guard = match self.0.sealing.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                let full = self.read().head_over(&self.0.config, 2);
                if !(wait || full) {
                    return Ok(());
                }
                self.0.sealing.clone().lock_owned().await
            }
        };
        let (id, seal_lsn, frozen) = {
            let mut st = self.write();
            let mut spares = self.0.spares.lock().unwrap_or_else(|p| p.into_inner());
            let mut frozen = Vec::new();
            for (&(tenant, device), series) in st.devices.iter_mut() {
                for (key, s) in series.iter_mut() {
                    if s.head.is_empty() {
                        s.head.give_back(&mut spares);
                        continue;
                    }
                    let points = Arc::new(s.head.take(&mut spares));
                    s.frozen = Some(points.clone());
                    frozen.push((tenant, device, key.clone(), points));
                }
            }
            st.head_points = 0;
            st.head_bytes = 0;
            st.last_seal = Instant::now();
            let id = st.manifest.next_block;
            st.manifest.next_block += 1;
            (id, st.visible_lsn, frozen)
        };
        if frozen.is_empty() {
            return Ok(());
        }
        let engine = self.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            let dir = engine.0.dir.clone();
            let inputs = frozen.clone();
            let written = tokio::task::spawn_blocking(move || {
                let seal: Vec<SealInput<'_>> = inputs
                    .iter()
                    .map(|(tenant, device, key, points)| SealInput {
                        tenant: *tenant,
                        device: *device,
                        key,
                        points,
                    })
                    .collect();
                Block::write(&dir, id, &seal)
            })
            .await;
            match written {
                Ok(Ok(block)) => {
                    engine.publish(block, seal_lsn, &frozen).await;
                    engine.recycle(frozen);
                    engine.compact().await;
                }
                Ok(Err(e)) => engine.unfreeze(&frozen, &e.to_string()),
                Err(e) => engine.unfreeze(&frozen, &e.to_string()),
            }
        });
        if wait {
            task.await.map_err(io)?;
        }
        Ok(())
    }

    /// Makes a written block part of every series and of the manifest.
    pub(super) async fn publish(
        &self,
        block: Block,
        seal_lsn: u64,
        frozen: &[(TenantId, DeviceId, String, Arc<Vec<Entry>>)],
    ) {
        let block = Arc::new(block);
        let manifest = {
            let mut st = self.write();
            for (i, (tenant, device, key, points)) in frozen.iter().enumerate() {
                if let Some(s) = st
                    .devices
                    .get_mut(&(*tenant, *device))
                    .and_then(|d| d.get_mut(key))
                {
                    s.chunks.push((block.clone(), i));
                    if s.frozen.as_ref().is_some_and(|f| Arc::ptr_eq(f, points)) {
                        s.frozen = None;
                    }
                }
            }
            st.blocks.insert(block.id, block.clone());
            st.manifest.blocks.push(block.id);
            st.manifest.durable_lsn = st.manifest.durable_lsn.max(seal_lsn);
            st.manifest.version += 1;
            st.report();
            st.manifest.clone()
        };
        match self.save_manifest(manifest).await {
            Ok(()) => {
                self.0.durable.fetch_max(seal_lsn, Ordering::AcqRel);
                metrics::counter!("tributary_tsdb_blocks_sealed_total").increment(1);
                metrics::counter!("tributary_tsdb_block_bytes_total").increment(block.size());
            }
            Err(e) => {
                tracing::error!(error = %e, "manifest not saved; the write-ahead log keeps the data")
            }
        }
    }

    /// Keeps the buffers of sealed points no query still reads, for reuse.
    pub(super) fn recycle(&self, frozen: Vec<(TenantId, DeviceId, String, Arc<Vec<Entry>>)>) {
        let mut spares = self.0.spares.lock().unwrap_or_else(|p| p.into_inner());
        for (_, _, _, points) in frozen {
            if let Ok(buf) = Arc::try_unwrap(points) {
                spares.put(buf);
            }
        }
    }

    /// A failed seal puts the frozen points back into the head (newer writes win).
    pub(super) fn unfreeze(
        &self,
        frozen: &[(TenantId, DeviceId, String, Arc<Vec<Entry>>)],
        error: &str,
    ) {
        tracing::error!(
            error,
            "sealing a time-series block failed; the data stays in memory and in the log"
        );
        let mut st = self.write();
        let (mut restored, mut bytes) = (0, 0);
        for (tenant, device, key, points) in frozen {
            if let Some(s) = st
                .devices
                .get_mut(&(*tenant, *device))
                .and_then(|d| d.get_mut(key))
            {
                for (ts, v, lsn) in points.iter() {
                    if s.head.insert_absent(*ts, v.clone(), *lsn) {
                        restored += 1;
                        bytes += point_bytes(v);
                    }
                }
                s.frozen = None;
            }
        }
        st.head_points += restored;
        st.head_bytes += bytes;
    }

    pub(super) async fn save_manifest(&self, manifest: Manifest) -> Result<(), StoreError> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut saved = engine
                .0
                .manifest_write
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // A newer manifest may have been saved meanwhile; never go back.
            if manifest.version <= *saved {
                return Ok::<(), std::io::Error>(());
            }
            manifest.save(&engine.0.dir)?;
            *saved = manifest.version;
            Ok(())
        })
        .await
        .map_err(io)?
        .map_err(io)
    }
}

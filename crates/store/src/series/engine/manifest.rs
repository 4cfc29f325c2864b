//! The manifest: which block files make up the store, up to which LSN
//! everything is in them, which devices and tenants were deleted and up to
//! which time each tenant's data has expired. It is replaced atomically
//! (write, fsync, rename, fsync the directory) and carries a CRC32.
//!
//! Layout: the postcard encoding of [`Manifest`], then that of
//! [`Retention`] (absent in manifests written before retention existed),
//! then the CRC32 of both.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tributary_model::{DeviceId, TenantId};

use super::block::sync_dir;

const FILE: &str = "MANIFEST";

/// The durable description of the store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Increases with every change, so an older copy is never saved over a newer one.
    pub version: u64,
    /// Every applied point up to this LSN is in the listed blocks.
    pub durable_lsn: u64,
    /// Block ids, oldest first.
    pub blocks: Vec<u64>,
    /// The id the next block gets.
    pub next_block: u64,
    /// Compaction level of each block (absent: 0, a sealed head).
    pub levels: std::collections::BTreeMap<u64, u8>,
    /// Deleted devices and the LSN of the deletion: their points up to it, in
    /// blocks and in the log, are ignored (later writes are a new start).
    pub deleted_devices: Vec<(TenantId, DeviceId, u64)>,
    /// Deleted tenants, likewise.
    pub deleted_tenants: Vec<(TenantId, u64)>,
    /// Per tenant, the time (ns) before which its points have expired.
    #[serde(skip)]
    pub expired_before: BTreeMap<TenantId, i64>,
    #[serde(skip)]
    deleted: HashMap<DeviceId, u64>,
    #[serde(skip)]
    deleted_tenant_map: HashMap<TenantId, u64>,
}

impl Manifest {
    /// Reads the manifest (an empty one when there is none yet).
    pub fn load(dir: &Path) -> io::Result<Manifest> {
        let path = dir.join(FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(e),
        };
        let damaged = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is damaged", path.display()),
            )
        };
        if bytes.len() < 4 {
            return Err(damaged());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(damaged());
        }
        let (mut m, rest): (Manifest, _) =
            postcard::take_from_bytes(body).map_err(|_| damaged())?;
        if !rest.is_empty() {
            let r: Retention = postcard::from_bytes(rest).map_err(|_| damaged())?;
            m.expired_before = r.expired_before.into_iter().collect();
        }
        m.reindex();
        Ok(m)
    }

    fn reindex(&mut self) {
        self.deleted.clear();
        for (_, d, lsn) in &self.deleted_devices {
            let e = self.deleted.entry(*d).or_default();
            *e = (*e).max(*lsn);
        }
        self.deleted_tenant_map.clear();
        for (t, lsn) in &self.deleted_tenants {
            let e = self.deleted_tenant_map.entry(*t).or_default();
            *e = (*e).max(*lsn);
        }
    }

    /// Records that a device's points up to `lsn` are deleted.
    pub fn delete_device(&mut self, tenant: TenantId, device: DeviceId, lsn: u64) {
        match self
            .deleted_devices
            .iter_mut()
            .find(|(_, d, _)| *d == device)
        {
            Some(e) => e.2 = e.2.max(lsn),
            None => self.deleted_devices.push((tenant, device, lsn)),
        }
        self.reindex();
    }

    /// Records that a tenant's points up to `lsn` are deleted.
    pub fn delete_tenant(&mut self, tenant: TenantId, lsn: u64) {
        match self.deleted_tenants.iter_mut().find(|(t, _)| *t == tenant) {
            Some(e) => e.1 = e.1.max(lsn),
            None => self.deleted_tenants.push((tenant, lsn)),
        }
        self.reindex();
    }

    /// Records that the tenant's points older than `before` (ns) have expired.
    pub fn expire(&mut self, tenant: TenantId, before: i64) {
        let e = self.expired_before.entry(tenant).or_insert(before);
        *e = (*e).max(before);
    }

    /// The time before which the tenant's points have expired (`i64::MIN`: none).
    pub fn cutoff(&self, tenant: TenantId) -> i64 {
        self.expired_before
            .get(&tenant)
            .copied()
            .unwrap_or(i64::MIN)
    }

    /// Whether a point of the device written at `lsn` was deleted since.
    pub fn is_deleted(&self, tenant: TenantId, device: DeviceId, lsn: u64) -> bool {
        self.deleted.get(&device).is_some_and(|d| lsn <= *d)
            || self
                .deleted_tenant_map
                .get(&tenant)
                .is_some_and(|d| lsn <= *d)
    }

    /// Writes the manifest atomically.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let mut bytes = postcard::to_stdvec(self).map_err(io::Error::other)?;
        let retention = Retention {
            expired_before: self.expired_before.iter().map(|(t, b)| (*t, *b)).collect(),
        };
        bytes.extend(postcard::to_stdvec(&retention).map_err(io::Error::other)?);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let tmp = dir.join(format!("{FILE}.tmp"));
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(FILE))?;
        sync_dir(dir).map_err(io::Error::other)
    }
}

/// The manifest's second part: expiry cutoffs per tenant.
#[derive(Default, Serialize, Deserialize)]
struct Retention {
    expired_before: Vec<(TenantId, i64)>,
}

/// Deletes block files the manifest does not list (left by a crash mid-seal).
pub fn remove_strays(dir: &Path, m: &Manifest) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let listed: HashSet<u64> = m.blocks.iter().copied().collect();
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let stray = match name.strip_suffix(".blk") {
            Some(id) => id.parse::<u64>().is_ok_and(|id| !listed.contains(&id)),
            None => name.ends_with(".tmp"),
        };
        if stray {
            tracing::info!(file = %name, "removing a block file not in the manifest");
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap().blocks.len(), 0);
        let mut m = Manifest {
            durable_lsn: 42,
            blocks: vec![1, 2],
            next_block: 3,
            ..Manifest::default()
        };
        let (t, d) = (TenantId::new(), DeviceId::new());
        m.delete_device(t, d, 10);
        m.expire(t, 5_000);
        m.save(dir.path()).unwrap();
        let back = Manifest::load(dir.path()).unwrap();
        assert_eq!(
            (back.durable_lsn, back.blocks.clone(), back.next_block),
            (42, vec![1, 2], 3)
        );
        assert!(back.is_deleted(t, d, 10));
        assert!(!back.is_deleted(t, d, 11), "written after the delete");
        assert!(!back.is_deleted(t, DeviceId::new(), 1));
        assert_eq!(back.cutoff(t), 5_000);
        assert_eq!(back.cutoff(TenantId::new()), i64::MIN);
        let path = dir.path().join(FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(Manifest::load(dir.path()).is_err());
    }

    /// A manifest written before retention existed (no second part) still loads.
    #[test]
    fn manifest_without_retention_part_loads() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest {
            durable_lsn: 7,
            blocks: vec![3],
            ..Manifest::default()
        };
        let mut bytes = postcard::to_stdvec(&m).unwrap();
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        fs::write(dir.path().join(FILE), bytes).unwrap();
        let back = Manifest::load(dir.path()).unwrap();
        assert_eq!((back.durable_lsn, back.blocks), (7, vec![3]));
        assert!(back.expired_before.is_empty());
    }
}

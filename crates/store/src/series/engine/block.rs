//! Immutable block files: the compressed chunks of many series, then an
//! index saying where each series is, its time and LSN range and its newest
//! point. Every chunk and the index carry a CRC32; a damaged chunk is an
//! error for that series only.
//!
//! Layout: `MAGIC | chunk… | index (postcard) | index offset u64 | index len u32 | index crc u32 | MAGIC`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tributary_model::{DeviceId, TenantId, Value};

use super::chunk::{self, Entry};
use super::rollup::{self, Acc, ROLLUPS};

const MAGIC: &[u8; 8] = b"TRBBLK04";
/// Blocks from before Chimp floats: read as they are (older versions of
/// Tributary do not read version 04, rather than misread its floats).
const MAGIC_03: &[u8; 8] = b"TRBBLK03";
const FOOTER: usize = 8 + 4 + 4 + 8;

/// Where one series' chunk is in a block, and what it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Tenant of the series.
    pub tenant: TenantId,
    /// Device of the series.
    pub device: DeviceId,
    /// Telemetry key.
    pub key: String,
    /// Byte offset of the chunk.
    pub offset: u64,
    /// Chunk length in bytes.
    pub len: u32,
    /// CRC32 of the chunk.
    pub crc: u32,
    /// Points in the chunk.
    pub count: u32,
    /// Oldest timestamp (ns).
    pub min_ts: i64,
    /// Newest timestamp (ns).
    pub max_ts: i64,
    /// Lowest LSN of its points.
    pub min_lsn: u64,
    /// Highest LSN of its points.
    pub max_lsn: u64,
    /// The newest point (timestamp, value), for latest values without decoding.
    pub last: (i64, Value),
    /// Rollups of the chunk: (interval ns, offset, length, CRC32).
    pub rollups: Vec<(i64, u64, u32, u32)>,
}

/// A series' points to seal, sorted by timestamp.
pub struct SealInput<'a> {
    /// Tenant.
    pub tenant: TenantId,
    /// Device.
    pub device: DeviceId,
    /// Key.
    pub key: &'a str,
    /// Points.
    pub points: &'a [Entry],
}

/// Why a block could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A checksum or structure check failed.
    #[error("{path}: damaged: {what}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What did not check out.
        what: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open block file and its index.
pub struct Block {
    /// The block's number (its file name).
    pub id: u64,
    path: PathBuf,
    file: File,
    /// One entry per series.
    pub index: Vec<IndexEntry>,
}

/// A rollup is stored only when its buckets hold at least this many points on
/// average (1 Hz data gets hourly rollups, 10 Hz and faster minute ones too).
const ROLLUP_MIN_POINTS: usize = 600;

/// The file name of block `id`.
pub fn block_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.blk"))
}

impl Block {
    /// Writes, fsyncs and opens block `id` from `series` (empty ones are skipped).
    pub fn write(dir: &Path, id: u64, series: &[SealInput<'_>]) -> Result<Block, BlockError> {
        let written = BlockWriter::create(dir, id).and_then(|mut w| {
            for s in series {
                w.add(s.tenant, s.device, s.key, s.points)?;
            }
            w.finish()
        });
        if written.is_err() {
            // A failed write (a full disk, most often) leaves no partial file to take space.
            let _ = fs::remove_file(block_path(dir, id).with_extension("tmp"));
        }
        written
    }

    /// Opens block `id`, checking its footer and index.
    pub fn open(dir: &Path, id: u64) -> Result<Block, BlockError> {
        let path = block_path(dir, id);
        let damaged = |what: &str| BlockError::Damaged {
            path: path.clone(),
            what: what.to_string(),
        };
        let file = File::open(&path).map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        if len < (MAGIC.len() + FOOTER) as u64 {
            return Err(damaged("too short"));
        }
        let mut footer = [0u8; FOOTER];
        file.read_exact_at(&mut footer, len - FOOTER as u64)
            .map_err(io_err(&path))?;
        if &footer[16..24] != MAGIC && &footer[16..24] != MAGIC_03 {
            return Err(damaged("footer magic"));
        }
        let index_offset = u64::from_le_bytes(footer[0..8].try_into().unwrap_or_default());
        let index_len = u32::from_le_bytes(footer[8..12].try_into().unwrap_or_default()) as u64;
        let index_crc = u32::from_le_bytes(footer[12..16].try_into().unwrap_or_default());
        if index_offset.checked_add(index_len) != Some(len - FOOTER as u64) {
            return Err(damaged("index bounds"));
        }
        let mut index_bytes = vec![0u8; index_len as usize];
        file.read_exact_at(&mut index_bytes, index_offset)
            .map_err(io_err(&path))?;
        if crc32fast::hash(&index_bytes) != index_crc {
            return Err(damaged("index checksum"));
        }
        let index: Vec<IndexEntry> =
            postcard::from_bytes(&index_bytes).map_err(|e| damaged(&format!("index: {e}")))?;
        if index.iter().any(|e| {
            e.offset
                .checked_add(u64::from(e.len))
                .is_none_or(|end| end > index_offset)
        }) {
            return Err(damaged("chunk bounds"));
        }
        Ok(Block {
            id,
            path,
            file,
            index,
        })
    }

    fn damaged(&self, what: String) -> BlockError {
        BlockError::Damaged {
            path: self.path.clone(),
            what,
        }
    }

    fn entry(&self, i: usize) -> Result<&IndexEntry, BlockError> {
        self.index
            .get(i)
            .ok_or_else(|| self.damaged(format!("no index entry {i}")))
    }

    /// `len` bytes at `offset`, checked against `crc`; `what` names them in errors.
    fn read_checked(
        &self,
        offset: u64,
        len: u32,
        crc: u32,
        what: &str,
    ) -> Result<Vec<u8>, BlockError> {
        let mut bytes = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(io_err(&self.path))?;
        if crc32fast::hash(&bytes) != crc {
            return Err(self.damaged(format!("{what} checksum")));
        }
        Ok(bytes)
    }

    /// The points of index entry `i`, checked against its CRC.
    pub fn read(&self, i: usize) -> Result<Vec<Entry>, BlockError> {
        let e = self.entry(i)?;
        let what = format!("chunk of {}/{}", e.device, e.key);
        let bytes = self.read_checked(e.offset, e.len, e.crc, &what)?;
        chunk::decode(&bytes).map_err(|c| self.damaged(format!("{what}: {c}")))
    }

    /// The longest rollup interval of index entry `i` that divides `interval`.
    pub fn rollup_for(&self, i: usize, interval: i64) -> Option<i64> {
        self.index
            .get(i)?
            .rollups
            .iter()
            .map(|r| r.0)
            .filter(|r| interval % r == 0)
            .max()
    }

    /// The `interval` rollup of index entry `i`, checked against its CRC.
    pub fn read_rollup(&self, i: usize, interval: i64) -> Result<Vec<(i64, Acc)>, BlockError> {
        let e = self.entry(i)?;
        let what = format!("rollup of {}/{}", e.device, e.key);
        let &(_, offset, len, crc) = e
            .rollups
            .iter()
            .find(|r| r.0 == interval)
            .ok_or_else(|| self.damaged(format!("no {interval} ns {what}")))?;
        let bytes = self.read_checked(offset, len, crc, &what)?;
        postcard::from_bytes(&bytes).map_err(|err| self.damaged(format!("{what}: {err}")))
    }

    /// Bytes on disk.
    pub fn size(&self) -> u64 {
        self.file.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

/// Writes a block one series at a time, so compaction never holds more than
/// one series in memory.
pub struct BlockWriter {
    dir: PathBuf,
    id: u64,
    tmp: PathBuf,
    out: io::BufWriter<File>,
    offset: u64,
    index: Vec<IndexEntry>,
}

impl BlockWriter {
    /// Starts block `id` as a temporary file.
    pub fn create(dir: &Path, id: u64) -> Result<Self, BlockError> {
        let tmp = block_path(dir, id).with_extension("tmp");
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = io::BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).map_err(io_err(&tmp))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            id,
            tmp,
            out,
            offset: MAGIC.len() as u64,
            index: Vec::new(),
        })
    }

    /// Appends one series' points (sorted by timestamp); nothing for none.
    pub fn add(
        &mut self,
        tenant: TenantId,
        device: DeviceId,
        key: &str,
        points: &[Entry],
    ) -> Result<(), BlockError> {
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            return Ok(());
        };
        let bytes = chunk::encode(points);
        let mut rollups = Vec::with_capacity(ROLLUPS.len());
        let mut rollup_bytes = Vec::new();
        let mut at = self.offset + bytes.len() as u64;
        for interval in ROLLUPS {
            let buckets = rollup::rollup(points, interval);
            // A rollup pays where its buckets hold many points: it then costs
            // little space and saves decoding them all. Elsewhere reading the
            // points is as good.
            if points.len() < buckets.len() * ROLLUP_MIN_POINTS {
                continue;
            }
            let encoded = postcard::to_stdvec(&buckets).map_err(|e| BlockError::Damaged {
                path: self.tmp.clone(),
                what: format!("encoding a rollup: {e}"),
            })?;
            rollups.push((
                interval,
                at,
                encoded.len() as u32,
                crc32fast::hash(&encoded),
            ));
            at += encoded.len() as u64;
            rollup_bytes.extend_from_slice(&encoded);
        }
        self.index.push(IndexEntry {
            tenant,
            device,
            key: key.to_string(),
            offset: self.offset,
            len: bytes.len() as u32,
            crc: crc32fast::hash(&bytes),
            count: points.len() as u32,
            min_ts: first.0,
            max_ts: last.0,
            min_lsn: points.iter().map(|p| p.2).min().unwrap_or(0),
            max_lsn: points.iter().map(|p| p.2).max().unwrap_or(0),
            last: (last.0, last.1.clone()),
            rollups,
        });
        self.out.write_all(&bytes).map_err(io_err(&self.tmp))?;
        self.out
            .write_all(&rollup_bytes)
            .map_err(io_err(&self.tmp))?;
        self.offset = at;
        Ok(())
    }

    /// Appends index entry `i` of `from` (its chunk and rollups) as it is,
    /// after checking them against their CRCs.
    pub fn copy(&mut self, from: &Block, i: usize) -> Result<(), BlockError> {
        let mut e = from.entry(i)?.clone();
        let what = format!("chunk of {}/{}", e.device, e.key);
        let chunk = from.read_checked(e.offset, e.len, e.crc, &what)?;
        self.out.write_all(&chunk).map_err(io_err(&self.tmp))?;
        e.offset = self.offset;
        let mut at = self.offset + chunk.len() as u64;
        for r in &mut e.rollups {
            let bytes = from.read_checked(r.1, r.2, r.3, &what)?;
            self.out.write_all(&bytes).map_err(io_err(&self.tmp))?;
            r.1 = at;
            at += bytes.len() as u64;
        }
        self.index.push(e);
        self.offset = at;
        Ok(())
    }

    /// Writes the index, fsyncs, renames into place and opens the block.
    pub fn finish(mut self) -> Result<Block, BlockError> {
        let path = block_path(&self.dir, self.id);
        let index_bytes = postcard::to_stdvec(&self.index).map_err(|e| BlockError::Damaged {
            path: path.clone(),
            what: format!("encoding the index: {e}"),
        })?;
        let mut tail = Vec::with_capacity(index_bytes.len() + FOOTER);
        tail.extend_from_slice(&index_bytes);
        tail.extend_from_slice(&self.offset.to_le_bytes());
        tail.extend_from_slice(&(index_bytes.len() as u32).to_le_bytes());
        tail.extend_from_slice(&crc32fast::hash(&index_bytes).to_le_bytes());
        tail.extend_from_slice(MAGIC);
        self.out.write_all(&tail).map_err(io_err(&self.tmp))?;
        let file = self.out.into_inner().map_err(|e| BlockError::Io {
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        #[cfg(test)]
        super::faults::before_sync(&self.dir).map_err(io_err(&self.tmp))?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        drop(file);
        fs::rename(&self.tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        let file = File::open(&path).map_err(io_err(&path))?;
        Ok(Block {
            id: self.id,
            path,
            file,
            index: self.index,
        })
    }
}

/// Fsyncs a directory so renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), BlockError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (t, d) = (TenantId::new(), DeviceId::new());
        let a: Vec<Entry> = (0..100)
            .map(|i| (i * 1000, Value::Float(i as f64), 1))
            .collect();
        let b: Vec<Entry> = vec![(5, Value::Str("x".into()), 2)];
        let block = Block::write(
            dir.path(),
            7,
            &[
                SealInput {
                    tenant: t,
                    device: d,
                    key: "a",
                    points: &a,
                },
                SealInput {
                    tenant: t,
                    device: d,
                    key: "b",
                    points: &b,
                },
            ],
        )
        .unwrap();
        assert_eq!(block.read(0).unwrap(), a);
        let reopened = Block::open(dir.path(), 7).unwrap();
        assert_eq!(reopened.index.len(), 2);
        assert_eq!(reopened.index[1].last, (5, Value::Str("x".into())));
        assert_eq!(reopened.read(1).unwrap(), b);

        // A version-03 footer still opens; an unknown version does not.
        let path = block_path(dir.path(), 7);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 8..].copy_from_slice(MAGIC_03);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(Block::open(dir.path(), 7).unwrap().read(1).unwrap(), b);
        bytes[n - 8..].copy_from_slice(b"TRBBLK99");
        fs::write(&path, &bytes).unwrap();
        assert!(Block::open(dir.path(), 7).is_err());
        bytes[n - 8..].copy_from_slice(MAGIC);

        // Flip a byte inside chunk "a": that series fails its checksum, "b" still reads.
        bytes[20] ^= 0xFF;
        fs::write(&path, &bytes).unwrap();
        let damaged = Block::open(dir.path(), 7).unwrap();
        assert!(damaged.read(0).is_err());
        assert_eq!(damaged.read(1).unwrap(), b);
        // A torn footer makes the whole block unreadable, reported as damage.
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(
            Block::open(dir.path(), 7),
            Err(BlockError::Damaged { .. })
        ));
    }
}

//! The next segment file, made ready in the background while the current one
//! fills: written to its full size, so the fsync after each group write
//! into it flushes only the data and not the file's growing length (which
//! halves the fsync's latency on ext4). A new file is zero-filled; an
//! applied segment kept as the spare is reused as it is, its old records
//! left in place to be overwritten: recovery tells them from new ones by
//! their LSNs, all below the new segment's first (a spare of an earlier
//! format is zeroed instead). Reusing it needs no writes and no new blocks
//! or page-cache pages.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};

use tracing::warn;

use super::segment::{spare_path, MAGIC};

/// The name of the file being prepared; not a segment until renamed.
const PREPARED: &str = "prepared.tmp";

/// Prepares one segment file at a time on a background thread.
pub(crate) struct Preparer {
    dir: PathBuf,
    bytes: u64,
    /// The file in preparation, if one is.
    pending: Option<Receiver<std::io::Result<File>>>,
}

impl Preparer {
    /// A preparer of `bytes`-long files in `dir`, idle until [`Self::start`].
    pub fn new(dir: &Path, bytes: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            bytes,
            pending: None,
        }
    }

    /// Where the prepared file is until it is renamed.
    pub fn path(&self) -> PathBuf {
        self.dir.join(PREPARED)
    }

    /// Starts preparing the next file unless one is already in preparation.
    pub fn start(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let (tx, rx) = sync_channel(1);
        let (spare, path, bytes) = (spare_path(&self.dir), self.path(), self.bytes);
        let spawned = std::thread::Builder::new()
            .name("wal-prepare".into())
            .spawn(move || {
                let _ = tx.send(prepared(&spare, &path, bytes));
            });
        match spawned {
            Ok(_) => self.pending = Some(rx),
            Err(e) => warn!(error = %e, "cannot start preparing a write-ahead log segment"),
        }
    }

    /// The prepared file (at [`Self::path`]) if it is ready; `None` while it
    /// is still being written or when preparing failed.
    pub fn take(&mut self) -> Option<File> {
        let rx = self.pending.as_ref()?;
        let result = match rx.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err(std::io::Error::other("preparer stopped")),
        };
        self.pending = None;
        match result {
            Ok(file) => Some(file),
            Err(e) => {
                warn!(error = %e, "preparing a write-ahead log segment failed; appending instead");
                None
            }
        }
    }
}

/// A durable file of `bytes` bytes at `path`: the file at `spare` when there
/// is one (cut to size, or zero-filled up to it), else a new zero-filled one.
fn prepared(spare: &Path, path: &Path, bytes: u64) -> std::io::Result<File> {
    let reused = std::fs::rename(spare, path).is_ok();
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(!reused)
        .open(path)?;
    // A segment of an earlier format is zeroed instead: its records would
    // not decode as this format's, and would read as damage after a crash.
    if reused && !of_this_format(&mut file)? {
        file.set_len(0)?;
    }
    let had = file.metadata()?.len();
    if had > bytes {
        file.set_len(bytes)?;
    }
    file.seek(SeekFrom::Start(had.min(bytes)))?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = bytes.saturating_sub(had);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(file)
}

/// Whether `file` starts with this version's segment header.
fn of_this_format(file: &mut File) -> std::io::Result<bool> {
    let mut head = [0u8; MAGIC.len()];
    file.seek(SeekFrom::Start(0))?;
    match file.read_exact(&mut head) {
        Ok(()) => Ok(&head == MAGIC),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file `p` prepares, once it is ready.
    fn ready(p: &mut Preparer) -> File {
        loop {
            if let Some(f) = p.take() {
                return f;
            }
            assert!(p.pending.is_some(), "preparing failed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_prepared_file_is_zero_filled_to_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Preparer::new(dir.path(), 10_000);
        assert!(p.take().is_none(), "idle until started");
        p.start();
        let file = ready(&mut p);
        assert_eq!(file.metadata().unwrap().len(), 10_000);
        let data = std::fs::read(p.path()).unwrap();
        assert!(data.iter().all(|b| *b == 0));
        assert!(p.take().is_none(), "one file per start");
        p.start();
        assert!(p.pending.is_some());
    }

    /// A kept spare becomes the prepared file as it is, cut to size or
    /// zero-filled up to it.
    #[test]
    fn a_spare_is_reused_without_rewriting_it() {
        let dir = tempfile::tempdir().unwrap();
        for old_len in [30_000, 3_000] {
            let mut old = MAGIC.to_vec();
            old.resize(old_len, 7);
            std::fs::write(spare_path(dir.path()), old).unwrap();
            let mut p = Preparer::new(dir.path(), 10_000);
            p.start();
            let file = ready(&mut p);
            assert!(!spare_path(dir.path()).exists(), "the spare was used");
            assert_eq!(file.metadata().unwrap().len(), 10_000);
            let data = std::fs::read(p.path()).unwrap();
            let kept = old_len.min(10_000);
            assert_eq!(&data[..MAGIC.len()], MAGIC);
            assert!(
                data[MAGIC.len()..kept].iter().all(|b| *b == 7),
                "from {old_len} bytes"
            );
            assert!(data[kept..].iter().all(|b| *b == 0), "from {old_len} bytes");
        }
    }

    /// A spare of an earlier format (or none at all) is zeroed, not reused as it is.
    #[test]
    fn a_spare_of_another_format_is_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        for old in [b"TRBWAL1\n".to_vec(), Vec::new(), vec![7u8; 3]] {
            let mut old = old;
            old.resize(old.len().max(20_000), 7);
            std::fs::write(spare_path(dir.path()), &old).unwrap();
            let mut p = Preparer::new(dir.path(), 10_000);
            p.start();
            let file = ready(&mut p);
            assert_eq!(file.metadata().unwrap().len(), 10_000);
            let data = std::fs::read(p.path()).unwrap();
            assert!(data.iter().all(|b| *b == 0));
        }
    }
}

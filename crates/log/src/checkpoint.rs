//! Checkpoints the log keeps for its consumers: one small file per consumer
//! name, replaced atomically (write, fsync, rename, fsync the directory).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::wal::WalError;

/// The checkpoint files of one log.
#[derive(Clone, Debug)]
pub(crate) struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    /// The checkpoints under the log directory `log_dir`.
    pub fn open(log_dir: &Path) -> Result<Self, WalError> {
        let dir = log_dir.join("checkpoints");
        fs::create_dir_all(&dir).map_err(|e| WalError::io(&dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lsn"))
    }

    /// The LSN `name` has consumed up to, or `None` for a consumer never seen.
    pub fn load(&self, name: &str) -> Result<Option<u64>, WalError> {
        let path = self.path(name);
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map(Some).map_err(|_| {
                WalError::io(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "not an LSN"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(WalError::io(&path, e)),
        }
    }

    /// Records durably that `name` has consumed up to `lsn`.
    pub fn store(&self, name: &str, lsn: u64) -> Result<(), WalError> {
        let path = self.path(name);
        let tmp = path.with_extension("tmp");
        let written = fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(format!("{lsn}\n").as_bytes())?;
                f.sync_all()
            })
            .and_then(|_| fs::rename(&tmp, &path))
            .and_then(|_| fs::File::open(&self.dir)?.sync_all());
        written.map_err(|e| WalError::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(c.load("rules").unwrap(), None);
        c.store("rules", 41).unwrap();
        c.store("rules", 42).unwrap();
        let again = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(again.load("rules").unwrap(), Some(42));
        assert_eq!(again.load("meter").unwrap(), None);
    }
}

//! The write-ahead log: segment files of checksummed records, written by one
//! thread that shares each fsync among every batch waiting at that moment.

mod batch_codec;
mod prepare;
mod record;
pub(crate) mod segment;
mod writer;

use std::path::PathBuf;

pub use record::{decode_record, encode_batch, encode_record, RecordError, HEADER_LEN};
pub use segment::{list_segments, recover, Recovery, SegmentInfo};
pub(crate) use writer::{spawn_writer, AppendRequest, WriterConfig};

/// Errors of the log: I/O, or a log that refuses writes after a failed fsync.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Reading or writing the log failed.
    #[error("write-ahead log I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An earlier write or fsync failed; nothing more is accepted until restart.
    #[error("write-ahead log is failed after an earlier I/O error; restart required")]
    Failed,
    /// The log is shutting down.
    #[error("write-ahead log is shut down")]
    Closed,
    /// A batch could not be encoded.
    #[error("cannot encode batch: {0}")]
    Encode(String),
}

impl WalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WalError::Io {
            path: path.into(),
            source,
        }
    }
}

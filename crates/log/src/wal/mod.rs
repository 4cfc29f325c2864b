//! The write-ahead log: segment files of checksummed records, written by one
//! thread that shares each fsync among every event waiting at that moment,
//! and read back from any LSN by consumers.

mod batch_codec;
mod event_codec;
#[cfg(test)]
pub(crate) mod faults;
mod prepare;
mod reader;
mod record;
pub(crate) mod segment;
mod writer;

use std::path::PathBuf;

pub use batch_codec::decode as decode_batch;
pub use event_codec::decode as decode_event;
pub use reader::LogReader;
pub use record::{decode_record, encode_event, encode_record, Format, RecordError, HEADER_LEN};
pub use segment::{list_segments, recover, Recovery, SegmentInfo};
pub(crate) use writer::{spawn_writer, AppendRequest, Floor, WriterConfig};

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
    /// Writing or syncing the log failed: the batch was not stored. The log
    /// cuts the segment back to what was durable and takes writes again as
    /// soon as that works.
    #[error("write-ahead log write failed; not stored (retrying)")]
    Failed,
    /// The disk of the log is full: the batch was not stored; writes are
    /// taken again once space is freed.
    #[error("the disk of the write-ahead log is full; not stored")]
    DiskFull,
    /// The log is shutting down.
    #[error("write-ahead log is shut down")]
    Closed,
    /// An event could not be encoded.
    #[error("cannot encode event: {0}")]
    Encode(String),
}

impl WalError {
    /// The refusal for a write that failed with `e`.
    pub(crate) fn refusal(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            WalError::DiskFull
        } else {
            WalError::Failed
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WalError::Io {
            path: path.into(),
            source,
        }
    }
}

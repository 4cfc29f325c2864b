//! The pipeline: every accepted batch goes into the write-ahead log (fsynced
//! with group commit) before it is acknowledged, then fans out in log order to
//! the durable sink (the series store) and to non-blocking listeners (live hub).

mod handle;
pub mod sink;
pub mod wal;

pub use handle::{Pipeline, PipelineConfig};
pub use sink::{Committed, Listener, Sink, SinkError};
pub use wal::WalError;

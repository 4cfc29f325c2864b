//! What committed batches flow into.

use std::sync::Arc;

use async_trait::async_trait;
use tributary_model::Batch;

/// A batch that is durable in the log, with its log sequence number.
#[derive(Debug, PartialEq)]
pub struct Committed {
    /// Log sequence number: strictly increasing across the life of a data directory.
    pub lsn: u64,
    /// The batch as it was accepted.
    pub batch: Batch,
}

/// Why a sink could not apply entries; the pipeline retries them.
#[derive(Debug, thiserror::Error)]
#[error("sink error: {0}")]
pub struct SinkError(pub String);

/// A sink that makes entries durable on its own (the series store). Entries
/// arrive in log order; once `apply` returns Ok they may be dropped from the log.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Applies entries in order, atomically with the record of the last applied LSN.
    async fn apply(&self, entries: &[Arc<Committed>]) -> Result<(), SinkError>;
    /// The highest LSN this sink has durably applied (0 when none).
    async fn applied_lsn(&self) -> Result<u64, SinkError>;
    /// For a sink whose `apply` is not yet durable (it keeps recent entries in
    /// memory): the LSN up to which entries survive a crash, so the log before
    /// it may be deleted. `None`: everything applied is durable.
    fn durable_lsn(&self) -> Option<u64> {
        None
    }
}

/// A best-effort consumer told of every commit right after the fsync. It must not block.
pub trait Listener: Send + Sync + 'static {
    /// Called on the log writer's thread with each group of committed entries.
    fn on_commit(&self, entries: &[Arc<Committed>]);
}

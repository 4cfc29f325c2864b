//! The pipeline: every accepted batch goes into the write-ahead log (fsynced
//! with group commit) before it is acknowledged, then fans out in log order to
//! the durable sink (the series store) and to non-blocking listeners (live hub).

mod handle;
pub mod sink;
pub mod wal;

pub use handle::{Durable, Pipeline, PipelineConfig};
pub use sink::{Committed, Listener, Sink, SinkError};
pub use wal::WalError;

/// Registers the pipeline's metrics so they are exported (at zero) from the start.
pub fn describe_metrics() {
    metrics::describe_counter!("tributary_points_accepted_total", "Points durably accepted");
    metrics::describe_counter!(
        "tributary_batches_accepted_total",
        "Batches durably accepted"
    );
    metrics::describe_counter!(
        "tributary_wal_fsyncs_total",
        "Write-ahead log fsyncs (one per commit group)"
    );
    metrics::describe_counter!(
        "tributary_wal_bytes_total",
        "Bytes written to the write-ahead log"
    );
    metrics::describe_histogram!(
        "tributary_wal_fsync_seconds",
        "Time to write and fsync one commit group"
    );
    for name in [
        "tributary_points_accepted_total",
        "tributary_batches_accepted_total",
        "tributary_wal_fsyncs_total",
        "tributary_wal_bytes_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}

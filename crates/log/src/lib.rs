//! The event log: every event (telemetry, attribute changes, device and
//! tenant lifecycle) is appended to the write-ahead log and fsynced, with
//! group commit, before it is acknowledged; named consumers then read it in
//! log order, each from its own checkpoint and at its own pace.
//!
//! - [`wal`]: the write-ahead log on disk: records, segments, recovery, the
//!   writer thread and a reader from any LSN
//! - [`consumer`]: what reads the log: the [`Consumer`] and [`Listener`] traits
//! - `tail`: the newest events in memory, for consumers that keep up
//! - `runner`: the task that feeds one consumer, from the tail or the disk
//! - `checkpoint`: checkpoint files for consumers that do not keep their own
//! - `lag`: how many bytes of log a consumer is behind
//! - `handle`: [`Pipeline`], the local log's handle
//! - [`log`]: [`EventLog`], the log as the rest of Tributary uses it (the
//!   seam for another implementation)

mod checkpoint;
pub mod consumer;
mod handle;
mod lag;
pub mod log;
mod runner;
mod tail;
pub mod wal;

pub use consumer::{Committed, Consumer, ConsumerError, Listener};
pub use handle::{ConsumerStatus, Durable, LogStatus, Pipeline, PipelineConfig};
pub use log::EventLog;
pub use wal::WalError;

/// Registers the log's metrics so they are exported (at zero) from the start.
pub fn describe_metrics() {
    metrics::describe_counter!("tributary_points_accepted_total", "Points durably accepted");
    metrics::describe_counter!(
        "tributary_batches_accepted_total",
        "Batches durably accepted"
    );
    metrics::describe_counter!(
        "tributary_log_events_total",
        "Events durably appended to the log (telemetry batches and every other kind)"
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
    metrics::describe_counter!(
        "tributary_log_backpressure_ms_total",
        "Milliseconds appends waited because the log was at its disk budget"
    );
    metrics::describe_gauge!(
        "tributary_log_consumer_lag_events",
        "Events committed that a consumer has not applied"
    );
    metrics::describe_gauge!(
        "tributary_log_consumer_lag_bytes",
        "Bytes of log after what a consumer has applied"
    );
    metrics::describe_gauge!(
        "tributary_log_retained_bytes",
        "Bytes of write-ahead log segments on disk"
    );
    for name in [
        "tributary_points_accepted_total",
        "tributary_batches_accepted_total",
        "tributary_log_events_total",
        "tributary_wal_fsyncs_total",
        "tributary_wal_bytes_total",
        "tributary_log_backpressure_ms_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}

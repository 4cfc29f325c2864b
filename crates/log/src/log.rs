//! [`EventLog`]: the log as the rest of Tributary uses it, so another
//! implementation (NATS JetStream, for several nodes) can stand in for the
//! local write-ahead log. Its contract is `tributary-contracts`' `log`.

use std::time::Duration;

use async_trait::async_trait;
use tributary_model::Event;

use crate::handle::{Durable, LogStatus, Pipeline};
use crate::wal::WalError;

/// A durable, ordered log of events with named consumers.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Queues `event` (waiting only for room) and returns what resolves to
    /// its LSN once it is durable; LSNs only grow.
    async fn submit_event(&self, event: Event) -> Result<Durable, WalError>;

    /// Logs `event` durably and returns its LSN.
    async fn append_event(&self, event: Event) -> Result<u64, WalError> {
        self.submit_event(event).await?.await
    }

    /// The LSN of the last durable event.
    fn committed_lsn(&self) -> u64;

    /// The LSN up to which the series store (the first consumer) has
    /// applied the log.
    fn applied_lsn(&self) -> u64;

    /// Waits until the series store (the first consumer) has applied `lsn`;
    /// false on timeout.
    async fn wait_applied(&self, lsn: u64, timeout: Duration) -> bool;

    /// Waits until consumer `name` has applied `lsn`; false on timeout or an
    /// unknown name.
    async fn wait_consumed(&self, name: &str, lsn: u64, timeout: Duration) -> bool;

    /// How far every consumer has got, and how much log is kept for them.
    fn status(&self) -> LogStatus;

    /// Stops taking events and lets the consumers apply what was taken
    /// (the series store wholly, others for at most `grace`).
    async fn shutdown(&self, grace: Duration);

    /// Sets the log's gauges (per-consumer lag, bytes on disk); called
    /// before each scrape.
    fn report_metrics(&self) {
        let status = self.status();
        metrics::gauge!("tributary_log_committed_lsn").set(status.committed_lsn as f64);
        metrics::gauge!("tributary_log_retained_bytes").set(status.retained_bytes as f64);
        for c in status.consumers {
            let name = c.name;
            metrics::gauge!("tributary_log_consumer_lag_events", "consumer" => name.clone())
                .set(c.lag_events as f64);
            metrics::gauge!("tributary_log_consumer_lag_bytes", "consumer" => name)
                .set(c.lag_bytes as f64);
        }
    }
}

#[async_trait]
impl EventLog for Pipeline {
    async fn submit_event(&self, event: Event) -> Result<Durable, WalError> {
        Pipeline::submit_event(self, event).await
    }

    fn committed_lsn(&self) -> u64 {
        Pipeline::committed_lsn(self)
    }

    fn applied_lsn(&self) -> u64 {
        Pipeline::applied_lsn(self)
    }

    async fn wait_applied(&self, lsn: u64, timeout: Duration) -> bool {
        Pipeline::wait_applied(self, lsn, timeout).await
    }

    async fn wait_consumed(&self, name: &str, lsn: u64, timeout: Duration) -> bool {
        Pipeline::wait_consumed(self, name, lsn, timeout).await
    }

    fn status(&self) -> LogStatus {
        Pipeline::status(self)
    }

    async fn shutdown(&self, grace: Duration) {
        Pipeline::shutdown(self, grace).await
    }
}

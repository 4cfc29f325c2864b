//! What reads the log: named durable consumers, each at its own pace from
//! its own checkpoint, and best-effort listeners told of each commit.

use std::sync::Arc;

use async_trait::async_trait;
use tributary_model::Event;

/// An event that is durable in the log, with its log sequence number.
#[derive(Debug, PartialEq)]
pub struct Committed {
    /// Log sequence number: strictly increasing across the life of a data directory.
    pub lsn: u64,
    /// The event as it was appended.
    pub event: Event,
}

/// Why a consumer could not apply events; they are offered to it again.
#[derive(Debug, thiserror::Error)]
#[error("consumer error: {0}")]
pub struct ConsumerError(pub String);

/// A named, durable reader of the log. It gets every event in log order,
/// from where its checkpoint says, at its own pace: a consumer that falls
/// behind reads from the log on disk. The log keeps every event until each
/// consumer's checkpoint is past it.
///
/// Its checkpoint is kept either by the log (a file, written at most every
/// half second after [`apply`](Consumer::apply) returns, and when the log
/// stops: after a crash the consumer may see up to that much again), or by the consumer itself, with its effects
/// ([`own_checkpoint`](Consumer::own_checkpoint) returns it): then it sees
/// each event exactly once.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Its name: stable across restarts (it names the checkpoint), unique.
    fn name(&self) -> &str;

    /// Applies events in order. After an error the same events come again.
    async fn apply(&self, events: &[Arc<Committed>]) -> Result<(), ConsumerError>;

    /// The LSN up to which the consumer's effects survived the last stop,
    /// when it keeps its checkpoint itself; `None` when the log keeps it.
    async fn own_checkpoint(&self) -> Result<Option<u64>, ConsumerError> {
        Ok(None)
    }

    /// Whether queries are answered from its effects (the series store, the
    /// attribute store): the log then waits at start until it has applied
    /// everything recovered, so a read after a restart sees every
    /// acknowledged write.
    fn serves_reads(&self) -> bool {
        false
    }

    /// Called now and then while the consumer has nothing to apply (for
    /// work due on time, such as sealing what it holds in memory).
    async fn idle(&self) {}

    /// For a consumer keeping its own checkpoint whose `apply` is not
    /// durable at once (the series store keeps recent points in memory):
    /// the LSN up to which its effects would survive a crash now. `None`:
    /// everything applied is durable.
    fn durable_lsn(&self) -> Option<u64> {
        None
    }
}

/// A best-effort consumer told of every commit right after the fsync (the
/// live fan-out). It must not block; nothing is replayed to it.
pub trait Listener: Send + Sync + 'static {
    /// Called on the log writer's thread with each group of committed events.
    fn on_commit(&self, entries: &[Arc<Committed>]);
}

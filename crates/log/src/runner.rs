//! One task per consumer: it takes events from the in-memory tail while it
//! keeps up and from the log on disk when it has fallen behind, applies
//! them, and moves its checkpoint.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, warn};

use crate::checkpoint::Checkpoints;
use crate::consumer::{Committed, Consumer};
use crate::tail::Tail;
use crate::wal::LogReader;

/// Most events handed to one `apply`.
const MAX_EVENTS: usize = 8192;
/// Most bytes of log read from disk for one `apply`.
const MAX_READ_BYTES: usize = 8 << 20;
/// Least time between two checkpoint files written for one consumer: a
/// write is two fsyncs, which must not compete with the log's own for
/// every group. A crash offers again at most this much (at least once).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A consumer and how far it has got.
pub(crate) struct Tracked {
    pub consumer: Arc<dyn Consumer>,
    /// Whether it keeps its checkpoint itself (else the log keeps it).
    own: bool,
    /// The last LSN applied.
    applied: AtomicU64,
    /// For a log-kept checkpoint: the last LSN stored.
    checkpointed: AtomicU64,
    applied_tx: watch::Sender<u64>,
}

impl Tracked {
    /// A consumer that has applied everything up to `applied`.
    pub fn new(consumer: Arc<dyn Consumer>, own: bool, applied: u64) -> Self {
        Self {
            consumer,
            own,
            applied: AtomicU64::new(applied),
            checkpointed: AtomicU64::new(applied),
            applied_tx: watch::channel(applied).0,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.consumer.name()
    }

    /// The last LSN it has applied.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The LSN up to which its effects survive a crash: the log keeps every
    /// event after it.
    pub fn durable(&self) -> u64 {
        if self.own {
            let applied = self.applied();
            self.consumer
                .durable_lsn()
                .map_or(applied, |d| d.min(applied))
        } else {
            self.checkpointed.load(Ordering::Acquire)
        }
    }

    /// Watches its applied LSN.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    fn set_applied(&self, lsn: u64) {
        self.applied.store(lsn, Ordering::Release);
        self.applied_tx.send_replace(lsn);
    }
}

/// What every consumer task reads from.
pub(crate) struct Source {
    /// The log directory.
    pub dir: PathBuf,
    /// The newest events.
    pub tail: Arc<Tail>,
    /// Where the log keeps checkpoints.
    pub checkpoints: Checkpoints,
}

/// Runs `t` until the log has stopped and `t` has applied everything in it
/// (or, during shutdown, until its `apply` fails).
pub(crate) async fn run(t: Arc<Tracked>, src: Arc<Source>, mut committed: watch::Receiver<u64>) {
    let mut next = t.applied() + 1;
    let mut reader: Option<LogReader> = None;
    let mut stored_at = Instant::now()
        .checked_sub(CHECKPOINT_EVERY)
        .unwrap_or_else(Instant::now);
    loop {
        // The writer has stopped: nothing is appended any more (read before
        // the value: the writer sends its last LSN before it stops).
        let stopped = committed.has_changed().is_err();
        let durable = *committed.borrow_and_update();
        if durable < next {
            // Caught up: a checkpoint not stored yet is stored when due (at once
            // when the log has stopped), and waited for otherwise.
            let pending = !t.own && t.checkpointed.load(Ordering::Acquire) < next - 1;
            if pending && (stopped || stored_at.elapsed() >= CHECKPOINT_EVERY) {
                store_checkpoint(&t, &src, next - 1).await;
                stored_at = Instant::now();
                if stopped {
                    // Once: a disk that refuses it is not retried forever at shutdown.
                    return;
                }
                continue;
            }
            if stopped {
                return;
            }
            // Idle: the consumer gets a tick now and then (the series store
            // seals on time even when nothing is appended, so its
            // checkpoint moves and the log can be trimmed).
            if tokio::time::timeout(CHECKPOINT_EVERY, committed.changed())
                .await
                .is_err()
            {
                t.consumer.idle().await;
            }
            continue;
        }
        let events = match src.tail.since(next, MAX_EVENTS) {
            Some(events) if !events.is_empty() => {
                reader = None;
                events
            }
            _ => match read(&src, &mut reader, next, durable).await {
                Some(events) => events,
                None => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let Some(last) = events.last().map(|e| e.lsn) else {
            // Nothing readable up to `durable` (lost to damage): go on after it.
            if let Some(r) = &reader {
                if r.next_lsn() > next {
                    next = r.next_lsn();
                    t.set_applied(next - 1);
                    continue;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if !apply(&t, &events, &committed).await {
            // Shutting down with this consumer failing: keep what it did apply.
            if !t.own && t.checkpointed.load(Ordering::Acquire) < next - 1 {
                store_checkpoint(&t, &src, next - 1).await;
            }
            return;
        }
        next = last + 1;
        t.set_applied(last);
        if !t.own && stored_at.elapsed() >= CHECKPOINT_EVERY {
            store_checkpoint(&t, &src, last).await;
            stored_at = Instant::now();
        }
    }
}

/// Stores `t`'s checkpoint at `lsn` (for a consumer whose checkpoint the log keeps).
async fn store_checkpoint(t: &Tracked, src: &Source, lsn: u64) {
    let (checkpoints, name) = (src.checkpoints.clone(), t.name().to_string());
    let stored = tokio::task::spawn_blocking(move || checkpoints.store(&name, lsn)).await;
    match stored {
        Ok(Ok(())) => t.checkpointed.store(lsn, Ordering::Release),
        Ok(Err(e)) => {
            error!(consumer = t.name(), error = %e, "cannot store a checkpoint; the events will be offered again after a restart")
        }
        Err(e) => error!(consumer = t.name(), error = %e, "checkpoint task failed"),
    }
}

/// Events from `next` to `durable` read from disk; `None` when reading failed.
async fn read(
    src: &Source,
    reader: &mut Option<LogReader>,
    next: u64,
    durable: u64,
) -> Option<Vec<Arc<Committed>>> {
    let r = reader
        .take()
        .filter(|r| r.next_lsn() == next)
        .unwrap_or_else(|| LogReader::new(&src.dir, next));
    let done = tokio::task::spawn_blocking(move || {
        let mut r = r;
        let events = r.read(durable, MAX_READ_BYTES);
        (r, events)
    })
    .await;
    match done {
        Ok((r, Ok(events))) => {
            *reader = Some(r);
            Some(events)
        }
        Ok((_, Err(e))) => {
            error!(error = %e, "reading the write-ahead log failed; retrying");
            None
        }
        Err(e) => {
            error!(error = %e, "write-ahead log read task failed; retrying");
            None
        }
    }
}

/// Applies `events`, retrying with backoff; false when it gave up (the log
/// has stopped, as `committed` tells, and the consumer still fails).
async fn apply(t: &Tracked, events: &[Arc<Committed>], committed: &watch::Receiver<u64>) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        match t.consumer.apply(events).await {
            Ok(()) => return true,
            Err(e) if committed.has_changed().is_err() => {
                warn!(consumer = t.name(), error = %e, "consumer failed during shutdown; the events stay in the log for the next start");
                return false;
            }
            Err(e) => {
                error!(consumer = t.name(), error = %e, retry_in_ms = backoff.as_millis() as u64, "consumer failed; retrying");
                tokio::time::sleep(backoff).await;
                // At most a second: shorter than the grace a stopping log gives consumers.
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

//! The log handle: append events durably, start the consumers at their
//! checkpoints, report how far each has got, and shut down cleanly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};
use tributary_model::{Batch, Event};

use crate::checkpoint::Checkpoints;
use crate::consumer::{Consumer, Listener};
use crate::lag::ByteIndex;
use crate::runner::{self, Source, Tracked};
use crate::tail::Tail;
use crate::wal::{self, encode_event, spawn_writer, AppendRequest, WalError, WriterConfig};

/// Sizes and places of the log; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Directory of the write-ahead log segments.
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Most bytes (approximately) of events written with one fsync.
    pub max_group_bytes: usize,
    /// Most append requests waiting for the writer before senders wait.
    pub queue_capacity: usize,
    /// Bytes of the newest events kept in memory for consumers that keep up.
    pub tail_bytes: usize,
    /// Most bytes of log kept on disk for consumers that are behind; past
    /// it, appends wait (ingestion slows) until they catch up.
    pub max_retained_bytes: u64,
}

/// A running log with its consumers: cheap to share behind an `Arc`.
pub struct Pipeline {
    tx: RwLock<Option<mpsc::Sender<AppendRequest>>>,
    committed: Arc<AtomicU64>,
    retained: Arc<AtomicU64>,
    max_retained_bytes: u64,
    bytes: Arc<ByteIndex>,
    /// The read side's consumer (the series store) first, then the others.
    consumers: Vec<Arc<Tracked>>,
    store_applied: watch::Receiver<u64>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Tells the writer to stop waiting for the disk budget.
    closing: Arc<std::sync::atomic::AtomicBool>,
    tasks: Mutex<Vec<(String, tokio::task::JoinHandle<()>)>>,
}

/// A submitted event: resolves to its LSN once it is durable.
pub struct Durable(oneshot::Receiver<Result<u64, WalError>>);

impl Durable {
    /// The answer an [`crate::EventLog`] sends on `rx` once the event is
    /// durable (or not stored).
    pub fn new(rx: oneshot::Receiver<Result<u64, WalError>>) -> Self {
        Self(rx)
    }
}

impl std::future::Future for Durable {
    type Output = Result<u64, WalError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(WalError::Closed)))
    }
}

/// How far one consumer has got.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ConsumerStatus {
    /// Its name.
    pub name: String,
    /// The last LSN it has applied.
    pub applied_lsn: u64,
    /// The LSN up to which its effects survive a crash (its checkpoint).
    pub checkpoint_lsn: u64,
    /// Events committed that it has not applied.
    pub lag_events: u64,
    /// Bytes of log after what it has applied (within 64 KiB).
    pub lag_bytes: u64,
}

/// The log and its consumers.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LogStatus {
    /// The last durable LSN.
    pub committed_lsn: u64,
    /// Bytes of log segments on disk.
    pub retained_bytes: u64,
    /// Past this many bytes on disk, appends wait for consumers.
    pub max_retained_bytes: u64,
    /// Every consumer, the series store first.
    pub consumers: Vec<ConsumerStatus>,
}

fn consumer_io(dir: &std::path::Path, e: impl std::fmt::Display) -> WalError {
    WalError::io(dir, std::io::Error::other(e.to_string()))
}

/// A consumer name the log can keep a checkpoint file for.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Pipeline {
    /// Recovers the log, starts the writer, starts every consumer at its
    /// checkpoint, and returns once `store` (the consumer queries read
    /// from) has caught up with the log, so what was acknowledged before a
    /// restart is readable at once.
    pub async fn start(
        cfg: PipelineConfig,
        store: Arc<dyn Consumer>,
        others: Vec<Arc<dyn Consumer>>,
        listeners: Vec<Arc<dyn Listener>>,
    ) -> Result<Arc<Self>, WalError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| WalError::io(&cfg.dir, e))?;
        let dir = cfg.dir.clone();
        let recovery = tokio::task::spawn_blocking(move || wal::recover(&dir))
            .await
            .map_err(|e| consumer_io(&cfg.dir, e))??;
        let checkpoints = Checkpoints::open(&cfg.dir)?;
        let oldest = wal::list_segments(&cfg.dir)?
            .first()
            .map_or(recovery.last_lsn + 1, |s| s.first_lsn);

        let mut consumers = Vec::new();
        let mut names = std::collections::HashSet::new();
        for c in std::iter::once(store).chain(others) {
            let name = c.name().to_string();
            if !valid_name(&name) || !names.insert(name.clone()) {
                return Err(consumer_io(
                    &cfg.dir,
                    format!("consumer name {name:?} is not unique or not of a-z, 0-9, - and _"),
                ));
            }
            let own = c
                .own_checkpoint()
                .await
                .map_err(|e| consumer_io(&cfg.dir, e))?;
            let at = match own {
                Some(lsn) => lsn,
                None => match checkpoints.load(&name)? {
                    Some(lsn) => lsn,
                    // A new consumer reads everything the log still holds.
                    None => oldest.saturating_sub(1),
                },
            };
            consumers.push(Arc::new(Tracked::new(c, own.is_some(), at)));
        }
        let resumed = consumers.iter().map(|c| c.applied()).max().unwrap_or(0);
        let next_lsn = recovery.last_lsn.max(resumed) + 1;
        info!(
            last_lsn = recovery.last_lsn,
            damaged = recovery.damage.len(),
            consumers = consumers.len(),
            "write-ahead log recovered"
        );

        let committed = Arc::new(AtomicU64::new(next_lsn - 1));
        let retained = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(ByteIndex::default());
        let tail = Arc::new(Tail::new(cfg.tail_bytes));
        let (committed_tx, committed_rx) = watch::channel(next_lsn - 1);
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let floor_of = consumers.clone();
        let floor: wal::Floor = Arc::new(move || {
            floor_of
                .iter()
                .map(|c| c.durable())
                .min()
                .unwrap_or(u64::MAX)
        });
        // What every consumer has made durable can go (the new segment stays).
        if let Err(e) = wal::segment::delete_applied(&cfg.dir, floor(), next_lsn) {
            warn!(error = %e, "cannot delete consumed write-ahead log segments");
        }
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = spawn_writer(
            WriterConfig {
                dir: cfg.dir.clone(),
                segment_bytes: cfg.segment_bytes,
                max_group_bytes: cfg.max_group_bytes,
                max_retained_bytes: cfg.max_retained_bytes,
                next_lsn,
                floor,
                committed: committed.clone(),
                committed_tx,
                retained: retained.clone(),
                tail: tail.clone(),
                bytes: bytes.clone(),
                listeners,
                closing: closing.clone(),
                #[cfg(test)]
                faults: Default::default(),
            },
            rx,
        )?;

        let source = Arc::new(Source {
            dir: cfg.dir.clone(),
            tail,
            checkpoints,
        });
        let tasks = consumers
            .iter()
            .map(|c| {
                let task =
                    tokio::spawn(runner::run(c.clone(), source.clone(), committed_rx.clone()));
                (c.name().to_string(), task)
            })
            .collect();
        // The store (first) and every consumer that reads are answered from
        // hold everything recovered before anyone can read.
        for (i, c) in consumers.iter().enumerate() {
            if i == 0 || c.consumer.serves_reads() {
                let _ = c
                    .watch_applied()
                    .wait_for(|applied| *applied >= recovery.last_lsn)
                    .await;
                info!(
                    consumer = c.name(),
                    applied_lsn = c.applied(),
                    "caught up with the log"
                );
            }
        }
        let store_applied = consumers[0].watch_applied();
        Ok(Arc::new(Self {
            tx: RwLock::new(Some(tx)),
            committed,
            retained,
            max_retained_bytes: cfg.max_retained_bytes,
            bytes,
            consumers,
            store_applied,
            writer: Mutex::new(Some(writer)),
            closing,
            tasks: Mutex::new(tasks),
        }))
    }

    /// Logs telemetry `batch` durably and returns its LSN; only then may the sender be acknowledged.
    pub async fn append(&self, batch: Batch) -> Result<u64, WalError> {
        self.submit(batch).await?.await
    }

    /// Logs `event` durably and returns its LSN.
    pub async fn append_event(&self, event: Event) -> Result<u64, WalError> {
        self.submit_event(event).await?.await
    }

    /// Queues telemetry `batch` for the log; see [`Pipeline::submit_event`].
    pub async fn submit(&self, batch: Batch) -> Result<Durable, WalError> {
        self.submit_event(Event::Telemetry(batch)).await
    }

    /// Queues `event` for the log (waiting only for room in the queue) and
    /// returns what resolves to its LSN once it is durable, so a caller can
    /// have several events in flight and acknowledge them in order.
    pub async fn submit_event(&self, event: Event) -> Result<Durable, WalError> {
        let tx = self
            .tx
            .read()
            .map_err(|_| WalError::Closed)?
            .clone()
            .ok_or(WalError::Closed)?;
        // Encoded here, on the submitting task's core: the writer thread,
        // which every event passes through, only frames and writes it.
        let encoded = encode_event(&event);
        let (reply, rx) = oneshot::channel();
        tx.send(AppendRequest {
            event,
            encoded,
            reply,
        })
        .await
        .map_err(|_| WalError::Closed)?;
        Ok(Durable::new(rx))
    }

    /// The LSN of the last durable event.
    pub fn committed_lsn(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// The LSN up to which the series store has applied the log.
    pub fn applied_lsn(&self) -> u64 {
        self.consumers[0].applied()
    }

    /// Waits until the series store has applied `lsn` (read-your-writes); false on timeout.
    pub async fn wait_applied(&self, lsn: u64, timeout: Duration) -> bool {
        let mut rx = self.store_applied.clone();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= lsn))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Waits until consumer `name` has applied `lsn`; false on timeout or an unknown name.
    pub async fn wait_consumed(&self, name: &str, lsn: u64, timeout: Duration) -> bool {
        let Some(c) = self.consumers.iter().find(|c| c.name() == name) else {
            return false;
        };
        let mut rx = c.watch_applied();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= lsn))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// How far every consumer has got, and how much log is kept for them.
    pub fn status(&self) -> LogStatus {
        let committed = self.committed_lsn();
        LogStatus {
            committed_lsn: committed,
            retained_bytes: self.retained.load(Ordering::Acquire),
            max_retained_bytes: self.max_retained_bytes,
            consumers: self
                .consumers
                .iter()
                .map(|c| {
                    let applied = c.applied();
                    ConsumerStatus {
                        name: c.name().to_string(),
                        applied_lsn: applied,
                        checkpoint_lsn: c.durable(),
                        lag_events: committed.saturating_sub(applied),
                        lag_bytes: self.bytes.after(applied),
                    }
                })
                .collect(),
        }
    }

    /// Stops accepting events, writes and syncs what is queued, and lets
    /// the consumers apply it (the series store wholly; any other for at
    /// most `grace`: what it has not applied it gets after the next start).
    pub async fn shutdown(&self, grace: Duration) {
        if let Ok(mut tx) = self.tx.write() {
            tx.take();
        }
        self.closing.store(true, Ordering::Release);
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, (name, mut task)) in tasks.into_iter().enumerate() {
            if i == 0 {
                let _ = task.await;
            } else if tokio::time::timeout(grace, &mut task).await.is_err() {
                warn!(consumer = %name, "consumer still behind at shutdown; it resumes from its checkpoint");
                task.abort();
            }
        }
        info!(lsn = self.committed_lsn(), "log stopped");
    }
}

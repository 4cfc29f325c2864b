//! The pipeline handle: append batches durably, learn how far sinks have got,
//! and shut down cleanly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};
use tributary_model::Batch;

use crate::sink::{Committed, Listener, Sink};
use crate::wal::{self, encode_batch, spawn_writer, AppendRequest, WalError, WriterConfig};

/// Sizes and places of the pipeline; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Directory of the write-ahead log segments.
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Most bytes (approximately) of batches written with one fsync.
    pub max_group_bytes: usize,
    /// Most append requests waiting for the writer before senders wait.
    pub queue_capacity: usize,
    /// Most committed groups waiting for the series sink before the writer waits.
    pub sink_queue_groups: usize,
}

/// A running pipeline: cheap to share behind an `Arc`.
pub struct Pipeline {
    tx: RwLock<Option<mpsc::Sender<AppendRequest>>>,
    committed: Arc<AtomicU64>,
    applied: Arc<AtomicU64>,
    applied_rx: watch::Receiver<u64>,
    closing: Arc<AtomicBool>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    sink_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A submitted batch: resolves to its LSN once it is durable.
pub struct Durable(oneshot::Receiver<Result<u64, WalError>>);

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

impl Pipeline {
    /// Recovers the log, replays what `sink` has not applied, and starts the writer.
    pub async fn start(
        cfg: PipelineConfig,
        sink: Arc<dyn Sink>,
        listeners: Vec<Arc<dyn Listener>>,
    ) -> Result<Arc<Self>, WalError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| WalError::io(&cfg.dir, e))?;
        let mut applied_lsn = sink
            .applied_lsn()
            .await
            .map_err(|e| WalError::io(&cfg.dir, std::io::Error::other(e.to_string())))?;
        let dir = cfg.dir.clone();
        let recovery = tokio::task::spawn_blocking(move || wal::recover(&dir, applied_lsn))
            .await
            .map_err(|e| WalError::io(&cfg.dir, std::io::Error::other(e.to_string())))??;
        let replayed = recovery.entries.len();
        let entries: Vec<Arc<Committed>> = recovery.entries.into_iter().map(Arc::new).collect();
        for chunk in entries.chunks(1024) {
            sink.apply(chunk)
                .await
                .map_err(|e| WalError::io(&cfg.dir, std::io::Error::other(e.to_string())))?;
        }
        if let Some(last) = entries.last() {
            applied_lsn = last.lsn;
        }
        info!(
            replayed,
            last_lsn = recovery.last_lsn,
            applied_lsn,
            damaged = recovery.damage.len(),
            "write-ahead log recovered"
        );
        let next_lsn = recovery.last_lsn.max(applied_lsn) + 1;

        let committed = Arc::new(AtomicU64::new(next_lsn - 1));
        let applied = Arc::new(AtomicU64::new(next_lsn - 1));
        // What survives a crash: for a sink that keeps recent entries in memory,
        // less than what it has applied. The log is trimmed only up to here.
        let durable = Arc::new(AtomicU64::new(sink.durable_lsn().unwrap_or(next_lsn - 1)));
        let (applied_tx, applied_rx) = watch::channel(next_lsn - 1);
        let (sink_tx, sink_rx) = mpsc::channel(cfg.sink_queue_groups.max(1));
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let closing = Arc::new(AtomicBool::new(false));

        let writer = spawn_writer(
            WriterConfig {
                dir: cfg.dir.clone(),
                segment_bytes: cfg.segment_bytes,
                max_group_bytes: cfg.max_group_bytes,
                next_lsn,
                durable: durable.clone(),
                committed: committed.clone(),
                listeners,
                sink_tx,
                #[cfg(test)]
                faults: Default::default(),
            },
            rx,
        )?;
        // Everything durable in the sink before the new segment can go.
        let durable_now = durable.load(Ordering::Acquire);
        if let Err(e) = wal::segment::delete_applied(&cfg.dir, durable_now, next_lsn) {
            warn!(error = %e, "cannot delete replayed write-ahead log segments");
        }
        let sink_task = tokio::spawn(run_sink(
            sink,
            sink_rx,
            applied.clone(),
            durable,
            applied_tx,
            closing.clone(),
        ));
        Ok(Arc::new(Self {
            tx: RwLock::new(Some(tx)),
            committed,
            applied,
            applied_rx,
            closing,
            writer: Mutex::new(Some(writer)),
            sink_task: Mutex::new(Some(sink_task)),
        }))
    }

    /// Logs `batch` durably and returns its LSN; only then may the sender be acknowledged.
    pub async fn append(&self, batch: Batch) -> Result<u64, WalError> {
        self.submit(batch).await?.await
    }

    /// Queues `batch` for the log (waiting only for room in the queue) and
    /// returns what resolves to its LSN once it is durable, so a caller can
    /// have several batches in flight and acknowledge them in order.
    pub async fn submit(&self, batch: Batch) -> Result<Durable, WalError> {
        let tx = self
            .tx
            .read()
            .map_err(|_| WalError::Closed)?
            .clone()
            .ok_or(WalError::Closed)?;
        // Encoded here, on the submitting task's core: the writer thread,
        // which every batch passes through, only frames and writes it.
        let encoded = encode_batch(&batch);
        let (reply, rx) = oneshot::channel();
        tx.send(AppendRequest {
            batch,
            encoded,
            reply,
        })
        .await
        .map_err(|_| WalError::Closed)?;
        Ok(Durable(rx))
    }

    /// The LSN of the last durable batch.
    pub fn committed_lsn(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// The LSN up to which the series store has applied the log.
    pub fn applied_lsn(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Waits until the store has applied `lsn` (read-your-writes); false on timeout.
    pub async fn wait_applied(&self, lsn: u64, timeout: Duration) -> bool {
        let mut rx = self.applied_rx.clone();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= lsn))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Stops accepting batches, writes and syncs what is queued, and drains the sinks.
    pub async fn shutdown(&self) {
        if let Ok(mut tx) = self.tx.write() {
            tx.take();
        }
        self.closing.store(true, Ordering::Release);
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        let sink_task = self.sink_task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = sink_task {
            let _ = task.await;
        }
        info!(lsn = self.committed_lsn(), "pipeline stopped");
    }
}

/// Feeds committed groups to the durable sink in order, retrying failures.
async fn run_sink(
    sink: Arc<dyn Sink>,
    mut rx: mpsc::Receiver<Vec<Arc<Committed>>>,
    applied: Arc<AtomicU64>,
    durable: Arc<AtomicU64>,
    applied_tx: watch::Sender<u64>,
    closing: Arc<AtomicBool>,
) {
    while let Some(mut entries) = rx.recv().await {
        // Take what else is waiting, so the store commits in larger transactions.
        while entries.len() < 8192 {
            match rx.try_recv() {
                Ok(more) => entries.extend(more),
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            match sink.apply(&entries).await {
                Ok(()) => break,
                Err(e) if closing.load(Ordering::Acquire) => {
                    error!(error = %e, "series sink failed during shutdown; entries stay in the log for replay");
                    return;
                }
                Err(e) => {
                    error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "series sink failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Some(last) = entries.last() {
            applied.store(last.lsn, Ordering::Release);
            durable.store(sink.durable_lsn().unwrap_or(last.lsn), Ordering::Release);
            applied_tx.send_replace(last.lsn);
        }
    }
}

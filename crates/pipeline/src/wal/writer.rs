//! The log writer thread: group commit. It takes every append request waiting
//! at that moment, writes them as one buffer, fsyncs once, then acknowledges
//! each and hands the group on to the sinks in LSN order.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};
use tributary_model::Batch;

use super::prepare::Preparer;
use super::record::append_record;
use super::segment::{delete_applied, segment_path, MAGIC};
use super::WalError;
use crate::sink::{Committed, Listener};

/// One batch waiting to be logged, and where to send its LSN once durable.
pub(crate) struct AppendRequest {
    pub batch: Batch,
    /// The batch as [`super::encode_batch`] encodes it.
    pub encoded: Vec<u8>,
    pub reply: oneshot::Sender<Result<u64, WalError>>,
}

/// Everything the writer thread needs.
pub(crate) struct WriterConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_group_bytes: usize,
    pub next_lsn: u64,
    pub durable: Arc<AtomicU64>,
    pub committed: Arc<AtomicU64>,
    pub listeners: Vec<Arc<dyn Listener>>,
    pub sink_tx: mpsc::Sender<Vec<Arc<Committed>>>,
}

struct Segment {
    file: File,
    first_lsn: u64,
    len: u64,
    path: PathBuf,
}

impl Segment {
    /// A new, empty segment starting at `first_lsn`.
    fn create(dir: &Path, first_lsn: u64) -> Result<Self, WalError> {
        let path = segment_path(dir, first_lsn);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| WalError::io(&path, e))?;
        Self::begin(dir, first_lsn, path, file)
    }

    /// The segment starting at `first_lsn` in `prepared`, a zero-filled file
    /// at `prepared_path` that becomes it.
    fn from_prepared(
        dir: &Path,
        first_lsn: u64,
        prepared: File,
        prepared_path: &Path,
    ) -> Result<Self, WalError> {
        let path = segment_path(dir, first_lsn);
        std::fs::rename(prepared_path, &path).map_err(|e| WalError::io(&path, e))?;
        Self::begin(dir, first_lsn, path, prepared)
    }

    /// Writes the header at the start of `file` (now at `path`) and makes it
    /// and the file's name durable.
    fn begin(dir: &Path, first_lsn: u64, path: PathBuf, mut file: File) -> Result<Self, WalError> {
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(MAGIC))
            .and_then(|_| file.sync_all())
            .map_err(|e| WalError::io(&path, e))?;
        sync_dir(dir)?;
        Ok(Self {
            file,
            first_lsn,
            len: MAGIC.len() as u64,
            path,
        })
    }

    /// The next segment, starting at `first_lsn`: the prepared file when it
    /// is ready, else a new one.
    fn next(dir: &Path, first_lsn: u64, preparer: &mut Preparer) -> Result<Self, WalError> {
        match preparer.take() {
            Some(file) => Self::from_prepared(dir, first_lsn, file, &preparer.path()),
            None => Self::create(dir, first_lsn),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

/// Starts the writer thread; it runs until every sender of `rx` is dropped.
pub(crate) fn spawn_writer(
    cfg: WriterConfig,
    rx: mpsc::Receiver<AppendRequest>,
) -> Result<JoinHandle<()>, WalError> {
    let segment = Segment::create(&cfg.dir, cfg.next_lsn)?;
    std::thread::Builder::new()
        .name("wal-writer".into())
        .spawn(move || run(cfg, segment, rx))
        .map_err(|e| WalError::io("wal-writer thread", e))
}

fn run(mut cfg: WriterConfig, mut segment: Segment, mut rx: mpsc::Receiver<AppendRequest>) {
    let mut buf = Vec::with_capacity(1 << 20);
    let mut preparer = Preparer::new(&cfg.dir, cfg.segment_bytes);
    let mut failed = false;
    while let Some(first) = rx.blocking_recv() {
        // Gather everything already waiting: these share one write and one fsync.
        let mut group = vec![first];
        let mut bytes = group[0].encoded.len();
        while bytes < cfg.max_group_bytes {
            match rx.try_recv() {
                Ok(req) => {
                    bytes += req.encoded.len();
                    group.push(req);
                }
                Err(_) => break,
            }
        }
        if failed {
            for req in group {
                let _ = req.reply.send(Err(WalError::Failed));
            }
            continue;
        }

        buf.clear();
        let mut accepted = Vec::with_capacity(group.len());
        for req in group {
            match append_record(cfg.next_lsn, &req.encoded, &mut buf) {
                Ok(()) => {
                    accepted.push((cfg.next_lsn, req));
                    cfg.next_lsn += 1;
                }
                Err(e) => {
                    let _ = req.reply.send(Err(WalError::Encode(e)));
                }
            }
        }
        if accepted.is_empty() {
            continue;
        }

        let started = Instant::now();
        let written = segment
            .file
            .write_all(&buf)
            .and_then(|_| segment.file.sync_data());
        if let Err(e) = written {
            error!(path = %segment.path.display(), error = %e,
                "write-ahead log write or fsync failed; refusing further writes");
            failed = true;
            for (_, req) in accepted {
                let _ = req.reply.send(Err(WalError::Failed));
            }
            continue;
        }
        segment.len += buf.len() as u64;
        metrics::counter!("tributary_wal_fsyncs_total").increment(1);
        metrics::counter!("tributary_wal_bytes_total").increment(buf.len() as u64);
        metrics::histogram!("tributary_wal_fsync_seconds").record(started.elapsed().as_secs_f64());

        let last_lsn = cfg.next_lsn - 1;
        cfg.committed.store(last_lsn, Ordering::Release);
        let mut entries = Vec::with_capacity(accepted.len());
        let mut replies = Vec::with_capacity(accepted.len());
        let mut points = 0u64;
        for (lsn, req) in accepted {
            points += req.batch.points.len() as u64;
            entries.push(Arc::new(Committed {
                lsn,
                batch: req.batch,
            }));
            replies.push((lsn, req.reply));
        }
        metrics::counter!("tributary_points_accepted_total").increment(points);
        metrics::counter!("tributary_batches_accepted_total").increment(entries.len() as u64);
        for listener in &cfg.listeners {
            listener.on_commit(&entries);
        }
        for (lsn, reply) in replies {
            let _ = reply.send(Ok(lsn));
        }
        // Bounded: when the store falls behind, this waits, and ingestion slows with it.
        if cfg.sink_tx.blocking_send(entries).is_err() {
            warn!("series sink is gone; committed entries stay in the log for replay");
        }

        // Halfway through a segment, the next one starts being prepared (a
        // short-lived log never writes one).
        if segment.len >= cfg.segment_bytes / 2 {
            preparer.start();
        }
        if segment.len >= cfg.segment_bytes {
            match Segment::next(&cfg.dir, cfg.next_lsn, &mut preparer) {
                Ok(next) => {
                    debug!(first_lsn = next.first_lsn, "rolled write-ahead log segment");
                    segment = next;
                }
                Err(e) => {
                    error!(error = %e, "cannot roll write-ahead log segment; refusing further writes");
                    failed = true;
                }
            }
            let durable = cfg.durable.load(Ordering::Acquire);
            if let Err(e) = delete_applied(&cfg.dir, durable, segment.first_lsn) {
                warn!(error = %e, "cannot delete applied write-ahead log segments");
            }
        }
    }
    // A clean end leaves nothing after the last record: neither zeros nor a
    // reused file's older records.
    if let Err(e) = segment
        .file
        .set_len(segment.len)
        .and_then(|_| segment.file.sync_all())
    {
        error!(error = %e, "final write-ahead log sync failed");
    }
}

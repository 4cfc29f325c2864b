//! The log writer thread: group commit. It takes every append request waiting
//! at that moment, writes them as one buffer, fsyncs once, then acknowledges
//! each and hands the group on to the consumers (through the in-memory
//! tail) and the listeners, in LSN order.
//!
//! Back-pressure: while the log on disk holds more than its budget (a
//! consumer is behind and keeps old segments from being trimmed), the
//! writer waits before taking more: ingestion slows, nothing is dropped.
//!
//! A failed write or fsync is never retried on the same file descriptor (after
//! a failed fsync the kernel may have dropped the dirty pages and reports
//! success next time: "fsyncgate"). The group is refused, and the segment is
//! reopened and cut back to the length its last successful fsync made
//! durable; until that works, every write is refused at once (`DiskFull` when
//! the disk is full, else `Failed`), and it is tried again every
//! [`RETRY_EVERY`]: the log recovers by itself when space returns.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};
use tributary_model::Event;

use super::prepare::Preparer;
use super::record::append_record;
use super::segment::{delete_applied, list_segments, segment_path, MAGIC};
use super::WalError;
use crate::consumer::{Committed, Listener};
use crate::lag::ByteIndex;
use crate::tail::Tail;

/// How often a failed log tries to recover, and a failed roll to a new segment is retried.
pub(crate) const RETRY_EVERY: Duration = Duration::from_millis(500);

/// One event waiting to be logged, and where to send its LSN once durable.
pub(crate) struct AppendRequest {
    pub event: Event,
    /// The event as [`super::encode_event`] encodes it.
    pub encoded: Vec<u8>,
    pub reply: oneshot::Sender<Result<u64, WalError>>,
}

/// The LSN below which every consumer that must see everything has made
/// its effects durable: segments wholly below it may go.
pub(crate) type Floor = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Everything the writer thread needs.
pub(crate) struct WriterConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_group_bytes: usize,
    /// Most bytes of segments kept on disk before appends wait.
    pub max_retained_bytes: u64,
    pub next_lsn: u64,
    pub floor: Floor,
    pub committed: Arc<AtomicU64>,
    /// Told the last durable LSN after every commit (consumers wait on it).
    pub committed_tx: watch::Sender<u64>,
    /// Bytes of segments on disk, for the status and the metrics.
    pub retained: Arc<AtomicU64>,
    pub tail: Arc<Tail>,
    pub bytes: Arc<ByteIndex>,
    pub listeners: Vec<Arc<dyn Listener>>,
    /// Set when the log is shutting down: appends stop waiting for the
    /// disk budget and requests still queued or being sent are refused.
    pub closing: Arc<std::sync::atomic::AtomicBool>,
    /// Injected I/O faults (unit tests only).
    #[cfg(test)]
    pub faults: Arc<super::faults::Faults>,
}

/// A log that refuses writes since a write or fsync failed, until it recovers.
struct Broken {
    /// What writes are refused with meanwhile.
    error: fn() -> WalError,
    /// When recovery was last tried.
    tried: Instant,
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
    /// is ready, else a new one. On failure no file of that name is left
    /// behind (one without a complete header would read as damage).
    fn next(dir: &Path, first_lsn: u64, preparer: &mut Preparer) -> Result<Self, WalError> {
        let next = match preparer.take() {
            Some(file) => Self::from_prepared(dir, first_lsn, file, &preparer.path()),
            None => Self::create(dir, first_lsn),
        };
        if next.is_err() {
            let _ = std::fs::remove_file(segment_path(dir, first_lsn));
        }
        next
    }

    /// Writes `buf` after the last record and makes it durable.
    fn append(
        &mut self,
        buf: &[u8],
        #[cfg(test)] faults: &super::faults::Faults,
    ) -> std::io::Result<()> {
        #[cfg(test)]
        faults.write(&mut self.file, buf)?;
        self.file.write_all(buf)?;
        #[cfg(test)]
        faults.sync()?;
        self.file.sync_data()
    }

    /// After a failed write or fsync: a new descriptor on the file, cut back
    /// to the records known durable, synced, and positioned after them.
    fn reopen(&mut self) -> std::io::Result<()> {
        let mut file = OpenOptions::new().write(true).open(&self.path)?;
        file.set_len(self.len)?;
        file.sync_all()?;
        file.seek(SeekFrom::Start(self.len))?;
        self.file = file;
        Ok(())
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

/// Bytes of the segments before the active one.
fn closed_bytes(dir: &Path, active_first_lsn: u64) -> u64 {
    list_segments(dir)
        .unwrap_or_default()
        .iter()
        .filter(|s| s.first_lsn < active_first_lsn)
        .filter_map(|s| std::fs::metadata(&s.path).ok())
        .map(|m| m.len())
        .sum()
}

/// Deletes the segments every consumer is past; returns the bytes of those left before the active one.
fn trim(cfg: &WriterConfig, active_first_lsn: u64) -> u64 {
    let floor = (cfg.floor)();
    if let Err(e) = delete_applied(&cfg.dir, floor, active_first_lsn) {
        warn!(error = %e, "cannot delete consumed write-ahead log segments");
    }
    cfg.bytes.trim(floor);
    closed_bytes(&cfg.dir, active_first_lsn)
}

/// While the log holds more than its budget, waits for consumers to catch
/// up (trimming as they do); gives up waiting when the log is closing.
fn hold_back(
    cfg: &WriterConfig,
    closed: &mut u64,
    segment: &Segment,
    rx: &mpsc::Receiver<AppendRequest>,
) {
    let over = |closed: u64| closed + segment.len > cfg.max_retained_bytes;
    if !over(*closed) {
        return;
    }
    *closed = trim(cfg, segment.first_lsn);
    if !over(*closed) {
        return;
    }
    let started = Instant::now();
    warn!(
        retained_bytes = *closed + segment.len,
        budget_bytes = cfg.max_retained_bytes,
        "the write-ahead log is at its disk budget (a consumer is behind); appends wait"
    );
    while over(*closed) && !rx.is_closed() && !cfg.closing.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20));
        *closed = trim(cfg, segment.first_lsn);
        cfg.retained.store(*closed + segment.len, Ordering::Release);
    }
    let waited = started.elapsed();
    metrics::counter!("tributary_log_backpressure_ms_total").increment(waited.as_millis() as u64);
    info!(
        waited_ms = waited.as_millis() as u64,
        "write-ahead log below its disk budget again; appends go on"
    );
}

fn run(mut cfg: WriterConfig, mut segment: Segment, mut rx: mpsc::Receiver<AppendRequest>) {
    let mut buf = Vec::with_capacity(1 << 20);
    let mut preparer = Preparer::new(&cfg.dir, cfg.segment_bytes);
    let mut broken: Option<Broken> = None;
    let mut roll_failed_at: Option<Instant> = None;
    let mut closed = closed_bytes(&cfg.dir, segment.first_lsn);
    while let Some(first) = rx.blocking_recv() {
        if cfg.closing.load(Ordering::Acquire) {
            // Senders still waiting for room get `Closed`; what is queued is written.
            rx.close();
        }
        hold_back(&cfg, &mut closed, &segment, &rx);
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
        if let Some(b) = &mut broken {
            if b.tried.elapsed() >= RETRY_EVERY {
                b.tried = Instant::now();
                match segment.reopen() {
                    Ok(()) => {
                        warn!(path = %segment.path.display(), "write-ahead log recovered; taking writes again");
                        broken = None;
                    }
                    Err(e) => debug!(error = %e, "write-ahead log still cannot be written"),
                }
            }
        }
        if let Some(b) = &broken {
            for req in group {
                let _ = req.reply.send(Err((b.error)()));
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
        #[cfg(test)]
        let written = segment.append(&buf, &cfg.faults);
        #[cfg(not(test))]
        let written = segment.append(&buf);
        if let Err(e) = written {
            error!(path = %segment.path.display(), error = %e,
                "write-ahead log write or fsync failed; refusing writes until the segment is reopened");
            metrics::counter!("tributary_wal_failures_total").increment(1);
            let error = match WalError::refusal(&e) {
                WalError::DiskFull => || WalError::DiskFull,
                _ => || WalError::Failed,
            };
            // The group's LSNs are not in the log: the next group takes them.
            cfg.next_lsn = accepted[0].0;
            for (_, req) in accepted {
                let _ = req.reply.send(Err(error()));
            }
            broken = Some(Broken {
                error,
                tried: Instant::now(),
            });
            continue;
        }
        segment.len += buf.len() as u64;
        cfg.retained.store(closed + segment.len, Ordering::Release);
        metrics::counter!("tributary_wal_fsyncs_total").increment(1);
        metrics::counter!("tributary_wal_bytes_total").increment(buf.len() as u64);
        metrics::histogram!("tributary_wal_fsync_seconds").record(started.elapsed().as_secs_f64());

        let last_lsn = cfg.next_lsn - 1;
        let mut entries = Vec::with_capacity(accepted.len());
        let mut replies = Vec::with_capacity(accepted.len());
        let (mut points, mut batches) = (0u64, 0u64);
        for (lsn, req) in accepted {
            if let Event::Telemetry(batch) = &req.event {
                points += batch.points.len() as u64;
                batches += 1;
            }
            entries.push(Arc::new(Committed {
                lsn,
                event: req.event,
            }));
            replies.push((lsn, req.reply));
        }
        metrics::counter!("tributary_points_accepted_total").increment(points);
        metrics::counter!("tributary_batches_accepted_total").increment(batches);
        metrics::counter!("tributary_log_events_total").increment(entries.len() as u64);
        // In the tail before consumers learn the new LSN, so they find it there.
        cfg.tail.push(&entries);
        cfg.bytes.wrote(last_lsn, buf.len() as u64);
        cfg.committed.store(last_lsn, Ordering::Release);
        cfg.committed_tx.send_replace(last_lsn);
        for listener in &cfg.listeners {
            listener.on_commit(&entries);
        }
        for (lsn, reply) in replies {
            let _ = reply.send(Ok(lsn));
        }

        // Halfway through a segment, the next one starts being prepared (a
        // short-lived log never writes one).
        if segment.len >= cfg.segment_bytes / 2 {
            preparer.start();
        }
        let may_roll = roll_failed_at.is_none_or(|t| t.elapsed() >= RETRY_EVERY);
        if segment.len >= cfg.segment_bytes && may_roll {
            match Segment::next(&cfg.dir, cfg.next_lsn, &mut preparer) {
                Ok(next) => {
                    debug!(first_lsn = next.first_lsn, "rolled write-ahead log segment");
                    segment = next;
                    roll_failed_at = None;
                }
                Err(e) => {
                    // The current segment goes on growing; the roll is tried again.
                    warn!(error = %e, "cannot roll write-ahead log segment; writing on in the current one");
                    roll_failed_at = Some(Instant::now());
                }
            }
            closed = trim(&cfg, segment.first_lsn);
            cfg.retained.store(closed + segment.len, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::encode_event;
    use crate::wal::faults::{Fault, Faults};
    use crate::wal::segment::recovered;
    use tributary_model::{Batch, DeviceId, Point, TenantId, Value};

    fn batch(v: i64) -> Event {
        Event::Telemetry(Batch {
            tenant: TenantId::new(),
            device: DeviceId::new(),
            points: vec![Point {
                key: "v".into(),
                ts: v,
                value: Value::Int(v),
            }],
        })
    }

    /// Appends one batch and waits for its outcome.
    fn append(tx: &mpsc::Sender<AppendRequest>, v: i64) -> Result<u64, WalError> {
        let b = batch(v);
        let (reply, rx) = oneshot::channel();
        tx.blocking_send(AppendRequest {
            encoded: encode_event(&b),
            event: b,
            reply,
        })
        .unwrap();
        rx.blocking_recv().unwrap()
    }

    /// ENOSPC on a write (a short one too) and EIO on an fsync refuse their
    /// batch, later writes are refused at once, and once the file can be
    /// reopened the log goes on: what is in it afterwards is exactly what
    /// was acknowledged, with no gap in LSNs and no damage.
    #[test]
    fn failed_writes_and_fsyncs_refuse_their_batch_and_the_log_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(Faults::default());
        let tail = Arc::new(Tail::new(1 << 20));
        let (committed_tx, _) = watch::channel(0);
        let (tx, rx) = mpsc::channel(16);
        let cfg = WriterConfig {
            dir: dir.path().to_path_buf(),
            segment_bytes: 1 << 20,
            max_group_bytes: 1 << 20,
            max_retained_bytes: 1 << 30,
            next_lsn: 1,
            floor: Arc::new(|| 0),
            committed: Arc::new(AtomicU64::new(0)),
            committed_tx,
            retained: Arc::new(AtomicU64::new(0)),
            tail: tail.clone(),
            bytes: Arc::new(ByteIndex::default()),
            listeners: Vec::new(),
            closing: Default::default(),
            faults: faults.clone(),
        };
        let writer = spawn_writer(cfg, rx).unwrap();
        let mut acked = Vec::new();
        acked.push((append(&tx, 1).unwrap(), 1));
        faults.on_writes([Some(Fault::Short(7))]);
        assert!(matches!(append(&tx, 2), Err(WalError::DiskFull)));
        // Still broken: refused at once, without touching the file.
        assert!(matches!(append(&tx, 3), Err(WalError::DiskFull)));
        std::thread::sleep(RETRY_EVERY);
        acked.push((append(&tx, 4).unwrap(), 4));
        faults.on_writes([None]);
        faults.on_syncs([Some(Fault::Eio)]);
        assert!(matches!(append(&tx, 5), Err(WalError::Failed)));
        std::thread::sleep(RETRY_EVERY);
        faults.on_writes([Some(Fault::NoSpace)]);
        assert!(matches!(append(&tx, 6), Err(WalError::DiskFull)));
        std::thread::sleep(RETRY_EVERY);
        acked.push((append(&tx, 7).unwrap(), 7));
        drop(tx);
        writer.join().unwrap();
        assert_eq!(
            acked.iter().map(|(lsn, _)| *lsn).collect::<Vec<_>>(),
            vec![1, 2, 3],
            "refused batches leave no gap in LSNs"
        );
        let sunk: Vec<u64> = tail.since(1, 100).unwrap().iter().map(|c| c.lsn).collect();
        assert_eq!(
            sunk,
            vec![1, 2, 3],
            "only acknowledged events reach the consumers"
        );

        let rec = recovered(dir.path(), 0);
        assert!(rec.damage.is_empty(), "{:?}", rec.damage);
        let got: Vec<(u64, i64)> = rec
            .entries
            .iter()
            .map(|c| match c.event.telemetry().unwrap().points[0].value {
                Value::Int(v) => (c.lsn, v),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got, acked);
    }
}

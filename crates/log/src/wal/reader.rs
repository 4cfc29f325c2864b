//! Reading the log from disk, from any LSN on: how a consumer that has
//! fallen behind the in-memory tail catches up, and how every consumer
//! replays after a restart.
//!
//! The reader only ever reads records up to an LSN known to be durable (the
//! caller passes it), so it never sees a record being written; and it keeps
//! no bytes between calls, so what it read past that LSN (zeros of a
//! prepared segment, a half-written record) is never taken for the log.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::record::{decode_record, Format, RecordError, HEADER_LEN, MAX_PAYLOAD};
use super::segment::{format_of, list_segments, segment_path};
use super::WalError;
use crate::consumer::Committed;

/// Bytes read from a segment at a time.
const READ_AHEAD: usize = 1 << 20;

/// A position in the log, reading forward.
pub struct LogReader {
    dir: PathBuf,
    /// The LSN of the next event to return.
    next_lsn: u64,
    open: Option<Open>,
}

/// The segment being read.
struct Open {
    file: File,
    path: PathBuf,
    format: Format,
    /// Byte offset of the next record to look at.
    offset: u64,
}

impl LogReader {
    /// A reader whose first event is `from_lsn` (or the oldest after it still in the log).
    pub fn new(dir: &Path, from_lsn: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            next_lsn: from_lsn.max(1),
            open: None,
        }
    }

    /// The LSN of the next event it returns.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Reads events from the next LSN up to `durable` (inclusive), stopping
    /// after about `max_bytes` of records. Blocking: call off the async
    /// threads. Events missing from the log (trimmed, or lost to damage that
    /// recovery reported) are skipped with a warning.
    pub fn read(
        &mut self,
        durable: u64,
        max_bytes: usize,
    ) -> Result<Vec<Arc<Committed>>, WalError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while self.next_lsn <= durable && bytes < max_bytes {
            let next = self.next_lsn;
            let Some(open) = self.segment()? else {
                break;
            };
            let (events, used, ended) = read_segment(open, next, durable, max_bytes - bytes)?;
            bytes += used;
            if let Some(last) = events.last() {
                self.next_lsn = last.lsn + 1;
            }
            out.extend(events);
            if ended && self.next_lsn <= durable {
                // The next event is in a later segment (if any yet).
                self.open = None;
                if !self.skip_to_next_segment()? {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The open segment, opening the one holding the next LSN if needed.
    fn segment(&mut self) -> Result<Option<&mut Open>, WalError> {
        if self.open.is_none() {
            let segments = list_segments(&self.dir)?;
            let Some(seg) = segments.iter().rev().find(|s| s.first_lsn <= self.next_lsn) else {
                // Everything up to the oldest segment has been trimmed.
                let Some(oldest) = segments.first() else {
                    return Ok(None);
                };
                warn!(
                    wanted = self.next_lsn,
                    oldest = oldest.first_lsn,
                    "events no longer in the write-ahead log were skipped"
                );
                self.next_lsn = oldest.first_lsn;
                return self.segment();
            };
            self.open = Some(Open::new(seg.path.clone())?);
        }
        Ok(self.open.as_mut())
    }

    /// After a segment ended before the next LSN: goes on at the segment
    /// that holds it, or at the first one after it; false when there is none.
    fn skip_to_next_segment(&mut self) -> Result<bool, WalError> {
        if segment_path(&self.dir, self.next_lsn).exists() {
            return Ok(true);
        }
        let segments = list_segments(&self.dir)?;
        if let Some(next) = segments.iter().find(|s| s.first_lsn > self.next_lsn) {
            warn!(
                missing_from = self.next_lsn,
                resumes_at = next.first_lsn,
                "events missing from the write-ahead log (damaged segment) were skipped"
            );
            self.next_lsn = next.first_lsn;
            return Ok(true);
        }
        Ok(false)
    }
}

impl Open {
    fn new(path: PathBuf) -> Result<Self, WalError> {
        let file = File::open(&path).map_err(|e| WalError::io(&path, e))?;
        let mut magic = [0u8; 8];
        let format = match file.read_exact_at(&mut magic, 0) {
            Ok(()) => format_of(&magic),
            Err(_) => None,
        };
        // A segment without a header holds nothing (recovery said so): read
        // it as empty, which moves on to the next.
        Ok(Self {
            file,
            path,
            format: format.unwrap_or(Format::Events),
            offset: if format.is_some() {
                magic.len() as u64
            } else {
                u64::MAX
            },
        })
    }
}

/// Events of `seg` from `from` up to `durable`, about `max_bytes` of them;
/// the bytes taken; and whether the segment ended before `durable`.
fn read_segment(
    seg: &mut Open,
    from: u64,
    durable: u64,
    max_bytes: usize,
) -> Result<(Vec<Arc<Committed>>, usize, bool), WalError> {
    let mut out = Vec::new();
    let mut used = 0usize;
    if seg.offset == u64::MAX {
        return Ok((out, 0, true));
    }
    let mut buf = Vec::new();
    let mut buf_at = seg.offset;
    let mut next = from;
    loop {
        if next > durable || used >= max_bytes {
            return Ok((out, used, false));
        }
        let start = (seg.offset - buf_at) as usize;
        let record = match decode_record(&buf[start..], seg.format) {
            Err(RecordError::Truncated) => {
                // Read more: at least the whole record when its length is known.
                let want = buf
                    .get(start..start + 4)
                    .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                    .filter(|l| *l <= MAX_PAYLOAD)
                    .map_or(READ_AHEAD, |l| (HEADER_LEN + l).max(READ_AHEAD));
                let mut more = vec![0u8; want];
                let n = read_at(&seg.file, &mut more, seg.offset)
                    .map_err(|e| WalError::io(&seg.path, e))?;
                if n == buf.len() - start {
                    // Nothing more in the file: the segment has ended.
                    return Ok((out, used, true));
                }
                more.truncate(n);
                buf = more;
                buf_at = seg.offset;
                continue;
            }
            other => other,
        };
        match record {
            Ok((lsn, event, len)) if lsn == next => {
                if lsn > durable {
                    return Ok((out, used, false));
                }
                seg.offset += len as u64;
                used += len;
                next = lsn + 1;
                out.push(Arc::new(Committed { lsn, event }));
            }
            Ok((lsn, _, len)) if lsn < next => {
                // Before the wanted LSN: the reader started inside the segment.
                seg.offset += len as u64;
            }
            // LSNs follow one another within a segment: a jump means this is
            // not (or no longer) the segment that holds the next one.
            Ok(_) => return Ok((out, used, true)),
            // Zeros, a reused file's older bytes, or damage recovery reported:
            // this segment holds nothing more.
            Err(_) => return Ok((out, used, true)),
        }
    }
}

/// Reads as much of `buf` as the file has at `offset`.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

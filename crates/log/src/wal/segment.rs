//! Segment files on disk: naming, listing, and recovery after a crash.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use tracing::{error, warn};

use super::record::{decode_record, Format, RecordError};
use super::WalError;

/// The name of an applied segment kept for reuse (by `prepare`).
const SPARE: &str = "spare.tmp";

/// Where an applied segment of the log in `dir` is kept for reuse.
pub(crate) fn spare_path(dir: &Path) -> PathBuf {
    dir.join(SPARE)
}

/// First bytes of every segment file written now (records in [`Format::Events`]).
pub const MAGIC: &[u8; 8] = b"TRBWAL3\n";

/// First bytes of a telemetry-only segment (records in [`Format::Compact`]).
const MAGIC_COMPACT: &[u8; 8] = b"TRBWAL2\n";

/// First bytes of a segment of the first versions (records in [`Format::Postcard`]).
const MAGIC_POSTCARD: &[u8; 8] = b"TRBWAL1\n";

/// The format of a segment's records, from its first bytes.
pub(crate) fn format_of(data: &[u8]) -> Option<Format> {
    match data.get(..MAGIC.len())? {
        m if m == MAGIC => Some(Format::Events),
        m if m == MAGIC_COMPACT => Some(Format::Compact),
        m if m == MAGIC_POSTCARD => Some(Format::Postcard),
        _ => None,
    }
}

/// A segment file and the LSN of its first record.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    /// LSN of the first record the segment may hold (its file name).
    pub first_lsn: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// The file name of the segment starting at `first_lsn`.
pub fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

/// The segments in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentInfo>, WalError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| WalError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if let Ok(first_lsn) = stem.parse::<u64>() {
            out.push(SegmentInfo {
                first_lsn,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|s| s.first_lsn);
    Ok(out)
}

/// What recovery found: where the log ends, and what was damaged.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The highest valid LSN in the log (0 when the log is empty).
    pub last_lsn: u64,
    /// Human descriptions of damage found (also logged).
    pub damage: Vec<String>,
}

/// Reads every segment, checks every record and truncates a torn tail;
/// the events themselves are read later, by each consumer (see [`super::reader`]).
pub fn recover(dir: &Path) -> Result<Recovery, WalError> {
    let segments = list_segments(dir)?;
    let mut rec = Recovery::default();
    let count = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == count;
        let data = fs::read(&seg.path).map_err(|e| WalError::io(&seg.path, e))?;
        let Some(format) = format_of(&data) else {
            // A segment whose header never reached the disk holds no acknowledged data.
            let msg = format!("{}: missing segment header, ignored", seg.path.display());
            if is_last && data.iter().all(|b| *b == 0) {
                warn!("{msg}");
            } else {
                error!("{msg}");
            }
            rec.damage.push(msg);
            continue;
        };
        let mut off = MAGIC.len();
        while off < data.len() {
            match decode_record(&data[off..], format) {
                Ok((lsn, _, used)) if lsn > rec.last_lsn && lsn >= seg.first_lsn => {
                    rec.last_lsn = lsn;
                    off += used;
                }
                Ok((lsn, _, _)) if is_last && lsn < seg.first_lsn => {
                    // A record of the file's earlier use as an older segment
                    // (see `prepare`): the log ends here.
                    truncate(&seg.path, off as u64)?;
                    break;
                }
                Ok((lsn, _, _)) => {
                    let msg = format!(
                        "{} at byte {off}: LSN {lsn} does not follow {}; rest of segment ignored",
                        seg.path.display(),
                        rec.last_lsn
                    );
                    error!("{msg}");
                    rec.damage.push(msg);
                    break;
                }
                Err(_) if is_last && data[off..].iter().all(|b| *b == 0) => {
                    // The unwritten rest of a zero-filled segment: the log
                    // ends here. (Earlier segments are written to their end
                    // before the next begins, so there zeros are damage.)
                    truncate(&seg.path, off as u64)?;
                    break;
                }
                Err(e) => {
                    let torn = matches!(e, RecordError::Truncated) || is_last;
                    let msg = format!(
                        "{} at byte {off}: {e}; {} bytes after it dropped",
                        seg.path.display(),
                        data.len() - off
                    );
                    if torn && is_last {
                        // A write that was cut by a crash: never acknowledged, so nothing is lost.
                        warn!("torn write-ahead log tail: {msg}");
                        truncate(&seg.path, off as u64)?;
                    } else {
                        error!("damaged write-ahead log segment: {msg}");
                    }
                    rec.damage.push(msg);
                    break;
                }
            }
        }
    }
    Ok(rec)
}

fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    f.set_len(len).map_err(|e| WalError::io(path, e))?;
    f.sync_all().map_err(|e| WalError::io(path, e))
}

/// Deletes segments all of whose records have an LSN at or below `applied`;
/// keeps `active`. The first one becomes the spare (for reuse as a later
/// segment) when there is none.
pub fn delete_applied(dir: &Path, applied: u64, active_first_lsn: u64) -> Result<usize, WalError> {
    let spare = spare_path(dir);
    let segments = list_segments(dir)?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        let (seg, next) = (&pair[0], &pair[1]);
        if seg.first_lsn >= active_first_lsn || next.first_lsn.saturating_sub(1) > applied {
            break;
        }
        // Not a segment once renamed: recovery never reads it.
        if removed > 0 || spare.exists() {
            fs::remove_file(&seg.path).map_err(|e| WalError::io(&seg.path, e))?;
        } else {
            fs::rename(&seg.path, &spare).map_err(|e| WalError::io(&seg.path, e))?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// What a test sees of recovery: its findings and the events after an LSN.
#[cfg(test)]
pub(crate) struct Recovered {
    pub last_lsn: u64,
    pub damage: Vec<String>,
    pub entries: Vec<std::sync::Arc<crate::consumer::Committed>>,
}

/// Recovers `dir`, then reads every event after `after` as a consumer would.
#[cfg(test)]
pub(crate) fn recovered(dir: &Path, after: u64) -> Recovered {
    let rec = recover(dir).unwrap();
    let entries = super::LogReader::new(dir, after + 1)
        .read(rec.last_lsn, usize::MAX)
        .unwrap();
    Recovered {
        last_lsn: rec.last_lsn,
        damage: rec.damage,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::encode_record;
    use crate::wal::record::postcard_record;
    use tributary_model::{Batch, DeviceId, Event, Point, TenantId, Value};

    /// A batch of one point of `value`.
    fn one_point(value: Value) -> Batch {
        Batch {
            tenant: TenantId::new(),
            device: DeviceId::new(),
            points: vec![Point {
                key: "t".into(),
                ts: 1,
                value,
            }],
        }
    }

    /// A segment file holding records `lsns`, then `zeros` zero bytes.
    fn segment(dir: &Path, first_lsn: u64, lsns: &[u64], zeros: usize) -> PathBuf {
        let batch = Event::Telemetry(one_point(Value::Int(1)));
        let mut data = MAGIC.to_vec();
        for lsn in lsns {
            encode_record(*lsn, &batch, &mut data).unwrap();
        }
        data.extend(std::iter::repeat_n(0u8, zeros));
        let path = segment_path(dir, first_lsn);
        fs::write(&path, data).unwrap();
        path
    }

    #[test]
    fn the_zero_filled_rest_of_the_last_segment_is_the_end_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        segment(dir.path(), 1, &[1, 2], 0);
        let last = segment(dir.path(), 3, &[3], 5000);
        let rec = recovered(dir.path(), 0);
        assert_eq!(rec.last_lsn, 3);
        assert_eq!(rec.entries.len(), 3);
        assert!(rec.damage.is_empty(), "{:?}", rec.damage);
        let len = fs::metadata(&last).unwrap().len();
        assert!(len < 5000, "the zeros are cut off: {len} bytes left");
        assert!(recovered(dir.path(), 0).damage.is_empty());
    }

    /// Applied segments go, the first kept as the spare when there is none,
    /// and recovery reads neither the spare nor what it held.
    #[test]
    fn applied_segments_go_and_one_is_kept_as_the_spare() {
        let dir = tempfile::tempdir().unwrap();
        let spare = spare_path(dir.path());
        let first = segment(dir.path(), 1, &[1, 2], 0);
        segment(dir.path(), 3, &[3, 4], 0);
        segment(dir.path(), 5, &[5], 0);
        segment(dir.path(), 6, &[6], 0);
        let held = fs::read(&first).unwrap();
        assert_eq!(delete_applied(dir.path(), 4, 6).unwrap(), 2);
        let left: Vec<u64> = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.first_lsn)
            .collect();
        assert_eq!(
            left,
            vec![5, 6],
            "the active segment and the unapplied one stay"
        );
        assert_eq!(
            fs::read(&spare).unwrap(),
            held,
            "the first became the spare"
        );
        assert!(!first.exists());
        let rec = recovered(dir.path(), 4);
        assert_eq!(
            rec.entries.iter().map(|e| e.lsn).collect::<Vec<_>>(),
            vec![5, 6]
        );
        assert!(rec.damage.is_empty(), "{:?}", rec.damage);

        // With a spare already there, applied segments are deleted.
        let kept = fs::read(&spare).unwrap();
        assert_eq!(delete_applied(dir.path(), 5, 6).unwrap(), 1);
        assert_eq!(fs::read(&spare).unwrap(), kept);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    }

    /// A reused file's older records, left after the new ones, end the log
    /// (their LSNs are below the segment's first) and are cut off.
    #[test]
    fn a_reused_files_older_records_are_the_end_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let only = segment(dir.path(), 10, &[10, 11, 3, 4], 0);
        let written = fs::metadata(&only).unwrap().len();
        let rec = recovered(dir.path(), 0);
        assert_eq!(
            rec.entries.iter().map(|e| e.lsn).collect::<Vec<_>>(),
            vec![10, 11]
        );
        assert_eq!(rec.last_lsn, 11);
        assert!(rec.damage.is_empty(), "{:?}", rec.damage);
        let cut = fs::metadata(&only).unwrap().len();
        assert!(cut < written, "the older records are cut off");
        assert_eq!(recovered(dir.path(), 0).entries.len(), 2);
        assert_eq!(fs::metadata(&only).unwrap().len(), cut);

        // Nothing new written into it yet: only older records.
        let dir = tempfile::tempdir().unwrap();
        segment(dir.path(), 10, &[3, 4], 0);
        let rec = recovered(dir.path(), 0);
        assert!(rec.entries.is_empty());
        assert_eq!(rec.last_lsn, 0);
        assert!(rec.damage.is_empty(), "{:?}", rec.damage);
    }

    /// A log written before the compact format replays, and goes on in it.
    #[test]
    fn segments_of_the_postcard_format_replay() {
        let dir = tempfile::tempdir().unwrap();
        let batch = one_point(Value::Float(2.5));
        let mut data = MAGIC_POSTCARD.to_vec();
        for lsn in [1u64, 2] {
            data.extend(postcard_record(lsn, &batch));
        }
        fs::write(segment_path(dir.path(), 1), data).unwrap();
        segment(dir.path(), 3, &[3], 0);
        let rec = recovered(dir.path(), 0);
        assert!(rec.damage.is_empty(), "{:?}", rec.damage);
        assert_eq!(
            rec.entries.iter().map(|e| e.lsn).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(rec.entries[0].event, Event::Telemetry(batch.clone()));
        assert_eq!(rec.entries[1].event, Event::Telemetry(batch));
        let third = rec.entries[2].event.telemetry().unwrap();
        assert_eq!(third.points[0].value, Value::Int(1));
    }

    #[test]
    fn zeros_inside_an_earlier_segment_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        segment(dir.path(), 1, &[1], 300);
        segment(dir.path(), 3, &[3], 0);
        let rec = recovered(dir.path(), 0);
        assert_eq!(rec.entries.len(), 2);
        assert_eq!(rec.damage.len(), 1, "{:?}", rec.damage);
    }
}

//! The `export` consumer (`log_export_path`): every event of the log as one
//! JSON line in a file, for debugging or for an external system to tail.
//!
//! It keeps its own checkpoint in the file: the LSN of the last whole line.
//! A group of lines is written and fsynced before `apply` returns, and at
//! start a torn last line (a crash in the middle of a write) is cut off, so
//! after any crash the file holds every event up to its last line exactly
//! once, and the log resumes it right after.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};
use tributary_log::{Committed, Consumer, ConsumerError};
use tributary_model::Event;

/// The name of the export consumer.
pub const EXPORT_CONSUMER: &str = "export";

/// Writes every event to a JSON-lines file.
pub struct ExportConsumer {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    /// LSN of the last line in the file.
    last: AtomicU64,
}

impl ExportConsumer {
    /// Opens (or creates) the file, cutting off a torn last line.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let last = last_whole_line(&mut file)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
            last: AtomicU64::new(last),
        })
    }
}

/// Cuts off what follows the last whole line (a torn write), and the last
/// line itself while it is not an event (blocks zeroed by a power cut);
/// returns the LSN of the last line left (0 for an empty file).
fn last_whole_line(file: &mut File) -> std::io::Result<u64> {
    loop {
        let len = file.metadata()?.len();
        let Some(end) = rfind_newline(file, len)? else {
            if len > 0 {
                tracing::warn!(cut = len, "log export: a torn first line is cut off");
                file.set_len(0)?;
                file.sync_data()?;
            }
            return Ok(0);
        };
        if end + 1 < len {
            tracing::warn!(
                cut = len - end - 1,
                "log export: a torn last line is cut off"
            );
            file.set_len(end + 1)?;
            file.sync_data()?;
        }
        let start = rfind_newline(file, end)?.map_or(0, |p| p + 1);
        let mut line = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut line)?;
        match serde_json::from_slice::<Value>(&line)
            .ok()
            .and_then(|v| v["lsn"].as_u64())
        {
            Some(lsn) => return Ok(lsn),
            None => {
                tracing::warn!(
                    cut = end + 1 - start,
                    "log export: a last line that is not an event is cut off"
                );
                file.set_len(start)?;
                file.sync_data()?;
            }
        }
    }
}

/// The offset of the last newline before `before`, reading backwards a
/// block at a time.
fn rfind_newline(file: &mut File, before: u64) -> std::io::Result<Option<u64>> {
    const BLOCK: u64 = 64 * 1024;
    let mut buf = vec![0; BLOCK as usize];
    let mut pos = before;
    while pos > 0 {
        let step = pos.min(BLOCK);
        pos -= step;
        let chunk = &mut buf[..step as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(Some(pos + i as u64));
        }
    }
    Ok(None)
}

/// One event as a JSON line's object.
pub fn event_json(lsn: u64, event: &Event) -> Value {
    match event {
        Event::Telemetry(b) => json!({
            "lsn": lsn, "type": "telemetry", "tenant": b.tenant, "device": b.device,
            "points": b.points.iter().map(|p| json!({"key": p.key.as_str(), "ts_ns": p.ts, "value": p.value.to_json()})).collect::<Vec<_>>(),
        }),
        Event::Attributes(a) => json!({
            "lsn": lsn, "type": "attributes", "tenant": a.tenant, "device": a.device,
            "scope": a.scope, "set": a.values(), "deleted": a.deleted, "at_ms": a.at_ms,
        }),
        Event::Device(d) => json!({
            "lsn": lsn, "type": "device", "tenant": d.tenant, "device": d.device, "change": d.change,
        }),
        Event::Tenant(t) => json!({
            "lsn": lsn, "type": "tenant", "tenant": t.tenant, "change": t.change,
        }),
        Event::Unknown { kind } => json!({"lsn": lsn, "type": "unknown", "kind": kind}),
    }
}

fn io(path: &Path, e: std::io::Error) -> ConsumerError {
    ConsumerError(format!("writing {}: {e}", path.display()))
}

#[async_trait]
impl Consumer for ExportConsumer {
    fn name(&self) -> &str {
        EXPORT_CONSUMER
    }

    async fn apply(&self, entries: &[Arc<Committed>]) -> Result<(), ConsumerError> {
        let last = self.last.load(Ordering::Acquire);
        let fresh: Vec<Arc<Committed>> = entries.iter().filter(|e| e.lsn > last).cloned().collect();
        let Some(newest) = fresh.last().map(|e| e.lsn) else {
            return Ok(());
        };
        let (file, path) = (self.file.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            let before = f.metadata().map_err(|e| io(&path, e))?.len();
            // Line by line through a small buffer: a group read back from
            // disk after a stall is written without a copy of it in memory.
            let written = (|| {
                let mut out = std::io::BufWriter::with_capacity(1 << 16, &mut *f);
                for e in &fresh {
                    serde_json::to_writer(&mut out, &event_json(e.lsn, &e.event))
                        .map_err(std::io::Error::other)?;
                    out.write_all(b"\n")?;
                }
                out.flush()
            })()
            .and_then(|()| f.sync_data());
            if let Err(e) = written {
                // A partial write (a full disk) is taken back, so the
                // retry writes these lines once.
                let _ = f.set_len(before);
                return Err(io(&path, e));
            }
            Ok(())
        })
        .await
        .map_err(|e| ConsumerError(e.to_string()))??;
        self.last.store(newest, Ordering::Release);
        Ok(())
    }

    async fn own_checkpoint(&self) -> Result<Option<u64>, ConsumerError> {
        Ok(Some(self.last.load(Ordering::Acquire)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_checkpoint_is_the_last_whole_line_and_a_torn_one_is_cut() {
        let (_d, path) = file_with("{\"lsn\":1}\n{\"lsn\":2}\n{\"lsn\":3,\"ty");
        let c = ExportConsumer::open(&path).unwrap();
        assert_eq!(c.last.load(Ordering::Acquire), 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"lsn\":1}\n{\"lsn\":2}\n"
        );
    }

    #[test]
    fn an_empty_or_torn_only_file_starts_from_zero() {
        let (_d, path) = file_with("");
        assert_eq!(ExportConsumer::open(&path).unwrap().last.into_inner(), 0);
        let (_d, path) = file_with("{\"lsn\":1");
        assert_eq!(ExportConsumer::open(&path).unwrap().last.into_inner(), 0);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn a_last_line_that_is_not_an_event_is_cut_back_to_the_one_before() {
        let (_d, path) = file_with("{\"lsn\":4}\n\0\0\0\0\n");
        let c = ExportConsumer::open(&path).unwrap();
        assert_eq!(c.last.into_inner(), 4);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"lsn\":4}\n");
    }

    #[test]
    fn a_long_last_line_is_found_across_read_chunks() {
        let long = format!("{{\"lsn\":7,\"pad\":\"{}\"}}\n", "x".repeat(200_000));
        let (_d, path) = file_with(&format!("{{\"lsn\":6}}\n{long}"));
        assert_eq!(ExportConsumer::open(&path).unwrap().last.into_inner(), 7);
        let (_d, path) = file_with(&long);
        assert_eq!(ExportConsumer::open(&path).unwrap().last.into_inner(), 7);
    }

    #[tokio::test]
    async fn events_at_or_below_the_checkpoint_are_not_written_again() {
        let (_d, path) = file_with("");
        let c = ExportConsumer::open(&path).unwrap();
        let ev = |lsn| {
            Arc::new(Committed {
                lsn,
                event: Event::Unknown { kind: 9 },
            })
        };
        c.apply(&[ev(1), ev(2)]).await.unwrap();
        c.apply(&[ev(2), ev(3)]).await.unwrap();
        let lsns: Vec<u64> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["lsn"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(lsns, vec![1, 2, 3]);
        assert_eq!(c.own_checkpoint().await.unwrap(), Some(3));
    }
}

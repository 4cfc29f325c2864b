//! Injected I/O faults for the engine's unit tests: the next block written
//! in a directory fails its fsync as a full disk or a failing device would.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Faults waiting, by block directory: the raw OS error each next fsync gets.
static PLAN: Mutex<Vec<(PathBuf, i32)>> = Mutex::new(Vec::new());

/// The next block fsync in `dir` fails with OS error `errno` (28: ENOSPC, 5: EIO).
pub fn fail_next_sync(dir: &Path, errno: i32) {
    PLAN.lock().unwrap().push((dir.to_path_buf(), errno));
}

/// Before a block's fsync in `dir`: the planned failure, if any.
pub fn before_sync(dir: &Path) -> std::io::Result<()> {
    let mut plan = PLAN.lock().unwrap();
    match plan.iter().position(|(d, _)| d == dir) {
        Some(i) => Err(std::io::Error::from_raw_os_error(plan.remove(i).1)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tributary_model::{Batch, DeviceId, Point, TenantId, Value};

    use super::*;
    use crate::series::engine::{Engine, EngineConfig};
    use crate::series::{Order, RawQuery, SeriesReader, SeriesWriter};

    /// A seal whose fsync fails (ENOSPC, then EIO) keeps every point readable
    /// and the log's trim point where it was, leaves no partial file, and a
    /// later seal makes the points durable; after reopening they are there.
    #[tokio::test]
    async fn a_failed_seal_keeps_the_data_and_a_later_one_makes_it_durable() {
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig {
            max_head_points: 1_000_000,
            max_head_bytes: 1 << 30,
            seal_interval: Duration::from_secs(3600),
        };
        let engine = Engine::open(dir.path(), config.clone()).await.unwrap();
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        let batch = |lsn: i64| Batch {
            tenant,
            device,
            points: vec![Point {
                key: "v".into(),
                ts: lsn * 1_000_000_000,
                value: Value::Int(lsn),
            }],
        };
        for lsn in 1..=3u64 {
            engine.apply(&[(lsn, &batch(lsn as i64))]).await.unwrap();
        }
        let count = |e: &Engine| {
            let e = e.clone();
            async move {
                let q = RawQuery {
                    keys: vec!["v".into()],
                    from: 0,
                    to: i64::MAX,
                    limit: 100,
                    order: Order::Asc,
                };
                e.query(tenant, device, &q).await.unwrap()["v"].len()
            }
        };
        for errno in [28, 5] {
            fail_next_sync(dir.path(), errno);
            engine.seal(true).await.unwrap();
            assert_eq!(engine.durable_lsn(), 0, "a failed seal counted as durable");
            assert_eq!(count(&engine).await, 3);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        engine.seal(true).await.unwrap();
        assert_eq!(engine.durable_lsn(), 3);
        engine.close().await;
        let engine = Engine::open(dir.path(), config).await.unwrap();
        assert_eq!(count(&engine).await, 3);
    }
}

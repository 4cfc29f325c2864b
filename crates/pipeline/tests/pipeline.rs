//! The pipeline against a recording sink: durability, order, recovery.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tributary_model::{Batch, DeviceId, Point, TenantId, Value};
use tributary_pipeline::{Committed, Listener, Pipeline, PipelineConfig, Sink, SinkError};

#[derive(Default)]
struct MemorySink {
    applied: Mutex<Vec<(u64, Batch)>>,
}

#[async_trait]
impl Sink for MemorySink {
    async fn apply(&self, entries: &[Arc<Committed>]) -> Result<(), SinkError> {
        let mut applied = self.applied.lock().unwrap();
        for e in entries {
            applied.push((e.lsn, e.batch.clone()));
        }
        Ok(())
    }
    async fn applied_lsn(&self) -> Result<u64, SinkError> {
        Ok(self
            .applied
            .lock()
            .unwrap()
            .last()
            .map(|e| e.0)
            .unwrap_or(0))
    }
}

#[derive(Default)]
struct CountingListener(Mutex<Vec<u64>>);

impl Listener for CountingListener {
    fn on_commit(&self, entries: &[Arc<Committed>]) {
        self.0.lock().unwrap().extend(entries.iter().map(|e| e.lsn));
    }
}

fn config(dir: &std::path::Path, segment_bytes: u64) -> PipelineConfig {
    PipelineConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        max_group_bytes: 1 << 20,
        queue_capacity: 64,
        sink_queue_groups: 4,
    }
}

fn batch(i: i64) -> Batch {
    Batch {
        tenant: TenantId::new(),
        device: DeviceId::new(),
        points: vec![Point {
            key: "v".into(),
            ts: i,
            value: Value::Int(i),
        }],
    }
}

#[tokio::test]
async fn concurrent_appends_get_distinct_ordered_lsns_and_reach_sink_and_listener() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemorySink::default());
    let listener = Arc::new(CountingListener::default());
    let p = Pipeline::start(
        config(dir.path(), 1 << 20),
        sink.clone(),
        vec![listener.clone()],
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let p = p.clone();
        tasks.push(tokio::spawn(
            async move { p.append(batch(i)).await.unwrap() },
        ));
    }
    let mut lsns = Vec::new();
    for t in tasks {
        lsns.push(t.await.unwrap());
    }
    lsns.sort();
    assert_eq!(lsns, (1..=200).collect::<Vec<_>>());
    assert!(p.wait_applied(200, Duration::from_secs(5)).await);
    let applied: Vec<u64> = sink.applied.lock().unwrap().iter().map(|e| e.0).collect();
    assert_eq!(
        applied,
        (1..=200).collect::<Vec<_>>(),
        "sink sees log order"
    );
    assert_eq!(listener.0.lock().unwrap().len(), 200);
    p.shutdown().await;
    assert!(
        p.append(batch(0)).await.is_err(),
        "closed pipeline refuses appends"
    );
}

#[tokio::test]
async fn unapplied_entries_are_replayed_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    {
        let sink = Arc::new(MemorySink::default());
        let p = Pipeline::start(config(&wal_dir, 1 << 20), sink, vec![])
            .await
            .unwrap();
        for i in 0..10 {
            p.append(batch(i)).await.unwrap();
        }
        p.shutdown().await;
    }
    // Append garbage as a crash mid-write would leave it.
    let seg = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let good_len = data.len();
    data.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]);
    std::fs::write(&seg, &data).unwrap();

    // A fresh sink has applied nothing: all ten come back, in order, and the tail is cut.
    let sink = Arc::new(MemorySink::default());
    let p = Pipeline::start(config(&wal_dir, 1 << 20), sink.clone(), vec![])
        .await
        .unwrap();
    let replayed: Vec<i64> = sink
        .applied
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.points[0].ts)
        .collect();
    assert_eq!(replayed, (0..10).collect::<Vec<_>>());
    assert_eq!(
        p.append(batch(10)).await.unwrap(),
        11,
        "LSNs continue after recovery"
    );
    p.shutdown().await;
    assert!(std::fs::metadata(&seg)
        .map(|m| m.len() as usize <= good_len)
        .unwrap_or(true));
}

#[tokio::test]
async fn applied_segments_are_deleted_and_lsns_survive_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MemorySink::default());
    // Tiny segments: every group rolls a new one.
    let p = Pipeline::start(config(dir.path(), 64), sink.clone(), vec![])
        .await
        .unwrap();
    for i in 0..50 {
        let lsn = p.append(batch(i)).await.unwrap();
        assert!(p.wait_applied(lsn, Duration::from_secs(5)).await);
    }
    p.shutdown().await;
    let segments = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(
        segments < 10,
        "applied segments are removed, {segments} left"
    );
    let p = Pipeline::start(config(dir.path(), 64), sink.clone(), vec![])
        .await
        .unwrap();
    assert_eq!(p.append(batch(99)).await.unwrap(), 51);
    p.shutdown().await;
    assert_eq!(
        sink.applied.lock().unwrap().len(),
        51,
        "nothing replayed twice"
    );
}

//! The event log against recording consumers: durability, order, recovery,
//! checkpoints, consumers that fall behind, and the disk budget.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tributary_log::{Committed, Consumer, ConsumerError, Listener, Pipeline, PipelineConfig};
use tributary_model::{Batch, DeviceChange, DeviceEvent, DeviceId, Event, Point, TenantId, Value};

/// Records every event it is given. With `own`, it keeps its checkpoint
/// itself (the last LSN it recorded); else the log keeps it. While `held`,
/// it takes nothing (`apply` fails), like a consumer whose target is down.
struct Recorder {
    name: &'static str,
    own: bool,
    held: AtomicBool,
    /// Queries are answered from it (`Consumer::serves_reads`).
    reads: AtomicBool,
    /// Each `apply` takes 100 ms.
    slow: AtomicBool,
    seen: Mutex<Vec<(u64, Event)>>,
}

impl Recorder {
    fn new(name: &'static str, own: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            own,
            held: AtomicBool::new(false),
            reads: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn lsns(&self) -> Vec<u64> {
        self.seen.lock().unwrap().iter().map(|e| e.0).collect()
    }
}

#[async_trait]
impl Consumer for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    async fn apply(&self, events: &[Arc<Committed>]) -> Result<(), ConsumerError> {
        if self.held.load(Ordering::Acquire) {
            return Err(ConsumerError("held".into()));
        }
        if self.slow.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut seen = self.seen.lock().unwrap();
        for e in events {
            seen.push((e.lsn, e.event.clone()));
        }
        Ok(())
    }

    fn serves_reads(&self) -> bool {
        self.reads.load(Ordering::Acquire)
    }

    async fn own_checkpoint(&self) -> Result<Option<u64>, ConsumerError> {
        Ok(self
            .own
            .then(|| self.seen.lock().unwrap().last().map_or(0, |e| e.0)))
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
        tail_bytes: 1 << 20,
        max_retained_bytes: 1 << 30,
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

const GRACE: Duration = Duration::from_secs(1);

#[tokio::test]
async fn concurrent_appends_get_distinct_ordered_lsns_and_reach_consumers_and_listener() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recorder::new("store", true);
    let other = Recorder::new("other", false);
    let listener = Arc::new(CountingListener::default());
    let p = Pipeline::start(
        config(dir.path(), 1 << 20),
        store.clone(),
        vec![other.clone()],
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
    let all: Vec<u64> = (1..=200).collect();
    assert_eq!(lsns, all);
    assert!(p.wait_applied(200, Duration::from_secs(5)).await);
    assert!(p.wait_consumed("other", 200, Duration::from_secs(5)).await);
    assert_eq!(store.lsns(), all, "consumers see log order");
    assert_eq!(other.lsns(), all);
    assert_eq!(listener.0.lock().unwrap().len(), 200);
    p.shutdown(GRACE).await;
    assert!(
        p.append(batch(0)).await.is_err(),
        "a closed log refuses appends"
    );
}

#[tokio::test]
async fn unapplied_entries_are_replayed_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    {
        let store = Recorder::new("store", true);
        let p = Pipeline::start(config(&wal_dir, 1 << 20), store, vec![], vec![])
            .await
            .unwrap();
        for i in 0..10 {
            p.append(batch(i)).await.unwrap();
        }
        p.shutdown(GRACE).await;
    }
    // Append garbage as a crash mid-write would leave it.
    let seg = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let good_len = data.len();
    data.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9]);
    std::fs::write(&seg, &data).unwrap();

    // A fresh store has applied nothing: all ten come back, in order,
    // before start returns, and the tail is cut.
    let store = Recorder::new("store", true);
    let p = Pipeline::start(config(&wal_dir, 1 << 20), store.clone(), vec![], vec![])
        .await
        .unwrap();
    let replayed: Vec<i64> = store
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| e.telemetry().unwrap().points[0].ts)
        .collect();
    assert_eq!(replayed, (0..10).collect::<Vec<_>>());
    assert_eq!(
        p.append(batch(10)).await.unwrap(),
        11,
        "LSNs continue after recovery"
    );
    p.shutdown(GRACE).await;
    assert!(std::fs::metadata(&seg)
        .map(|m| m.len() as usize <= good_len)
        .unwrap_or(true));
}

#[tokio::test]
async fn consumed_segments_are_deleted_and_lsns_survive_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recorder::new("store", true);
    // Tiny segments: every group rolls a new one.
    let p = Pipeline::start(config(dir.path(), 64), store.clone(), vec![], vec![])
        .await
        .unwrap();
    for i in 0..50 {
        let lsn = p.append(batch(i)).await.unwrap();
        assert!(p.wait_applied(lsn, Duration::from_secs(5)).await);
    }
    p.shutdown(GRACE).await;
    let segments = wal_files(dir.path());
    assert!(
        segments < 10,
        "consumed segments are removed, {segments} left"
    );
    let p = Pipeline::start(config(dir.path(), 64), store.clone(), vec![], vec![])
        .await
        .unwrap();
    assert_eq!(p.append(batch(99)).await.unwrap(), 51);
    p.shutdown(GRACE).await;
    assert_eq!(store.lsns().len(), 51, "nothing replayed twice");
}

fn wal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count()
}

/// Each consumer resumes at its own checkpoint after a restart; a consumer
/// added later reads everything the log still holds; every kind of event
/// reaches them as it was appended.
#[tokio::test]
async fn each_consumer_resumes_at_its_own_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recorder::new("store", true);
    let rules = Recorder::new("rules", false);
    let lifecycle = Event::Device(DeviceEvent {
        tenant: TenantId::new(),
        device: DeviceId::new(),
        change: DeviceChange::CredentialsRotated,
    });
    {
        let p = Pipeline::start(
            config(dir.path(), 1 << 20),
            store.clone(),
            vec![rules.clone()],
            vec![],
        )
        .await
        .unwrap();
        p.append(batch(1)).await.unwrap();
        p.append_event(lifecycle.clone()).await.unwrap();
        assert!(p.wait_consumed("rules", 2, Duration::from_secs(5)).await);
        rules.held.store(true, Ordering::Release);
        p.append(batch(3)).await.unwrap();
        p.shutdown(GRACE).await;
    }
    assert_eq!(store.lsns(), vec![1, 2, 3]);
    assert_eq!(rules.lsns(), vec![1, 2], "held: the third is not applied");
    assert_eq!(rules.seen.lock().unwrap()[1].1, lifecycle);

    rules.held.store(false, Ordering::Release);
    let meter = Recorder::new("meter", false);
    let p = Pipeline::start(
        config(dir.path(), 1 << 20),
        store.clone(),
        vec![rules.clone(), meter.clone()],
        vec![],
    )
    .await
    .unwrap();
    p.append(batch(4)).await.unwrap();
    assert!(p.wait_consumed("rules", 4, Duration::from_secs(5)).await);
    assert!(p.wait_consumed("meter", 4, Duration::from_secs(5)).await);
    assert_eq!(store.lsns(), vec![1, 2, 3, 4], "the store saw each once");
    assert_eq!(rules.lsns(), vec![1, 2, 3, 4], "rules resumed after 2");
    assert_eq!(
        meter.lsns(),
        vec![1, 2, 3, 4],
        "a new consumer reads it all"
    );
    let status = p.status();
    assert_eq!(status.committed_lsn, 4);
    assert!(status.consumers.iter().all(|c| c.lag_events == 0));
    p.shutdown(GRACE).await;
}

/// A consumer that stops taking events falls behind the in-memory tail;
/// ingestion goes on until the log on disk reaches its budget, then waits;
/// once the consumer takes events again it reads what it missed from disk,
/// in order, and appends go on.
#[tokio::test]
async fn a_stalled_consumer_slows_ingestion_at_the_disk_budget_and_catches_up_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recorder::new("store", true);
    let slow = Recorder::new("slow", false);
    slow.held.store(true, Ordering::Release);
    let cfg = PipelineConfig {
        tail_bytes: 4096,
        max_retained_bytes: 64 * 1024,
        ..config(dir.path(), 8 * 1024)
    };
    let p = Pipeline::start(cfg, store.clone(), vec![slow.clone()], vec![])
        .await
        .unwrap();
    // Each append is about 60 bytes of log: 64 KiB holds about a thousand.
    let mut appended = 0u64;
    let blocked = loop {
        let next = p.append(batch(appended as i64));
        match tokio::time::timeout(Duration::from_secs(2), next).await {
            Ok(lsn) => appended = lsn.unwrap(),
            Err(_) => break true,
        }
        if appended > 20_000 {
            break false;
        }
    };
    assert!(blocked, "appends wait at the budget");
    assert!(
        appended > 500,
        "ingestion went on until the budget: {appended}"
    );
    let status = p.status();
    let lagging = status.consumers.iter().find(|c| c.name == "slow").unwrap();
    assert_eq!(lagging.applied_lsn, 0);
    assert!(lagging.lag_events >= appended);
    assert!(lagging.lag_bytes >= 32 * 1024, "{lagging:?}");
    assert!(status.retained_bytes <= 64 * 1024 + 8 * 1024, "{status:?}");

    slow.held.store(false, Ordering::Release);
    let more = tokio::time::timeout(Duration::from_secs(20), p.append(batch(-1)))
        .await
        .expect("appends go on once the consumer catches up")
        .unwrap();
    assert!(p.wait_consumed("slow", more, Duration::from_secs(20)).await);
    let all: Vec<u64> = (1..=more).collect();
    assert_eq!(slow.lsns(), all, "everything, in order, once");
    assert_eq!(store.lsns(), all);
    p.shutdown(GRACE).await;
}

/// A log held at its disk budget by a consumer that keeps failing still
/// shuts down: appends waiting for room are refused, nothing hangs, and
/// what was acknowledged is all in the log for the next start.
#[tokio::test]
async fn shutdown_at_the_disk_budget_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recorder::new("store", true);
    let stuck = Recorder::new("stuck", false);
    stuck.held.store(true, Ordering::Release);
    let cfg = PipelineConfig {
        tail_bytes: 4096,
        max_retained_bytes: 32 * 1024,
        queue_capacity: 4,
        ..config(dir.path(), 8 * 1024)
    };
    let p = Pipeline::start(cfg.clone(), store.clone(), vec![stuck.clone()], vec![])
        .await
        .unwrap();
    let mut acked = 0u64;
    while let Ok(lsn) = tokio::time::timeout(Duration::from_secs(1), p.append(batch(1))).await {
        acked = lsn.unwrap();
    }
    // More senders waiting for room in the queue.
    let waiting: Vec<_> = (0..8)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move { p.append(batch(i)).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(10), p.shutdown(GRACE))
        .await
        .expect("shutdown finishes at the disk budget");
    for w in waiting {
        let _ = w.await.unwrap();
    }
    // Everything acknowledged comes back to a fresh store after a restart.
    stuck.held.store(false, Ordering::Release);
    let fresh = Recorder::new("store", true);
    let p = Pipeline::start(cfg, fresh.clone(), vec![stuck.clone()], vec![])
        .await
        .unwrap();
    assert!(fresh.lsns().len() as u64 >= acked);
    assert_eq!(
        fresh.lsns()[..acked as usize],
        (1..=acked).collect::<Vec<_>>()[..]
    );
    p.shutdown(GRACE).await;
}

/// A consumer that queries read from has applied everything in the log by
/// the time `start` returns, however slow it is; others catch up after.
#[tokio::test]
async fn start_waits_for_the_consumers_that_serve_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Recorder::new("store", true);
    let (views, export) = (
        Recorder::new("views", false),
        Recorder::new("export", false),
    );
    views.reads.store(true, Ordering::Release);
    {
        let p = Pipeline::start(
            config(dir.path(), 1 << 20),
            store.clone(),
            vec![views.clone(), export.clone()],
            vec![],
        )
        .await
        .unwrap();
        views.held.store(true, Ordering::Release);
        export.held.store(true, Ordering::Release);
        for i in 1..=3 {
            p.append(batch(i)).await.unwrap();
        }
        p.shutdown(GRACE).await;
    }
    assert!(views.lsns().is_empty() && export.lsns().is_empty());
    // The one that serves reads is slow; the other is still held.
    views.held.store(false, Ordering::Release);
    views.slow.store(true, Ordering::Release);
    let p = Pipeline::start(
        config(dir.path(), 1 << 20),
        store.clone(),
        vec![views.clone(), export.clone()],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(
        views.lsns(),
        vec![1, 2, 3],
        "caught up before start returned"
    );
    assert!(export.lsns().is_empty(), "the other one was not waited for");
    export.held.store(false, Ordering::Release);
    assert!(p.wait_consumed("export", 3, Duration::from_secs(5)).await);
    p.shutdown(GRACE).await;
}

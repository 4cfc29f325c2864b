//! The contract every event log meets: call [`run`] with a way to open the
//! log under test in a directory with a list of consumers (the first takes
//! the series store's place: `wait_applied` follows it).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tributary_log::{Committed, Consumer, ConsumerError, EventLog};
use tributary_model::{Batch, DeviceId, Event, Point, TenantId, Value};

/// Opens the log under test in a directory, with these consumers.
pub type Open = dyn Fn(PathBuf, Vec<Arc<dyn Consumer>>) -> Pin<Box<dyn Future<Output = Arc<dyn EventLog>> + Send>>
    + Sync;

/// How long a check waits for something the log must do.
const WAIT: Duration = Duration::from_secs(10);

/// Every check of the contract, each in its own directory under `dir`.
pub async fn run(open: &Open, dir: &Path) {
    appends_are_ordered_durable_and_reach_every_consumer(open, &dir.join("ordered")).await;
    a_reopened_log_continues_and_consumers_resume(open, &dir.join("reopened")).await;
}

/// Records the LSN of every event it applies; its checkpoint is the log's.
struct Recorder {
    name: &'static str,
    seen: Mutex<Vec<u64>>,
}

impl Recorder {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<u64> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Consumer for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    async fn apply(&self, events: &[Arc<Committed>]) -> Result<(), ConsumerError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.extend(events.iter().map(|e| e.lsn));
        Ok(())
    }
}

fn event(i: i64) -> Event {
    Event::Telemetry(Batch {
        tenant: TenantId::new(),
        device: DeviceId::new(),
        points: vec![Point {
            key: "v".into(),
            ts: i,
            value: Value::Int(i),
        }],
    })
}

fn consumers(rs: &[&Arc<Recorder>]) -> Vec<Arc<dyn Consumer>> {
    rs.iter()
        .map(|r| (*r).clone() as Arc<dyn Consumer>)
        .collect()
}

/// Concurrent appends get distinct LSNs, are durable when answered, and
/// reach every consumer once each, in LSN order; the status names every
/// consumer; nothing is taken after shutdown.
pub async fn appends_are_ordered_durable_and_reach_every_consumer(open: &Open, dir: &Path) {
    let (store, other) = (Recorder::new("store"), Recorder::new("other"));
    let log = open(dir.to_path_buf(), consumers(&[&store, &other])).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let log = log.clone();
        tasks.push(tokio::spawn(
            async move { log.append_event(event(i)).await },
        ));
    }
    let mut lsns = BTreeSet::new();
    for t in tasks {
        let lsn = t.await.expect("append task").expect("append");
        assert!(lsns.insert(lsn), "LSN {lsn} given twice");
    }
    let last = *lsns.last().expect("40 LSNs");
    assert!(
        log.committed_lsn() >= last,
        "an answered append is not committed"
    );
    assert!(
        log.wait_applied(last, WAIT).await,
        "the store did not apply {last}"
    );
    assert!(log.applied_lsn() >= last);
    for r in [&store, &other] {
        assert!(
            log.wait_consumed(r.name, last, WAIT).await,
            "{} did not get {last}",
            r.name
        );
        let seen = r.seen();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "{} saw {seen:?}: not in order, or twice",
            r.name
        );
        let seen: BTreeSet<u64> = seen.into_iter().collect();
        assert!(lsns.is_subset(&seen), "{} missed an event", r.name);
    }
    assert!(
        !log.wait_consumed("nobody", 1, Duration::from_millis(50))
            .await
    );
    let status = log.status();
    let names: Vec<&str> = status.consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["store", "other"],
        "the status lists the consumers, the store first"
    );
    assert!(status.consumers.iter().all(|c| c.lag_events == 0));
    log.shutdown(Duration::from_secs(1)).await;
    assert!(
        log.append_event(event(99)).await.is_err(),
        "an event taken after shutdown"
    );
}

/// A log opened again on the same directory goes on above its last LSN, and
/// each consumer resumes after what it applied: after a clean shutdown
/// nothing comes twice.
pub async fn a_reopened_log_continues_and_consumers_resume(open: &Open, dir: &Path) {
    let (store, other) = (Recorder::new("store"), Recorder::new("other"));
    let log = open(dir.to_path_buf(), consumers(&[&store, &other])).await;
    let mut last = 0;
    for i in 0..3 {
        last = log.append_event(event(i)).await.expect("append");
    }
    assert!(log.wait_consumed("other", last, WAIT).await);
    log.shutdown(Duration::from_secs(5)).await;
    drop(log);

    let log = open(dir.to_path_buf(), consumers(&[&store, &other])).await;
    let next = log
        .append_event(event(3))
        .await
        .expect("append after reopening");
    assert!(next > last, "LSN {next} after {last}: LSNs must only grow");
    for r in [&store, &other] {
        assert!(
            log.wait_consumed(r.name, next, WAIT).await,
            "{} did not resume",
            r.name
        );
        let seen = r.seen();
        let unique: BTreeSet<u64> = seen.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{} got events twice: {seen:?}",
            r.name
        );
        assert!(unique.contains(&next) && unique.contains(&last));
    }
    log.shutdown(Duration::from_secs(1)).await;
}

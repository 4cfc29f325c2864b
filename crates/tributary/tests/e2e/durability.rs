//! Acked means durable: kill -9 under load, restart, every acknowledged point is there.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::common::*;

const WRITERS: usize = 8;
const POINTS_PER_BATCH: i64 = 20;

type Acked = Arc<Mutex<BTreeSet<(usize, i64)>>>;

/// Eight writers post batches until `more` further points are acknowledged,
/// then the server is killed with SIGKILL in the middle of the traffic.
/// Timestamps of round `round` never collide with other rounds.
async fn load_then_kill_9(s: Server, dev: &str, round: i64, acked: &Acked, more: usize) {
    let start = acked.lock().unwrap().len();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (base, dev, acked, stop) =
            (s.base.clone(), dev.to_string(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut seq = 0i64;
            while !stop.load(Ordering::Relaxed) {
                // Each point has a unique (writer, ts); the value repeats the ts to check content.
                let base_ts = 1_600_000_000_000 + round * 100_000_000 + seq * POINTS_PER_BATCH;
                let body: Vec<_> = (0..POINTS_PER_BATCH)
                    .map(|i| json!({"ts": base_ts + i, "values": {format!("w{w}"): base_ts + i}}))
                    .collect();
                let res = http
                    .post(format!("{base}/api/v1/{dev}/telemetry"))
                    .json(&body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => {
                        let mut a = acked.lock().unwrap();
                        for i in 0..POINTS_PER_BATCH {
                            a.insert((w, base_ts + i));
                        }
                    }
                    // The crash cuts requests off: those were never acknowledged.
                    _ => break,
                }
                seq += 1;
            }
        }));
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if acked.lock().unwrap().len() >= start + more {
            break;
        }
    }
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
}

/// Every acknowledged point is stored with its value, and no batch is torn.
async fn assert_all_stored(s: &Server, id: &str, acked: &Acked) {
    let token = login(&s.base).await;
    let keys: Vec<String> = (0..WRITERS).map(|w| format!("w{w}")).collect();
    let (st, v) = get_json(
        &s.base,
        &token,
        &format!(
            "/api/v1/devices/{id}/telemetry?keys={}&limit=100000&order=asc",
            keys.join(",")
        ),
    )
    .await;
    assert_eq!(st, 200);
    let mut stored = BTreeSet::new();
    for (w, key) in keys.iter().enumerate() {
        for sample in v[key].as_array().cloned().unwrap_or_default() {
            let ts = sample["ts"].as_i64().unwrap();
            assert_eq!(sample["value"].as_i64(), Some(ts), "value intact");
            stored.insert((w, ts));
        }
    }
    let acked = acked.lock().unwrap().clone();
    let missing: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged points lost, e.g. {missing:?}",
        acked.difference(&stored).count()
    );
    // Batches are whole: every stored batch is complete (no torn batch survives).
    for (w, ts) in &stored {
        let start = ts - (ts - 1_600_000_000_000) % POINTS_PER_BATCH;
        for i in 0..POINTS_PER_BATCH {
            assert!(
                stored.contains(&(*w, start + i)),
                "batch at {start} of w{w} is torn"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_point() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (id, dev) = create_device(&s.base, &token, "crashy").await;
    let acked = Acked::default();
    load_then_kill_9(s, &dev, 0, &acked, 3000).await;
    let s = Server::start(dir.path());
    assert_all_stored(&s, &id, &acked).await;
}

/// The time-series engine seals and compacts blocks all the time here (a tiny
/// head, a one-second seal interval), and the log rolls its small segments
/// into reused files, so the kills land during writes, seals, compactions
/// and segment rolls alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_a_loop_during_seals_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: &std::path::Path| {
        let mut o = Options::new(dir);
        o.env = vec![
            ("TRIBUTARY_TSDB_MAX_HEAD_POINTS", "500".into()),
            ("TRIBUTARY_TSDB_SEAL_INTERVAL_SECS", "1".into()),
            ("TRIBUTARY_WAL_SEGMENT_BYTES", "16384".into()),
        ];
        Server::start_with(o)
    };
    let s = start(dir.path());
    let token = login(&s.base).await;
    let (id, dev) = create_device(&s.base, &token, "crash-loop").await;
    let acked = Acked::default();
    let mut s = s;
    for round in 0..5 {
        load_then_kill_9(s, &dev, round, &acked, 1500 + 700 * round as usize).await;
        s = start(dir.path());
        // Every round restarts from what the last crash left.
        assert_all_stored(&s, &id, &acked).await;
    }
    let blocks = std::fs::read_dir(dir.path().join("tsdb"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "blk"))
        .count();
    assert!(blocks > 0, "the loop sealed blocks");
}

#[tokio::test]
async fn sigterm_drains_syncs_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (id, dev) = create_device(&s.base, &token, "calm").await;
    for i in 0..50i64 {
        let body = json!({"ts": 1_700_000_000_000i64 + i, "values": {"v": i}});
        assert_eq!(post_telemetry(&s.base, &dev, body.to_string()).await.0, 200);
    }
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");

    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (_, v) = get_json(
        &s.base,
        &token,
        &format!("/api/v1/devices/{id}/telemetry?keys=v&limit=1000"),
    )
    .await;
    assert_eq!(v["v"].as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Server::start(dir.path());
    let out = std::process::Command::new(binary())
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("TRIBUTARY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another Tributary process"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (_, dev) = create_device(&s.base, &token, "grouped").await;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (base, dev) = (s.base.clone(), dev.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let body = json!({"ts": 1_700_000_000_000i64 + i, "values": {format!("k{w}"): i}});
                assert_eq!(post_telemetry(&base, &dev, body.to_string()).await.0, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let metrics = metrics_text(&s.base).await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let batches = value("tributary_batches_accepted_total ");
    let fsyncs = value("tributary_wal_fsyncs_total ");
    assert_eq!(batches, 640.0);
    assert!(
        fsyncs < batches,
        "group commit: {fsyncs} fsyncs for {batches} batches"
    );
}

/// A data directory written by the SQLite series store (the default before the
/// engine) keeps its history when the server starts with the engine.
#[tokio::test]
async fn history_in_series_db_moves_into_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = Options::new(dir.path());
    old.env = vec![("TRIBUTARY_SERIES_STORE", "sqlite".into())];
    let s = Server::start_with(old);
    let token = login(&s.base).await;
    let (id, dev) = create_device(&s.base, &token, "veteran").await;
    for i in 0..20i64 {
        let body = json!({"ts": 1_700_000_000_000i64 + i * 1000, "values": {"v": i, "s": format!("x{i}")}});
        assert_eq!(post_telemetry(&s.base, &dev, body.to_string()).await.0, 200);
    }
    assert!(s.terminate().success());
    assert!(dir.path().join("series.db").exists());

    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (_, v) = get_json(
        &s.base,
        &token,
        &format!("/api/v1/devices/{id}/telemetry?keys=v,s&limit=1000&order=asc"),
    )
    .await;
    assert_eq!(v["v"].as_array().unwrap().len(), 20, "{v}");
    assert_eq!(v["v"][19], json!({"ts": 1_700_000_019_000i64, "value": 19}));
    assert_eq!(v["s"][3]["value"], "x3");
    assert!(!dir.path().join("series.db").exists());
    assert!(dir.path().join("series.db.imported").exists());
    // New writes go on; a restart (nothing left to move) keeps everything.
    let body = json!({"ts": 1_700_000_100_000i64, "values": {"v": 100}});
    assert_eq!(post_telemetry(&s.base, &dev, body.to_string()).await.0, 200);
    assert!(s.terminate().success());
    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (_, v) = get_json(
        &s.base,
        &token,
        &format!("/api/v1/devices/{id}/telemetry?keys=v&limit=1000"),
    )
    .await;
    assert_eq!(v["v"].as_array().unwrap().len(), 21);
}

//! Tributary's engine across restarts: sealed blocks are read back, the
//! durable LSN says where replay starts, deletions hold, and damage is
//! contained.

use std::time::Duration;

use tributary_model::{Batch, DeviceId, Point, TenantId, Value};
use tributary_store::{Engine, EngineConfig, Order, RawQuery, SeriesReader, SeriesWriter};

fn batch(t: TenantId, d: DeviceId, key: &str, from: i64, n: i64) -> Batch {
    Batch {
        tenant: t,
        device: d,
        points: (from..from + n)
            .map(|i| Point {
                key: key.into(),
                ts: i * 1_000_000_000,
                value: Value::Float(i as f64 / 4.0),
            })
            .collect(),
    }
}

fn all() -> RawQuery {
    RawQuery {
        keys: vec![],
        from: i64::MIN,
        to: i64::MAX,
        limit: u32::MAX,
        order: Order::Asc,
    }
}

fn config(points: usize) -> EngineConfig {
    EngineConfig {
        max_head_points: points,
        seal_interval: Duration::from_secs(3600),
        ..EngineConfig::default()
    }
}

#[tokio::test]
async fn sealed_data_survives_a_restart_and_replay_starts_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (t, d) = (TenantId::new(), DeviceId::new());
    {
        let e = Engine::open(dir.path(), config(100)).await.unwrap();
        assert_eq!(e.applied_lsn().await.unwrap(), 0);
        for lsn in 1..=10u64 {
            let b = batch(t, d, "v", (lsn as i64 - 1) * 30, 30);
            e.apply(&[(lsn, &b)]).await.unwrap();
        }
        // Sealing runs in the background; close waits for everything.
        e.close().await;
        assert_eq!(e.applied_lsn().await.unwrap(), 10);
    }
    let e = Engine::open(dir.path(), config(100)).await.unwrap();
    assert_eq!(e.applied_lsn().await.unwrap(), 10, "replay starts after 10");
    let r = e.query(t, d, &all()).await.unwrap();
    assert_eq!(r["v"].len(), 300);
    assert_eq!(r["v"][299].value, Value::Float(299.0 / 4.0));
    let latest = e.latest(t, d, &[]).await.unwrap();
    assert_eq!(latest["v"].ts, 299 * 1_000_000_000);
    // Overwrites across blocks and head: the newest write wins.
    let over = Batch {
        tenant: t,
        device: d,
        points: vec![Point {
            key: "v".into(),
            ts: 5 * 1_000_000_000,
            value: Value::Int(-1),
        }],
    };
    e.apply(&[(11, &over)]).await.unwrap();
    let r = e.query(t, d, &all()).await.unwrap();
    assert_eq!(r["v"][5].value, Value::Int(-1));
    assert_eq!(r["v"].len(), 300);
    let changes = e.changes_since(t, d, 10, 100).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].lsn, changes[0].sample.value.clone()),
        (11, Value::Int(-1))
    );
}

#[tokio::test]
async fn unsealed_points_are_not_durable_until_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (t, d) = (TenantId::new(), DeviceId::new());
    {
        let e = Engine::open(dir.path(), config(1000)).await.unwrap();
        e.apply(&[(1, &batch(t, d, "v", 0, 10))]).await.unwrap();
        assert_eq!(
            e.query(t, d, &all()).await.unwrap()["v"].len(),
            10,
            "visible at once"
        );
        assert_eq!(e.durable_lsn(), 0, "but only in memory (and the log)");
        // Dropped without close: as after a crash.
    }
    let e = Engine::open(dir.path(), config(1000)).await.unwrap();
    assert_eq!(
        e.applied_lsn().await.unwrap(),
        0,
        "the log must replay from the start"
    );
    assert!(e.query(t, d, &all()).await.unwrap().is_empty());
}

#[tokio::test]
async fn deletes_hold_across_restarts_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let (t, d, other) = (TenantId::new(), DeviceId::new(), DeviceId::new());
    let old = batch(t, d, "v", 0, 10);
    {
        let e = Engine::open(dir.path(), config(5)).await.unwrap();
        e.apply(&[(1, &old), (2, &batch(t, other, "v", 0, 10))])
            .await
            .unwrap();
        e.close().await;
        assert_eq!(e.delete_device(t, d).await.unwrap(), 1);
        assert!(e.query(t, d, &all()).await.unwrap().is_empty());
    }
    let e = Engine::open(dir.path(), config(5)).await.unwrap();
    assert!(
        e.query(t, d, &all()).await.unwrap().is_empty(),
        "sealed data stays deleted"
    );
    // A replay of the log from before the delete does not bring it back...
    e.apply(&[(1, &old)]).await.unwrap();
    assert!(e.query(t, d, &all()).await.unwrap().is_empty());
    // ...but new writes after it count, and the other device is untouched.
    e.apply(&[(3, &batch(t, d, "v", 100, 2))]).await.unwrap();
    assert_eq!(e.query(t, d, &all()).await.unwrap()["v"].len(), 2);
    assert_eq!(e.query(t, other, &all()).await.unwrap()["v"].len(), 10);
}

#[tokio::test]
async fn a_damaged_block_is_reported_and_the_rest_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (t, a, b) = (TenantId::new(), DeviceId::new(), DeviceId::new());
    {
        let e = Engine::open(dir.path(), config(1_000_000)).await.unwrap();
        e.apply(&[(1, &batch(t, a, "v", 0, 50))]).await.unwrap();
        e.close().await;
        e.apply(&[(2, &batch(t, b, "v", 0, 50))]).await.unwrap();
        e.close().await;
    }
    // Damage the first block's footer; leave a stray half-written block behind.
    let mut blocks: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "blk"))
        .collect();
    blocks.sort();
    assert_eq!(blocks.len(), 2);
    let bytes = std::fs::read(&blocks[0]).unwrap();
    std::fs::write(&blocks[0], &bytes[..bytes.len() - 1]).unwrap();
    std::fs::write(dir.path().join("0000000000000099.blk"), b"partial").unwrap();

    let e = Engine::open(dir.path(), config(1000)).await.unwrap();
    assert!(e.query(t, a, &all()).await.unwrap().is_empty());
    assert_eq!(e.query(t, b, &all()).await.unwrap()["v"].len(), 50);
    assert!(
        !dir.path().join("0000000000000099.blk").exists(),
        "strays are removed"
    );
}

#[tokio::test]
async fn compaction_merges_blocks_and_keeps_every_newest_point() {
    let dir = tempfile::tempdir().unwrap();
    let (t, d) = (TenantId::new(), DeviceId::new());
    let blocks = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "blk"))
            .count()
    };
    {
        let e = Engine::open(dir.path(), config(1_000_000)).await.unwrap();
        // 20 seals; every 5th batch rewrites timestamp 0 with a newer value.
        for lsn in 1..=20u64 {
            let mut b = batch(t, d, "v", lsn as i64 * 10, 10);
            if lsn % 5 == 0 {
                b.points.push(Point {
                    key: "v".into(),
                    ts: 0,
                    value: Value::Int(lsn as i64),
                });
            }
            e.apply(&[(lsn, &b)]).await.unwrap();
            e.close().await;
        }
        assert!(
            blocks(dir.path()) < 10,
            "{} block files after 20 seals",
            blocks(dir.path())
        );
        let r = e.query(t, d, &all()).await.unwrap();
        assert_eq!(r["v"].len(), 201);
        assert_eq!(
            r["v"][0].value,
            Value::Int(20),
            "the newest rewrite of ts 0 wins"
        );
    }
    let e = Engine::open(dir.path(), config(1_000_000)).await.unwrap();
    let r = e.query(t, d, &all()).await.unwrap();
    assert_eq!(r["v"].len(), 201);
    assert_eq!(r["v"][0].value, Value::Int(20));
    assert_eq!(r["v"][200].ts, 209 * 1_000_000_000);
}

/// Aggregates over sealed blocks come from rollups where a chunk is alone in
/// its time range, and from points where writes overlap; both agree with a
/// plain computation, including a point rewritten after it was sealed.
#[tokio::test]
async fn aggregates_from_rollups_match_the_points() {
    use tributary_store::{AggQuery, Aggregate};
    let dir = tempfile::tempdir().unwrap();
    let (t, d) = (TenantId::new(), DeviceId::new());
    let e = Engine::open(dir.path(), config(1_000_000)).await.unwrap();
    // Six hours of one point per second in three sealed blocks, then a rewrite
    // of one point of the first block (it stays in the head).
    let hour = 3600i64;
    for part in 0..3i64 {
        let b = batch(t, d, "v", part * 2 * hour, 2 * hour);
        e.apply(&[(part as u64 + 1, &b)]).await.unwrap();
        e.close().await;
    }
    let rewrite = Batch {
        tenant: t,
        device: d,
        points: vec![Point {
            key: "v".into(),
            ts: 10 * 1_000_000_000,
            value: Value::Float(1000.0),
        }],
    };
    e.apply(&[(4, &rewrite)]).await.unwrap();
    let expected = |h: i64| -> f64 {
        let mut sum: f64 = (h * hour..(h + 1) * hour).map(|i| i as f64 / 4.0).sum();
        if h == 0 {
            sum += 1000.0 - 10.0 / 4.0;
        }
        sum / hour as f64
    };
    let q = AggQuery {
        range: all(),
        agg: Aggregate::Avg,
        interval: hour * 1_000_000_000,
    };
    let r = e.aggregate(t, d, &q).await.unwrap();
    assert_eq!(r["v"].len(), 6);
    for (h, s) in r["v"].iter().enumerate() {
        let Value::Float(got) = s.value else { panic!() };
        assert!(
            (got - expected(h as i64)).abs() < 1e-9,
            "hour {h}: {got} vs {}",
            expected(h as i64)
        );
    }
    let counts = e
        .aggregate(
            t,
            d,
            &AggQuery {
                agg: Aggregate::Count,
                ..q.clone()
            },
        )
        .await
        .unwrap();
    assert!(counts["v"].iter().all(|s| s.value == Value::Int(hour)));
    let last = e
        .aggregate(
            t,
            d,
            &AggQuery {
                agg: Aggregate::Last,
                ..q.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        last["v"][5].value,
        Value::Float((6 * hour - 1) as f64 / 4.0)
    );
    // A range cutting through blocks reads points at its edges.
    let part = AggQuery {
        range: RawQuery {
            from: (hour / 2) * 1_000_000_000,
            to: (5 * hour + 10) * 1_000_000_000,
            ..all()
        },
        agg: Aggregate::Count,
        interval: hour * 1_000_000_000,
    };
    let r = e.aggregate(t, d, &part).await.unwrap();
    let total: i64 = r["v"]
        .iter()
        .map(|s| match s.value {
            Value::Int(i) => i,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 5 * hour - hour / 2 + 11);
}

/// Retention: a tenant's points before the cutoff vanish from every answer at
/// once, wholly expired block files are deleted, mostly expired ones are
/// rewritten, other tenants keep everything, and all of it holds after a
/// restart and a replay of the log.
#[tokio::test]
async fn expired_points_vanish_and_their_blocks_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let (t, other, d, o) = (
        TenantId::new(),
        TenantId::new(),
        DeviceId::new(),
        DeviceId::new(),
    );
    let cutoff = 1_000 * 1_000_000_000;
    let blocks = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".blk"))
            .collect();
        names.sort();
        names
    };
    // Block 1: only old points of `t`. Block 2: old points of both tenants,
    // a few new ones of `t`. The head: old and new points of `t`.
    let old_only = batch(t, d, "v", 0, 100);
    let mixed = [batch(t, d, "v", 900, 200), batch(other, o, "v", 0, 100)];
    let head = batch(t, d, "w", 990, 20);
    {
        let e = Engine::open(dir.path(), config(1_000_000)).await.unwrap();
        e.apply(&[(1, &old_only)]).await.unwrap();
        e.close().await;
        e.apply(&[(2, &mixed[0]), (3, &mixed[1])]).await.unwrap();
        e.close().await;
        e.apply(&[(4, &head)]).await.unwrap();
        assert_eq!(blocks(dir.path()).len(), 2);
        let done = e.expire_before(t, cutoff).await.unwrap();
        assert_eq!(done.blocks_deleted, 1, "{done:?}");
        assert_eq!(done.head_points, 10, "{done:?}");
        let r = e.query(t, d, &all()).await.unwrap();
        assert_eq!(r["v"].len(), 100, "900..1100 minus the expired 900..1000");
        assert_eq!(r["v"][0].ts, cutoff);
        assert_eq!(r["w"].len(), 10);
        assert_eq!(e.query(other, o, &all()).await.unwrap()["v"].len(), 100);
        // Late points before the cutoff are not taken in.
        e.apply(&[(5, &batch(t, d, "v", 10, 5))]).await.unwrap();
        assert_eq!(e.query(t, d, &all()).await.unwrap()["v"].len(), 100);
        // An expiry that does not move the cutoff does nothing.
        let again = e.expire_before(t, cutoff - 1).await.unwrap();
        assert_eq!(again, tributary_store::Expired::default());
        e.close().await;
    }
    let e = Engine::open(dir.path(), config(1_000_000)).await.unwrap();
    // A replay of the whole log after the restart brings nothing back.
    e.apply(&[(1, &old_only), (2, &mixed[0]), (3, &mixed[1]), (4, &head)])
        .await
        .unwrap();
    let r = e.query(t, d, &all()).await.unwrap();
    assert_eq!((r["v"].len(), r["w"].len()), (100, 10));
    assert_eq!(
        e.latest(t, d, &[]).await.unwrap()["v"].ts,
        1_099 * 1_000_000_000
    );
    assert_eq!(e.query(other, o, &all()).await.unwrap()["v"].len(), 100);
    // Expiring everything of `t` rewrites the shared block without it.
    let done = e.expire_before(t, i64::MAX).await.unwrap();
    assert!(done.blocks_deleted + done.blocks_rewritten >= 1, "{done:?}");
    assert!(e.query(t, d, &all()).await.unwrap().is_empty());
    assert!(e.latest(t, d, &[]).await.unwrap().is_empty());
    assert_eq!(e.query(other, o, &all()).await.unwrap()["v"].len(), 100);
    e.close().await;
    drop(e);
    let e = Engine::open(dir.path(), config(1_000_000)).await.unwrap();
    assert!(e.query(t, d, &all()).await.unwrap().is_empty());
    assert_eq!(e.query(other, o, &all()).await.unwrap()["v"].len(), 100);
}

/// Long strings fill memory long before the point count does: the head is
/// sealed by its size as well.
#[tokio::test]
async fn a_head_of_long_strings_is_sealed_by_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let (t, d) = (TenantId::new(), DeviceId::new());
    let e = Engine::open(
        dir.path(),
        EngineConfig {
            max_head_points: 1_000_000,
            max_head_bytes: 64 * 1024,
            seal_interval: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    let text = "x".repeat(4096);
    for lsn in 1..=20u64 {
        let b = Batch {
            tenant: t,
            device: d,
            points: vec![Point {
                key: "log".into(),
                ts: lsn as i64,
                value: Value::Str(text.clone()),
            }],
        };
        e.apply(&[(lsn, &b)]).await.unwrap();
    }
    // 20 points of 4 KiB passed the 64 KiB bound: sealed in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while e.durable_lsn() == 0 {
        assert!(std::time::Instant::now() < deadline, "never sealed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = e.query(t, d, &all()).await.unwrap();
    assert_eq!(r["log"].len(), 20);
}

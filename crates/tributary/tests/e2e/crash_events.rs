//! kill -9 in a loop while a device writes telemetry, another writes client
//! attributes and an admin creates, re-keys and deletes devices. After each
//! restart every acknowledged event is seen by every consumer, none twice:
//! the series store (queries), the attribute store, the caches (revoked
//! tokens refused), a live client resuming where it was cut off, and the
//! `export` consumer's file (the test consumer: every event as a line).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::live_feed::{connect, send, until};

/// An admin change that was acknowledged.
#[derive(Clone, Debug)]
enum Op {
    Created {
        id: String,
    },
    /// A deletion was sent (its answer may never have come).
    Deleting {
        id: String,
    },
    Rotated {
        old: String,
    },
    Deleted {
        id: String,
        token: String,
    },
}

#[derive(Clone, Default)]
struct Acked {
    /// Timestamps of the telemetry device's acknowledged points.
    points: BTreeSet<i64>,
    /// Values of `n` of acknowledged attribute writes.
    attrs: BTreeSet<i64>,
    ops: Vec<Op>,
}

fn start(dir: &Path, export: &Path) -> Server {
    let mut o = Options::new(dir);
    o.env = vec![
        ("TRIBUTARY_TSDB_MAX_HEAD_POINTS", "300".into()),
        ("TRIBUTARY_TSDB_SEAL_INTERVAL_SECS", "1".into()),
        ("TRIBUTARY_WAL_SEGMENT_BYTES", "16384".into()),
        ("TRIBUTARY_LOG_EXPORT_PATH", export.display().to_string()),
    ];
    Server::start_with(o)
}

/// One round of load, cut off by kill -9 once enough of each kind is acked.
async fn load_then_kill_9(s: Server, round: i64, tel: &str, attr: &str, acked: &Arc<Mutex<Acked>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let admin = login(&s.base).await;
    let before = {
        let a = acked.lock().unwrap();
        (a.points.len(), a.attrs.len(), a.ops.len())
    };
    let mut tasks = Vec::new();
    {
        let (base, tel, acked, stop) =
            (s.base.clone(), tel.to_string(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            for i in 0.. {
                let ts = 1_600_000_000_000 + round * 10_000_000 + i;
                let res = http
                    .post(format!("{base}/api/v1/{tel}/telemetry"))
                    .body(json!({"ts": ts, "values": {"v": ts}}).to_string())
                    .send()
                    .await;
                if stop.load(Ordering::Relaxed) || !matches!(res, Ok(ref r) if r.status() == 200) {
                    return;
                }
                acked.lock().unwrap().points.insert(ts);
            }
        }));
    }
    {
        let (base, attr, acked, stop) = (
            s.base.clone(),
            attr.to_string(),
            acked.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = client();
            for i in 0.. {
                let n = round * 1_000_000 + i;
                let res = http
                    .post(format!("{base}/api/v1/{attr}/attributes"))
                    .json(&json!({"n": n}))
                    .send()
                    .await;
                if stop.load(Ordering::Relaxed) || !matches!(res, Ok(ref r) if r.status() == 200) {
                    return;
                }
                acked.lock().unwrap().attrs.insert(n);
            }
        }));
    }
    {
        let (base, acked, stop) = (s.base.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            let call = |method: reqwest::Method, path: String| {
                http.request(method, format!("{base}{path}"))
                    .bearer_auth(&admin)
                    .send()
            };
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let res = http
                    .post(format!("{base}/api/v1/devices"))
                    .bearer_auth(&admin)
                    .json(&json!({"name": format!("churn-{round}-{i}")}))
                    .send()
                    .await;
                let Ok(res) = res else { return };
                if res.status() != 201 {
                    return;
                }
                let d: Value = res.json().await.unwrap_or_default();
                let (id, token) = (
                    d["id"].as_str().unwrap_or_default().to_string(),
                    d["access_token"].as_str().unwrap_or_default().to_string(),
                );
                acked
                    .lock()
                    .unwrap()
                    .ops
                    .push(Op::Created { id: id.clone() });
                let Ok(res) =
                    call(reqwest::Method::POST, format!("/api/v1/devices/{id}/token")).await
                else {
                    return;
                };
                if res.status() != 200 {
                    return;
                }
                let v: Value = res.json().await.unwrap_or_default();
                let new = v["access_token"].as_str().unwrap_or_default().to_string();
                acked.lock().unwrap().ops.push(Op::Rotated { old: token });
                // Every other device is deleted; the rest stay.
                if i % 2 == 0 {
                    acked
                        .lock()
                        .unwrap()
                        .ops
                        .push(Op::Deleting { id: id.clone() });
                    let Ok(res) =
                        call(reqwest::Method::DELETE, format!("/api/v1/devices/{id}")).await
                    else {
                        return;
                    };
                    if res.status() != 204 {
                        return;
                    }
                    acked
                        .lock()
                        .unwrap()
                        .ops
                        .push(Op::Deleted { id, token: new });
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let a = acked.lock().unwrap();
        if a.points.len() >= before.0 + 300
            && a.attrs.len() >= before.1 + 30
            && a.ops.len() >= before.2 + 10
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "load too slow: {} points, {} attrs, {} ops",
            a.points.len(),
            a.attrs.len(),
            a.ops.len()
        );
    }
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
}

/// Telemetry timestamps in live messages.
fn update_ts(msgs: &[Value]) -> Vec<i64> {
    msgs.iter()
        .filter(|m| m["type"] == "update")
        .flat_map(|m| m["points"]["v"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["ts"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_a_loop_loses_no_acknowledged_event_for_any_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.jsonl");
    let data = dir.path().join("data");
    let mut s = start(&data, &export);
    let admin = login(&s.base).await;
    let (tel_id, tel) = create_device(&s.base, &admin, "crash-telemetry").await;
    let (attr_id, attr) = create_device(&s.base, &admin, "crash-attributes").await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    // What a live client subscribed to the telemetry device has received.
    let mut live_seen: Vec<i64> = Vec::new();
    let mut live_since: Option<u64> = None;

    for round in 0..3 {
        // The live client (re)subscribes, resuming where the last crash cut it off.
        let admin = login(&s.base).await;
        let mut ws = connect(&s, &admin).await;
        let mut sub = json!({"type": "subscribe", "device": tel_id});
        if let Some(since) = live_since {
            sub["since"] = json!(since);
        }
        send(&mut ws, sub).await;
        let msgs = until(&mut ws, "subscribed").await;
        live_seen.extend(update_ts(&msgs));
        // Read the feed until the kill ends it.
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = None;
            // Until the kill cuts the connection (an error, not a close).
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_secs(30), ws.next()).await
            {
                let Message::Text(t) = msg else { continue };
                let m: Value = serde_json::from_str(t.as_str()).unwrap();
                if m["type"] == "update" {
                    last = m["seq"].as_u64();
                    seen.extend(update_ts(std::slice::from_ref(&m)));
                }
            }
            (seen, last)
        });
        load_then_kill_9(s, round, &tel, &attr, &acked).await;
        let (seen, last) = tokio::time::timeout(Duration::from_secs(40), reader)
            .await
            .expect("the live reader ends with the server")
            .unwrap_or_default();
        live_seen.extend(seen);
        live_since = last.or(live_since);

        s = start(&data, &export);
        let snapshot = acked.lock().unwrap().clone();
        check(&s, &export, &tel_id, &attr_id, &snapshot).await;
    }

    // The live client: every acknowledged point once, across three crashes
    // (the points acked after its last update before the final kill come
    // with one more resume).
    let admin = login(&s.base).await;
    let mut ws = connect(&s, &admin).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "device": tel_id, "since": live_since}),
    )
    .await;
    live_seen.extend(update_ts(&until(&mut ws, "subscribed").await));
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for ts in &live_seen {
        *counts.entry(*ts).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "live updates repeated: {twice:?}");
    let a = acked.lock().unwrap();
    let missed: Vec<_> = a
        .points
        .iter()
        .filter(|ts| !counts.contains_key(ts))
        .take(5)
        .collect();
    assert!(
        missed.is_empty(),
        "{} acknowledged points never reached the live client, e.g. {missed:?}",
        a.points
            .iter()
            .filter(|ts| !counts.contains_key(ts))
            .count()
    );
}

/// What every consumer must show after a restart.
async fn check(s: &Server, export: &Path, tel_id: &str, attr_id: &str, acked: &Acked) {
    let admin = login(&s.base).await;
    // The series store: every acknowledged point, each once.
    let (st, v) = get_json(
        &s.base,
        &admin,
        &format!("/api/v1/devices/{tel_id}/telemetry?keys=v&limit=100000&order=asc"),
    )
    .await;
    assert_eq!(st, 200);
    let stored: Vec<i64> = v["v"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ts"].as_i64().unwrap())
        .collect();
    let unique: BTreeSet<i64> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "a point stored twice");
    let lost = acked.points.difference(&unique).count();
    assert_eq!(lost, 0, "{lost} acknowledged points lost");

    // The attribute store holds the last write or a later one.
    let (_, attrs) = get_json(
        &s.base,
        &admin,
        &format!("/api/v1/devices/{attr_id}/attributes?scope=client&keys=n"),
    )
    .await;
    let max = *acked.attrs.iter().max().unwrap();
    let stored_n = attrs["client"]["n"]["value"]
        .as_i64()
        .unwrap_or_else(|| panic!("no attribute n in {attrs}"));
    assert!(
        stored_n >= max,
        "attribute n is {stored_n}, the last acknowledged write was {max}"
    );

    // After the restart: re-keyed and deleted credentials are refused, the
    // devices that stay are there (the metadata store's side; the caches'
    // side, while running, is what `revocation.rs` tests).
    for op in &acked.ops {
        match op {
            Op::Created { id } => {
                let deleted = acked
                    .ops
                    .iter()
                    .any(|o| matches!(o, Op::Deleted { id: d, .. } if d == id));
                let deleting = acked
                    .ops
                    .iter()
                    .any(|o| matches!(o, Op::Deleting { id: d } if d == id));
                let (st, _) = get_json(&s.base, &admin, &format!("/api/v1/devices/{id}")).await;
                match (deleted, deleting) {
                    (true, _) => assert_eq!(st, 404, "deleted device {id} is back"),
                    // Cut off by the kill: it may or may not have happened.
                    (false, true) => assert!(st == 404 || st == 200, "device {id}: {st}"),
                    (false, false) => assert_eq!(st, 200, "device {id} is gone"),
                }
            }
            Op::Deleting { .. } => {}
            Op::Rotated { old, .. } => {
                assert_eq!(
                    post_telemetry(&s.base, old, r#"{"x":1}"#).await.0,
                    401,
                    "a rotated-away token works"
                );
            }
            Op::Deleted { token, .. } => {
                assert_eq!(
                    post_telemetry(&s.base, token, r#"{"x":1}"#).await.0,
                    401,
                    "a deleted device's token works"
                );
            }
        }
    }

    // The export consumer: every acknowledged event exactly once, in LSN order.
    let text = std::fs::read_to_string(export).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lsns: Vec<u64> = lines.iter().map(|l| l["lsn"].as_u64().unwrap()).collect();
    assert!(
        lsns.windows(2).all(|w| w[0] < w[1]),
        "export LSNs not strictly increasing"
    );
    let mut points: BTreeMap<i64, usize> = BTreeMap::new();
    let mut ns: BTreeMap<i64, usize> = BTreeMap::new();
    let mut deleted: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        match l["type"].as_str() {
            Some("telemetry") if l["device"] == tel_id => {
                for p in l["points"].as_array().unwrap() {
                    *points
                        .entry(p["ts_ns"].as_i64().unwrap() / 1_000_000)
                        .or_default() += 1;
                }
            }
            Some("attributes") if l["device"] == attr_id => {
                if let Some(n) = l["set"]["n"].as_i64() {
                    *ns.entry(n).or_default() += 1;
                }
            }
            Some("device") if l["change"] == "deleted" => {
                *deleted
                    .entry(l["device"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    assert!(
        points.values().all(|n| *n == 1),
        "a telemetry point exported twice"
    );
    assert!(
        ns.values().all(|n| *n == 1),
        "an attribute write exported twice"
    );
    assert!(
        deleted.values().all(|n| *n == 1),
        "a deletion exported twice"
    );
    assert!(
        acked.points.iter().all(|ts| points.contains_key(ts)),
        "an acknowledged point is not in the export"
    );
    assert!(
        acked.attrs.iter().all(|n| ns.contains_key(n)),
        "an acknowledged attribute write is not in the export"
    );
    for op in &acked.ops {
        if let Op::Deleted { id, .. } = op {
            assert!(
                deleted.contains_key(id),
                "the deletion of {id} is not in the export"
            );
        }
    }
}

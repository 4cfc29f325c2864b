//! WebSocket device ingest (`/api/v1/{token}/ws`), with a real WebSocket
//! client: acknowledgements in frame order once durable, errors that name
//! the key, bad frames answered or closed with a reason, and kill -9 losing
//! no acknowledged frame.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A device's ingest WebSocket.
pub async fn connect(s: &Server, token: &str) -> Ws {
    let url = format!("ws://{}/api/v1/{token}/ws", s.addr());
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next JSON reply (pings and pongs skipped); panics on a close or
/// after 10 s.
pub async fn reply(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no reply within 10 s")
            .expect("connection ended")
            .expect("read failed");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// The close frame the server ends with (code, reason), skipping replies.
pub async fn close_of(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("not closed within 10 s");
        match msg {
            Some(Ok(Message::Close(Some(f)))) => return (f.code, f.reason.to_string()),
            Some(Ok(Message::Close(None))) => panic!("closed without a reason"),
            Some(Ok(_)) => continue,
            other => panic!("ended without a close frame: {other:?}"),
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::Text(text.into().into())).await.unwrap();
}

async fn history(s: &Server, admin: &str, id: &str, keys: &str) -> Value {
    let (st, v) = get_json(
        &s.base,
        admin,
        &format!("/api/v1/devices/{id}/telemetry?keys={keys}&limit=100000&order=asc"),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v
}

/// Every ThingsBoard form is taken; replies come in frame order, numbered
/// from 1 or echoing the client's id; attributes are readable right after
/// their ack; many frames in flight at once are all acknowledged.
#[tokio::test]
async fn frames_are_acknowledged_in_order_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let admin = login(&s.base).await;
    let (id, token) = create_device(&s.base, &admin, "ws-1").await;
    let mut ws = connect(&s, &token).await;
    let t0 = 1_700_000_000_000i64;

    send_text(&mut ws, json!({"temp": 20.5}).to_string()).await;
    send_text(
        &mut ws,
        json!({"ts": t0, "values": {"temp": 21}}).to_string(),
    )
    .await;
    send_text(
        &mut ws,
        json!([{"ts": t0 + 1, "values": {"temp": 22}}, {"ts": t0 + 2, "values": {"temp": 23}}])
            .to_string(),
    )
    .await;
    send_text(
        &mut ws,
        json!({"id": "m-4", "ts": t0 + 3, "values": {"temp": 24}}).to_string(),
    )
    .await;
    send_text(
        &mut ws,
        json!({"attributes": {"fw": "1.2", "serial": "A1"}}).to_string(),
    )
    .await;
    for (i, want) in [json!(1), json!(2), json!(3), json!("m-4"), json!(5)]
        .iter()
        .enumerate()
    {
        assert_eq!(
            reply(&mut ws).await,
            json!({"type": "ack", "seq": want}),
            "reply {}",
            i + 1
        );
    }
    // Read-your-writes for the attributes, over HTTP right after the ack.
    let (st, attrs) = get_json(
        &s.base,
        &admin,
        &format!("/api/v1/devices/{id}/attributes?scope=client"),
    )
    .await;
    assert_eq!(st, 200);
    assert!(attrs.to_string().contains("\"1.2\""), "{attrs}");

    // 300 frames sent without waiting (more than one connection keeps in
    // flight): every one acknowledged, in order.
    for i in 0..300i64 {
        send_text(
            &mut ws,
            json!({"ts": t0 + 1000 + i, "values": {"n": i}}).to_string(),
        )
        .await;
    }
    for i in 0..300u64 {
        assert_eq!(reply(&mut ws).await, json!({"type": "ack", "seq": 6 + i}));
    }
    let v = history(&s, &admin, &id, "temp,n").await;
    let temps: Vec<i64> = v["temp"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["ts"].as_i64())
        .collect();
    assert_eq!(temps.len(), 5, "{v}");
    assert!(temps.contains(&(t0 + 3)), "the id frame's point is stored");
    assert_eq!(v["n"].as_array().unwrap().len(), 300);
    // The id is not stored as a key.
    let latest = history(&s, &admin, &id, "id").await;
    assert!(
        latest["id"].as_array().is_none_or(|a| a.is_empty()),
        "{latest}"
    );

    ws.close(None).await.unwrap();
}

/// Bad frames get an error naming what was wrong, in order, and store
/// nothing; the connection stays usable; a frame over the limit closes it
/// with 1009; a bad token is refused before the upgrade.
#[tokio::test]
async fn bad_frames_are_answered_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env = vec![("TRIBUTARY_HTTP_MAX_BODY_BYTES", "65536".into())];
    let s = Server::start_with(opts);
    let admin = login(&s.base).await;
    let (id, token) = create_device(&s.base, &admin, "ws-bad").await;
    let mut ws = connect(&s, &token).await;

    send_text(&mut ws, "{not json").await;
    let long_key = "k".repeat(300);
    send_text(&mut ws, format!(r#"{{"{long_key}": 1, "good": 1}}"#)).await;
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    send_text(&mut ws, json!({"attributes": {"": 1}}).to_string()).await;
    send_text(&mut ws, json!({"id": 9, "ok": 1}).to_string()).await;

    let r = reply(&mut ws).await;
    assert_eq!(
        (r["type"].as_str(), r["seq"].as_u64(), r["status"].as_u64()),
        (Some("error"), Some(1), Some(400)),
        "{r}"
    );
    assert!(!r["detail"].as_str().unwrap().is_empty());
    let r = reply(&mut ws).await;
    assert_eq!(
        (r["seq"].as_u64(), r["status"].as_u64()),
        (Some(2), Some(400)),
        "{r}"
    );
    assert!(
        r["detail"].as_str().unwrap().contains("kkkk")
            || r["field"].as_str() == Some(long_key.as_str()),
        "names the key: {r}"
    );
    let r = reply(&mut ws).await;
    assert_eq!(
        (r["seq"].as_u64(), r["status"].as_u64()),
        (Some(3), Some(400)),
        "{r}"
    );
    assert!(r["detail"].as_str().unwrap().contains("text"), "{r}");
    let r = reply(&mut ws).await;
    assert_eq!(
        (r["seq"].as_u64(), r["status"].as_u64()),
        (Some(4), Some(400)),
        "{r}"
    );
    assert_eq!(reply(&mut ws).await, json!({"type": "ack", "seq": 9}));

    // Nothing of a refused frame is stored; the good frame is.
    let v = history(&s, &admin, &id, "good,ok").await;
    assert!(v["good"].as_array().is_none_or(|a| a.is_empty()), "{v}");
    assert_eq!(v["ok"].as_array().map(Vec::len), Some(1), "{v}");

    // Over the size limit: closed, saying why; nothing stored.
    send_text(&mut ws, format!(r#"{{"huge": "{}"}}"#, "x".repeat(70_000))).await;
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, CloseCode::Size, "{reason}");
    assert!(reason.contains("larger"), "{reason}");
    let v = history(&s, &admin, &id, "huge").await;
    assert!(v["huge"].as_array().is_none_or(|a| a.is_empty()), "{v}");

    // A wrong token never gets a WebSocket.
    let url = format!("ws://{}/api/v1/not-a-token/ws", s.addr());
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // A plain GET is told to upgrade.
    let res = client()
        .get(format!("{}/api/v1/{token}/ws", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// kill -9 while four connections stream frames: after the restart every
/// acknowledged frame's point is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_frame() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let admin = login(&s.base).await;
    let (id, token) = create_device(&s.base, &admin, "ws-crash").await;
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, i64)>();
    let refused: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let mut tasks = Vec::new();
    for c in 0..4usize {
        let ws = connect(&s, &token).await;
        let (acked, refused) = (acked_tx.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let sender = tokio::spawn(async move {
                for i in 0..100_000i64 {
                    let frame = json!({"id": i, "ts": 1_600_000_000_000i64 + i, "values": {format!("c{c}"): i}});
                    if tx.send(Message::Text(frame.to_string().into())).await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(msg)) = rx.next().await {
                if let Message::Text(t) = msg {
                    let r: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    match (r["type"].as_str(), r["seq"].as_i64()) {
                        (Some("ack"), Some(seq)) => {
                            let _ = acked.send((c, seq));
                        }
                        _ => refused.lock().unwrap().push(r),
                    }
                }
            }
            sender.abort();
        }));
    }
    drop(acked_tx);
    let mut acked = BTreeSet::new();
    while acked.len() < 4000 {
        let Some(a) = acked_rx.recv().await else {
            break;
        };
        acked.insert(a);
    }
    s.kill9();
    for t in tasks {
        let _ = t.await;
    }
    while let Ok(a) = acked_rx.try_recv() {
        acked.insert(a);
    }
    assert!(
        acked.len() >= 4000,
        "only {} acks before the kill",
        acked.len()
    );
    let refused = refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "frames refused before the kill: {refused:?}"
    );

    let s = Server::start(dir.path());
    let admin = login(&s.base).await;
    let v = history(&s, &admin, &id, "c0,c1,c2,c3").await;
    let mut stored = BTreeSet::new();
    for c in 0..4usize {
        for p in v[format!("c{c}")].as_array().cloned().unwrap_or_default() {
            stored.insert((c, p["value"].as_i64().unwrap()));
        }
    }
    let lost: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged frames lost, e.g. {lost:?}",
        acked.difference(&stored).count()
    );
}

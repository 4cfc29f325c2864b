//! The live WebSocket with a real client: snapshot, updates, filters, errors.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("live message within 10 s")
            .expect("stream open")
            .expect("no error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test]
async fn snapshot_then_updates_within_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (id, dev) = create_device(&s.base, &token, "live-1").await;
    let (other_id, other_dev) = create_device(&s.base, &token, "live-2").await;
    let t0 = 1_700_000_000_000i64;
    post_telemetry(
        &s.base,
        &dev,
        json!({"ts": t0, "values": {"temp": 20.0, "hum": 40}}).to_string(),
    )
    .await;

    // Token in the Authorization header.
    let mut req = format!("ws://{}/api/v1/live", s.addr())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    send(
        &mut ws,
        json!({"type": "subscribe", "device": id, "keys": ["temp"]}),
    )
    .await;
    let snap = next_json(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["device"], id.as_str());
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["devices"].as_u64()),
        (Some("subscribed"), Some(1))
    );
    assert_eq!(
        snap["values"],
        json!({"temp": {"ts": t0, "value": 20.0}}),
        "snapshot honours the key filter"
    );

    // Updates for the subscribed device and keys only, and fast.
    post_telemetry(&s.base, &other_dev, r#"{"temp":99}"#).await;
    let mut latencies = Vec::new();
    for i in 0..20i64 {
        let sent = Instant::now();
        let body = json!({"ts": t0 + 1 + i, "values": {"temp": 21.0 + i as f64, "hum": 41}});
        assert_eq!(post_telemetry(&s.base, &dev, body.to_string()).await.0, 200);
        let acked = Instant::now();
        let up = next_json(&mut ws).await;
        latencies.push(acked.elapsed());
        assert_eq!(up["type"], "update", "{up}");
        assert_eq!(up["device"], id.as_str());
        assert_eq!(
            up["points"],
            json!({"temp": [{"ts": t0 + 1 + i, "value": 21.0 + i as f64}]})
        );
        assert!(up["seq"].as_u64().unwrap() > snap["seq"].as_u64().unwrap());
        assert!(sent.elapsed() < Duration::from_secs(5));
    }
    latencies.sort();
    // Generous bound for a debug build on a busy CI machine; the benchmark measures the real figure.
    assert!(
        latencies[latencies.len() / 2] < Duration::from_millis(250),
        "median ack→update {:?}",
        latencies[latencies.len() / 2]
    );

    // Unsubscribe stops updates; the other device was never delivered.
    send(&mut ws, json!({"type": "unsubscribe", "device": id})).await;
    assert_eq!(next_json(&mut ws).await["type"], "unsubscribed");
    post_telemetry(&s.base, &dev, r#"{"temp":1}"#).await;
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(
        next_json(&mut ws).await["type"],
        "pong",
        "no update after unsubscribe"
    );

    // All keys when none are named, token in the query string this time.
    let (mut ws2, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/live?token={token}", s.addr()))
            .await
            .unwrap();
    send(&mut ws2, json!({"type": "subscribe", "device": other_id})).await;
    let snap = next_json(&mut ws2).await;
    assert_eq!(snap["values"]["temp"]["value"], 99);
    assert_eq!(next_json(&mut ws2).await["type"], "subscribed");
    post_telemetry(&s.base, &other_dev, r#"{"a":1,"b":"x"}"#).await;
    let up = next_json(&mut ws2).await;
    assert_eq!(up["points"]["a"][0]["value"], 1);
    assert_eq!(up["points"]["b"][0]["value"], "x");
}

#[tokio::test]
async fn bad_requests_get_error_messages_and_bad_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let token = login(&s.base).await;

    for bad in ["", "?token=garbage"] {
        let err = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/live{bad}", s.addr()))
            .await
            .expect_err("refused");
        match err {
            tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 401),
            other => panic!("expected HTTP 401, got {other:?}"),
        }
    }

    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/live?token={token}", s.addr()))
            .await
            .unwrap();
    let cases = [
        (
            json!({"type": "subscribe", "device": "01234567-89ab-7def-8123-456789abcdef"}),
            "not_found",
        ),
        (json!({"type": "subscribe", "device": "nope"}), "not_found"),
        (json!({"type": "subscribe"}), "bad_request"),
        (json!({"type": "dance"}), "bad_request"),
        (
            json!({"type": "unsubscribe", "device": "01234567-89ab-7def-8123-456789abcdef"}),
            "not_found",
        ),
    ];
    for (msg, code) in cases {
        send(&mut ws, msg.clone()).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{msg}");
        let got = reply["code"].as_str().unwrap();
        assert!(
            got == code || (code == "not_found" && got == "not_subscribed"),
            "{msg}: {reply}"
        );
        assert!(!reply["detail"].as_str().unwrap().is_empty());
    }
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "bad_request");
    // The connection survives all of it.
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn expired_credentials_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env
        .push(("TRIBUTARY_ACCESS_TOKEN_TTL_SECS", "2".into()));
    let s = Server::start_with(opts);
    let token = login(&s.base).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/live?token={token}", s.addr()))
            .await
            .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(frame) = msg {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed before the timeout")
    .expect("a close frame");
    assert_eq!(u16::from(closed.code), 4001);
    assert_eq!(closed.reason.as_str(), "token expired");
    // The same expiry applies to the REST API.
    let (st, v) = get_json(&s.base, &token, "/api/v1/devices").await;
    assert_eq!(st, 401, "{v}");
}

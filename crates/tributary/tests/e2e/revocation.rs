//! A deleted tenant, a deleted device and a rotated token stop working
//! everywhere at once: HTTP refuses the old token, open MQTT and WebSocket
//! connections are closed, new ones are refused. The periodic MQTT
//! credential check is left at its default (15 s), so what is measured is
//! the lifecycle event reaching every connection, not that timer.

use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::*;
use crate::ws_ingest::{close_of, connect};

/// How soon "at once" must be.
const AT_ONCE: Duration = Duration::from_secs(2);

/// A device's open MQTT and WebSocket connections, proven to work.
struct Open {
    mqtt: Raw,
    ws: crate::ws_ingest::Ws,
}

async fn open(s: &Server, token: &str, client_id: &str) -> Open {
    assert_eq!(post_telemetry(&s.base, token, r#"{"t":1}"#).await.0, 200);
    let (mqtt, ack) = Raw::connect(&s.mqtt, client_id, token, true);
    assert!(
        matches!(ack, Packet::ConnAck(ref a) if a.code == ConnectReturnCode::Success),
        "{ack:?}"
    );
    let ws = connect(s, token).await;
    Open { mqtt, ws }
}

/// Everything `token` had is gone, within [`AT_ONCE`] of the change.
async fn assert_revoked(s: &Server, token: &str, mut open: Open, client_id: &str) {
    let changed = Instant::now();
    // The open connections are closed, saying why.
    let (code, reason) = close_of(&mut open.ws).await;
    assert_eq!(code, CloseCode::Policy, "{reason}");
    assert!(reason.contains("revoked"), "{reason}");
    open.mqtt.sock.set_read_timeout(Some(AT_ONCE)).unwrap();
    while open.mqtt.read().is_some() {}
    assert!(
        changed.elapsed() < AT_ONCE,
        "closed only after {:?}",
        changed.elapsed()
    );
    // Nothing new gets in.
    assert_eq!(post_telemetry(&s.base, token, r#"{"t":2}"#).await.0, 401);
    let res = client()
        .post(format!("{}/api/v1/{token}/attributes", s.base))
        .json(&json!({"fw": "1.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let (_, ack) = Raw::connect(&s.mqtt, &format!("{client_id}-again"), token, true);
    assert!(
        matches!(ack, Packet::ConnAck(ref a) if a.code != ConnectReturnCode::Success),
        "{ack:?}"
    );
    let url = format!("ws://{}/api/v1/{token}/ws", s.addr());
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn a_deleted_tenants_device_tokens_stop_working() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let admin = Api::new(&s.base, &login(&s.base).await);
    let other = second_tenant(&admin, "doomed").await;
    let (_, token) = create_device(&s.base, &other.token, "doomed-1").await;
    let conns = open(&s, &token, "doomed").await;
    // A broker client of the tenant, with one of its API keys.
    let key = api_key(&other, "doomed-broker", "write").await;
    let (mut broker_client, ack) = Raw::connect(&s.mqtt, "doomed-broker", &key, true);
    assert!(
        matches!(ack, Packet::ConnAck(ref a) if a.code == ConnectReturnCode::Success),
        "{ack:?}"
    );
    other.must("DELETE", "/api/v1/tenant", None, 204).await;
    let changed = Instant::now();
    assert_revoked(&s, &token, conns, "doomed").await;
    broker_client.sock.set_read_timeout(Some(AT_ONCE)).unwrap();
    while broker_client.read().is_some() {}
    assert!(
        changed.elapsed() < 2 * AT_ONCE,
        "the API key client was kept for {:?}",
        changed.elapsed()
    );
}

#[tokio::test]
async fn a_deleted_device_and_a_rotated_token_stop_working_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let admin = Api::new(&s.base, &login(&s.base).await);

    let (id, token) = create_device(&s.base, &admin.token, "gone").await;
    let (_, bystander) = create_device(&s.base, &admin.token, "bystander").await;
    let mut spared = open(&s, &bystander, "bystander").await;
    let conns = open(&s, &token, "gone").await;
    admin
        .must("DELETE", &format!("/api/v1/devices/{id}"), None, 204)
        .await;
    assert_revoked(&s, &token, conns, "gone").await;

    let (id, old) = create_device(&s.base, &admin.token, "rekeyed").await;
    let conns = open(&s, &old, "rekeyed").await;
    let view = admin
        .must("POST", &format!("/api/v1/devices/{id}/token"), None, 200)
        .await;
    assert_revoked(&s, &old, conns, "rekeyed").await;
    let new = view["access_token"].as_str().unwrap();
    assert_eq!(post_telemetry(&s.base, new, r#"{"t":3}"#).await.0, 200);

    // Another device of the tenant kept its connections through all of it.
    crate::ws_ingest::send_text(&mut spared.ws, r#"{"t":4}"#).await;
    assert_eq!(
        crate::ws_ingest::reply(&mut spared.ws).await,
        json!({"type": "ack", "seq": 1})
    );
    spared.mqtt.send(Packet::PingReq);
    assert!(matches!(spared.mqtt.read(), Some(Packet::PingResp)));
}

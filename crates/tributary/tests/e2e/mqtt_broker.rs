//! The broker inside each tenant, MQTT 5, and the rest of the device API, with
//! real clients: paho-mqtt scenarios (`mqtt_clients.py`), mosquitto_pub over
//! TLS, and raw packets where a client library would hide what is tested
//! (unacknowledged deliveries, garbage bytes).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Packet, PubAck, Subscribe, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};

use crate::common::*;

/// Whether a tool is installed; in CI a missing one is a failure, locally a skip.
fn available(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have {what} (see .ci/run)"
        );
        eprintln!("skipping: {what} is not installed");
    }
    ok
}

fn have_paho() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import paho.mqtt"])
        .output()
        .is_ok_and(|o| o.status.success());
    available(ok, "paho-mqtt")
}

fn have_command(tool: &str) -> bool {
    available(Command::new(tool).arg("--help").output().is_ok(), tool)
}

/// A server with a write key, a read key, a key of another tenant and a device.
struct Setup {
    s: Server,
    api: Api,
    key: String,
    device_id: String,
    device_token: String,
    ctx: Value,
}

async fn key_of_scope(api: &Api, scope: &str) -> String {
    api_key(api, &format!("mqtt-{scope}"), scope).await
}

async fn setup(dir: &std::path::Path, env: Vec<(&'static str, String)>) -> Setup {
    let mut opts = Options::new(dir);
    opts.env = env;
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let key = key_of_scope(&api, "write").await;
    let read_key = key_of_scope(&api, "read").await;
    let other = second_tenant(&api, "other").await;
    let other_key = key_of_scope(&other, "write").await;
    let (device_id, device_token) = create_device(&s.base, &api.token, "thermostat").await;
    api.must(
        "POST",
        &format!("/api/v1/devices/{device_id}/attributes/shared"),
        Some(json!({"interval": 30})),
        204,
    )
    .await;
    let (host, port) = s.mqtt.rsplit_once(':').unwrap();
    let ctx = json!({
        "host": host, "port": port, "base": s.base, "token": api.token,
        "key": key, "read_key": read_key, "other_key": other_key,
        "device_id": device_id, "device_token": device_token,
    });
    Setup {
        s,
        api,
        key,
        device_id,
        device_token,
        ctx,
    }
}

/// Runs one paho scenario of `mqtt_clients.py` and fails with its output.
fn scenario(name: &str, ctx: &Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/mqtt_clients.py");
    let out = Command::new("python3")
        .args([script, name, &ctx.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("ok {name}")),
        "scenario {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn tenant_broker_routes_within_a_tenant_only() {
    if !have_paho() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = setup(dir.path(), vec![]).await;
    scenario("tenant_broker", &t.ctx);
}

#[tokio::test]
async fn shared_subscriptions_spread_messages_and_redeliver() {
    if !have_paho() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = setup(dir.path(), vec![]).await;
    scenario("shared_subscriptions", &t.ctx);
}

#[tokio::test]
async fn persistent_sessions_take_over_and_wills() {
    if !have_paho() || !have_command("mosquitto_sub") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = setup(dir.path(), vec![]).await;
    scenario("sessions", &t.ctx);
}

#[tokio::test]
async fn mqtt5_expiry_properties_aliases_and_reason_codes() {
    if !have_paho() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = setup(dir.path(), vec![]).await;
    scenario("mqtt5_features", &t.ctx);
    // The bad payload was refused and counted, the good one stored.
    let latest = t
        .api
        .must(
            "GET",
            &format!("/api/v1/devices/{}/latest", t.device_id),
            None,
            200,
        )
        .await;
    assert_eq!(latest["temp"]["value"], 1.25);
}

#[tokio::test]
async fn device_attribute_requests_shared_pushes_and_rpc() {
    if !have_paho() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = setup(dir.path(), vec![]).await;
    scenario("device_api", &t.ctx);
}

/// A client silent for 1.5 × its keep-alive is disconnected; one that pings
/// within it stays, however long it lives.
#[tokio::test]
async fn keep_alive_ends_silent_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = setup(dir.path(), vec![]).await;
    let (mqtt, token) = (t.s.mqtt.clone(), t.device_token.clone());
    tokio::task::spawn_blocking(move || {
        let (mut silent, ack) = Raw::connect_with(&mqtt, "silent", &token, true, 1, "");
        assert!(matches!(ack, Packet::ConnAck(_)));
        let (mut pinger, _) = Raw::connect_with(&mqtt, "pinger", &token, true, 1, "");
        let started = std::time::Instant::now();
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(500));
            pinger.send(Packet::PingReq);
            assert!(
                matches!(pinger.read(), Some(Packet::PingResp)),
                "a pinging client is answered and kept"
            );
        }
        assert!(started.elapsed() >= Duration::from_secs(4));
        assert!(
            silent.read().is_none(),
            "the silent client was disconnected"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn qos1_deliveries_not_acknowledged_are_resent_after_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let t = setup(dir.path(), vec![]).await;
    let mqtt = t.s.mqtt.clone();
    let key = t.key.clone();
    tokio::task::spawn_blocking(move || {
        let (mut sub, ack) = Raw::connect(&mqtt, "forgetful", &key, false);
        assert!(matches!(ack, Packet::ConnAck(a) if !a.session_present));
        let mut both = Subscribe::new("work/#", QoS::AtLeastOnce);
        both.add("bad/#/filter".into(), QoS::AtLeastOnce);
        sub.send(Packet::Subscribe(both));
        let Some(Packet::SubAck(codes)) = sub.read() else {
            panic!("expected SUBACK")
        };
        assert_eq!(
            codes.return_codes,
            vec![
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure
            ],
            "an invalid filter is refused, the valid one kept"
        );
        let (mut publisher, _) = Raw::connect(&mqtt, "publisher", &key, true);
        let mut p = rumqttc::mqttbytes::v4::Publish::new("work/1", QoS::AtLeastOnce, "job");
        p.pkid = 1;
        publisher.send(Packet::Publish(p));
        assert!(matches!(publisher.read(), Some(Packet::PubAck(a)) if a.pkid == 1));

        // Received but never acknowledged: the connection drops.
        let Some(Packet::Publish(first)) = sub.read() else {
            panic!("expected the delivery")
        };
        assert!(!first.dup);
        drop(sub);

        let (mut again, ack) = Raw::connect(&mqtt, "forgetful", &key, false);
        assert!(matches!(ack, Packet::ConnAck(a) if a.session_present));
        let Some(Packet::Publish(resent)) = again.read() else {
            panic!("expected the resend")
        };
        assert!(resent.dup, "a resend carries DUP");
        assert_eq!(
            (resent.pkid, &resent.payload[..]),
            (first.pkid, &b"job"[..])
        );
        again.send(Packet::PubAck(PubAck::new(resent.pkid)));
        // A ping answered after it: the server has read the PUBACK (a new
        // connection could otherwise take the session over first).
        again.send(Packet::PingReq);
        assert!(matches!(again.read(), Some(Packet::PingResp)));
        drop(again);

        // Acknowledged now: a third connection gets nothing more.
        let (mut third, _) = Raw::connect(&mqtt, "forgetful", &key, false);
        third.send(Packet::PingReq);
        assert!(matches!(third.read(), Some(Packet::PingResp)));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn bad_packets_close_only_their_connection_and_revoked_keys_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let t = setup(
        dir.path(),
        vec![("TRIBUTARY_MQTT_AUTH_RECHECK_SECS", "1".into())],
    )
    .await;
    let key_id = t.api.must("GET", "/api/v1/api-keys", None, 200).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "mqtt-write")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mqtt = t.s.mqtt.clone();
    let (key, device_token) = (t.key.clone(), t.device_token.clone());
    let mut survivor = tokio::task::spawn_blocking(move || {
        let (mut survivor, _) = Raw::connect(&mqtt, "survivor", &key, true);
        for garbage in [
            &[0x10, 0x05, 0x00, 0x01, b'x', 0x09, 0x09][..], // CONNECT with a bad protocol
            &[0xF0, 0x00][..],                               // reserved packet type
            &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F][..],       // malformed remaining length
        ] {
            let mut s = TcpStream::connect(&mqtt).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(garbage).unwrap();
            let mut b = [0u8; 16];
            assert!(
                matches!(s.read(&mut b), Ok(0) | Err(_)),
                "garbage {garbage:?} must close the connection"
            );
        }
        // A device publishing a packet over the size limit.
        let (mut dev, _) = Raw::connect(&mqtt, "dev", &device_token, true);
        let mut p = rumqttc::mqttbytes::v4::Publish::new(
            "v1/devices/me/telemetry",
            QoS::AtLeastOnce,
            vec![b'1'; 2 << 20],
        );
        p.pkid = 1;
        let _ = {
            let mut out = BytesMut::new();
            Packet::Publish(p).write(&mut out, 4 << 20).unwrap();
            dev.sock.write_all(&out)
        };
        assert!(
            dev.read().is_none(),
            "an oversize packet closes the connection"
        );
        survivor.send(Packet::PingReq);
        assert!(matches!(survivor.read(), Some(Packet::PingResp)));
        survivor
    })
    .await
    .unwrap();

    // Revoking the key ends the connection within the re-check interval.
    t.api
        .must("DELETE", &format!("/api/v1/api-keys/{key_id}"), None, 204)
        .await;
    let closed = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if survivor.read().is_none() {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(closed, "the revoked key's connection must be closed");
}

#[tokio::test]
async fn tls_listener_with_mosquitto_pub() {
    if !have_command("mosquitto_pub") || !have_command("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let data = dir.path().join("data");
    let mut opts = Options::new(&data);
    opts.env = vec![
        ("TRIBUTARY_MQTT_TLS_LISTEN", format!("127.0.0.1:{port}")),
        ("TRIBUTARY_MQTT_TLS_CERT", cert.display().to_string()),
        ("TRIBUTARY_MQTT_TLS_KEY", key.display().to_string()),
    ];
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, token) = create_device(&s.base, &api.token, "secure").await;
    let publish = |cafile: &std::path::Path| {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
            .args([
                "-u",
                &token,
                "-t",
                "v1/devices/me/telemetry",
                "-m",
                r#"{"sealed":1}"#,
            ])
            .arg("--cafile")
            .arg(cafile)
            .output()
            .unwrap()
    };
    let out = publish(&cert);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latest = api
        .must("GET", &format!("/api/v1/devices/{id}/latest"), None, 200)
        .await;
    assert_eq!(latest["sealed"]["value"], 1);
    // A client that does not trust the certificate cannot connect.
    let other_ca = dir.path().join("other.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=other", "-keyout"])
        .arg(dir.path().join("other.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(made.status.success());
    assert!(!publish(&other_ca).status.success());
}

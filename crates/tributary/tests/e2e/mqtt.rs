//! The MQTT device API with real clients: mosquitto_pub and the simulator.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

fn have_mosquitto_clients() -> bool {
    if Command::new("mosquitto_pub").arg("--help").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must have mosquitto-clients (see .ci/run)"
    );
    eprintln!("skipping: mosquitto_pub not installed (apt-get install mosquitto-clients)");
    false
}

/// Publishes one message; returns (success, stderr).
fn publish(s: &Server, args: &[&str], topic: &str, payload: &str, qos: &str) -> (bool, String) {
    let (host, port) = s.mqtt.rsplit_once(':').unwrap();
    let out = Command::new("mosquitto_pub")
        .args([
            "-h", host, "-p", port, "-t", topic, "-m", payload, "-q", qos, "-V", "mqttv311",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn devices_publish_telemetry_and_attributes_with_their_token() {
    if !have_mosquitto_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, token) = create_device(&s.base, &api.token, "mqtt-1").await;

    // A live subscriber sees MQTT telemetry like any other.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/api/v1/live?token={}",
        s.addr(),
        api.token
    ))
    .await
    .unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "subscribe", "device": id})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let m = ws.next().await.unwrap().unwrap();
        if m.to_text().unwrap().contains("subscribed") {
            break;
        }
    }

    for (qos, payload) in [
        ("1", r#"{"ts":1700000000000,"values":{"temp":21.5,"n":3}}"#),
        ("0", r#"{"ts":1700000001000,"values":{"temp":22}}"#),
    ] {
        let (ok, err) = publish(&s, &["-u", &token], "v1/devices/me/telemetry", payload, qos);
        assert!(ok, "QoS {qos}: {err}");
    }
    let update = loop {
        let m = ws.next().await.unwrap().unwrap();
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v["type"] == "update" {
            break v;
        }
    };
    assert_eq!(update["points"]["temp"][0]["value"], 21.5);
    // QoS 0 has no acknowledgement; give the server a moment before reading.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stored = api
        .must(
            "GET",
            &format!("/api/v1/devices/{id}/telemetry?keys=temp,n&order=asc"),
            None,
            200,
        )
        .await;
    assert_eq!(
        stored["temp"],
        json!([{"ts": 1700000000000i64, "value": 21.5}, {"ts": 1700000001000i64, "value": 22}])
    );
    assert_eq!(
        stored["n"][0]["value"], 3,
        "integers stay integers over MQTT too"
    );

    let (ok, err) = publish(
        &s,
        &["-u", &token],
        "v1/devices/me/attributes",
        r#"{"firmware":"1.4.2"}"#,
        "1",
    );
    assert!(ok, "{err}");
    let attrs = api
        .must(
            "GET",
            &format!("/api/v1/devices/{id}/attributes?scope=client"),
            None,
            200,
        )
        .await;
    assert_eq!(attrs["client"]["firmware"]["value"], "1.4.2");

    // Wrong credentials are refused at CONNECT.
    let (ok, err) = publish(
        &s,
        &["-u", "not-a-token"],
        "v1/devices/me/telemetry",
        r#"{"temp":1}"#,
        "1",
    );
    assert!(!ok);
    assert!(
        err.to_lowercase().contains("refused")
            || err.contains("not authorised")
            || err.contains("bad user name"),
        "{err}"
    );

    // A malformed payload closes the connection without a PUBACK and stores nothing.
    let (ok, _) = publish(
        &s,
        &["-u", &token],
        "v1/devices/me/telemetry",
        r#"{"temp":null}"#,
        "1",
    );
    assert!(!ok, "no PUBACK for a rejected batch");
    let (ok, _) = publish(&s, &["-u", &token], "somewhere/else", r#"{"temp":1}"#, "1");
    assert!(!ok, "devices publish only to their own topics");
    let latest = api
        .must("GET", &format!("/api/v1/devices/{id}/latest"), None, 200)
        .await;
    assert_eq!(
        latest["temp"]["value"], 22,
        "nothing of the rejected batch was stored"
    );
    let metrics = metrics_text(&s.base).await;
    assert!(
        metrics.contains(r#"tributary_batches_rejected_total{reason="invalid"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn mqtt_username_password_credentials_honour_the_client_id_binding() {
    if !have_mosquitto_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, _) = create_device(&s.base, &api.token, "mqtt-2").await;
    api.must(
        "PUT",
        &format!("/api/v1/devices/{id}/mqtt-credentials"),
        Some(json!({"username": "line-7", "password": "mqtt-secret-7", "client_id": "plc-7"})),
        200,
    )
    .await;
    let (ok, err) = publish(
        &s,
        &["-u", "line-7", "-P", "mqtt-secret-7", "-i", "plc-7"],
        "v1/devices/me/telemetry",
        r#"{"rpm":900}"#,
        "1",
    );
    assert!(ok, "{err}");
    let (ok, _) = publish(
        &s,
        &["-u", "line-7", "-P", "mqtt-secret-7", "-i", "intruder"],
        "v1/devices/me/telemetry",
        r#"{"rpm":1}"#,
        "1",
    );
    assert!(!ok, "another client id is refused");
    let (ok, _) = publish(
        &s,
        &["-u", "line-7", "-P", "wrong-password", "-i", "plc-7"],
        "v1/devices/me/telemetry",
        r#"{"rpm":1}"#,
        "1",
    );
    assert!(!ok, "a wrong password is refused");
    let latest = api
        .must("GET", &format!("/api/v1/devices/{id}/latest"), None, 200)
        .await;
    assert_eq!(latest["rpm"]["value"], 900);
}

#[tokio::test]
async fn the_simulator_over_mqtt_is_fully_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let scenario = "seed = 5\n[fleet]\ncount = 3\nname = \"m-{i}\"\n[rate]\ninterval_ms = 1000\nbatch = 4\nreadings = 12\n[[keys]]\nname = \"v\"\nsignal = \"random_walk\"\nmin = 0.0\nmax = 10.0\ndecimals = 2\n";
    let path = dir.path().join("s.toml");
    std::fs::write(&path, scenario).unwrap();
    let out = Command::new(binary())
        .args([
            "simulate",
            "--protocol",
            "mqtt",
            "--qos",
            "1",
            "--fast",
            "--json",
            "--scenario",
        ])
        .arg(&path)
        .args([
            "--target",
            &s.base,
            "--mqtt",
            &s.mqtt,
            "--email",
            ADMIN_EMAIL,
            "--password",
            ADMIN_PASSWORD,
            "--start-ms",
            "1700000000000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["acked_points"], 36, "{report}");
    let expected = tributary_sim::expected_points(
        &tributary_sim::Scenario::parse(scenario).unwrap(),
        5,
        1_700_000_000_000,
    );
    for i in 0..3 {
        let devices = api
            .must("GET", &format!("/api/v1/devices?name=m-{i}"), None, 200)
            .await;
        let id = devices["data"][0]["id"].as_str().unwrap();
        let stored = api
            .must(
                "GET",
                &format!("/api/v1/devices/{id}/telemetry?order=asc&limit=100"),
                None,
                200,
            )
            .await;
        let got: Vec<(i64, Value)> = stored["v"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["ts"].as_i64().unwrap(), p["value"].clone()))
            .collect();
        assert_eq!(
            got, expected[&i]["v"],
            "device {i}: every PUBACKed point, nothing else"
        );
    }
}

#[tokio::test]
async fn mqtt_over_websocket_with_paho() {
    let paho = Command::new("python3")
        .args(["-c", "import paho.mqtt"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !paho {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have paho-mqtt (see .ci/run)"
        );
        eprintln!("skipping: pip install paho-mqtt");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, token) = create_device(&s.base, &api.token, "ws-device").await;
    let (host, port) = s.addr().rsplit_once(':').unwrap();
    let script = r#"
import sys, paho.mqtt.client as mqtt
host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-ws", transport="websockets")
c.ws_set_options(path="/mqtt")
c.username_pw_set(token)
rc = c.connect(host, port, keepalive=10)
c.loop_start()
info = c.publish("v1/devices/me/telemetry", '{"ts":1700000000000,"values":{"level":7.5}}', qos=1)
info.wait_for_publish(timeout=10)
print("acked" if info.is_published() else "not acked")
c.disconnect()
c.loop_stop()
"#;
    let out = Command::new("python3")
        .args(["-c", script, host, port, &token])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("acked") && !stdout.contains("not acked"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let latest = api
        .must("GET", &format!("/api/v1/devices/{id}/latest"), None, 200)
        .await;
    assert_eq!(latest["level"]["value"], 7.5);
}

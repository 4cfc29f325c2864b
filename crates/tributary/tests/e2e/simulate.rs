//! `tributary simulate` against a real Tributary server and a real Mosquitto broker.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use tributary_sim::scenario::Scenario;

use crate::common::*;

const SCENARIO: &str = r#"
seed = 3
[fleet]
count = 4
name = "sim-{i}"
labels = { site = "test" }
[rate]
interval_ms = 1000
batch = 5
readings = 20
[[keys]]
name = "temp"
signal = "sine"
offset = 20.0
amplitude = 3.0
period_secs = 30
noise = 0.1
decimals = 3
[[keys]]
name = "count"
signal = "counter"
[[keys]]
name = "mode"
signal = "enum"
values = ["a", "b", "c"]
p = 0.3
[[keys]]
name = "pos"
signal = "gps"
[[events]]
kind = "offline"
devices = [1]
at_secs = 5.0
duration_secs = 5.0
[[events]]
kind = "dropout"
key = "mode"
at_secs = 0.0
duration_secs = 3.0
"#;

const START_MS: i64 = 1_750_000_000_000;

fn write_scenario(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_scenario_against_tributary_is_fully_queryable_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let key = api
        .must(
            "POST",
            "/api/v1/api-keys",
            Some(serde_json::json!({"name": "sim", "scope": "write"})),
            201,
        )
        .await;
    let path = write_scenario(dir.path(), SCENARIO);
    let key = key["key"].as_str().unwrap();
    let report = simulate(&path, &s.base, key, &["--latency"], START_MS);

    let scenario = Scenario::parse(SCENARIO).unwrap();
    let expected = tributary_sim::expected_points(&scenario, 3, START_MS);
    let total: usize = expected
        .values()
        .flat_map(|k| k.values())
        .map(Vec::len)
        .sum();
    assert_eq!(report["acked_points"], total as u64, "{report}");
    assert_eq!(report["sent_points"], report["acked_points"]);
    assert!(report["rejected"].as_object().unwrap().is_empty());
    assert!(
        report["latency_ms"]["samples"].as_u64().unwrap() > 0,
        "latency measured on the live feed: {report}"
    );

    // Every acknowledged point is stored, and nothing else.
    assert_stored(&api, &expected, START_MS).await;
    let offline: usize = expected[&1]["temp"].len();
    assert_eq!(offline, 15, "device 1 was offline for 5 of 20 readings");

    // Running again takes the devices over (new tokens) instead of failing;
    // this time over WebSocket ingest, into the next day.
    let next_day = START_MS + 86_400_000;
    let report = simulate(
        &path,
        &s.base,
        key,
        &["--protocol", "ws", "--quiet"],
        next_day,
    );
    assert_eq!(report["acked_points"], total as u64, "{report}");
    assert!(report["rejected"].as_object().unwrap().is_empty());
    let expected = tributary_sim::expected_points(&scenario, 3, next_day);
    assert_stored(&api, &expected, next_day).await;
}

/// Runs `tributary simulate --fast --json` of the scenario at `path`
/// against `base` from `start_ms`; its report.
fn simulate(path: &std::path::Path, base: &str, key: &str, extra: &[&str], start_ms: i64) -> Value {
    let out = Command::new(binary())
        .args(["simulate", "--scenario"])
        .arg(path)
        .args(["--target", base, "--api-key", key, "--fast", "--json"])
        .args(extra)
        .args(["--start-ms", &start_ms.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Per device, per key: the (ts, value) pairs the simulator sent.
type Expected =
    std::collections::BTreeMap<usize, std::collections::BTreeMap<String, Vec<(i64, Value)>>>;

/// The fleet's devices hold exactly `expected` from `from` on (one day).
async fn assert_stored(api: &Api, expected: &Expected, from: i64) {
    let devices = api
        .must(
            "GET",
            "/api/v1/devices?label=site=test&sort=name",
            None,
            200,
        )
        .await;
    let devices = devices["data"].as_array().unwrap();
    assert_eq!(devices.len(), 4);
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(d["name"], format!("sim-{i}"));
        let id = d["id"].as_str().unwrap();
        let stored = api
            .must(
                "GET",
                &format!(
                    "/api/v1/devices/{id}/telemetry?limit=1000&order=asc&from={from}&to={}",
                    from + 86_400_000
                ),
                None,
                200,
            )
            .await;
        let want = &expected[&i];
        let stored_keys: Vec<&String> = stored.as_object().unwrap().keys().collect();
        assert_eq!(
            stored_keys,
            want.keys().collect::<Vec<_>>(),
            "device {i}: keys (pos_lat/pos_lon from GPS)"
        );
        for (k, points) in want {
            let got: Vec<(i64, Value)> = stored[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p["ts"].as_i64().unwrap(), p["value"].clone()))
                .collect();
            assert_eq!(&got, points, "device {i} key {k}");
        }
    }
}

#[test]
fn bad_scenarios_get_errors_that_point_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        ("[fleet]\ncount = 2\n\n[[keys]]\nname = \"t\"\nsignal = \"wobble\"\n", "line 6"),
        ("[fleet]\ncount = 2\ncolour = 1\n", "line 3"),
        ("[fleet]\ncount = 2\n[[keys]]\nname = \"t\"\nsignal = \"sine\"\n[[events]]\nkind = \"spike\"\nkey = \"nope\"\nat_secs = 1\nduration_secs = 1\n", "line 6"),
        ("[fleet]\ncount = 2\n", "no [[keys]]"),
        ("not toml at all =", "line 1"),
    ] {
        let path = write_scenario(dir.path(), text);
        let out = Command::new(binary()).args(["simulate", "--no-provision", "--scenario"]).arg(&path).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text:?}: {err}");
        assert!(err.contains("scenario.toml"), "names the file: {err}");
    }
}

#[test]
fn against_mosquitto_a_real_subscriber_receives_every_message() {
    if Command::new("mosquitto").arg("-h").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have mosquitto (see .ci/run)"
        );
        eprintln!(
            "skipping: mosquitto not installed (apt-get install mosquitto mosquitto-clients)"
        );
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        conf.path(),
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .unwrap();
    let mut broker = Command::new("mosquitto")
        .arg("-c")
        .arg(conf.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));

    let scenario = Scenario::parse(SCENARIO).unwrap();
    let expected = tributary_sim::expected_points(&scenario, 3, START_MS);
    let messages: usize = 4 * 4 - 1; // 20 readings in batches of 5 per device; device 1 loses one batch offline
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "sim/#",
            "-v",
            "-q",
            "1",
            "-C",
            &messages.to_string(),
            "-W",
            "20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(dir.path(), SCENARIO);
    let out = Command::new(binary())
        .args([
            "simulate",
            "--no-provision",
            "--protocol",
            "mqtt",
            "--qos",
            "1",
            "--topic",
            "sim/{device}/telemetry",
            "--fast",
            "--json",
            "--scenario",
        ])
        .arg(&path)
        .args([
            "--mqtt",
            &format!("127.0.0.1:{port}"),
            "--start-ms",
            &START_MS.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["acked_messages"], messages as u64, "{report}");

    let lines: Vec<String> = BufReader::new(sub.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    let _ = sub.wait();
    let _ = broker.kill();
    let _ = broker.wait();
    assert_eq!(lines.len(), messages, "the subscriber got every message");
    let mut received = 0;
    for line in &lines {
        let (topic, payload) = line.split_once(' ').unwrap();
        let device: usize = topic
            .trim_start_matches("sim/sim-")
            .trim_end_matches("/telemetry")
            .parse()
            .unwrap();
        let readings: Vec<Value> = serde_json::from_str(payload).unwrap();
        for r in readings {
            let ts = r["ts"].as_i64().unwrap();
            let temp = expected[&device]["temp"]
                .iter()
                .find(|(t, _)| *t == ts)
                .map(|(_, v)| v.clone());
            assert_eq!(
                Some(r["values"]["temp"].clone()),
                temp,
                "payload as generated"
            );
            received += 1;
        }
    }
    assert_eq!(
        received,
        expected.values().map(|k| k["temp"].len()).sum::<usize>()
    );
}

#[tokio::test]
async fn a_csv_recording_is_replayed_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let csv = dir.path().join("recording.csv");
    std::fs::write(
        &csv,
        "ts,device,key,value\n1700000000000,boiler,temp,61.5\n1700000000000,boiler,on,true\n1700000000500,pump,rpm,1200\n1700000001000,boiler,temp,62\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["simulate", "--replay"])
        .arg(&csv)
        .args([
            "--speed",
            "4",
            "--target",
            &s.base,
            "--password",
            ADMIN_PASSWORD,
            "--email",
            ADMIN_EMAIL,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["acked_points"], 4);
    assert!(
        report["seconds"].as_f64().unwrap() >= 0.25,
        "paced at 4x the recorded second: {report}"
    );
    let devices = api
        .must("GET", "/api/v1/devices?name=boiler", None, 200)
        .await;
    let id = devices["data"][0]["id"].as_str().unwrap();
    let stored = api
        .must(
            "GET",
            &format!("/api/v1/devices/{id}/telemetry?order=asc"),
            None,
            200,
        )
        .await;
    assert_eq!(
        stored["temp"],
        serde_json::json!([{"ts": 1700000000000i64, "value": 61.5}, {"ts": 1700000001000i64, "value": 62}])
    );
    assert_eq!(stored["on"][0]["value"], true);

    std::fs::write(&csv, "1700000000000,boiler,temp\n").unwrap();
    let out = Command::new(binary())
        .args(["simulate", "--no-provision", "--replay"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1: expected 4 columns"));
}

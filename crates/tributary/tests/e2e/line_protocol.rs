//! InfluxDB line protocol: raw HTTP (v1 and v2, gzip, precision, partial
//! writes, auth) and the official InfluxDB client libraries for Python (v1
//! `influxdb`, v2 `influxdb-client`) writing unchanged.

use std::io::Write;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

async fn key(api: &Api, scope: &str) -> String {
    api_key(api, &format!("influx-{scope}"), scope).await
}

/// The device a series key created, by name.
async fn device_named(api: &Api, name: &str) -> Value {
    let list = api
        .must("GET", "/api/v1/devices?limit=1000", None, 200)
        .await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no device {name:?} in {list}"))
}

/// Posts a v1 line-protocol `body` that must be refused (400); the message.
async fn refused(http: &reqwest::Client, url: &str, body: String) -> String {
    let res = http.post(url).body(body).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    err["error"].as_str().unwrap().to_string()
}

async fn telemetry(api: &Api, id: &str, keys: &str) -> Value {
    api.must(
        "GET",
        &format!("/api/v1/devices/{id}/telemetry?keys={keys}&order=asc&limit=1000"),
        None,
        200,
    )
    .await
}

#[tokio::test]
async fn v1_and_v2_writes_create_devices_and_store_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let writer = key(&api, "write").await;
    let http = client();

    // v1 with p=<key>, millisecond precision, every field type.
    let body = "weather,city=Zurich,unit=C temp=21.5,count=3i,ok=true,note=\"sunny, warm\" 1700000000000\n\
                weather,city=Zurich,unit=C temp=22 1700000001000\n\
                weather,city=Bern,unit=C temp=19.25 1700000000000\n";
    let res = http
        .post(format!(
            "{}/write?db=telegraf&precision=ms&u=any&p={writer}",
            s.base
        ))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    let zurich = device_named(&api, "weather,city=Zurich,unit=C").await;
    assert_eq!(
        zurich["labels"],
        json!({"city": "Zurich", "measurement": "weather", "unit": "C"})
    );
    let id = zurich["id"].as_str().unwrap();
    let v = telemetry(&api, id, "temp,count,ok,note").await;
    assert_eq!(
        v["temp"],
        json!([{"ts": 1700000000000i64, "value": 21.5}, {"ts": 1700000001000i64, "value": 22.0}])
    );
    assert_eq!(v["count"][0]["value"], 3);
    assert!(v["count"][0]["value"].is_i64(), "3i stays an integer");
    assert_eq!(v["ok"][0]["value"], true);
    assert_eq!(v["note"][0]["value"], "sunny, warm");

    // v2 with a Token header, a gzip body and second precision.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"weather,city=Bern,unit=C temp=18.5 1700000100\n")
        .unwrap();
    let res = http
        .post(format!(
            "{}/api/v2/write?org=o&bucket=b&precision=s",
            s.base
        ))
        .header("Authorization", format!("Token {writer}"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    let bern = device_named(&api, "weather,city=Bern,unit=C").await;
    let v = telemetry(&api, bern["id"].as_str().unwrap(), "temp").await;
    assert_eq!(v["temp"].as_array().unwrap().len(), 2);
    assert_eq!(v["temp"][1], json!({"ts": 1700000100000i64, "value": 18.5}));

    // A partial write names the bad line; the good ones are stored.
    let v1_write = format!("{}/write?precision=ms&p={writer}", s.base);
    let msg = refused(&http, &v1_write, "weather,city=Zurich,unit=C temp=30 1700000002000\nbroken line here\nweather,city=Zurich,unit=C temp=31 1700000003000".into()).await;
    assert!(
        msg.starts_with("partial write:")
            && msg.contains("line 2")
            && msg.contains("broken line here")
            && msg.ends_with("dropped=1"),
        "{msg}"
    );
    assert_eq!(
        telemetry(&api, id, "temp").await["temp"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // A bulk body is parsed and logged in sections: line numbers run on
    // across them and every good line is stored.
    let mut bulk = String::new();
    for i in 1..=5000u64 {
        if i == 3000 || i == 4999 {
            bulk.push_str(&format!("bulk,site=a v= {i}\n"));
        } else {
            bulk.push_str(&format!("bulk,site=a v={i} {}\n", 1_700_000_000_000u64 + i));
        }
    }
    assert!(bulk.len() > 2 * 64 * 1024, "spans several sections");
    let msg = refused(&http, &v1_write, bulk).await;
    assert!(
        msg.contains("line 3000:") && msg.contains("line 4999:") && msg.ends_with("dropped=2"),
        "{msg}"
    );
    let bulk_id = device_named(&api, "bulk,site=a").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let count = api
        .must(
            "GET",
            &format!("/api/v1/devices/{bulk_id}/telemetry?keys=v&agg=count&interval=315360000000"),
            None,
            200,
        )
        .await;
    let stored: u64 = count["v"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 4998);

    // v2 errors are {"code","message"}.
    let res = http
        .post(format!("{}/api/v2/write?bucket=b", s.base))
        .header("Authorization", format!("Token {writer}"))
        .body("m v=")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "invalid");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("missing field value"),
        "{err}"
    );

    // Credentials: none or unknown → 401, a read-only key → 403, and nothing is written.
    for (auth, status) in [
        (None, 401),
        (Some("Token trb_not-a-key".to_string()), 401),
        (Some(format!("Token {}", key(&api, "read").await)), 403),
    ] {
        let mut req = http
            .post(format!("{}/api/v2/write", s.base))
            .body("denied v=1");
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), status);
    }
    let list = api
        .must("GET", "/api/v1/devices?limit=1000", None, 200)
        .await;
    assert!(!list.to_string().contains("denied"));

    // What clients probe: /ping and CREATE DATABASE.
    let ping = http.get(format!("{}/ping", s.base)).send().await.unwrap();
    assert_eq!(ping.status(), 204);
    assert!(ping.headers().contains_key("x-influxdb-version"));
    let created = http
        .post(format!("{}/query?q=CREATE+DATABASE+%22telegraf%22", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
}

#[tokio::test]
async fn influxdb_client_libraries_write_unchanged() {
    let have = Command::new("python3")
        .args(["-c", "import influxdb, influxdb_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have influxdb and influxdb-client (see .ci/run)"
        );
        eprintln!("skipping: pip install influxdb influxdb-client");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let writer = key(&api, "write").await;
    let (host, port) = s.addr().rsplit_once(':').unwrap();
    let script = r#"
import sys
from influxdb import InfluxDBClient
from influxdb_client import InfluxDBClient as V2, Point
from influxdb_client.client.write_api import SYNCHRONOUS
host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]

v1 = InfluxDBClient(host=host, port=port, username="telegraf", password=key, database="telegraf")
v1.create_database("telegraf")
ok = v1.write_points([
    {"measurement": "cpu", "tags": {"host": "web-1"}, "time": 1700000000000000000,
     "fields": {"usage_idle": 97.5, "cores": 8}},
], time_precision="n")
assert ok, "v1 write"

v2 = V2(url=f"http://{host}:{port}", token=key, org="any", enable_gzip=True)
w = v2.write_api(write_options=SYNCHRONOUS)
w.write(bucket="b", record=Point("cpu").tag("host", "web-2").field("usage_idle", 12.25).time(1700000000000000000))
w.write(bucket="b", record="cpu,host=web-2 usage_idle=13.5 1700000001000000000")
try:
    w.write(bucket="b", record="cpu,host=web-2 usage_idle=")
    raise SystemExit("a bad line must raise")
except Exception as e:
    assert "400" in str(e) or "missing field value" in str(e), e
print("clients ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, host, port, &writer])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("clients ok"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let web1 = device_named(&api, "cpu,host=web-1").await;
    let v = telemetry(&api, web1["id"].as_str().unwrap(), "usage_idle,cores").await;
    assert_eq!(
        v["usage_idle"][0],
        json!({"ts": 1700000000000i64, "value": 97.5})
    );
    assert_eq!(v["cores"][0]["value"], 8);
    let web2 = device_named(&api, "cpu,host=web-2").await;
    let v = telemetry(&api, web2["id"].as_str().unwrap(), "usage_idle").await;
    assert_eq!(
        v["usage_idle"],
        json!([{"ts": 1700000000000i64, "value": 12.25}, {"ts": 1700000001000i64, "value": 13.5}])
    );
}

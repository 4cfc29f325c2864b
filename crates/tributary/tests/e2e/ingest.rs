//! Device HTTP API → store → query, and every bad input's status.

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn telemetry_forms_are_stored_and_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (id, dev) = create_device(&s.base, &token, "thermo-1").await;

    let t0 = 1_700_000_000_000i64;
    assert_eq!(
        post_telemetry(
            &s.base,
            &dev,
            json!({"ts": t0, "values": {"temp": 20.5, "n": 1}}).to_string()
        )
        .await
        .0,
        200
    );
    let batch = json!([
        {"ts": t0 + 1000, "values": {"temp": 21, "on": true}},
        {"ts": t0 + 2000, "values": {"temp": 22.5, "mode": "eco"}},
        {"ts": t0 + 3_600_000, "values": {"temp": 30.0}}
    ]);
    assert_eq!(
        post_telemetry(&s.base, &dev, batch.to_string()).await.0,
        200
    );
    // No ts: stamped with the server's clock.
    let before = chrono_ms();
    assert_eq!(post_telemetry(&s.base, &dev, r#"{"live":7}"#).await.0, 200);

    let (st, raw) = get_json(
        &s.base,
        &token,
        &format!("/api/v1/devices/{id}/telemetry?keys=temp&order=asc"),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        raw,
        json!({"temp": [
            {"ts": t0, "value": 20.5},
            {"ts": t0 + 1000, "value": 21},
            {"ts": t0 + 2000, "value": 22.5},
            {"ts": t0 + 3_600_000, "value": 30.0}
        ]})
    );
    // Integers stay integers, floats stay floats (21 vs 30.0).
    assert!(raw["temp"][1]["value"].is_i64());
    assert!(raw["temp"][3]["value"].is_f64());

    // Default order is newest first; limit and range apply per key.
    let (_, v) = get_json(
        &s.base,
        &token,
        &format!(
            "/api/v1/devices/{id}/telemetry?keys=temp,mode,on&limit=2&to={}",
            t0 + 2000
        ),
    )
    .await;
    assert_eq!(
        v["temp"],
        json!([{"ts": t0 + 2000, "value": 22.5}, {"ts": t0 + 1000, "value": 21}])
    );
    assert_eq!(v["mode"], json!([{"ts": t0 + 2000, "value": "eco"}]));
    assert_eq!(v["on"], json!([{"ts": t0 + 1000, "value": true}]));

    // Aggregates per hour: one point per interval that holds data.
    let q = |agg: &str| {
        format!("/api/v1/devices/{id}/telemetry?keys=temp&agg={agg}&interval=3600000&from={t0}&to={}&order=asc", t0 + 7_200_000)
    };
    let hour = t0 - t0 % 3_600_000;
    let (_, avg) = get_json(&s.base, &token, &q("avg")).await;
    let first = avg["temp"][0]["value"].as_f64().unwrap();
    assert!(
        (first - (20.5 + 21.0 + 22.5) / 3.0).abs() < 1e-9,
        "avg {first}"
    );
    assert_eq!(avg["temp"][0]["ts"], hour);
    assert_eq!(avg["temp"].as_array().unwrap().len(), 2);
    let (_, count) = get_json(&s.base, &token, &q("count")).await;
    assert_eq!(
        count["temp"],
        json!([{"ts": hour, "value": 3}, {"ts": hour + 3_600_000, "value": 1}])
    );
    let (_, max) = get_json(&s.base, &token, &q("max")).await;
    assert_eq!(max["temp"][0]["value"], 22.5);
    let (_, min) = get_json(&s.base, &token, &q("min")).await;
    assert_eq!(min["temp"][0]["value"], 20.5);
    let (_, sum) = get_json(&s.base, &token, &q("sum")).await;
    assert_eq!(sum["temp"][0]["value"], 64.0);

    // Latest: newest value of every key.
    let (st, latest) = get_json(&s.base, &token, &format!("/api/v1/devices/{id}/latest")).await;
    assert_eq!(st, 200);
    assert_eq!(latest["temp"], json!({"ts": t0 + 3_600_000, "value": 30.0}));
    assert_eq!(latest["mode"]["value"], "eco");
    assert_eq!(latest["n"]["value"], 1);
    assert_eq!(latest["live"]["value"], 7);
    assert!(latest["live"]["ts"].as_i64().unwrap() >= before);
}

#[tokio::test]
async fn duplicate_timestamps_keep_the_last_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (id, dev) = create_device(&s.base, &token, "dup").await;
    for v in [1, 2, 3] {
        let body = json!({"ts": 1_700_000_000_000i64, "values": {"x": v}});
        assert_eq!(post_telemetry(&s.base, &dev, body.to_string()).await.0, 200);
    }
    let (_, v) = get_json(
        &s.base,
        &token,
        &format!("/api/v1/devices/{id}/telemetry?keys=x"),
    )
    .await;
    assert_eq!(v, json!({"x": [{"ts": 1_700_000_000_000i64, "value": 3}]}));
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env
        .push(("TRIBUTARY_HTTP_MAX_BODY_BYTES", "1024".into()));
    let s = Server::start_with(opts);
    let token = login(&s.base).await;
    let (id, dev) = create_device(&s.base, &token, "victim").await;

    let huge = format!("{{\"k\":\"{}\"}}", "x".repeat(4096));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "unknown token",
            r#"{"temp":1}"#.into(),
            401,
            "unknown device access token",
        ),
        (
            "malformed JSON",
            r#"{"temp":"#.into(),
            400,
            "malformed JSON",
        ),
        (
            "not an object",
            "[1,2]".into(),
            400,
            "array element 0 is a number",
        ),
        (
            "null value",
            r#"{"temp":null}"#.into(),
            400,
            "unsupported value for key \"temp\"",
        ),
        (
            "nested object",
            r#"{"temp":{"c":1}}"#.into(),
            400,
            "an object",
        ),
        ("array value", r#"{"temp":[1]}"#.into(), 400, "an array"),
        (
            "bad ts",
            r#"{"ts":"noon","values":{"temp":1}}"#.into(),
            400,
            "invalid ts",
        ),
        (
            "negative ts",
            r#"{"ts":-1,"values":{"temp":1}}"#.into(),
            400,
            "invalid ts",
        ),
        ("empty array", "[]".into(), 400, "empty array"),
        ("empty object", "{}".into(), 400, "no telemetry"),
        (
            "one bad entry rejects the batch",
            r#"[{"good":1},{"bad":null}]"#.into(),
            400,
            "\"bad\"",
        ),
        ("too large", huge, 413, "exceeds the limit of 1024 bytes"),
    ];
    for (what, body, status, detail) in cases {
        let t = if status == 401 {
            "not-a-token"
        } else {
            dev.as_str()
        };
        let res = client()
            .post(format!("{}/api/v1/{t}/telemetry", s.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{what}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{what}: errors are problem+json"
        );
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["status"], status, "{what}");
        assert!(
            problem["type"].as_str().unwrap().starts_with("/problems/"),
            "{what}"
        );
        let d = problem["detail"].as_str().unwrap();
        assert!(
            d.contains(detail),
            "{what}: detail {d:?} should contain {detail:?}"
        );
    }

    // Nothing of any rejected batch was stored.
    let (st, v) = get_json(&s.base, &token, &format!("/api/v1/devices/{id}/telemetry")).await;
    assert_eq!(st, 200);
    assert_eq!(v, json!({}), "rejected batches store nothing");

    // The server is still fine and counts the rejections.
    assert_eq!(post_telemetry(&s.base, &dev, r#"{"ok":1}"#).await.0, 200);
    let metrics = metrics_text(&s.base).await;
    assert!(
        metrics.contains(r#"tributary_batches_rejected_total{reason="unauthorized"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tributary_batches_rejected_total{reason="too_large"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tributary_batches_rejected_total{reason="malformed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tributary_batches_rejected_total{reason="invalid"} 9"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("tributary_points_accepted_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn query_parameters_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let (id, _) = create_device(&s.base, &token, "q").await;
    let cases = [
        ("from=yesterday", "from"),
        ("from=10&to=5", "from"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("order=sideways", "order"),
        ("agg=median&interval=1000", "agg"),
        ("agg=avg", "interval"),
        ("agg=avg&interval=-5", "interval"),
        ("interval=1000", "agg"),
    ];
    for (query, field) in cases {
        let (st, v) = get_json(
            &s.base,
            &token,
            &format!("/api/v1/devices/{id}/telemetry?{query}"),
        )
        .await;
        assert_eq!(st, 400, "{query}");
        assert_eq!(v["field"], field, "{query}: {v}");
    }
    let (st, _) = get_json(&s.base, &token, "/api/v1/devices/not-a-uuid/telemetry").await;
    assert_eq!(st, 404);
    let (st, _) = get_json(
        &s.base,
        &token,
        &format!("/api/v1/devices/{}/latest", uuid_like()),
    )
    .await;
    assert_eq!(st, 404);
}

fn uuid_like() -> &'static str {
    "01234567-89ab-7def-8123-456789abcdef"
}

/// `GET /api/v1/latest`: the newest values of many devices at once, filtered
/// like the device list, a page at a time, and only the caller's tenant's.
#[tokio::test]
async fn latest_values_of_many_devices() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let admin = Api::new(&s.base, &login(&s.base).await);
    let mut ids = Vec::new();
    for i in 0..5 {
        let (id, dev) = create_device(&s.base, &admin.token, &format!("fleet-{i}")).await;
        if i < 4 {
            let body = json!([
                {"ts": 1_000, "values": {"t": i, "h": 50}},
                {"ts": 2_000 + i, "values": {"t": i * 10}},
            ]);
            let (st, text) = post_telemetry(&s.base, &dev, body.to_string()).await;
            assert_eq!(st, 200, "{text}");
        }
        ids.push(id);
    }
    admin
        .must(
            "PATCH",
            &format!("/api/v1/devices/{}", ids[1]),
            Some(json!({"labels": {"zone": "north"}})),
            200,
        )
        .await;

    let v = admin.must("GET", "/api/v1/latest?keys=t", None, 200).await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 4, "the device without data is left out: {v}");
    assert_eq!(v["next_cursor"], json!(null));
    let mut sorted: Vec<&str> = ids[..4].iter().map(String::as_str).collect();
    sorted.sort();
    let got: Vec<&str> = data
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, sorted, "in device id order");
    for d in data {
        let i = ids
            .iter()
            .position(|id| id == d["device_id"].as_str().unwrap())
            .unwrap() as i64;
        assert_eq!(
            d["values"],
            json!({"t": {"ts": 2_000 + i, "value": i * 10}})
        );
    }

    // Pages follow the cursor and cover every device once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let v = admin
            .must("GET", &format!("/api/v1/latest?limit=3{cursor}"), None, 200)
            .await;
        for d in v["data"].as_array().unwrap() {
            assert_eq!(d["values"]["h"]["value"], 50, "all keys: {d}");
            seen.push(d["device_id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, sorted);

    // Filters are those of the device list.
    let v = admin
        .must("GET", "/api/v1/latest?label=zone%3Dnorth", None, 200)
        .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["data"][0]["device_id"], ids[1].as_str());
    let v = admin
        .must("GET", "/api/v1/latest?name=fleet-4", None, 200)
        .await;
    assert_eq!(v["data"], json!([]), "fleet-4 has no data");
    for bad in ["limit=0", "limit=ten", "cursor=nope", "label=novalue"] {
        let (st, v) = admin.get(&format!("/api/v1/latest?{bad}")).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }

    // Another tenant sees none of them.
    let other = second_tenant(&admin, "other").await;
    let v = other.must("GET", "/api/v1/latest", None, 200).await;
    assert_eq!(v["data"], json!([]));
}

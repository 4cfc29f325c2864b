//! The live feed at scale: selectors, resume, SSE, slow consumers, revocation, limits.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(s: &Server, token: &str) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{}/api/v1/live?token={token}", s.addr()))
        .await
        .unwrap()
        .0
}

pub(crate) async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON message, or a panic after `secs`.
pub(crate) async fn next(ws: &mut Ws, secs: u64) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(secs), ws.next())
            .await
            .expect("message in time")
            .expect("open")
            .expect("no error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(f) => {
                return json!({"type": "closed", "code": f.as_ref().map(|f| u16::from(f.code)), "reason": f.map(|f| f.reason.to_string())})
            }
            _ => continue,
        }
    }
}

/// Messages until one of type `until` (inclusive).
pub(crate) async fn until(ws: &mut Ws, until: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let m = next(ws, 10).await;
        let done = m["type"] == until;
        out.push(m);
        if done {
            return out;
        }
    }
}

async fn telemetry(s: &Server, token: &str, body: Value) {
    assert_eq!(
        post_telemetry(&s.base, token, body.to_string()).await.0,
        200
    );
}

#[tokio::test]
async fn selectors_devices_group_labels_tenant_and_attribute_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env
        .push(("TRIBUTARY_LIVE_SELECTOR_REFRESH_SECS", "1".into()));
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let mut devs = Vec::new();
    for (name, site) in [("d0", "berlin"), ("d1", "berlin"), ("d2", "paris")] {
        let d = api
            .must(
                "POST",
                "/api/v1/devices",
                Some(json!({"name": name, "labels": {"site": site}})),
                201,
            )
            .await;
        devs.push((
            d["id"].as_str().unwrap().to_string(),
            d["access_token"].as_str().unwrap().to_string(),
        ));
    }
    let group = api
        .must("POST", "/api/v1/groups", Some(json!({"name": "g"})), 201)
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.must(
        "PUT",
        &format!("/api/v1/groups/{group}/devices/{}", devs[2].0),
        None,
        204,
    )
    .await;

    // A list of devices: one snapshot each, then an ack.
    let mut ws = connect(&s, &api.token).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "devices": [devs[0].0, devs[1].0], "keys": ["t"]}),
    )
    .await;
    let msgs = until(&mut ws, "subscribed").await;
    assert_eq!(msgs.iter().filter(|m| m["type"] == "snapshot").count(), 2);
    telemetry(&s, &devs[1].1, json!({"t": 1, "other": 2})).await;
    let up = next(&mut ws, 5).await;
    assert_eq!(
        (
            up["device"].as_str(),
            up["points"].as_object().unwrap().len()
        ),
        (Some(devs[1].0.as_str()), 1)
    );

    // Labels: berlin = d0, d1.
    let mut by_label = connect(&s, &api.token).await;
    send(
        &mut by_label,
        json!({"type": "subscribe", "labels": {"site": "berlin"}}),
    )
    .await;
    let msgs = until(&mut by_label, "subscribed").await;
    assert_eq!(msgs.last().unwrap()["devices"], 2);
    telemetry(&s, &devs[2].1, json!({"t": 3})).await;
    telemetry(&s, &devs[0].1, json!({"t": 4})).await;
    assert_eq!(
        next(&mut by_label, 5).await["device"],
        devs[0].0.as_str(),
        "paris is not in the selector"
    );

    // Group: re-resolved, so a device added later is picked up with a snapshot.
    let mut by_group = connect(&s, &api.token).await;
    send(&mut by_group, json!({"type": "subscribe", "group": group})).await;
    assert_eq!(
        until(&mut by_group, "subscribed").await.last().unwrap()["devices"],
        1
    );
    api.must(
        "PUT",
        &format!("/api/v1/groups/{group}/devices/{}", devs[0].0),
        None,
        204,
    )
    .await;
    let snap = next(&mut by_group, 5).await;
    assert_eq!(
        (snap["type"].as_str(), snap["device"].as_str()),
        (Some("snapshot"), Some(devs[0].0.as_str()))
    );
    telemetry(&s, &devs[0].1, json!({"t": 5})).await;
    assert_eq!(next(&mut by_group, 5).await["points"]["t"][0]["value"], 5);

    // The whole tenant, including a device created after subscribing, and attribute changes.
    let mut all = connect(&s, &api.token).await;
    send(&mut all, json!({"type": "subscribe", "tenant": true})).await;
    assert_eq!(
        until(&mut all, "subscribed").await.last().unwrap()["devices"],
        3
    );
    let (late, late_token) = create_device(&s.base, &api.token, "late").await;
    telemetry(&s, &late_token, json!({"t": 6})).await;
    assert_eq!(next(&mut all, 5).await["device"], late.as_str());
    api.must(
        "POST",
        &format!("/api/v1/devices/{}/attributes/shared", devs[1].0),
        Some(json!({"interval": 10})),
        204,
    )
    .await;
    let attr = next(&mut all, 5).await;
    assert_eq!(
        attr,
        json!({"type": "attributes", "device": devs[1].0, "scope": "shared", "values": {"interval": 10}})
    );
    let res = client()
        .post(format!("{}/api/v1/{}/attributes", s.base, devs[1].1))
        .body(r#"{"fw":"2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The device-list client gets attribute events too (after the updates queued before them).
    let attr = loop {
        let m = next(&mut ws, 5).await;
        if m["type"] == "attributes" && m["scope"] == "client" {
            break m;
        }
    };
    assert_eq!(attr["values"]["fw"], "2");

    // Client attributes a device publishes over MQTT reach live clients as
    // well (they go through the log like every other attribute write), and
    // are stored by the time the PUBACK arrives.
    let mqtt_addr = s.mqtt.clone();
    let device_token = devs[1].1.clone();
    tokio::task::spawn_blocking(move || {
        use rumqttc::mqttbytes::v4::{Packet, Publish};
        use rumqttc::mqttbytes::QoS;
        let (mut raw, _) = Raw::connect(&mqtt_addr, "attr-publisher", &device_token, true);
        let mut p = Publish::new(
            "v1/devices/me/attributes",
            QoS::AtLeastOnce,
            r#"{"fw":"3"}"#,
        );
        p.pkid = 1;
        raw.send(Packet::Publish(p));
        assert!(matches!(raw.read(), Some(Packet::PubAck(_))));
    })
    .await
    .unwrap();
    let attr = loop {
        let m = next(&mut all, 5).await;
        if m["type"] == "attributes" && m["scope"] == "client" && m["values"]["fw"] == "3" {
            break m;
        }
    };
    assert_eq!(attr["device"], devs[1].0.as_str());
    let (_, stored) = api
        .get(&format!("/api/v1/devices/{}/attributes", devs[1].0))
        .await;
    assert_eq!(stored["client"]["fw"]["value"], "3", "{stored}");

    // Unsubscribing by the same selector; errors name the problem.
    send(
        &mut by_label,
        json!({"type": "unsubscribe", "labels": {"site": "berlin"}}),
    )
    .await;
    until(&mut by_label, "unsubscribed").await;
    for (bad, code) in [
        (
            json!({"type": "subscribe", "device": devs[0].0, "tenant": true}),
            "bad_request",
        ),
        (json!({"type": "subscribe", "group": "nope"}), "not_found"),
        (
            json!({"type": "subscribe", "devices": [devs[0].0, "nope"]}),
            "not_found",
        ),
        (
            json!({"type": "subscribe", "labels": {"bad key!": "x"}}),
            "bad_request",
        ),
        (
            json!({"type": "unsubscribe", "group": "nope"}),
            "not_subscribed",
        ),
    ] {
        send(&mut by_label, bad.clone()).await;
        // Updates queued before the unsubscribe may still come first.
        assert_eq!(
            until(&mut by_label, "error").await.last().unwrap()["code"],
            code,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn resume_delivers_what_was_missed_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, dev) = create_device(&s.base, &api.token, "r").await;
    let mut ws = connect(&s, &api.token).await;
    send(&mut ws, json!({"type": "subscribe", "device": id})).await;
    until(&mut ws, "subscribed").await;
    telemetry(&s, &dev, json!({"ts": 1_000, "values": {"v": 0}})).await;
    let last_seen = next(&mut ws, 5).await["seq"].as_u64().unwrap();
    drop(ws);

    // While away: ten batches.
    for i in 1..=10 {
        telemetry(&s, &dev, json!({"ts": 1_000 + i, "values": {"v": i}})).await;
    }
    let check = |msgs: &[Value], from: i64| {
        let updates: Vec<&Value> = msgs.iter().filter(|m| m["type"] == "update").collect();
        let values: Vec<i64> = updates
            .iter()
            .map(|u| u["points"]["v"][0]["value"].as_i64().unwrap())
            .collect();
        assert_eq!(
            values,
            (from..=10).collect::<Vec<_>>(),
            "every missed update once, in order"
        );
        let seqs: Vec<u64> = updates.iter().map(|u| u["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert!(
            msgs.iter().all(|m| m["type"] != "snapshot"),
            "a resume sends no snapshot"
        );
    };
    // From memory.
    let mut ws = connect(&s, &api.token).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "device": id, "since": last_seen}),
    )
    .await;
    let msgs = until(&mut ws, "subscribed").await;
    check(&msgs, 1);
    telemetry(&s, &dev, json!({"ts": 2_000, "values": {"v": 11}})).await;
    let live = next(&mut ws, 5).await;
    assert_eq!(
        live["points"]["v"][0]["value"], 11,
        "then live, nothing repeated"
    );
    drop(ws);

    // From the store, after a restart emptied memory.
    s.terminate();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let mut ws = connect(&s, &api.token).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "device": id, "since": last_seen}),
    )
    .await;
    let msgs = until(&mut ws, "subscribed").await;
    let values: Vec<i64> = msgs
        .iter()
        .filter(|m| m["type"] == "update")
        .map(|u| u["points"]["v"][0]["value"].as_i64().unwrap())
        .collect();
    assert_eq!(
        values,
        (1..=11).collect::<Vec<_>>(),
        "replayed from the store"
    );
}

#[tokio::test]
async fn sse_streams_the_same_feed_and_resumes_with_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, dev) = create_device(&s.base, &api.token, "sse").await;
    telemetry(&s, &dev, json!({"ts": 1, "values": {"v": 0}})).await;

    let open = |extra: &str| {
        let url = format!("{}/api/v1/live/sse?device={id}{extra}", s.base);
        let token = api.token.clone();
        async move { client().get(url).bearer_auth(token).send().await.unwrap() }
    };
    let res = open("").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut events = res.bytes_stream().eventsource().boxed();
    let snap = next_event(&mut events).await;
    assert_eq!(snap.event, "snapshot");
    assert_eq!(
        serde_json::from_str::<Value>(&snap.data).unwrap()["values"]["v"]["value"],
        0
    );
    assert_eq!(next_event(&mut events).await.event, "subscribed");
    telemetry(&s, &dev, json!({"ts": 2, "values": {"v": 1}})).await;
    let up = next_event(&mut events).await;
    assert_eq!(up.event, "update");
    let seq: u64 = up.id.parse().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&up.data).unwrap()["seq"], seq);
    drop(events);

    telemetry(&s, &dev, json!({"ts": 3, "values": {"v": 2}})).await;
    let res = client()
        .get(format!("{}/api/v1/live/sse?device={id}", s.base))
        .bearer_auth(&api.token)
        .header("last-event-id", seq.to_string())
        .send()
        .await
        .unwrap();
    let mut events = res.bytes_stream().eventsource();
    let e = loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if e.event == "update" {
            break e;
        }
    };
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap()["points"]["v"][0]["value"],
        2,
        "resumed after Last-Event-ID"
    );

    // Bad requests are refused before the stream starts.
    for (q, status) in [
        ("", 400),
        ("?device=nope", 404),
        ("?device=x&tenant=true", 400),
        ("?label=nokey", 400),
    ] {
        let res = client()
            .get(format!("{}/api/v1/live/sse{q}", s.base))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{q}");
    }
    let res = client()
        .get(format!("{}/api/v1/live/sse?device={id}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

type Events = futures_util::stream::BoxStream<
    'static,
    Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
>;

/// The next SSE event with data (keep-alive pings skipped).
async fn next_event(events: &mut Events) -> eventsource_stream::Event {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if e.event != "ping" && !e.data.is_empty() {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_client_lags_alone_and_gets_the_latest_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env.push(("TRIBUTARY_LIVE_CLIENT_QUEUE", "16".into()));
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, dev) = create_device(&s.base, &api.token, "busy").await;
    let mut fast = connect(&s, &api.token).await;
    let mut slow = connect(&s, &api.token).await;
    for ws in [&mut fast, &mut slow] {
        send(ws, json!({"type": "subscribe", "device": id})).await;
        until(ws, "subscribed").await;
    }
    // The slow client reads nothing while 300 batches of 50 keys (with large strings) flow.
    let filler = "x".repeat(2000);
    let fast_reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 300 {
            let m = next(&mut fast, 10).await;
            if m["type"] == "update" {
                seen += 1;
            }
            assert_ne!(m["type"], "lagged", "the fast client keeps up");
        }
        seen
    });
    for i in 0..300i64 {
        let values: serde_json::Map<String, Value> = (0..50)
            .map(|k| (format!("k{k}"), json!(format!("{i}-{filler}"))))
            .collect();
        telemetry(&s, &dev, json!({"ts": 10_000 + i, "values": values})).await;
    }
    assert_eq!(fast_reader.await.unwrap(), 300);

    // Now it reads: told it lagged, then the latest value of every key, not 300 updates.
    let mut msgs = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(2), slow.next()).await;
        match m {
            Ok(Some(Ok(Message::Text(t)))) => {
                msgs.push(serde_json::from_str::<Value>(t.as_str()).unwrap())
            }
            Ok(Some(Ok(_))) => continue,
            _ => break,
        }
    }
    let lagged = msgs
        .iter()
        .position(|m| m["type"] == "lagged")
        .expect("told it lagged");
    let after: Vec<&Value> = msgs[lagged + 1..]
        .iter()
        .filter(|m| m["type"] == "update")
        .collect();
    assert!(
        after.len() <= 2,
        "coalesced, got {} updates after the lag notice",
        after.len()
    );
    let latest = after.last().unwrap();
    assert_eq!(latest["points"].as_object().unwrap().len(), 50, "every key");
    assert!(
        latest["points"]["k7"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("299-"),
        "the latest value"
    );
    // Socket buffers hold a few dozen messages before the queue fills; the rest coalesced.
    assert!(msgs.len() < 150, "{} messages instead of 300", msgs.len());
    let metrics = metrics_text(&s.base).await;
    assert!(
        !metrics.contains("tributary_live_lagged_total 0"),
        "lag is counted"
    );
}

#[tokio::test]
async fn revoked_credentials_close_and_clients_per_tenant_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env
        .push(("TRIBUTARY_LIVE_AUTH_RECHECK_SECS", "1".into()));
    opts.env
        .push(("TRIBUTARY_LIVE_MAX_CLIENTS_PER_TENANT", "3".into()));
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let key = api
        .must(
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "k", "scope": "read"})),
            201,
        )
        .await;
    let mut by_key = connect(&s, key["key"].as_str().unwrap()).await;
    let session = login_as(&s.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let user_token = session["access_token"].as_str().unwrap().to_string();
    let mut by_user = connect(&s, &user_token).await;
    let _third = connect(&s, &api.token).await;

    // A fourth connection of the same tenant is refused.
    match tokio_tungstenite::connect_async(format!(
        "ws://{}/api/v1/live?token={}",
        s.addr(),
        api.token
    ))
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 429),
        other => panic!("expected 429, got {other:?}"),
    }

    api.must(
        "DELETE",
        &format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap()),
        None,
        204,
    )
    .await;
    let closed = next(&mut by_key, 5).await;
    assert_eq!(
        (closed["type"].as_str(), closed["code"].as_u64()),
        (Some("closed"), Some(4003)),
        "{closed}"
    );
    Api::new(&s.base, &user_token)
        .must("POST", "/api/v1/auth/logout", None, 204)
        .await;
    let closed = next(&mut by_user, 5).await;
    assert_eq!(closed["code"], 4003);
    assert_eq!(closed["reason"], "credential revoked");

    // Their slots are free again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _again = connect(&s, &api.token).await;
}

//! Defects found by probing the server as an attacker and a careless client
//! would, each kept found by a test: password guessing through invitations,
//! lockout abuse, connections that never time out, a deleted tenant's
//! tokens, multi-member gzip, and credentials in logs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::{Connect, Login, Packet};
use serde_json::{json, Value};

use crate::common::*;

/// Posts a JSON body with an optional bearer and a forwarded client address.
async fn post(
    base: &str,
    path: &str,
    body: Value,
    bearer: Option<&str>,
    forwarded_for: Option<&str>,
) -> (u16, Option<u64>, Value) {
    let mut req = client().post(format!("{base}{path}")).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let v = res.json().await.unwrap_or(Value::Null);
    (status, retry_after, v)
}

/// A user of the default tenant who then creates a tenant of their own:
/// returns a session in that new tenant.
async fn attacker(s: &Server, admin: &Api) -> Api {
    invite_and_accept(admin, "mallory@example.com", "viewer").await;
    let session = login_as(&s.base, "mallory@example.com", "a-long-enough-password").await;
    let mallory = Api::new(&s.base, session["access_token"].as_str().unwrap());
    second_tenant(&mallory, "evil").await
}

/// An invitation for another user's email is no password oracle: wrong
/// guesses answer as login does, are delayed, and spend the invitation; a
/// weak password is refused before anything tells whether the email has an
/// account; a logged-in user accepts as themselves without a password.
#[tokio::test]
async fn invitations_cannot_be_used_to_guess_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let admin = Api::new(&s.base, &login(&s.base).await);
    let evil = attacker(&s, &admin).await;

    let invite = evil
        .must(
            "POST",
            "/api/v1/invites",
            Some(json!({"email": ADMIN_EMAIL, "role": "viewer"})),
            201,
        )
        .await;
    let token = invite["token"].as_str().unwrap().to_string();
    // The same answer to a weak password whether the email exists or not.
    let unknown = evil
        .must(
            "POST",
            "/api/v1/invites",
            Some(json!({"email": "nobody@example.com", "role": "viewer"})),
            201,
        )
        .await;
    let weak = |t: &str| json!({"token": t, "password": "short"});
    let (a, _, ea) = post(
        &s.base,
        "/api/v1/auth/accept-invite",
        weak(&token),
        None,
        None,
    )
    .await;
    let (b, _, eb) = post(
        &s.base,
        "/api/v1/auth/accept-invite",
        weak(unknown["token"].as_str().unwrap()),
        None,
        None,
    )
    .await;
    assert_eq!((a, b), (400, 400), "{ea} / {eb}");
    assert_eq!(ea["detail"], eb["detail"]);

    // Guessing: login's answer, then delays, then the invitation is spent.
    let (_, _, login_error) = post(
        &s.base,
        "/api/v1/auth/login",
        json!({"email": "nobody@example.com", "password": "wrong-password-0"}),
        None,
        Some("192.0.2.1"),
    )
    .await;
    let mut statuses = Vec::new();
    for i in 0..25 {
        let body = json!({"token": token, "password": format!("wrong-password-{i}")});
        let (st, retry, err) = post(&s.base, "/api/v1/auth/accept-invite", body, None, None).await;
        if st == 401 {
            assert_eq!(err["type"], login_error["type"]);
            assert_eq!(err["detail"], login_error["detail"]);
        }
        if st == 429 {
            assert!(retry.is_some_and(|r| r >= 1), "429 without Retry-After");
        }
        statuses.push(st);
        if st == 429 {
            // Wait out the delay, as a patient attacker would.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    // Five guesses, as login allows; then the invitation is spent (400).
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(
        statuses[5..].iter().all(|s| *s == 400 || *s == 429),
        "more than the allowance of guesses got through: {statuses:?}"
    );
    // Spent: even the right password no longer opens it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (st, _, _) = post(
        &s.base,
        "/api/v1/auth/accept-invite",
        json!({"token": token, "password": ADMIN_PASSWORD}),
        None,
        None,
    )
    .await;
    assert!(st == 400 || st == 429, "spent invitation answered {st}");
    let (_, switch) = admin.get("/api/v1/me").await;
    assert_eq!(switch["tenants"].as_array().unwrap().len(), 1, "{switch}");

    // A fresh invitation, accepted by the invitee's own session: no password.
    let invite = evil
        .must(
            "POST",
            "/api/v1/invites",
            Some(json!({"email": ADMIN_EMAIL, "role": "viewer"})),
            201,
        )
        .await;
    let (st, _, _) = post(
        &s.base,
        "/api/v1/auth/accept-invite",
        json!({"token": invite["token"]}),
        Some(&evil.token),
        None,
    )
    .await;
    assert_eq!(st, 403, "another user's session accepted the invitation");
    let (st, _, session) = post(
        &s.base,
        "/api/v1/auth/accept-invite",
        json!({"token": invite["token"]}),
        Some(&admin.token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{session}");
    let (_, me) = admin.get("/api/v1/me").await;
    assert_eq!(me["tenants"].as_array().unwrap().len(), 2, "{me}");
}

/// Failures from one address delay that address's attempts, never the
/// account's owner elsewhere; behind a trusted proxy the forwarded address
/// counts, and from anywhere else the header is ignored.
#[tokio::test]
async fn failed_logins_delay_the_guesser_not_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env = vec![
        ("TRIBUTARY_TRUSTED_PROXIES", "[\"127.0.0.1\"]".into()),
        ("TRIBUTARY_LOGIN_FAILURES_PER_ADDRESS", "8".into()),
    ];
    let s = Server::start_with(opts);
    let base = s.base.clone();
    let login = |password: String, from: &'static str| {
        let base = base.clone();
        async move {
            let body = json!({"email": ADMIN_EMAIL, "password": password});
            post(&base, "/api/v1/auth/login", body, None, Some(from)).await
        }
    };
    let mut statuses = Vec::new();
    for i in 0..7 {
        statuses.push(login(format!("guess-number-{i}"), "203.0.113.5").await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    // Even the right password waits there …
    let (st, retry, _) = login(ADMIN_PASSWORD.into(), "203.0.113.5").await;
    assert_eq!(st, 429);
    assert!(retry.is_some_and(|r| (1..=2).contains(&r)), "{retry:?}");
    // … but the owner, elsewhere, is not locked out.
    assert_eq!(login(ADMIN_PASSWORD.into(), "198.51.100.1").await.0, 200);

    // Guessing many accounts from one address delays that address only
    // briefly (a NAT's other users are not locked out for long).
    for i in 0..8 {
        let body = json!({"email": format!("user{i}@example.com"), "password": "wrong-password"});
        post(
            &s.base,
            "/api/v1/auth/login",
            body,
            None,
            Some("192.0.2.77"),
        )
        .await;
    }
    let body = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let (st, retry, _) = post(
        &s.base,
        "/api/v1/auth/login",
        body,
        None,
        Some("192.0.2.77"),
    )
    .await;
    assert_eq!(st, 429);
    assert!(retry.is_some_and(|r| r <= 60), "{retry:?}");
}

/// Without a trusted proxy, `X-Forwarded-For` cannot dodge the delays.
#[tokio::test]
async fn forwarded_addresses_from_untrusted_peers_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let mut statuses = Vec::new();
    for i in 0..7 {
        let body = json!({"email": ADMIN_EMAIL, "password": format!("guess-number-{i}")});
        let from = format!("198.51.100.{i}");
        statuses.push(
            post(&s.base, "/api/v1/auth/login", body, None, Some(&from))
                .await
                .0,
        );
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
}

/// Reads until the server closes the connection or `within` passes; returns
/// what it sent and whether it closed.
fn drain(sock: &mut TcpStream, within: Duration) -> (String, bool) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into(), true),
        }
    }
    (String::from_utf8_lossy(&got).into(), false)
}

/// With the file limit at 400, 450 idle, half-header and half-body sockets
/// neither starve MQTT nor hold the server: connections beyond the cap get
/// 503 at once, the rest are closed by the header and body deadlines, and
/// then `/healthz` answers again.
#[tokio::test]
async fn slow_and_idle_http_connections_are_capped_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.file_limit = Some(400);
    opts.env = vec![
        ("TRIBUTARY_HTTP_HEADER_TIMEOUT_SECS", "2".into()),
        ("TRIBUTARY_HTTP_BODY_TIMEOUT_SECS", "2".into()),
    ];
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let (device, device_token) = create_device(&s.base, &api.token, "slow-1").await;

    let mut socks = Vec::new();
    for i in 0..450 {
        let mut sock = TcpStream::connect(s.addr()).unwrap();
        match i % 3 {
            0 => {}
            1 => sock
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap(),
            _ => sock
                .write_all(
                    format!(
                        "POST /api/v1/{device_token}/telemetry HTTP/1.1\r\nHost: x\r\n\
                         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"temp\":"
                    )
                    .as_bytes(),
                )
                .unwrap(),
        }
        socks.push(sock);
    }
    // MQTT still has its descriptors.
    let (_, ack) = Raw::connect(&s.mqtt, "during-flood", &device_token, true);
    assert!(
        matches!(ack, Packet::ConnAck(ref a) if a.code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success),
        "{ack:?}"
    );
    // Every socket is answered or closed within the deadlines.
    let (mut busy, mut timed_out) = (0, 0);
    for (i, sock) in socks.iter_mut().enumerate() {
        let (text, closed) = drain(sock, Duration::from_secs(5));
        assert!(closed, "connection {i} was held open: {text:?}");
        if text.starts_with("HTTP/1.1 503") {
            busy += 1;
        } else if text.starts_with("HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    assert!(busy > 0, "no connection was refused at the cap");
    assert!(timed_out > 0, "no half-sent body got 408");
    let started = Instant::now();
    let (st, _) = get_json(&s.base, "", "/healthz").await;
    assert_eq!(st, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nothing from the half-sent bodies was stored.
    let (_, latest) = api.get(&format!("/api/v1/devices/{device}/latest")).await;
    assert_eq!(latest, json!({}), "{latest}");
}

/// A kept-alive connection that sends nothing more is closed after the
/// header deadline, and a request sent slowly but within it is served.
#[tokio::test]
async fn keep_alive_connections_close_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env = vec![("TRIBUTARY_HTTP_HEADER_TIMEOUT_SECS", "2".into())];
    let s = Server::start_with(opts);
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    sock.write_all(b"\r\n").unwrap();
    let started = Instant::now();
    let (text, closed) = drain(&mut sock, Duration::from_secs(5));
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(closed, "idle keep-alive connection left open");
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// Two gzip members joined (as `cat a.gz b.gz` makes) are both decoded; an
/// encoding the server cannot decode is 415, not a parse error.
#[tokio::test]
async fn every_gzip_member_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let key = api_key(&api, "gz", "write").await;
    let mut body = gzip("gz,n=1 v=1 1700000000000\n");
    body.extend(gzip("gz,n=2 v=2 1700000000000\ngz,n=1 v=3 1700000001000\n"));
    let url = format!("{}/api/v2/write?precision=ms", s.base);
    let res = client()
        .post(&url)
        .header("authorization", format!("Token {key}"))
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    let (_, list) = api.get("/api/v1/devices?limit=10").await;
    let ids: Vec<(String, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().into(),
                d["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    let one = &ids.iter().find(|(n, _)| n == "gz,n=1").unwrap().1;
    let (_, t) = api
        .get(&format!("/api/v1/devices/{one}/telemetry?keys=v&order=asc"))
        .await;
    assert_eq!(t["v"].as_array().unwrap().len(), 2, "{t}");

    let res = client()
        .post(&url)
        .header("authorization", format!("Token {key}"))
        .header("content-encoding", "deflate")
        .body("gz,n=1 v=9 1700000002000")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
}

/// A second CONNECT on one socket, with debug logging on, logs the packet's
/// kind but never its password (here an API key).
#[tokio::test]
async fn no_credential_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.args = vec!["--log".into(), "tributary_mqtt=debug,info".into()];
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let key = api_key(&api, "app", "read").await;
    let (mut raw, ack) = Raw::connect_with(&s.mqtt, "app-1", "app", true, 30, &key);
    assert!(matches!(ack, Packet::ConnAck(_)), "{ack:?}");
    let mut again = Connect::new("app-1");
    again.login = Some(Login::new("app", key.clone()));
    raw.send(Packet::Connect(again));
    while raw.read().is_some() {}
    std::thread::sleep(Duration::from_millis(300));
    let logs = s.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("unexpected CONNECT"),
        "the event was not logged"
    );
    assert!(!logs.contains(&key), "the API key is in the log");
}

/// Sums past their type widen or saturate and say so; a negative timestamp
/// is refused rather than stored unreadable; the largest timestamp is
/// reachable with `to=` its millisecond; integers past i64 are refused.
#[tokio::test]
async fn aggregates_and_timestamps_at_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, token) = create_device(&s.base, &api.token, "limits-1").await;
    let body = r#"[{"ts":1000,"values":{"n":9223372036854775807,"f":1.7976931348623157e308}},
                   {"ts":2000,"values":{"n":9223372036854775807,"f":1.7976931348623157e308}},
                   {"ts":3000,"values":{"n":2}}]"#;
    assert_eq!(post_telemetry(&s.base, &token, body).await.0, 200);
    let agg = |agg: &str, key: &str| {
        format!("/api/v1/devices/{id}/telemetry?keys={key}&agg={agg}&interval=60000")
    };
    let (_, sum) = api.get(&agg("sum", "n")).await;
    assert_eq!(sum["n"][0]["value"], json!(18446744073709551616.0), "{sum}");
    assert_eq!(sum["n"][0]["saturated"], json!(true), "{sum}");
    let (_, fsum) = api.get(&agg("sum", "f")).await;
    assert_eq!(fsum["f"][0]["value"], json!(f64::MAX), "{fsum}");
    assert_eq!(fsum["f"][0]["saturated"], json!(true), "{fsum}");
    let (_, avg) = api.get(&agg("avg", "f")).await;
    assert_eq!(avg["f"][0]["value"], json!(f64::MAX), "{avg}");
    let (_, max) = api.get(&agg("max", "n")).await;
    assert_eq!(max["n"][0]["value"], json!(i64::MAX), "{max}");
    assert!(max["n"][0].get("saturated").is_none(), "{max}");

    let (st, body) = post_telemetry(&s.base, &token, r#"{"big":18446744073709551616}"#).await;
    assert_eq!(st, 400);
    assert!(
        body.contains("big") && body.contains("does not fit"),
        "{body}"
    );

    let key = api_key(&api, "lp", "write").await;
    let write = |body: &'static str| write_lines(&s.base, &key, body);
    let res = write("edge v=1 -5").await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("before 1970"));
    let res = write("edge v=2 9223372036854775807").await;
    assert_eq!(res.status(), 204);
    let (_, list) = api.get("/api/v1/devices?limit=10").await;
    let edge = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "edge")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, hist) = api
        .get(&format!(
            "/api/v1/devices/{edge}/telemetry?keys=v&from=0&to=9223372036854"
        ))
        .await;
    assert_eq!(hist["v"].as_array().map(Vec::len), Some(1), "{hist}");
    assert_eq!(hist["v"][0]["value"], json!(2.0));
}

/// A JSON array is not an object: no rename by position, no empty patch.
#[tokio::test]
async fn arrays_are_not_taken_for_objects() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, _) = create_device(&s.base, &api.token, "keeps-its-name").await;
    for body in [json!(["x"]), json!([])] {
        let (st, err) = api.patch(&format!("/api/v1/devices/{id}"), body).await;
        assert_eq!(st, 400, "{err}");
        assert_eq!(err["type"], "/problems/invalid-json", "{err}");
    }
    let (st, err) = api.post("/api/v1/profiles", json!([])).await;
    assert_eq!(st, 400, "{err}");
    let (_, d) = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(d["name"], "keeps-its-name");
}

/// Devices per tenant, devices created per write and per minute, and
/// tenants per user are limited from config, with errors that name the limit.
#[tokio::test]
async fn device_and_tenant_creation_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env = vec![
        ("TRIBUTARY_MAX_DEVICES_PER_TENANT", "12".into()),
        ("TRIBUTARY_MAX_AUTO_DEVICES_PER_REQUEST", "5".into()),
        ("TRIBUTARY_MAX_AUTO_DEVICES_PER_MINUTE", "8".into()),
        ("TRIBUTARY_MAX_TENANTS_PER_USER", "2".into()),
    ];
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let key = api_key(&api, "lp", "write").await;
    let write = |lines: String| write_lines(&s.base, &key, lines);
    let lines = |from: usize, to: usize| {
        (from..to)
            .map(|i| format!("m,host=h{i} v=1 1700000000000000000\n"))
            .collect::<String>()
    };
    let count = || async {
        api.get("/api/v1/devices?limit=100").await.1["data"]
            .as_array()
            .unwrap()
            .len()
    };
    // Seven new series in one write: five are created, two refused by name.
    let res = write(lines(0, 7)).await;
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(text.contains("max_auto_devices_per_request"), "{text}");
    assert_eq!(count().await, 5);
    // Five more: three fit the minute's budget of eight.
    let text = write(lines(10, 15)).await.text().await.unwrap();
    assert!(text.contains("max_auto_devices_per_minute"), "{text}");
    assert_eq!(count().await, 8);
    // Known series still write, whatever the budget.
    assert_eq!(write(lines(0, 5)).await.status(), 204);
    // Four more by the API reach the tenant's twelve; the next is refused.
    for i in 0..4 {
        create_device(&s.base, &api.token, &format!("api-{i}")).await;
    }
    let (st, err) = api
        .post("/api/v1/devices", json!({"name": "one-too-many"}))
        .await;
    assert_eq!(st, 403, "{err}");
    assert_eq!(err["type"], "/problems/limit-reached");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("max_devices_per_tenant"),
        "{err}"
    );
    assert_eq!(count().await, 12);

    // The admin owns the first tenant; one more is allowed, then no more.
    api.must(
        "POST",
        "/api/v1/tenants",
        Some(json!({"name": "second"})),
        201,
    )
    .await;
    let (st, err) = api.post("/api/v1/tenants", json!({"name": "third"})).await;
    assert_eq!(st, 403, "{err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("max_tenants_per_user"),
        "{err}"
    );
}

/// Validation gaps: control characters in series keys, huge inputs echoed
/// in errors, empty writes, the interval's range, oversized live messages.
#[tokio::test]
async fn validation_gaps_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env = vec![("TRIBUTARY_LIVE_MAX_MESSAGE_BYTES", "1024".into())];
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let key = api_key(&api, "lp", "write").await;
    let write = |lines: String| write_lines(&s.base, &key, lines);
    let res = write("bad\u{0}name,t=\u{1b}x v=1\n".into()).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("control characters"));
    let (_, list) = api.get("/api/v1/devices").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");

    let huge = "x".repeat(1_000_000);
    let res = write(format!("m,t={huge} v=oops\n")).await;
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(
        text.len() < 5_000,
        "a {} byte error echoes the input",
        text.len()
    );

    assert_eq!(write(String::new()).await.status(), 400);

    let (id, _) = create_device(&s.base, &api.token, "iv").await;
    let (st, err) = api
        .get(&format!(
            "/api/v1/devices/{id}/telemetry?agg=avg&interval=86400000000000"
        ))
        .await;
    assert_eq!(st, 400);
    assert!(
        !err["detail"].as_str().unwrap().contains("positive"),
        "{err}"
    );

    // A live message past the limit is closed with 1009, as RFC 6455 says.
    let url = format!("ws://{}/api/v1/live?token={}", s.addr(), api.token);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "y".repeat(4096).into(),
    ))
    .await
    .unwrap();
    let mut code = None;
    while let Some(Ok(msg)) = ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Close(frame) = msg {
            code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(1009));
}

/// MQTT usernames are unique per tenant: another tenant may choose the same
/// one (no 409 tells what it uses), each device logs in as itself, and only
/// identical username and password across tenants is refused.
#[tokio::test]
async fn mqtt_usernames_are_per_tenant() {
    use rumqttc::mqttbytes::v4::Publish;
    use rumqttc::mqttbytes::QoS;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let a = Api::new(&s.base, &login(&s.base).await);
    let b = second_tenant(&a, "tenant-b").await;
    let (da, _) = create_device(&s.base, &a.token, "plc-a").await;
    let (db, _) = create_device(&s.base, &b.token, "plc-b").await;
    let set = |api: &Api, id: &str, password: &str| {
        let (api, id, password) = (api.clone(), id.to_string(), password.to_string());
        async move {
            api.call(
                "PUT",
                &format!("/api/v1/devices/{id}/mqtt-credentials"),
                Some(json!({"username": "plc", "password": password})),
            )
            .await
        }
    };
    assert_eq!(set(&a, &da, "password-of-a").await.0, 200);
    assert_eq!(set(&b, &db, "password-of-b").await.0, 200);
    // The same username twice in one tenant is still a conflict.
    let (dup, _) = create_device(&s.base, &b.token, "plc-b2").await;
    assert_eq!(set(&b, &dup, "another-password").await.0, 409);
    // Identical credentials to another tenant's would be ambiguous.
    let (st, err) = set(&b, &dup, "password-of-a").await;
    assert_eq!(st, 409, "{err}");

    for (password, api, id, value) in [("password-of-a", &a, &da, 1), ("password-of-b", &b, &db, 2)]
    {
        let (mut raw, ack) =
            Raw::connect_with(&s.mqtt, &format!("c{value}"), "plc", true, 30, password);
        assert!(
            matches!(ack, Packet::ConnAck(ref c) if c.code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success),
            "{ack:?}"
        );
        let mut p = Publish::new(
            "v1/devices/me/telemetry",
            QoS::AtLeastOnce,
            format!("{{\"v\":{value}}}"),
        );
        p.pkid = 1;
        raw.send(Packet::Publish(p));
        assert!(matches!(raw.read(), Some(Packet::PubAck(_))));
        let (_, latest) = api.get(&format!("/api/v1/devices/{id}/latest")).await;
        assert_eq!(latest["v"]["value"], json!(value), "{latest}");
    }
    let (_, ack) = Raw::connect_with(&s.mqtt, "c3", "plc", true, 30, "wrong-password");
    assert!(
        matches!(ack, Packet::ConnAck(ref c) if c.code != rumqttc::mqttbytes::v4::ConnectReturnCode::Success),
        "{ack:?}"
    );
}

/// A tmpfs of `mib` MiB mounted for one test (needs root); unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(SmallDisk(dir));
        }
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root and must be able to mount a tmpfs"
        );
        eprintln!("skipping: cannot mount a tmpfs (not root)");
        None
    }

    /// Fills the disk with one file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        let path = self.0.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// On a full disk telemetry is refused (HTTP 507 with Retry-After, MQTT
/// without a PUBACK), nothing refused is stored, everything acknowledged
/// is; once space is freed writes are taken again by themselves, and a
/// kill -9 afterwards loses nothing acknowledged.
#[tokio::test]
async fn a_full_disk_refuses_writes_and_the_server_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount(48) else {
        return;
    };
    let data = disk.0.path().join("data");
    let mut opts = Options::new(&data);
    opts.env = vec![
        ("TRIBUTARY_WAL_SEGMENT_BYTES", "1048576".into()),
        ("TRIBUTARY_TSDB_SEAL_INTERVAL_SECS", "1".into()),
    ];
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, token) = create_device(&s.base, &api.token, "disk-1").await;
    let mut acked = Vec::new();
    let send = |v: i64| {
        let (base, token) = (s.base.clone(), token.clone());
        async move {
            let body = json!({"ts": 1_700_000_000_000i64 + v, "values": {"v": v}}).to_string();
            let res = client()
                .post(format!("{base}/api/v1/{token}/telemetry"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let retry = res.headers().get("retry-after").is_some();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, retry, body)
        }
    };
    for v in 0..20 {
        assert_eq!(send(v).await.0, 200);
        acked.push(v);
    }
    let filler = disk.fill();
    let mut refused = Vec::new();
    let mut v = 20;
    while refused.is_empty() && v < 2_000 {
        let (st, retry, body) = send(v).await;
        match st {
            200 => acked.push(v),
            507 => {
                assert!(retry, "507 without Retry-After");
                assert_eq!(body["type"], "/problems/insufficient-storage", "{body}");
                refused.push(v);
            }
            other => panic!("unexpected {other}: {body}"),
        }
        v += 1;
    }
    assert!(!refused.is_empty(), "the full disk never refused a write");
    // Refused at once while full, by HTTP …
    for _ in 0..5 {
        let (st, _, _) = send(v).await;
        assert_eq!(st, 507);
        refused.push(v);
        v += 1;
    }
    // … and MQTT 3.1.1 (no negative PUBACK there: the connection closes).
    let (mut raw, _) = Raw::connect(&s.mqtt, "disk-mqtt", &token, true);
    let mut p = rumqttc::mqttbytes::v4::Publish::new(
        "v1/devices/me/telemetry",
        rumqttc::mqttbytes::QoS::AtLeastOnce,
        json!({"ts": 1_700_000_000_000i64 + v, "values": {"v": v}}).to_string(),
    );
    p.pkid = 1;
    raw.send(Packet::Publish(p));
    assert!(
        !matches!(raw.read(), Some(Packet::PubAck(_))),
        "a write on a full disk was acknowledged"
    );
    refused.push(v);
    v += 1;

    std::fs::remove_file(filler).unwrap();
    let started = Instant::now();
    loop {
        let (st, _, body) = send(v).await;
        if st == 200 {
            acked.push(v);
            v += 1;
            break;
        }
        assert_eq!(st, 507, "{body}");
        refused.push(v);
        v += 1;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no recovery after space returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..10 {
        assert_eq!(send(v).await.0, 200);
        acked.push(v);
        v += 1;
    }
    let stored = |api: Api| {
        let id = id.clone();
        async move {
            let (_, t) = api
                .get(&format!(
                    "/api/v1/devices/{id}/telemetry?keys=v&order=asc&limit=10000"
                ))
                .await;
            t["v"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["value"].as_i64().unwrap())
                .collect::<Vec<i64>>()
        }
    };
    assert_eq!(stored(api.clone()).await, acked);
    assert!(refused.iter().all(|r| !acked.contains(r)));

    s.kill9();
    let mut opts = Options::new(&data);
    opts.env = vec![("TRIBUTARY_WAL_SEGMENT_BYTES", "1048576".into())];
    let s = Server::start_with(opts);
    let api = Api::new(&s.base, &login(&s.base).await);
    assert_eq!(
        stored(api).await,
        acked,
        "acknowledged points lost after kill -9"
    );
}

//! Configuration layering, first start, health and metrics.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

fn config_show(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(binary());
    cmd.args(["config", "show"]).args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TRIBUTARY_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn config_layers_file_then_env_then_flags_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tributary.toml");
    std::fs::write(
        &file,
        "http_listen = \"127.0.0.1:9000\"\nmqtt_listen = \"127.0.0.1:9883\"\nlog = \"debug\"\nadmin_password = \"from-the-file-123\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();

    let defaults = config_show(&[], &[]);
    assert!(
        defaults.contains("http_listen = \"127.0.0.1:8080\""),
        "{defaults}"
    );
    assert!(defaults.contains("data_dir = \"./tributary-data\""));
    assert!(defaults.contains("# admin_password: unset"));

    let from_file = config_show(&["--config", f], &[]);
    assert!(from_file.contains("http_listen = \"127.0.0.1:9000\""));
    assert!(from_file.contains("log = \"debug\""));
    assert!(from_file.contains("admin_password = \"********\""));
    assert!(!from_file.contains("from-the-file"), "secrets are masked");

    let env = config_show(
        &["--config", f],
        &[
            ("TRIBUTARY_HTTP_LISTEN", "127.0.0.1:9100"),
            ("TRIBUTARY_LOG", "warn"),
        ],
    );
    assert!(
        env.contains("http_listen = \"127.0.0.1:9100\""),
        "env beats file"
    );
    assert!(env.contains("log = \"warn\""));
    assert!(
        env.contains("mqtt_listen = \"127.0.0.1:9883\""),
        "file still applies"
    );

    let flags = config_show(
        &[
            "--config",
            f,
            "--http-listen",
            "127.0.0.1:9200",
            "--data-dir",
            "/tmp/x",
        ],
        &[
            ("TRIBUTARY_HTTP_LISTEN", "127.0.0.1:9100"),
            ("TRIBUTARY_DATA_DIR", "/tmp/env"),
        ],
    );
    assert!(
        flags.contains("http_listen = \"127.0.0.1:9200\""),
        "flags beat env"
    );
    assert!(flags.contains("data_dir = \"/tmp/x\""));

    // Text settings stay text even when they look like numbers.
    let numeric = config_show(&[], &[("TRIBUTARY_ADMIN_PASSWORD", "12345678901")]);
    assert!(
        numeric.contains("admin_password = \"********\""),
        "{numeric}"
    );

    // Mistakes are reported, not ignored.
    let out = Command::new(binary())
        .args(["config", "show"])
        .env("TRIBUTARY_HTTP_LISTN", "typo")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http_listn"));
    let out = Command::new(binary())
        .args(["config", "show", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn first_start_prints_a_generated_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.admin_password = None;
    let s = Server::start_with(opts);
    // The banner is printed before the server logs its address.
    let stdout = s.stdout.lock().unwrap().clone();
    let password = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password in {stdout:?}"))
        .to_string();
    assert!(password.len() >= 16);
    assert!(
        !s.logs.lock().unwrap().iter().any(|l| l.contains(&password)),
        "the password never reaches the logs"
    );
    let res = client()
        .post(format!("{}/api/v1/auth/login", s.base))
        .json(&json!({"email": ADMIN_EMAIL, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    s.terminate();

    let mut opts = Options::new(dir.path());
    opts.admin_password = None;
    let s = Server::start_with(opts);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !s.stdout.lock().unwrap().contains("password"),
        "printed only once"
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_unknown_routes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let http = client();
    let health: Value = http
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = http.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let token = login(&s.base).await;
    let (_, dev) = create_device(&s.base, &token, "m").await;
    post_telemetry(&s.base, &dev, r#"{"a":1,"b":2}"#).await;
    let (_, _) = get_json(&s.base, &token, "/api/v1/devices").await;
    let metrics = http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "tributary_points_accepted_total 2",
        "tributary_batches_accepted_total 1",
        // One for the device's creation event, one for the batch.
        "tributary_wal_fsyncs_total 2",
        "tributary_live_clients 0",
        "tributary_batches_rejected_total{reason=\"invalid\"} 0",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }

    let res = http
        .get(format!("{}/no/such/thing", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = http
        .put(format!("{}/api/v1/devices", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

/// The system administrator reads the event log's state: the series store
/// as a consumer, caught up, and the bytes on disk against the budget; a
/// tenant's owner who is not one gets 403, and `/metrics` carries the lag.
#[tokio::test]
async fn the_log_status_shows_each_consumer_to_system_admins_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let admin = Api::new(&s.base, &login(&s.base).await);
    let (_, token) = create_device(&s.base, &admin.token, "meter").await;
    post_telemetry(&s.base, &token, r#"{"v": 1}"#).await;

    let status = admin.must("GET", "/api/v1/admin/log", None, 200).await;
    let committed = status["committed_lsn"].as_u64().unwrap();
    assert!(committed >= 1, "{status}");
    assert!(status["retained_bytes"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(status["max_retained_bytes"], 8u64 << 30);
    let consumers = status["consumers"].as_array().unwrap();
    assert_eq!(consumers[0]["name"], "series", "{status}");
    assert_eq!(consumers[0]["applied_lsn"].as_u64().unwrap(), committed);
    assert_eq!(consumers[0]["lag_events"], 0);

    let member = invite_and_accept(&admin, "viewer@example.com", "owner").await;
    let member = Api::new(&s.base, &member);
    let (code, body) = member.get("/api/v1/admin/log").await;
    assert_eq!(code, 403, "{body}");
    let key = api_key(&admin, "ops", "read").await;
    assert_eq!(
        Api::new(&s.base, &key).get("/api/v1/admin/log").await.0,
        403
    );
    assert_eq!(Api::new(&s.base, "").get("/api/v1/admin/log").await.0, 401);

    let metrics = metrics_text(&s.base).await;
    assert!(
        metrics.contains("tributary_log_consumer_lag_events{consumer=\"series\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tributary_log_retained_bytes"),
        "{metrics}"
    );
}

//! Per-tenant retention: an admin sets how many days the tenant's time
//! series are kept, and older points are dropped from storage and answers,
//! for good.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::common::*;

const DAY_MS: i64 = 86_400_000;

async fn history(api: &Api, id: &str) -> Vec<(i64, i64)> {
    let (st, v) = api
        .get(&format!(
            "/api/v1/devices/{id}/telemetry?keys=t&from=0&to=4000000000000&order=asc&limit=100"
        ))
        .await;
    assert_eq!(st, 200, "{v}");
    v["t"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| (s["ts"].as_i64().unwrap(), s["value"].as_i64().unwrap()))
        .collect()
}

#[tokio::test]
async fn retention_drops_old_points_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: &std::path::Path| {
        let mut o = Options::new(dir);
        o.env = vec![
            ("TRIBUTARY_RETENTION_CHECK_SECS", "1".into()),
            ("TRIBUTARY_TSDB_SEAL_INTERVAL_SECS", "1".into()),
        ];
        Server::start_with(o)
    };
    let s = start(dir.path());
    let admin = Api::new(&s.base, &login(&s.base).await);
    let (id, dev) = create_device(&s.base, &admin.token, "thermo").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = json!([
        {"ts": now - 10 * DAY_MS, "values": {"t": 1}},
        {"ts": now - 3 * DAY_MS, "values": {"t": 2}},
        {"ts": now, "values": {"t": 3}},
    ]);
    let (st, text) = post_telemetry(&s.base, &dev, body.to_string()).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(history(&admin, &id).await.len(), 3);

    let v = admin.must("GET", "/api/v1/tenant", None, 200).await;
    assert_eq!(v["retention_days"], json!(null));
    assert_eq!(
        v["effective_retention_days"], 0,
        "the server keeps data forever"
    );

    // Only owners and admins may change it, within bounds.
    let viewer = Api::new(
        &s.base,
        &invite_and_accept(&admin, "viewer@example.com", "viewer").await,
    );
    let (st, v) = viewer
        .patch("/api/v1/tenant", json!({"retention_days": 7}))
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = admin
        .patch("/api/v1/tenant", json!({"retention_days": 100_000}))
        .await;
    assert_eq!(
        (st, v["field"].as_str()),
        (400, Some("retention_days")),
        "{v}"
    );
    let (st, v) = admin
        .patch("/api/v1/tenant", json!({"retention_days": "a week"}))
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(history(&admin, &id).await.len(), 3, "nothing dropped yet");

    let v = admin
        .must(
            "PATCH",
            "/api/v1/tenant",
            Some(json!({"retention_days": 7})),
            200,
        )
        .await;
    assert_eq!(
        (
            v["retention_days"].as_u64(),
            v["effective_retention_days"].as_u64()
        ),
        (Some(7), Some(7))
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while history(&admin, &id).await.len() == 3 {
        assert!(
            Instant::now() < deadline,
            "the 10-day-old point is still there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = vec![(now - 3 * DAY_MS, 2), (now, 3)];
    assert_eq!(history(&admin, &id).await, kept);
    let (_, v) = admin
        .get(&format!("/api/v1/devices/{id}/latest?keys=t"))
        .await;
    assert_eq!(v["t"]["value"], 3, "{v}");
    let (_, audit) = admin.get("/api/v1/audit?action=tenant.update").await;
    assert_eq!(audit["data"][0]["action"], "tenant.update", "{audit}");

    // Gone for good: not back after a restart and a replay of the log.
    assert!(s.terminate().success());
    let s = start(dir.path());
    let admin = Api::new(&s.base, &login(&s.base).await);
    assert_eq!(history(&admin, &id).await, kept);

    // Back to the server's default (forever): the setting reads null again.
    let v = admin
        .must(
            "PATCH",
            "/api/v1/tenant",
            Some(json!({"retention_days": null})),
            200,
        )
        .await;
    assert_eq!(v["retention_days"], json!(null));
    assert_eq!(v["effective_retention_days"], 0);
}

//! Login, sessions, device management and credentials.

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn login_refresh_rotation_and_reuse_detection() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let http = client();
    let login_url = format!("{}/api/v1/auth/login", s.base);

    for (body, what) in [
        (
            json!({"email": ADMIN_EMAIL, "password": "wrong-password"}),
            "wrong password",
        ),
        (
            json!({"email": "nobody@example.com", "password": ADMIN_PASSWORD}),
            "unknown email",
        ),
    ] {
        let res = http.post(&login_url).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(
            p["detail"], "invalid email or password",
            "{what}: never says which"
        );
    }
    let res = http
        .post(&login_url)
        .json(&json!({"email": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http
        .post(&login_url)
        .body("{}")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);

    let res = http
        .post(&login_url)
        .json(&json!({"email": ADMIN_EMAIL.to_uppercase(), "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "email is case-insensitive");
    let session: Value = res.json().await.unwrap();
    assert_eq!(session["expires_in"], 900);
    let access = session["access_token"].as_str().unwrap();
    let refresh = session["refresh_token"].as_str().unwrap().to_string();
    let (st, _) = get_json(&s.base, access, "/api/v1/devices").await;
    assert_eq!(st, 200);

    // Refresh rotates: the new pair works, the old refresh token is spent.
    let refresh_url = format!("{}/api/v1/auth/refresh", s.base);
    let res = http
        .post(&refresh_url)
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let next: Value = res.json().await.unwrap();
    let next_refresh = next["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(next_refresh, refresh);
    let (st, _) = get_json(
        &s.base,
        next["access_token"].as_str().unwrap(),
        "/api/v1/devices",
    )
    .await;
    assert_eq!(st, 200);

    // Reusing the spent token revokes the whole family, including the newest one.
    let res = http
        .post(&refresh_url)
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .post(&refresh_url)
        .json(&json!({"refresh_token": next_refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "family revoked after reuse");

    // Bearer problems.
    for bad in ["", "garbage", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
        let (st, v) = get_json(&s.base, bad, "/api/v1/devices").await;
        assert_eq!(st, 401, "{bad:?}");
        assert!(v["detail"].as_str().is_some());
    }
}

#[tokio::test]
async fn device_lifecycle_and_token_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let token = login(&s.base).await;
    let http = client();
    let (id, dev) = create_device(&s.base, &token, "pump").await;

    // Names are unique per tenant and validated.
    for (body, status, field) in [
        (json!({"name": "pump"}), 409, None),
        (json!({"name": ""}), 400, Some("name")),
        (json!({"name": "x".repeat(129)}), 400, Some("name")),
        (json!({"name": "ok", "colour": "red"}), 400, None),
        (json!({"nom": "ok"}), 400, None),
    ] {
        let res = http
            .post(format!("{}/api/v1/devices", s.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{body}");
        let p: Value = res.json().await.unwrap();
        if let Some(f) = field {
            assert_eq!(p["field"], f);
        }
        assert!(!p["detail"].as_str().unwrap().is_empty());
    }

    let (st, d) = get_json(&s.base, &token, &format!("/api/v1/devices/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(d["name"], "pump");
    assert!(
        d.get("access_token").is_none(),
        "the token is shown only at creation"
    );
    assert_eq!(d["token_hint"], &dev[..4]);

    // Pagination walks every device exactly once.
    for i in 0..5 {
        create_device(&s.base, &token, &format!("dev-{i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) =
            get_json(&s.base, &token, &format!("/api/v1/devices?limit=2{cursor}")).await;
        for d in page["data"].as_array().unwrap() {
            seen.push(d["name"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0], "pump");

    // Rotation: the old token stops at once, the new one works.
    assert_eq!(post_telemetry(&s.base, &dev, r#"{"x":1}"#).await.0, 200);
    let res = http
        .post(format!("{}/api/v1/devices/{id}/token", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    let new_dev = rotated["access_token"].as_str().unwrap();
    assert_ne!(new_dev, dev);
    assert_eq!(post_telemetry(&s.base, &dev, r#"{"x":2}"#).await.0, 401);
    assert_eq!(post_telemetry(&s.base, new_dev, r#"{"x":3}"#).await.0, 200);

    // Delete removes the device, its token and its data.
    let res = http
        .delete(format!("{}/api/v1/devices/{id}", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(post_telemetry(&s.base, new_dev, r#"{"x":4}"#).await.0, 401);
    let (st, _) = get_json(&s.base, &token, &format!("/api/v1/devices/{id}")).await;
    assert_eq!(st, 404);
    let (st, _) = get_json(&s.base, &token, &format!("/api/v1/devices/{id}/telemetry")).await;
    assert_eq!(st, 404);
    let res = http
        .delete(format!("{}/api/v1/devices/{id}", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

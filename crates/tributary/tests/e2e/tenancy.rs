//! Tenants, members, invitations, sessions and API keys: each change takes effect at once.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn invitations_roles_and_membership_changes_apply_immediately() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let owner = Api::new(&s.base, &login(&s.base).await);
    let anon = Api::new(&s.base, "");

    // A weak password does not burn the invitation; a used one cannot be reused.
    let inv = owner
        .must(
            "POST",
            "/api/v1/invites",
            Some(json!({"email": "ed@example.com", "role": "editor"})),
            201,
        )
        .await;
    assert_eq!(inv["status"], "pending");
    let token = inv["token"].as_str().unwrap();
    let (st, v) = anon
        .post(
            "/api/v1/auth/accept-invite",
            json!({"token": token, "password": "short"}),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (400, Some("password")), "{v}");
    let (st, v) = anon
        .post(
            "/api/v1/auth/accept-invite",
            json!({"token": token, "password": "Password123"}),
        )
        .await;
    assert_eq!(st, 400, "common password refused: {v}");
    let session = anon
        .must(
            "POST",
            "/api/v1/auth/accept-invite",
            Some(json!({"token": token, "password": "editor-password-1"})),
            200,
        )
        .await;
    let (st, _) = anon
        .post(
            "/api/v1/auth/accept-invite",
            json!({"token": token, "password": "editor-password-1"}),
        )
        .await;
    assert_eq!(st, 400, "an invitation works once");
    let editor = Api::new(&s.base, session["access_token"].as_str().unwrap());
    let me = editor.must("GET", "/api/v1/me", None, 200).await;
    assert_eq!(me["role"], "editor");
    assert_eq!(me["email"], "ed@example.com");
    let ed_id = me["user_id"].as_str().unwrap().to_string();

    // Revoked invitations cannot be accepted.
    let inv2 = owner
        .must(
            "POST",
            "/api/v1/invites",
            Some(json!({"email": "late@example.com", "role": "viewer"})),
            201,
        )
        .await;
    owner
        .must(
            "DELETE",
            &format!("/api/v1/invites/{}", inv2["id"].as_str().unwrap()),
            None,
            204,
        )
        .await;
    let (st, _) = anon
        .post(
            "/api/v1/auth/accept-invite",
            json!({"token": inv2["token"], "password": "viewer-password-1"}),
        )
        .await;
    assert_eq!(st, 400);
    let invites = owner.must("GET", "/api/v1/invites", None, 200).await;
    let statuses: Vec<&str> = invites["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec!["revoked", "accepted"],
        "newest first, token never listed"
    );
    assert!(invites["data"][0].get("token").is_none());

    // Role changes apply to tokens already issued.
    editor
        .must(
            "POST",
            "/api/v1/devices",
            Some(json!({"name": "by-editor"})),
            201,
        )
        .await;
    owner
        .must(
            "PATCH",
            &format!("/api/v1/users/{ed_id}"),
            Some(json!({"role": "viewer"})),
            200,
        )
        .await;
    let (st, v) = editor
        .post("/api/v1/devices", json!({"name": "by-viewer"}))
        .await;
    assert_eq!(st, 403, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("viewer"));

    // Only owners deal with owners; the last owner stays.
    let admin = Api::new(
        &s.base,
        &invite_and_accept(&owner, "adm@example.com", "admin").await,
    );
    let (st, _) = admin
        .patch(&format!("/api/v1/users/{ed_id}"), json!({"role": "owner"}))
        .await;
    assert_eq!(st, 403, "admins cannot make owners");
    let (st, _) = admin
        .post(
            "/api/v1/invites",
            json!({"email": "o@example.com", "role": "owner"}),
        )
        .await;
    assert_eq!(st, 403, "admins cannot invite owners");
    let owner_id = owner.must("GET", "/api/v1/me", None, 200).await["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = owner
        .patch(
            &format!("/api/v1/users/{owner_id}"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(st, 409, "{v}");
    let (st, _) = admin.delete(&format!("/api/v1/users/{owner_id}")).await;
    assert_eq!(st, 403);

    // Removal ends access at once.
    owner
        .must("DELETE", &format!("/api/v1/users/{ed_id}"), None, 204)
        .await;
    let (st, _) = editor.get("/api/v1/devices").await;
    assert_eq!(st, 401);
    let members = owner
        .must("GET", "/api/v1/users?sort=name", None, 200)
        .await;
    let emails: Vec<&str> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        vec!["adm@example.com", "admin@example.com"],
        "sorted by email"
    );

    // The audit log saw all of it, newest first, and only admins read it.
    let audit = owner
        .must("GET", "/api/v1/audit?limit=100", None, 200)
        .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "invite.create",
        "invite.accept",
        "invite.revoke",
        "user.role_change",
        "user.remove",
        "device.create",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert_eq!(actions[0], "user.remove");
    let entry = &audit["data"][0];
    assert_eq!(entry["resource_id"], ed_id.as_str());
    assert_eq!(entry["actor"], format!("user:{owner_id}"));
    assert_eq!(entry["ip"], "127.0.0.1");
    let (st, _) = owner
        .get("/api/v1/audit?action=device.create&limit=0")
        .await;
    assert_eq!(st, 400);
    let only = owner
        .must("GET", "/api/v1/audit?action=device.create", None, 200)
        .await;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);

    // A refused change is not recorded as done: a name in use (409), a
    // device that is not there (404).
    let (st, v) = owner
        .post("/api/v1/devices", json!({"name": "by-editor"}))
        .await;
    assert_eq!(st, 409, "{v}");
    let (st, _) = owner.delete("/api/v1/devices/no-such-device").await;
    assert_eq!(st, 404);
    let after = owner
        .must("GET", "/api/v1/audit?limit=100", None, 200)
        .await;
    assert_eq!(
        after["data"].as_array().unwrap().len(),
        audit["data"].as_array().unwrap().len(),
        "{after}"
    );
}

#[tokio::test]
async fn logout_password_change_and_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let first = login_as(&s.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let second = login_as(&s.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let a = Api::new(&s.base, first["access_token"].as_str().unwrap());
    let b = Api::new(&s.base, second["access_token"].as_str().unwrap());

    // Logout revokes that session's access token and refresh token at once, and only that session.
    a.must("POST", "/api/v1/auth/logout", None, 204).await;
    let (st, v) = a.get("/api/v1/devices").await;
    assert_eq!(st, 401, "{v}");
    let anon = Api::new(&s.base, "");
    let (st, _) = anon
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": first["refresh_token"]}),
        )
        .await;
    assert_eq!(st, 401);
    b.must("GET", "/api/v1/devices", None, 200).await;

    // Password change: wrong current password refused; other sessions end; old password stops working.
    let third = login_as(&s.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let c = Api::new(&s.base, third["access_token"].as_str().unwrap());
    let (st, _) = b
        .post(
            "/api/v1/auth/password",
            json!({"current_password": "nope-nope-nope", "new_password": "a-brand-new-password"}),
        )
        .await;
    assert_eq!(st, 401);
    let (st, v) = b
        .post(
            "/api/v1/auth/password",
            json!({"current_password": ADMIN_PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (400, Some("password")));
    b.must(
        "POST",
        "/api/v1/auth/password",
        Some(json!({"current_password": ADMIN_PASSWORD, "new_password": "a-brand-new-password"})),
        204,
    )
    .await;
    b.must("GET", "/api/v1/devices", None, 200).await;
    let (st, _) = c.get("/api/v1/devices").await;
    assert_eq!(st, 401, "other sessions end");
    login_as(&s.base, ADMIN_EMAIL, "a-brand-new-password").await;

    // Failed logins are limited per account: 429 with Retry-After, even for the right password.
    for _ in 0..5 {
        let (st, _) = anon
            .post(
                "/api/v1/auth/login",
                json!({"email": ADMIN_EMAIL, "password": "wrong-password!"}),
            )
            .await;
        assert_eq!(st, 401);
    }
    let res = client()
        .post(format!("{}/api/v1/auth/login", s.base))
        .json(&json!({"email": ADMIN_EMAIL, "password": "a-brand-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry));
    // Another account from the same address is not locked out.
    let (st, _) = anon
        .post(
            "/api/v1/auth/login",
            json!({"email": "someone@example.com", "password": "whatever-it-is"}),
        )
        .await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn api_keys_are_scoped_shown_once_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let owner = Api::new(&s.base, &login(&s.base).await);
    let created = owner
        .must(
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "grafana", "scope": "read"})),
            201,
        )
        .await;
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("trb_"));
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    let list = owner.must("GET", "/api/v1/api-keys", None, 200).await;
    assert_eq!(list["data"][0]["prefix"], created["prefix"]);
    assert!(
        list["data"][0].get("key").is_none(),
        "listed by prefix only"
    );
    let filtered = owner
        .must("GET", "/api/v1/api-keys?name=GRAF", None, 200)
        .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    let none = owner
        .must("GET", "/api/v1/api-keys?name=nothing", None, 200)
        .await;
    assert!(none["data"].as_array().unwrap().is_empty());

    let reader = Api::new(&s.base, &key);
    let (id, _) = create_device(&s.base, &owner.token, "k1").await;
    reader.must("GET", "/api/v1/devices", None, 200).await;
    reader
        .must("GET", &format!("/api/v1/devices/{id}/latest"), None, 200)
        .await;
    let (st, _) = reader
        .post("/api/v1/devices", json!({"name": "nope"}))
        .await;
    assert_eq!(st, 403, "read scope cannot write");
    let (st, _) = reader.get("/api/v1/me").await;
    assert_eq!(st, 403, "API keys are not user sessions");

    // An API key works on the live WebSocket too.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/live?token={key}", s.addr()))
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
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(msg.to_text().unwrap().contains("snapshot"));

    let writer_key = owner
        .must(
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "ingest", "scope": "write"})),
            201,
        )
        .await;
    let writer = Api::new(&s.base, writer_key["key"].as_str().unwrap());
    writer
        .must(
            "POST",
            "/api/v1/devices",
            Some(json!({"name": "by-key"})),
            201,
        )
        .await;
    let (st, _) = writer.get("/api/v1/api-keys").await;
    assert_eq!(st, 403, "write scope cannot manage keys");

    // Revocation is immediate.
    owner
        .must(
            "DELETE",
            &format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap()),
            None,
            204,
        )
        .await;
    let (st, _) = reader.get("/api/v1/devices").await;
    assert_eq!(st, 401);
    let (st, _) = owner
        .delete(&format!(
            "/api/v1/api-keys/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, 404, "already revoked");

    // Expiry.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 1500;
    let short = owner
        .must(
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "short", "scope": "read", "expires_at": soon})),
            201,
        )
        .await;
    let short = Api::new(&s.base, short["key"].as_str().unwrap());
    short.must("GET", "/api/v1/devices", None, 200).await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (st, _) = short.get("/api/v1/devices").await;
    assert_eq!(st, 401, "expired");
    let (st, v) = owner
        .post(
            "/api/v1/api-keys",
            json!({"name": "past", "scope": "read", "expires_at": 1}),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (400, Some("expires_at")));
    let (st, v) = owner
        .post("/api/v1/api-keys", json!({"name": "x", "scope": "root"}))
        .await;
    assert_eq!((st, v["field"].as_str()), (400, Some("scope")));
}

#[tokio::test]
async fn users_belong_to_several_tenants_and_switch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let owner = Api::new(&s.base, &login(&s.base).await);
    create_device(&s.base, &owner.token, "in-first").await;
    let t2 = owner
        .must(
            "POST",
            "/api/v1/tenants",
            Some(json!({"name": "second"})),
            201,
        )
        .await;
    let t2_id = t2["id"].as_str().unwrap();
    let tenants = owner.must("GET", "/api/v1/tenants", None, 200).await;
    assert_eq!(tenants["data"].as_array().unwrap().len(), 2);

    let switched = owner
        .must(
            "POST",
            "/api/v1/auth/switch",
            Some(json!({"tenant_id": t2_id})),
            200,
        )
        .await;
    let second = Api::new(&s.base, switched["access_token"].as_str().unwrap());
    let me = second.must("GET", "/api/v1/me", None, 200).await;
    assert_eq!(
        (me["tenant_id"].as_str(), me["role"].as_str()),
        (Some(t2_id), Some("owner"))
    );
    let devices = second.must("GET", "/api/v1/devices", None, 200).await;
    assert_eq!(
        devices["data"].as_array().unwrap().len(),
        0,
        "each tenant sees its own devices"
    );

    let anon = Api::new(&s.base, "");
    let direct = anon
        .must(
            "POST",
            "/api/v1/auth/login",
            Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "tenant_id": t2_id})),
            200,
        )
        .await;
    let direct = Api::new(&s.base, direct["access_token"].as_str().unwrap());
    assert_eq!(
        direct.must("GET", "/api/v1/me", None, 200).await["tenant_id"],
        t2_id
    );
    let (st, _) = anon.post("/api/v1/auth/login", json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "tenant_id": "01234567-89ab-7def-8123-456789abcdef"})).await;
    assert_eq!(st, 403);
    let (st, _) = owner
        .post(
            "/api/v1/auth/switch",
            json!({"tenant_id": "01234567-89ab-7def-8123-456789abcdef"}),
        )
        .await;
    assert_eq!(st, 403);

    // Deleting a tenant (owner only) ends every session in it and leaves the other.
    let viewer = Api::new(
        &s.base,
        &invite_and_accept(&second, "v@example.com", "viewer").await,
    );
    let (st, _) = viewer.delete("/api/v1/tenant").await;
    assert_eq!(st, 403);
    second.must("DELETE", "/api/v1/tenant", None, 204).await;
    let (st, _) = second.get("/api/v1/devices").await;
    assert_eq!(st, 401);
    let (st, _) = viewer.get("/api/v1/devices").await;
    assert_eq!(st, 401);
    assert_eq!(
        owner.must("GET", "/api/v1/devices", None, 200).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn failed_logins_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.env
        .push(("TRIBUTARY_LOGIN_FAILURES_PER_ADDRESS", "3".into()));
    let s = Server::start_with(opts);
    let anon = Api::new(&s.base, "");
    for i in 0..3 {
        let (st, v) = anon
            .post(
                "/api/v1/auth/login",
                json!({"email": format!("nobody{i}@example.com"), "password": "whatever-it-is"}),
            )
            .await;
        assert_eq!(st, 401, "{v}");
    }
    let (st, v) = anon
        .post(
            "/api/v1/auth/login",
            json!({"email": "yet-another@example.com", "password": "whatever-it-is"}),
        )
        .await;
    assert_eq!(st, 429, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("retry in"));
}

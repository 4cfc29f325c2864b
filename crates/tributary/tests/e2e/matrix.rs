//! Every endpoint against every role, every tenant boundary, and hostile input.
//! The endpoint table must cover every operation of the OpenAPI document.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// Any member (read).
    Read,
    /// Editors and up, write/admin keys.
    Write,
    /// Admins and owners, admin keys.
    Admin,
    /// Owners only.
    Owner,
    /// Any user session; never an API key.
    User,
    /// The installation's system administrators (`system_admins`: here the
    /// first start's admin, the matrix's owner) and nobody else.
    SystemAdmin,
}

/// A principal of the matrix: name, credential, and what it is.
struct Who {
    name: &'static str,
    api: Api,
    role: &'static str,
    is_key: bool,
}

fn allowed(rule: Rule, who: &Who) -> bool {
    match rule {
        Rule::Read => true,
        Rule::Write => matches!(who.role, "owner" | "admin" | "editor"),
        Rule::Admin => matches!(who.role, "owner" | "admin"),
        Rule::Owner => who.role == "owner",
        Rule::User => !who.is_key,
        Rule::SystemAdmin => who.name == "owner",
    }
}

/// Endpoints that are not governed by roles (public, or authenticated by a device token).
const PUBLIC: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
    ("get", "/api/docs"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/accept-invite"),
    ("post", "/api/v1/{token}/telemetry"),
    ("post", "/api/v1/{token}/attributes"),
    ("get", "/api/v1/{token}/attributes"),
    ("get", "/api/v1/{token}/ws"),
    ("get", "/ping"),
    ("post", "/query"),
];

/// (method, OpenAPI path, rule).
const ENDPOINTS: &[(&str, &str, Rule)] = &[
    ("get", "/api/v1/me", Rule::User),
    ("get", "/api/v1/admin/log", Rule::SystemAdmin),
    ("post", "/api/v1/auth/logout", Rule::User),
    ("post", "/api/v1/auth/password", Rule::User),
    ("post", "/api/v1/auth/switch", Rule::User),
    ("get", "/api/v1/tenants", Rule::User),
    ("post", "/api/v1/tenants", Rule::User),
    ("get", "/api/v1/tenant", Rule::Read),
    ("patch", "/api/v1/tenant", Rule::Admin),
    ("delete", "/api/v1/tenant", Rule::Owner),
    ("get", "/api/v1/users", Rule::Admin),
    ("get", "/api/v1/users/{id}", Rule::Admin),
    ("patch", "/api/v1/users/{id}", Rule::Admin),
    ("delete", "/api/v1/users/{id}", Rule::Admin),
    ("post", "/api/v1/invites", Rule::Admin),
    ("get", "/api/v1/invites", Rule::Admin),
    ("delete", "/api/v1/invites/{id}", Rule::Admin),
    ("post", "/api/v1/api-keys", Rule::Admin),
    ("get", "/api/v1/api-keys", Rule::Admin),
    ("delete", "/api/v1/api-keys/{id}", Rule::Admin),
    ("get", "/api/v1/audit", Rule::Admin),
    ("post", "/api/v1/devices", Rule::Write),
    ("get", "/api/v1/devices", Rule::Read),
    ("get", "/api/v1/devices/{id}", Rule::Read),
    ("patch", "/api/v1/devices/{id}", Rule::Write),
    ("delete", "/api/v1/devices/{id}", Rule::Write),
    ("post", "/api/v1/devices/{id}/token", Rule::Write),
    ("put", "/api/v1/devices/{id}/mqtt-credentials", Rule::Write),
    (
        "delete",
        "/api/v1/devices/{id}/mqtt-credentials",
        Rule::Write,
    ),
    ("post", "/api/v1/devices/{id}/rpc", Rule::Write),
    ("post", "/write", Rule::Write),
    ("post", "/api/v2/write", Rule::Write),
    ("get", "/api/v1/devices/{id}/attributes", Rule::Read),
    (
        "post",
        "/api/v1/devices/{id}/attributes/{scope}",
        Rule::Write,
    ),
    (
        "delete",
        "/api/v1/devices/{id}/attributes/{scope}",
        Rule::Write,
    ),
    ("get", "/api/v1/devices/{id}/telemetry", Rule::Read),
    ("get", "/api/v1/devices/{id}/latest", Rule::Read),
    ("get", "/api/v1/latest", Rule::Read),
    ("post", "/api/v1/groups", Rule::Write),
    ("get", "/api/v1/groups", Rule::Read),
    ("get", "/api/v1/groups/{id}", Rule::Read),
    ("patch", "/api/v1/groups/{id}", Rule::Write),
    ("delete", "/api/v1/groups/{id}", Rule::Write),
    (
        "put",
        "/api/v1/groups/{id}/devices/{device_id}",
        Rule::Write,
    ),
    (
        "delete",
        "/api/v1/groups/{id}/devices/{device_id}",
        Rule::Write,
    ),
    ("post", "/api/v1/profiles", Rule::Write),
    ("get", "/api/v1/profiles", Rule::Read),
    ("get", "/api/v1/profiles/{id}", Rule::Read),
    ("patch", "/api/v1/profiles/{id}", Rule::Write),
    ("delete", "/api/v1/profiles/{id}", Rule::Write),
    ("get", "/api/v1/live", Rule::Read),
    ("get", "/api/v1/live/sse", Rule::Read),
];

/// Fixtures of one tenant, created by its owner.
struct Fixtures {
    owner: Api,
    tenant: String,
    device: String,
    group: String,
    profile: String,
    member: String,
}

impl Fixtures {
    async fn new(owner: Api) -> Self {
        let tenant = owner.must("GET", "/api/v1/me", None, 200).await["tenant_id"]
            .as_str()
            .unwrap()
            .to_string();
        let device = owner
            .must(
                "POST",
                "/api/v1/devices",
                Some(json!({"name": unique("dev")})),
                201,
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let group = owner
            .must(
                "POST",
                "/api/v1/groups",
                Some(json!({"name": unique("grp")})),
                201,
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let profile = owner
            .must(
                "POST",
                "/api/v1/profiles",
                Some(json!({"name": unique("prof")})),
                201,
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let member_token = invite_and_accept(
            &owner,
            &format!("{}@example.com", unique("member")),
            "viewer",
        )
        .await;
        let member = Api::new(&owner.base, &member_token)
            .must("GET", "/api/v1/me", None, 200)
            .await["user_id"]
            .as_str()
            .unwrap()
            .to_string();
        Self {
            owner,
            tenant,
            device,
            group,
            profile,
            member,
        }
    }

    /// A concrete request for an endpoint: path and body. Destructive calls get fresh targets.
    async fn request(&self, method: &str, path: &str) -> (String, Option<Value>) {
        let o = &self.owner;
        let fresh_device = || async {
            o.must(
                "POST",
                "/api/v1/devices",
                Some(json!({"name": unique("dev")})),
                201,
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (path, body) = match (method, path) {
            ("post", "/api/v1/auth/password") => (
                path.to_string(),
                Some(
                    json!({"current_password": "not-the-password", "new_password": "another-long-password"}),
                ),
            ),
            ("post", "/api/v1/auth/switch") => {
                (path.to_string(), Some(json!({"tenant_id": self.tenant})))
            }
            ("patch", "/api/v1/tenant") => {
                (path.to_string(), Some(json!({"retention_days": 3650})))
            }
            ("post", "/api/v1/tenants") => {
                (path.to_string(), Some(json!({"name": unique("tenant")})))
            }
            ("patch", "/api/v1/users/{id}") => (
                format!("/api/v1/users/{}", self.member),
                Some(json!({"role": "viewer"})),
            ),
            ("delete", "/api/v1/users/{id}") => {
                let token =
                    invite_and_accept(o, &format!("{}@example.com", unique("gone")), "viewer")
                        .await;
                let id = Api::new(&o.base, &token)
                    .must("GET", "/api/v1/me", None, 200)
                    .await["user_id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (format!("/api/v1/users/{id}"), None)
            }
            (_, "/api/v1/users/{id}") => (format!("/api/v1/users/{}", self.member), None),
            ("post", "/api/v1/invites") => (
                path.to_string(),
                Some(json!({"email": format!("{}@example.com", unique("inv")), "role": "viewer"})),
            ),
            ("delete", "/api/v1/invites/{id}") => {
                let inv = o.must("POST", "/api/v1/invites", Some(json!({"email": format!("{}@example.com", unique("inv")), "role": "viewer"})), 201).await;
                (
                    format!("/api/v1/invites/{}", inv["id"].as_str().unwrap()),
                    None,
                )
            }
            ("post", "/api/v1/api-keys") => (
                path.to_string(),
                Some(json!({"name": unique("key"), "scope": "read"})),
            ),
            ("delete", "/api/v1/api-keys/{id}") => {
                let k = o
                    .must(
                        "POST",
                        "/api/v1/api-keys",
                        Some(json!({"name": unique("key"), "scope": "read"})),
                        201,
                    )
                    .await;
                (
                    format!("/api/v1/api-keys/{}", k["id"].as_str().unwrap()),
                    None,
                )
            }
            ("post", "/api/v1/devices") => (path.to_string(), Some(json!({"name": unique("dev")}))),
            ("patch", "/api/v1/devices/{id}") => (
                format!("/api/v1/devices/{}", self.device),
                Some(json!({"tags": ["t"]})),
            ),
            ("delete", "/api/v1/devices/{id}") | ("post", "/api/v1/devices/{id}/token") => {
                (path.replace("{id}", &fresh_device().await), None)
            }
            ("put", "/api/v1/devices/{id}/mqtt-credentials") => (
                path.replace("{id}", &self.device),
                Some(json!({"username": unique("mqtt"), "password": "mqtt-password-1"})),
            ),
            ("post", "/api/v1/devices/{id}/rpc") => (
                path.replace("{id}", &self.device),
                Some(json!({"method": "ping", "timeout_ms": 1})),
            ),
            ("post", "/api/v1/devices/{id}/attributes/{scope}") => (
                format!("/api/v1/devices/{}/attributes/shared", self.device),
                Some(json!({"a": 1})),
            ),
            ("delete", "/api/v1/devices/{id}/attributes/{scope}") => (
                format!("/api/v1/devices/{}/attributes/shared?keys=a", self.device),
                None,
            ),
            (_, p) if p.starts_with("/api/v1/devices/{id}") => {
                (p.replace("{id}", &self.device), None)
            }
            ("post", "/api/v1/groups") => (path.to_string(), Some(json!({"name": unique("grp")}))),
            ("patch", "/api/v1/groups/{id}") => (
                format!("/api/v1/groups/{}", self.group),
                Some(json!({"description": "d"})),
            ),
            ("delete", "/api/v1/groups/{id}") => {
                let g = o
                    .must(
                        "POST",
                        "/api/v1/groups",
                        Some(json!({"name": unique("grp")})),
                        201,
                    )
                    .await;
                (
                    format!("/api/v1/groups/{}", g["id"].as_str().unwrap()),
                    None,
                )
            }
            (_, "/api/v1/groups/{id}/devices/{device_id}") => (
                format!("/api/v1/groups/{}/devices/{}", self.group, self.device),
                None,
            ),
            (_, "/api/v1/groups/{id}") => (format!("/api/v1/groups/{}", self.group), None),
            ("post", "/api/v1/profiles") => {
                (path.to_string(), Some(json!({"name": unique("prof")})))
            }
            ("patch", "/api/v1/profiles/{id}") => (
                format!("/api/v1/profiles/{}", self.profile),
                Some(json!({"description": "d"})),
            ),
            ("delete", "/api/v1/profiles/{id}") => {
                let p = o
                    .must(
                        "POST",
                        "/api/v1/profiles",
                        Some(json!({"name": unique("prof")})),
                        201,
                    )
                    .await;
                (
                    format!("/api/v1/profiles/{}", p["id"].as_str().unwrap()),
                    None,
                )
            }
            (_, "/api/v1/profiles/{id}") => (format!("/api/v1/profiles/{}", self.profile), None),
            (_, p) => (p.to_string(), None),
        };
        (path, body)
    }
}

async fn principals(s: &Server, owner: &Api) -> Vec<Who> {
    let mut out = vec![Who {
        name: "owner",
        api: owner.clone(),
        role: "owner",
        is_key: false,
    }];
    for (name, role) in [
        ("admin", "admin"),
        ("editor", "editor"),
        ("viewer", "viewer"),
    ] {
        let token = invite_and_accept(owner, &format!("role-{name}@example.com"), role).await;
        out.push(Who {
            name,
            api: Api::new(&s.base, &token),
            role,
            is_key: false,
        });
    }
    for (name, scope, role) in [
        ("key:read", "read", "viewer"),
        ("key:write", "write", "editor"),
        ("key:admin", "admin", "admin"),
    ] {
        let k = owner
            .must(
                "POST",
                "/api/v1/api-keys",
                Some(json!({"name": name, "scope": scope})),
                201,
            )
            .await;
        out.push(Who {
            name,
            api: Api::new(&s.base, k["key"].as_str().unwrap()),
            role,
            is_key: true,
        });
    }
    out
}

async fn live_status(s: &Server, token: &str) -> u16 {
    match tokio_tungstenite::connect_async(format!("ws://{}/api/v1/live?token={token}", s.addr()))
        .await
    {
        Ok((_, res)) => res.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("live: {e}"),
    }
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.clone(), path.clone()));
        }
    }
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_every_role_allowed_or_403() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let owner = Api::new(&s.base, &login(&s.base).await);

    // The table covers every operation the server documents (and so serves).
    let doc = owner.must("GET", "/api/openapi.json", None, 200).await;
    let documented = operations(&doc);
    let tested: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .chain(PUBLIC.iter().map(|(m, p)| (m.to_string(), p.to_string())))
        .collect();
    assert_eq!(
        documented, tested,
        "the role matrix must list every documented operation"
    );

    let fx = Fixtures::new(owner.clone()).await;
    let whos = principals(&s, &owner).await;
    let mut checked = 0;
    for &(method, path, rule) in ENDPOINTS {
        for who in &whos {
            let expect = allowed(rule, who);
            if (method, path) == ("delete", "/api/v1/tenant") && expect {
                continue; // deleting the tenant is tested on its own
            }
            let status = if path == "/api/v1/live" {
                live_status(&s, &who.api.token).await
            } else {
                let (p, body) = fx.request(method, path).await;
                let api = if path == "/api/v1/auth/logout" && !who.is_key {
                    // A fresh session of the same user, so the matrix keeps its own.
                    let pw = if who.name == "owner" {
                        ADMIN_PASSWORD
                    } else {
                        "a-long-enough-password"
                    };
                    let email = if who.name == "owner" {
                        ADMIN_EMAIL.to_string()
                    } else {
                        format!("role-{}@example.com", who.name)
                    };
                    Api::new(
                        &s.base,
                        login_as(&s.base, &email, pw).await["access_token"]
                            .as_str()
                            .unwrap(),
                    )
                } else {
                    who.api.clone()
                };
                let (st, v) = api.call(&method.to_uppercase(), &p, body).await;
                assert!(st < 500, "{method} {p} as {}: {st} {v}", who.name);
                if st == 403 {
                    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));
                }
                st
            };
            if expect {
                assert_ne!(
                    status, 403,
                    "{method} {path} must be allowed for {}",
                    who.name
                );
                // The password change is sent with a wrong current password: 401 is its answer.
                if path != "/api/v1/auth/password" {
                    assert_ne!(status, 401, "{method} {path} as {}", who.name);
                }
            } else {
                assert_eq!(
                    status, 403,
                    "{method} {path} must be forbidden for {}",
                    who.name
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 250, "{checked} cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_of_one_tenant_reaches_another() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let owner_a = Api::new(&s.base, &login(&s.base).await);
    // Tenant B, owned by a user who is only in B.
    let b = owner_a
        .must(
            "POST",
            "/api/v1/tenants",
            Some(json!({"name": "tenant-b"})),
            201,
        )
        .await;
    let in_b = Api::new(
        &s.base,
        owner_a
            .must(
                "POST",
                "/api/v1/auth/switch",
                Some(json!({"tenant_id": b["id"]})),
                200,
            )
            .await["access_token"]
            .as_str()
            .unwrap(),
    );
    let owner_b = Api::new(
        &s.base,
        &invite_and_accept(&in_b, "owner-b@example.com", "owner").await,
    );
    let fx_b = Fixtures::new(owner_b.clone()).await;
    let b_key = owner_b
        .must(
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "b", "scope": "read"})),
            201,
        )
        .await;
    let b_invite = owner_b
        .must(
            "POST",
            "/api/v1/invites",
            Some(json!({"email": "x@example.com", "role": "viewer"})),
            201,
        )
        .await;
    let (_, b_dev_token) = create_device(&s.base, &owner_b.token, "b-secret-device").await;
    post_telemetry(&s.base, &b_dev_token, r#"{"secret":42}"#).await;
    owner_b
        .must(
            "POST",
            &format!("/api/v1/devices/{}/attributes/server", fx_b.device),
            Some(json!({"secret": 1})),
            204,
        )
        .await;

    // A's credentials: the owner's session in A, an admin key of A.
    let a_key = owner_a
        .must(
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "a", "scope": "admin"})),
            201,
        )
        .await;
    let a_creds = [
        owner_a.clone(),
        Api::new(&s.base, a_key["key"].as_str().unwrap()),
    ];
    let b_targets = |m: &str, p: &str| -> Option<(String, Option<Value>)> {
        let path = p
            .replace(
                "/api/v1/users/{id}",
                &format!("/api/v1/users/{}", fx_b.member),
            )
            .replace(
                "/api/v1/invites/{id}",
                &format!("/api/v1/invites/{}", b_invite["id"].as_str().unwrap()),
            )
            .replace(
                "/api/v1/api-keys/{id}",
                &format!("/api/v1/api-keys/{}", b_key["id"].as_str().unwrap()),
            )
            .replace(
                "/api/v1/groups/{id}",
                &format!("/api/v1/groups/{}", fx_b.group),
            )
            .replace(
                "/api/v1/profiles/{id}",
                &format!("/api/v1/profiles/{}", fx_b.profile),
            )
            .replace(
                "/api/v1/devices/{id}",
                &format!("/api/v1/devices/{}", fx_b.device),
            )
            .replace("{device_id}", &fx_b.device)
            .replace("{scope}", "server");
        let path = if m == "delete" && p.ends_with("{scope}") {
            format!("{path}?keys=secret")
        } else {
            path
        };
        if path.contains('{') || !p.contains("{id}") {
            return None; // not about one resource
        }
        let body = match m {
            "patch" if p.starts_with("/api/v1/users") => Some(json!({"role": "admin"})),
            "patch" => Some(json!({"description": "pwned", "tags": ["pwned"]})),
            "put" if p.ends_with("mqtt-credentials") => {
                Some(json!({"username": "pwn", "password": "pwned-password"}))
            }
            "post" if p.contains("attributes") => Some(json!({"pwned": true})),
            "post" if p.ends_with("/rpc") => Some(json!({"method": "pwn"})),
            _ => None,
        };
        let body = if m == "patch" && p.starts_with("/api/v1/devices") {
            Some(json!({"tags": ["pwned"]}))
        } else {
            body
        };
        let body = if m == "patch"
            && (p.starts_with("/api/v1/groups") || p.starts_with("/api/v1/profiles"))
        {
            Some(json!({"description": "pwned"}))
        } else {
            body
        };
        Some((path, body))
    };
    let mut checked = 0;
    for api in &a_creds {
        for &(method, path, _) in ENDPOINTS {
            let Some((p, body)) = b_targets(method, path) else {
                continue;
            };
            let (st, v) = api.call(&method.to_uppercase(), &p, body).await;
            assert!(
                st == 404 || st == 403,
                "{method} {p} with A's credential: {st} {v}"
            );
            assert!(!v.to_string().contains("secret"), "{v}");
            checked += 1;
        }
        // Lists never show B's resources.
        for list in [
            "/api/v1/devices",
            "/api/v1/groups",
            "/api/v1/profiles",
            "/api/v1/users",
            "/api/v1/invites",
            "/api/v1/api-keys",
            "/api/v1/audit",
        ] {
            let v = api.must("GET", list, None, 200).await;
            let text = v.to_string();
            for b_id in [&fx_b.device, &fx_b.group, &fx_b.profile, &fx_b.member] {
                assert!(!text.contains(b_id.as_str()), "{list} leaks {b_id}");
            }
            assert!(
                !text.contains("owner-b@example.com") && !text.contains("b-secret-device"),
                "{list}: {text}"
            );
        }
        // The live WebSocket refuses B's device.
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "ws://{}/api/v1/live?token={}",
            s.addr(),
            api.token
        ))
        .await
        .unwrap();
        ws.send(Message::Text(
            json!({"type": "subscribe", "device": fx_b.device})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        let msg = ws.next().await.unwrap().unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str()),
            (Some("error"), Some("not_found")),
            "{v}"
        );
    }
    assert!(checked >= 40, "{checked}");
    // Nothing of B changed.
    let d = owner_b
        .must(
            "GET",
            &format!("/api/v1/devices/{}", fx_b.device),
            None,
            200,
        )
        .await;
    assert_eq!(d["tags"], json!([]));
    let attrs = owner_b
        .must(
            "GET",
            &format!("/api/v1/devices/{}/attributes", fx_b.device),
            None,
            200,
        )
        .await;
    assert!(attrs["server"].get("pwned").is_none());
    owner_b.must("GET", "/api/v1/api-keys", None, 200).await;
    let b_still = Api::new(&s.base, b_key["key"].as_str().unwrap());
    b_still.must("GET", "/api/v1/devices", None, 200).await;
}

/// A value of a different JSON type than `v`.
fn other_type(v: &Value) -> Value {
    match v {
        Value::String(_) => json!(12345),
        Value::Number(_) | Value::Bool(_) => json!("not-a-number"),
        Value::Array(_) => json!({"not": "an array"}),
        Value::Object(_) => json!([1, 2, 3]),
        Value::Null => json!(true),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_on_every_endpoint_gets_4xx_with_detail() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let owner = Api::new(&s.base, &login(&s.base).await);
    let fx = Fixtures::new(owner.clone()).await;
    let huge = "x".repeat(200_000);
    let mut checked = 0;
    for &(method, path, _) in ENDPOINTS {
        if path == "/api/v1/live"
            || path == "/api/v1/auth/logout"
            || (method, path) == ("delete", "/api/v1/tenant")
        {
            continue;
        }
        let (p, body) = fx.request(method, path).await;
        let mut cases: Vec<(String, reqwest::Body)> = vec![
            ("invalid JSON".into(), "{\"a\":".into()),
            ("wrong top-level type".into(), "[1,2]".into()),
            (
                "oversized body".into(),
                format!("{{\"name\":\"{huge}\"}}").into(),
            ),
        ];
        if let Some(Value::Object(valid)) = &body {
            if !path.contains("attributes") {
                let mut unknown = valid.clone();
                unknown.insert("__unknown__".into(), json!(1));
                cases.push((
                    "unknown field".into(),
                    Value::Object(unknown).to_string().into(),
                ));
            }
            for (k, v) in valid.iter().filter(|_| !path.contains("attributes")) {
                let mut wrong = valid.clone();
                wrong.insert(k.clone(), other_type(v));
                cases.push((
                    format!("{k} of the wrong type"),
                    Value::Object(wrong).to_string().into(),
                ));
                if v.is_string() {
                    let mut long = valid.clone();
                    long.insert(k.clone(), json!("y".repeat(5000)));
                    cases.push((
                        format!("{k} oversized"),
                        Value::Object(long).to_string().into(),
                    ));
                }
            }
        }
        if method == "get" || method == "delete" {
            // Bodies are ignored there; hostile query strings and ids are not.
            let sep = if p.contains('?') { '&' } else { '?' };
            for q in [
                "limit=-1",
                "limit=99999999999",
                "cursor=%FF%FE",
                "sort=;DROP TABLE devices",
                "from=abc",
                "keys=%00",
                "scope=root",
            ] {
                let (st, v) = owner.get(&format!("{p}{sep}{q}")).await;
                assert!(st < 500, "{method} {p}{sep}{q}: {st} {v}");
                checked += 1;
            }
            continue;
        }
        if body.is_none() {
            continue; // the endpoint takes no body
        }
        for (what, payload) in cases {
            let res = client()
                .request(
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    format!("{}{p}", s.base),
                )
                .bearer_auth(&owner.token)
                .header("content-type", "application/json")
                .body(payload)
                .send()
                .await
                .unwrap();
            let st = res.status().as_u16();
            let v: Value = res.json().await.unwrap_or(Value::Null);
            let short: String = v.to_string().chars().take(300).collect();
            assert!(
                (400..500).contains(&st),
                "{method} {p} with {what}: {st} {short}"
            );
            assert!(
                v["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{method} {p} with {what}: {v}"
            );
            checked += 1;
        }
    }
    // Hostile path segments.
    for seg in ["..%2F..%2Fetc", "%00", &"z".repeat(3000), "'%20OR%201=1"] {
        for base in [
            "/api/v1/devices/",
            "/api/v1/groups/",
            "/api/v1/profiles/",
            "/api/v1/users/",
            "/api/v1/",
        ] {
            let (st, v) = owner.get(&format!("{base}{seg}")).await;
            assert!((400..500).contains(&st), "{base}{seg}: {st} {v}");
        }
    }
    assert!(checked > 150, "{checked}");
    owner.must("GET", "/healthz", None, 200).await;
}

#[tokio::test]
async fn openapi_document_is_valid_and_the_reference_page_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let anon = Api::new(&s.base, "");
    let doc = anon.must("GET", "/api/openapi.json", None, 200).await;
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents responses"
            );
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has a tag"
            );
        }
    }
    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    let page = client()
        .get(format!("{}/api/docs", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/api/openapi.json"));

    // A real validator, where it is installed (.ci/run installs it; CI insists on it).
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", "import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')"])
        .arg(&file)
        .output();
    match out {
        Ok(o) if o.status.success() => {
            assert!(String::from_utf8_lossy(&o.stdout).contains("valid"))
        }
        Ok(o)
            if std::env::var("CI").is_err()
                && String::from_utf8_lossy(&o.stderr).contains("No module named") =>
        {
            eprintln!("openapi-spec-validator not installed; skipping the external validation (pip install openapi-spec-validator)");
        }
        Ok(o) => panic!(
            "OpenAPI validation failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) if std::env::var("CI").is_err() => {
            eprintln!("python3 not available ({e}); skipping the external validation")
        }
        Err(e) => panic!("python3 is needed in CI: {e}"),
    }
}

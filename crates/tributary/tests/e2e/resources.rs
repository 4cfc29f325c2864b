//! Devices with labels and tags, groups, profiles enforced at ingest,
//! attributes in three scopes, ETags, and list conventions.

use serde_json::{json, Value};

use crate::common::*;

fn names(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn devices_filter_sort_paginate_and_update_with_etags() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    for (name, site, tags) in [
        ("pump-b", "berlin", json!(["water"])),
        ("pump-a", "paris", json!(["water", "critical"])),
        ("fan-c", "berlin", json!([])),
    ] {
        api.must(
            "POST",
            "/api/v1/devices",
            Some(json!({"name": name, "labels": {"site": site, "env": "prod"}, "tags": tags})),
            201,
        )
        .await;
    }
    let all = api.must("GET", "/api/v1/devices", None, 200).await;
    assert_eq!(
        names(&all),
        vec!["pump-b", "pump-a", "fan-c"],
        "creation order by default"
    );
    assert_eq!(
        names(
            &api.must("GET", "/api/v1/devices?sort=name", None, 200)
                .await
        ),
        vec!["fan-c", "pump-a", "pump-b"]
    );
    assert_eq!(
        names(
            &api.must("GET", "/api/v1/devices?sort=-name", None, 200)
                .await
        ),
        vec!["pump-b", "pump-a", "fan-c"]
    );
    assert_eq!(
        names(
            &api.must(
                "GET",
                "/api/v1/devices?label=site=berlin&sort=name",
                None,
                200
            )
            .await
        ),
        vec!["fan-c", "pump-b"]
    );
    assert_eq!(
        names(
            &api.must(
                "GET",
                "/api/v1/devices?label=site=berlin,env=prod&name=PUMP",
                None,
                200
            )
            .await
        ),
        vec!["pump-b"]
    );
    assert_eq!(
        names(
            &api.must("GET", "/api/v1/devices?tag=critical", None, 200)
                .await
        ),
        vec!["pump-a"]
    );

    // Cursor pagination in a sorted order returns every item once.
    let mut seen = Vec::new();
    let mut url = "/api/v1/devices?sort=-name&limit=2".to_string();
    loop {
        let page = api.must("GET", &url, None, 200).await;
        seen.extend(names(&page));
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/devices?sort=-name&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["pump-b", "pump-a", "fan-c"]);
    for (q, field) in [
        ("sort=colour", "sort"),
        ("limit=5000", "limit"),
        ("cursor=garbage", ""),
        ("label=novalue", "label"),
    ] {
        let (st, v) = api.get(&format!("/api/v1/devices?{q}")).await;
        assert_eq!(st, 400, "{q}: {v}");
        if !field.is_empty() {
            assert_eq!(v["field"], field, "{q}");
        }
    }

    // ETag / If-Match: a stale update is refused with the current ETag.
    let id = all["data"][0]["id"].as_str().unwrap().to_string();
    let res = client()
        .get(format!("{}/api/v1/devices/{id}", s.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, "\"v1\"");
    let update = |tag: &str, body: Value| {
        client()
            .patch(format!("{}/api/v1/devices/{id}", s.base))
            .bearer_auth(&api.token)
            .header("if-match", tag)
            .json(&body)
            .send()
    };
    let res = update(
        &etag,
        json!({"labels": {"site": "rome"}, "tags": ["moved"]}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"v2\"");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["labels"]["site"].as_str(), body["name"].as_str()),
        (Some("rome"), Some("pump-b")),
        "omitted fields stay"
    );
    let res = update(&etag, json!({"name": "lost-update"})).await.unwrap();
    assert_eq!(res.status(), 412);
    assert_eq!(res.headers()["etag"], "\"v2\"");
    let res = update("\"bogus\"", json!({"name": "x"})).await.unwrap();
    assert_eq!(res.status(), 400);
    let (st, _) = api
        .patch(&format!("/api/v1/devices/{id}"), json!({"name": "fan-c"}))
        .await;
    assert_eq!(st, 409, "names stay unique");
    for bad in [
        json!({"labels": {"bad key!": "x"}}),
        json!({"tags": [""]}),
        json!({"name": 5}),
        json!({"profile_id": "nope"}),
    ] {
        let (st, v) = api
            .patch(&format!("/api/v1/devices/{id}"), bad.clone())
            .await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
}

#[tokio::test]
async fn groups_hold_devices_and_filter_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (a, _) = create_device(&s.base, &api.token, "a").await;
    let (b, _) = create_device(&s.base, &api.token, "b").await;
    let g = api
        .must(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "floor-1", "description": "first floor"})),
            201,
        )
        .await;
    let gid = g["id"].as_str().unwrap();
    api.must(
        "PUT",
        &format!("/api/v1/groups/{gid}/devices/{a}"),
        None,
        204,
    )
    .await;
    api.must(
        "PUT",
        &format!("/api/v1/groups/{gid}/devices/{a}"),
        None,
        204,
    )
    .await;
    assert_eq!(
        names(
            &api.must("GET", &format!("/api/v1/devices?group={gid}"), None, 200)
                .await
        ),
        vec!["a"]
    );
    let (st, _) = api
        .call(
            "PUT",
            &format!("/api/v1/groups/{gid}/devices/01234567-89ab-7def-8123-456789abcdef"),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = api
        .delete(&format!("/api/v1/groups/{gid}/devices/{b}"))
        .await;
    assert_eq!(st, 404, "b is not a member");
    let (st, _) = api.post("/api/v1/groups", json!({"name": "floor-1"})).await;
    assert_eq!(st, 409);
    let renamed = api
        .must(
            "PATCH",
            &format!("/api/v1/groups/{gid}"),
            Some(json!({"description": null})),
            200,
        )
        .await;
    assert_eq!(
        (renamed["description"].clone(), renamed["version"].as_i64()),
        (Value::Null, Some(2))
    );
    assert_eq!(
        names(
            &api.must("GET", "/api/v1/groups?name=FLOOR", None, 200)
                .await
        ),
        vec!["floor-1"]
    );
    api.must(
        "DELETE",
        &format!("/api/v1/groups/{gid}/devices/{a}"),
        None,
        204,
    )
    .await;
    assert!(names(
        &api.must("GET", &format!("/api/v1/devices?group={gid}"), None, 200)
            .await
    )
    .is_empty());
    api.must("DELETE", &format!("/api/v1/groups/{gid}"), None, 204)
        .await;
    let (st, _) = api.get(&format!("/api/v1/groups/{gid}")).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn profiles_are_enforced_at_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let schema = json!({"keys": {
        "temp": {"type": "number", "unit": "°C", "min": -40, "max": 85, "required": true},
        "count": {"type": "int"},
        "mode": {"type": "string"}
    }, "allow_unknown_keys": false});
    let profile = api
        .must(
            "POST",
            "/api/v1/profiles",
            Some(json!({"name": "thermo", "schema": schema})),
            201,
        )
        .await;
    let pid = profile["id"].as_str().unwrap();
    api.must(
        "POST",
        "/api/v1/profiles",
        Some(json!({"name": "humidity"})),
        201,
    )
    .await;
    assert_eq!(
        names(
            &api.must("GET", "/api/v1/profiles?name=THER&sort=-name", None, 200)
                .await
        ),
        vec!["thermo"]
    );
    let dev = api
        .must(
            "POST",
            "/api/v1/devices",
            Some(json!({"name": "t1", "profile_id": pid})),
            201,
        )
        .await;
    let (id, token) = (
        dev["id"].as_str().unwrap(),
        dev["access_token"].as_str().unwrap(),
    );

    assert_eq!(
        post_telemetry(&s.base, token, r#"{"temp":21.5,"count":3,"mode":"eco"}"#)
            .await
            .0,
        200
    );
    for (body, want) in [
        (r#"{"temp":90}"#, "above max 85"),
        (r#"{"temp":-50}"#, "below min -40"),
        (r#"{"temp":"hot"}"#, "type must be number"),
        (r#"{"temp":20,"count":1.5}"#, "\"count\""),
        (r#"{"count":1}"#, "required"),
        (r#"{"temp":20,"extra":1}"#, "not in the profile"),
    ] {
        let (st, text) = post_telemetry(&s.base, token, body).await;
        assert_eq!(st, 400, "{body}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["detail"].as_str().unwrap().contains(want), "{body}: {v}");
        assert!(v["field"].is_string(), "names the key: {v}");
    }
    let (_, latest) = get_json(&s.base, &api.token, &format!("/api/v1/devices/{id}/latest")).await;
    assert_eq!(
        latest["temp"]["value"], 21.5,
        "rejected batches stored nothing"
    );

    // A changed profile applies to the next batch; a deleted one no longer restricts.
    api.must(
        "PATCH",
        &format!("/api/v1/profiles/{pid}"),
        Some(json!({"schema": {"keys": {"temp": {"type": "number", "max": 100}}}})),
        200,
    )
    .await;
    assert_eq!(
        post_telemetry(&s.base, token, r#"{"temp":90,"extra":1}"#)
            .await
            .0,
        200
    );
    api.must("DELETE", &format!("/api/v1/profiles/{pid}"), None, 204)
        .await;
    assert_eq!(
        post_telemetry(&s.base, token, r#"{"temp":1000}"#).await.0,
        200
    );
    let d = api
        .must("GET", &format!("/api/v1/devices/{id}"), None, 200)
        .await;
    assert_eq!(d["profile_id"], Value::Null);

    for bad in [
        json!({"name": "x", "schema": {"keys": {"a": {"type": "int", "min": 5, "max": 1}}}}),
        json!({"name": "x", "schema": {"keys": {"a": {"type": "complex"}}}}),
        json!({"name": "x", "schema": {"keys": {"a": {"type": "string", "max": 3}}}}),
        json!({"name": "x", "schema": {"colour": 1}}),
    ] {
        let (st, v) = api.post("/api/v1/profiles", bad.clone()).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
}

#[tokio::test]
async fn attributes_in_three_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (id, token) = create_device(&s.base, &api.token, "attr").await;
    let http = client();

    // The device reports client attributes; users set server and shared ones.
    let res = http
        .post(format!("{}/api/v1/{token}/attributes", s.base))
        .body(r#"{"firmware":"1.2.0","serial":"A1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    api.must(
        "POST",
        &format!("/api/v1/devices/{id}/attributes/shared"),
        Some(json!({"interval": 30, "config": {"mode": "eco"}})),
        204,
    )
    .await;
    api.must(
        "POST",
        &format!("/api/v1/devices/{id}/attributes/server"),
        Some(json!({"installed": "2026-01-01"})),
        204,
    )
    .await;
    let (st, v) = api
        .post(
            &format!("/api/v1/devices/{id}/attributes/client"),
            json!({"x": 1}),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (400, Some("scope")));

    let all = api
        .must(
            "GET",
            &format!("/api/v1/devices/{id}/attributes"),
            None,
            200,
        )
        .await;
    assert_eq!(all["client"]["firmware"]["value"], "1.2.0");
    assert_eq!(all["shared"]["config"]["value"], json!({"mode": "eco"}));
    assert_eq!(all["server"]["installed"]["value"], "2026-01-01");
    let only = api
        .must(
            "GET",
            &format!("/api/v1/devices/{id}/attributes?scope=shared&keys=interval"),
            None,
            200,
        )
        .await;
    assert_eq!(only["shared"].as_object().unwrap().len(), 1);
    assert!(only["client"].as_object().unwrap().is_empty());

    // The device reads client and shared attributes (never server ones), ThingsBoard style.
    let res = http
        .get(format!(
            "{}/api/v1/{token}/attributes?clientKeys=firmware&sharedKeys=interval,installed",
            s.base
        ))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v,
        json!({"client": {"firmware": "1.2.0"}, "shared": {"interval": 30}})
    );

    api.must(
        "DELETE",
        &format!("/api/v1/devices/{id}/attributes/shared?keys=interval"),
        None,
        204,
    )
    .await;
    let after = api
        .must(
            "GET",
            &format!("/api/v1/devices/{id}/attributes?scope=shared"),
            None,
            200,
        )
        .await;
    assert!(after["shared"].get("interval").is_none());
    let (st, _) = api
        .delete(&format!("/api/v1/devices/{id}/attributes/shared"))
        .await;
    assert_eq!(st, 400, "keys are required");
    for bad in [
        json!({}),
        json!({"a": null}),
        json!({"bad key": 1}),
        json!([1]),
    ] {
        let (st, _) = api
            .post(
                &format!("/api/v1/devices/{id}/attributes/shared"),
                bad.clone(),
            )
            .await;
        assert_eq!(st, 400, "{bad}");
    }
    let res = http
        .post(format!("{}/api/v1/{token}/attributes", s.base))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http
        .post(format!("{}/api/v1/wrong-token/attributes", s.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn mqtt_credentials_are_stored_hashed_and_shown_without_password() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let api = Api::new(&s.base, &login(&s.base).await);
    let (a, _) = create_device(&s.base, &api.token, "m1").await;
    let (b, _) = create_device(&s.base, &api.token, "m2").await;
    let d = api
        .must(
            "PUT",
            &format!("/api/v1/devices/{a}/mqtt-credentials"),
            Some(json!({"username": "m1-user", "password": "mqtt-secret-1", "client_id": "m1"})),
            200,
        )
        .await;
    assert_eq!(d["mqtt"], json!({"username": "m1-user", "client_id": "m1"}));
    assert!(!d.to_string().contains("mqtt-secret-1"));
    let (st, _) = api
        .call(
            "PUT",
            &format!("/api/v1/devices/{b}/mqtt-credentials"),
            Some(json!({"username": "m1-user", "password": "another-secret"})),
        )
        .await;
    assert_eq!(st, 409, "usernames are unique");
    let (st, v) = api
        .call(
            "PUT",
            &format!("/api/v1/devices/{b}/mqtt-credentials"),
            Some(json!({"username": "m2", "password": "short"})),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (400, Some("password")));
    api.must(
        "DELETE",
        &format!("/api/v1/devices/{a}/mqtt-credentials"),
        None,
        204,
    )
    .await;
    assert_eq!(
        api.must("GET", &format!("/api/v1/devices/{a}"), None, 200)
            .await["mqtt"],
        Value::Null
    );
    for file in ["meta.db", "meta.db-wal"] {
        let raw = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !raw.windows(13).any(|w| w == b"mqtt-secret-1"),
            "no plain password in {file}"
        );
    }
}

//! Small helpers for talking to Tributary's REST API.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Wall-clock milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Logs in and returns the access token.
pub async fn login(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let res = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("login failed: {}", res.text().await?);
    }
    let v: Value = res.json().await?;
    Ok(v["access_token"]
        .as_str()
        .context("no access_token")?
        .to_string())
}

/// Creates a device; returns (id, access token).
pub async fn create_device(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let res = http
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(token)
        .json(&json!({"name": name}))
        .send()
        .await?;
    if res.status() != 201 {
        bail!("create device failed: {}", res.text().await?);
    }
    let v: Value = res.json().await?;
    Ok((
        v["id"].as_str().context("id")?.to_string(),
        v["access_token"]
            .as_str()
            .context("access_token")?
            .to_string(),
    ))
}

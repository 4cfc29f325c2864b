//! Provisioning against Tributary: devices are created (or their token is
//! rotated when they exist) through the REST API.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde_json::{json, Value};

/// How to authenticate to Tributary's REST API.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// An API key with write (or admin) scope.
    ApiKey(String),
    /// A user's email and password.
    Login {
        /// Email.
        email: String,
        /// Password.
        password: String,
    },
}

/// A provisioned device.
#[derive(Clone, Debug)]
pub struct Provisioned {
    /// Its id.
    pub id: String,
    /// Its access token.
    pub token: String,
}

/// The bearer credential to use for REST calls and the live feed.
pub async fn bearer(
    http: &reqwest::Client,
    base: &str,
    creds: &Credentials,
) -> Result<String, String> {
    match creds {
        Credentials::ApiKey(k) => Ok(k.clone()),
        Credentials::Login { email, password } => {
            let res = http
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .map_err(|e| format!("cannot reach {base}: {e}"))?;
            let status = res.status();
            let v: Value = res.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                return Err(format!(
                    "login failed: {}",
                    v["detail"].as_str().unwrap_or("unknown error")
                ));
            }
            v["access_token"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| "login answered without a token".into())
        }
    }
}

async fn one(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Provisioned, String> {
    let res = http
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(token)
        .json(&json!({"name": name, "labels": labels}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    let (id, token_value) = match status {
        201 => (
            v["id"].as_str().unwrap_or_default().to_string(),
            v["access_token"].as_str().map(str::to_string),
        ),
        409 => {
            // It exists: find it and rotate its token (the old one is not retrievable).
            let list: Value = http
                .get(format!("{base}/api/v1/devices"))
                .query(&[("name", name), ("limit", "1000")])
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let id = list["data"]
                .as_array()
                .and_then(|d| d.iter().find(|x| x["name"] == name))
                .and_then(|x| x["id"].as_str())
                .ok_or_else(|| format!("device {name:?} exists but cannot be found"))?
                .to_string();
            let rotated: Value = http
                .post(format!("{base}/api/v1/devices/{id}/token"))
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            (id, rotated["access_token"].as_str().map(str::to_string))
        }
        _ => {
            return Err(format!(
                "creating device {name:?}: {}",
                v["detail"].as_str().unwrap_or("error")
            ))
        }
    };
    Ok(Provisioned {
        id,
        token: token_value.ok_or_else(|| format!("no access token for {name:?}"))?,
    })
}

/// Creates (or takes over) every named device, 16 at a time; in name order.
pub async fn devices(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    names: &[String],
    labels: &BTreeMap<String, String>,
) -> Result<Vec<Provisioned>, String> {
    let results: Vec<Result<Provisioned, String>> = futures_util::stream::iter(names.iter())
        .map(|n| one(http, base, token, n, labels))
        .buffered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

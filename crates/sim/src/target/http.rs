//! Tributary's device HTTP API: `POST /api/v1/{token}/telemetry`.

use super::{telemetry_json, Outcome};
use crate::generator::Message;

/// Sends to a Tributary server with one access token per device.
pub struct HttpTarget {
    base: String,
    tokens: Vec<String>,
    http: reqwest::Client,
}

impl HttpTarget {
    /// A target at `base` (e.g. `http://127.0.0.1:8080`) with the devices' tokens in device order.
    pub fn new(base: &str, tokens: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            tokens,
            http,
        }
    }

    pub(super) async fn send(&self, msg: &Message) -> Outcome {
        let Some(token) = self.tokens.get(msg.device) else {
            return Outcome::Failed("no token for device".into());
        };
        let body = serde_json::to_vec(&telemetry_json(msg)).unwrap_or_default();
        match self
            .http
            .post(format!("{}/api/v1/{token}/telemetry", self.base))
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Outcome::Acked,
            Ok(r) => {
                let status = r.status().as_u16();
                let detail = r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| {
                        v["type"]
                            .as_str()
                            .map(|t| t.trim_start_matches("/problems/").to_string())
                    })
                    .unwrap_or_default();
                Outcome::Rejected(format!("{status} {detail}").trim().to_string())
            }
            Err(e) => Outcome::Failed(if e.is_timeout() {
                "timeout".into()
            } else {
                "connection".into()
            }),
        }
    }
}

//! InfluxDB line protocol: `POST /write?db=..&precision=ms` (v1).

use super::Outcome;
use crate::generator::Message;

/// Sends line protocol to an InfluxDB-compatible endpoint.
pub struct LineTarget {
    url: String,
    names: Vec<String>,
    measurement: String,
    http: reqwest::Client,
    token: Option<String>,
}

fn escape_tag(s: &str) -> String {
    s.replace(',', "\\,")
        .replace('=', "\\=")
        .replace(' ', "\\ ")
}

fn field(v: &serde_json::Value) -> Option<String> {
    Some(match v {
        serde_json::Value::Number(n) if n.is_i64() => format!("{n}i"),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::String(s) => {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        }
        _ => return None,
    })
}

/// The line-protocol lines of a message.
pub fn lines(measurement: &str, device: &str, msg: &Message) -> String {
    let mut out = String::new();
    for r in &msg.readings {
        let fields: Vec<String> = r
            .values
            .iter()
            .filter_map(|(k, v)| field(v).map(|f| format!("{}={f}", escape_tag(k))))
            .collect();
        if !fields.is_empty() {
            out.push_str(&format!(
                "{},device={} {} {}\n",
                escape_tag(measurement),
                escape_tag(device),
                fields.join(","),
                r.ts
            ));
        }
    }
    out
}

impl LineTarget {
    /// A target writing to `base` (e.g. `http://127.0.0.1:8086`), database `db`.
    pub fn new(base: &str, db: &str, measurement: &str, names: Vec<String>) -> Self {
        Self {
            url: format!("{}/write?db={db}&precision=ms", base.trim_end_matches('/')),
            names,
            measurement: measurement.to_string(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// Sends `Authorization: Token <token>` (an API key for Tributary's `/write`).
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    pub(super) async fn send(&self, msg: &Message) -> Outcome {
        let name = self.names.get(msg.device).cloned().unwrap_or_default();
        let mut req = self
            .http
            .post(&self.url)
            .body(lines(&self.measurement, &name, msg));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => Outcome::Acked,
            Ok(r) => Outcome::Rejected(r.status().as_u16().to_string()),
            Err(_) => Outcome::Failed("connection".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::Reading;

    #[test]
    fn line_protocol_types_and_escaping() {
        let msg = Message {
            device: 0,
            readings: vec![Reading {
                ts: 1000,
                values: [
                    ("t".to_string(), serde_json::json!(21.5)),
                    ("n".to_string(), serde_json::json!(3)),
                    ("on".to_string(), serde_json::json!(true)),
                    ("mode".to_string(), serde_json::json!("a \"b\"")),
                ]
                .into(),
            }],
        };
        assert_eq!(
            lines("m", "dev 1", &msg),
            "m,device=dev\\ 1 mode=\"a \\\"b\\\"\",n=3i,on=true,t=21.5 1000\n"
        );
    }
}

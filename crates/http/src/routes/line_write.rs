//! InfluxDB line-protocol writes, so Telegraf and InfluxDB client libraries
//! write to Tributary unchanged: `POST /write` (v1) and `POST /api/v2/write`
//! (v2), authenticated with an API key (`Authorization: Token …`, `Bearer`,
//! Basic, or the v1 `u`/`p` parameters). Measurement plus tag set names a
//! device (created on first write when the key may write); fields are its
//! keys. A 204 means every point is durable; bad lines are answered in
//! InfluxDB's style, naming the line, while the good ones are written.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use tributary_auth::policy::Action;
use tributary_auth::{Authenticator, Principal};
use tributary_model::line_protocol::{self, LineError, Precision, Series};
use tributary_model::time::now_ns;
use tributary_model::{Batch, Point};
use tributary_store::meta::NewDevice;
use tributary_store::{Device, StoreError};
use utoipa::IntoParams;

use crate::extract::read_body;
use crate::state::AppState;

/// Longest device name a series key may become.
const MAX_NAME: usize = 128;
/// InfluxDB 1.x write parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct V1Params {
    /// Database (accepted, not used: the key's tenant decides).
    db: Option<String>,
    /// Timestamp unit: n, u, ms, s, m, h (default n).
    precision: Option<String>,
    /// User name (any).
    u: Option<String>,
    /// Password: the API key.
    p: Option<String>,
}

/// InfluxDB 2.x write parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct V2Params {
    /// Organization (accepted, not used).
    org: Option<String>,
    /// Bucket (accepted, not used).
    bucket: Option<String>,
    /// Timestamp unit: ns, us, ms, s (default ns).
    precision: Option<String>,
}

/// Which API's error style to answer in.
#[derive(Clone, Copy, PartialEq)]
enum Style {
    V1,
    V2,
}

fn error(style: Style, status: StatusCode, code: &str, message: String) -> Response {
    // InfluxDB's fields for its client libraries, and Tributary's problem
    // fields (RFC 9457) like every other error of the API.
    let mut body = match style {
        Style::V1 => json!({ "error": message }),
        Style::V2 => json!({ "code": code, "message": message }),
    };
    body["type"] = json!("/problems/line-protocol");
    body["title"] = json!(status.canonical_reason().unwrap_or("Error"));
    body["status"] = json!(status.as_u16());
    body["detail"] = json!(message);
    let mut res = (status, Json(body)).into_response();
    res.headers_mut().insert(
        "X-Influxdb-Error",
        message
            .chars()
            .take(200)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| header::HeaderValue::from_static("error")),
    );
    res
}

/// A 503: the store could not take the write.
fn unavailable(style: Style, detail: String) -> Response {
    error(
        style,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        detail,
    )
}

/// The log refused the write: 507 when its disk is full, else 503.
fn not_stored(style: Style, e: &tributary_log::WalError) -> Response {
    let status = match e {
        tributary_log::WalError::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut res = error(style, status, "unavailable", format!("not stored: {e}"));
    res.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    res
}

fn credential(headers: &HeaderMap, password: Option<&str>) -> Option<String> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, value) = auth.split_once(' ').unwrap_or((auth, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "token" | "bearer" => return Some(value.trim().to_string()),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                return text.split_once(':').map(|(_, p)| p.to_string());
            }
            _ => {}
        }
    }
    password.map(str::to_string)
}

async fn principal(
    auth: &Authenticator,
    style: Style,
    cred: Option<String>,
) -> Result<Principal, Response> {
    let unauthorized = |m: &str| {
        error(
            style,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            m.to_string(),
        )
    };
    let Some(cred) = cred else {
        return Err(unauthorized(
            "authorization failed: give an API key as `Authorization: Token <key>` or p=<key>",
        ));
    };
    let p = auth
        .authenticate(&cred)
        .await
        .map_err(|_| unauthorized("authorization failed"))?;
    p.require(Action::Write)
        .map_err(|e| error(style, StatusCode::FORBIDDEN, "forbidden", e.to_string()))?;
    Ok(p)
}

/// Write line protocol (InfluxDB 1.x API).
#[utoipa::path(post, path = "/write", tag = "line-protocol", params(V1Params),
    request_body(content = String, description = "InfluxDB line protocol, optionally gzip-encoded", content_type = "text/plain"),
    responses((status = 204, description = "Every point is durable"),
              (status = 400, description = "Some lines could not be parsed or stored; the others were written"),
              (status = 401, description = "No or an unknown API key"), (status = 403, description = "The key may not write"),
              (status = 413, description = "Body too large"),
              (status = 415, description = "A Content-Encoding other than gzip"),
              (status = 503, description = "Not stored: retry (Retry-After)"),
              (status = 507, description = "Not stored: the disk of the log is full; retry (Retry-After)")))]
pub async fn write_v1(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<V1Params>,
    body: Body,
) -> Response {
    let _ = (&q.db, &q.u);
    let cred = credential(&headers, q.p.as_deref());
    write(&s, Style::V1, &headers, body, q.precision.as_deref(), cred).await
}

/// Write line protocol (InfluxDB 2.x API).
#[utoipa::path(post, path = "/api/v2/write", tag = "line-protocol", params(V2Params),
    request_body(content = String, description = "InfluxDB line protocol, optionally gzip-encoded", content_type = "text/plain"),
    responses((status = 204, description = "Every point is durable"),
              (status = 400, description = "Some lines could not be parsed or stored; the others were written"),
              (status = 401, description = "No or an unknown API key"), (status = 403, description = "The key may not write"),
              (status = 413, description = "Body too large"),
              (status = 415, description = "A Content-Encoding other than gzip"),
              (status = 503, description = "Not stored: retry (Retry-After)"),
              (status = 507, description = "Not stored: the disk of the log is full; retry (Retry-After)")))]
pub async fn write_v2(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<V2Params>,
    body: Body,
) -> Response {
    let _ = (&q.org, &q.bucket);
    let cred = credential(&headers, None);
    write(&s, Style::V2, &headers, body, q.precision.as_deref(), cred).await
}

/// InfluxDB's liveness check, which client libraries and Telegraf call.
#[utoipa::path(get, path = "/ping", tag = "line-protocol",
    responses((status = 204, description = "Alive; `X-Influxdb-Version` names the API level served")))]
pub async fn ping() -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        "X-Influxdb-Version",
        header::HeaderValue::from_static("1.8.10-tributary"),
    );
    res.headers_mut()
        .insert("X-Influxdb-Build", header::HeaderValue::from_static("OSS"));
    res
}

/// Only `CREATE DATABASE` (which Telegraf sends on start) is answered; there is nothing to create.
#[utoipa::path(post, path = "/query", tag = "line-protocol",
    params(("q" = String, Query, description = "InfluxQL statement")),
    responses((status = 200, description = "CREATE DATABASE accepted"), (status = 400, description = "Any other statement")))]
pub async fn query(Query(q): Query<HashMap<String, String>>) -> Response {
    let statement = q
        .get("q")
        .map(|s| s.trim().to_ascii_uppercase())
        .unwrap_or_default();
    if statement.starts_with("CREATE DATABASE") {
        return Json(json!({"results": [{"statement_id": 0}]})).into_response();
    }
    error(
        Style::V1,
        StatusCode::BAD_REQUEST,
        "invalid",
        "Tributary takes line-protocol writes here; query data through /api/v1/devices/{id}/telemetry".into(),
    )
}

async fn write(
    s: &AppState,
    style: Style,
    headers: &HeaderMap,
    body: Body,
    precision: Option<&str>,
    cred: Option<String>,
) -> Response {
    let p = match principal(&s.auth, style, cred).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(precision) = Precision::parse(precision.unwrap_or("")) else {
        return error(
            style,
            StatusCode::BAD_REQUEST,
            "invalid",
            "precision must be one of n, u, ms, s, m, h".into(),
        );
    };
    let limit = s.config.max_body_bytes;
    let raw = match read_body(headers, body, limit).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                style,
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                "invalid",
                e.detail,
            )
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("" | "identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(other) => {
            return error(
                style,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                format!(
                    "Content-Encoding {:?} is not supported; send gzip or no encoding",
                    other.chars().take(32).collect::<String>()
                ),
            )
        }
    };
    let bytes = if gzip {
        let mut out = Vec::new();
        let read = flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out);
        match read {
            Ok(_) if out.len() > limit => {
                return error(
                    style,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too large",
                    format!("decompressed body is larger than {limit} bytes"),
                )
            }
            Ok(_) => Cow::Owned(out),
            Err(e) => {
                return error(
                    style,
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("body is not valid gzip: {e}"),
                )
            }
        }
    } else {
        Cow::Borrowed(&raw[..])
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return error(
            style,
            StatusCode::BAD_REQUEST,
            "invalid",
            "body is not UTF-8".into(),
        );
    };
    if text.trim().is_empty() {
        return error(
            style,
            StatusCode::BAD_REQUEST,
            "invalid",
            "the body holds no lines to write".into(),
        );
    }
    // Points grouped by series (device), in the order written; each
    // series' first good line names its device's labels.
    let line_protocol::Parsed { groups, mut errors } =
        line_protocol::parse(text, precision, now_ns(), &s.config.parse_limits);
    let mut devices = match devices_for(s, &p, &groups).await {
        Ok(d) => d,
        Err(e) => return unavailable(style, e.to_string()),
    };
    let mut pending = Vec::new();
    let mut points_total = 0u64;
    for (series, points) in groups {
        let series = series.key;
        let found = devices
            .remove(series.as_ref())
            .unwrap_or_else(|| Err("no device for this series".to_string()));
        let device = match found {
            Ok(d) => d,
            Err(reason) => {
                errors.push(LineError {
                    line: 0,
                    text: line_protocol::clip(&series),
                    reason,
                });
                continue;
            }
        };
        match s.gateway.check(&device, &points).await {
            Ok(()) => {}
            Err(tributary_ingest::IngestError::Profile { detail, .. }) => {
                errors.push(LineError {
                    line: 0,
                    text: line_protocol::clip(&series),
                    reason: line_protocol::clip(&detail),
                });
                continue;
            }
            Err(e) => return unavailable(style, e.to_string()),
        }
        for chunk in owned_chunks(points, s.config.parse_limits.max_points) {
            points_total += chunk.len() as u64;
            let batch = Batch {
                tenant: p.tenant,
                device: device.id,
                points: chunk,
            };
            match s.gateway.submit(batch).await {
                Ok(d) => pending.push(d),
                Err(tributary_ingest::IngestError::NotStored(e)) => return not_stored(style, &e),
                Err(e) => return unavailable(style, e.to_string()),
            }
        }
    }
    // Every batch shares the log's group commit; answer once all are durable.
    for d in pending {
        if let Err(e) = d.await {
            return not_stored(style, &e);
        }
    }
    metrics::counter!("tributary_line_points_total").increment(points_total);
    if errors.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    metrics::counter!("tributary_batches_rejected_total", "reason" => "line_protocol")
        .increment(errors.len() as u64);
    errors.sort_by_key(|e| e.line);
    let detail: Vec<String> = errors
        .iter()
        .take(10)
        .map(|e| {
            if e.line > 0 {
                format!("line {}: {e}", e.line)
            } else {
                format!("series '{}': {}", e.text, e.reason)
            }
        })
        .collect();
    let message = format!(
        "partial write: {}{} dropped={}",
        detail.join("; "),
        if errors.len() > 10 {
            format!("; and {} more", errors.len() - 10)
        } else {
            String::new()
        },
        errors.len()
    );
    error(style, StatusCode::BAD_REQUEST, "invalid", message)
}

/// `points` in runs of at most `max` (at least 1), moved rather than copied.
fn owned_chunks(mut points: Vec<Point>, max: usize) -> Vec<Vec<Point>> {
    let max = max.max(1);
    let mut out = Vec::with_capacity(points.len().div_ceil(max));
    while !points.is_empty() {
        let rest = points.split_off(points.len().min(max));
        out.push(std::mem::replace(&mut points, rest));
    }
    out
}

/// The devices the series keys name: cached, found by name, or created
/// (with the measurement and tags as labels), all missing ones in one
/// transaction. A key that cannot name a device gets its reason.
async fn devices_for(
    s: &AppState,
    p: &Principal,
    groups: &[(Series<'_>, Vec<Point>)],
) -> Result<HashMap<String, Result<Device, String>>, StoreError> {
    let mut out = HashMap::with_capacity(groups.len());
    let mut missing = Vec::new();
    for (first, _) in groups {
        let key = &first.key;
        if let Some(d) = s.gateway.series_devices().get(p.tenant, key) {
            out.insert(key.to_string(), Ok(d));
        } else if key.chars().any(char::is_control) {
            // The same rule as for names given to POST /api/v1/devices.
            out.insert(
                key.to_string(),
                Err("series key contains control characters, which device names may not".into()),
            );
        } else if key.chars().count() > MAX_NAME {
            out.insert(
                key.to_string(),
                Err(format!(
                    "series key is longer than {MAX_NAME} characters, the longest device name"
                )),
            );
        } else {
            missing.push((key.to_string(), first));
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let names: Vec<String> = missing.iter().map(|(k, _)| k.clone()).collect();
    let mut found = s.meta.devices_by_names(p.tenant, &names).await?;
    if found.len() < missing.len() {
        let have: std::collections::HashSet<&str> = found.iter().map(|d| d.name.as_str()).collect();
        let mut new: Vec<NewDevice> = missing
            .iter()
            .filter(|(k, _)| !have.contains(k.as_str()))
            .map(|(k, first)| new_device(k, first))
            .collect();
        // Creation is limited per write and per tenant per minute; the
        // series beyond either limit are refused, naming it.
        let (per_write, per_minute) = (
            s.config.max_auto_devices_per_request,
            s.config.max_auto_devices_per_minute,
        );
        let granted = s.gateway.series_devices().take_creations(
            p.tenant,
            new.len().min(per_write),
            per_minute,
        );
        for (i, refused) in new.split_off(granted).into_iter().enumerate() {
            let reason = if granted + i >= per_write {
                format!("one write may create at most {per_write} devices (max_auto_devices_per_request)")
            } else {
                format!("this tenant may create at most {per_minute} devices per minute (max_auto_devices_per_minute)")
            };
            out.insert(refused.name, Err(reason));
        }
        match s.meta.ensure_devices(p.tenant, &new).await {
            Ok(created) => {
                let ids: Vec<_> = created.iter().map(|d| (d.id, d.name.clone())).collect();
                s.gateway.devices_created(p.tenant, &ids).await;
                found.extend(created)
            }
            Err(StoreError::LimitReached(reason)) => {
                for d in new {
                    out.insert(d.name, Err(reason.clone()));
                }
            }
            Err(e) => return Err(e),
        }
    }
    for d in found {
        s.gateway.series_devices().put(d.clone(), d.name.clone());
        out.insert(d.name.clone(), Ok(d));
    }
    for (k, _) in missing {
        out.entry(k)
            .or_insert_with(|| Err("device vanished while being created".to_string()));
    }
    Ok(out)
}

/// A device for a series key, labelled with the line's measurement and tags.
fn new_device(series: &str, first: &Series<'_>) -> NewDevice {
    let mut labels = BTreeMap::new();
    labels.insert("measurement".to_string(), first.measurement.to_string());
    for (k, v) in &first.tags {
        let ok_key = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        if ok_key && v.chars().count() <= 256 && labels.len() < 64 {
            labels.insert(k.to_string(), v.to_string());
        }
    }
    let (_, hash, hint) = Authenticator::new_device_token();
    NewDevice {
        name: series.to_string(),
        labels,
        tags: vec!["line-protocol".into()],
        profile: None,
        token_hash: hash,
        token_hint: hint,
    }
}

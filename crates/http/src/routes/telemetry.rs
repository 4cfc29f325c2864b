//! Telemetry queries: raw ranges, aggregates per interval, latest values of
//! one device or of many.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json_};
use tributary_auth::policy::Action;
use tributary_model::time::{ms_to_ns, ns_to_ms, MAX_MS, NANOS_PER_MS};
use tributary_model::DeviceId;
use tributary_store::{AggQuery, Aggregate, Order, RawQuery, Sample};
use utoipa::{IntoParams, ToSchema};

use super::devices::{find, DeviceFilterParams};
use crate::extract::Auth;
use crate::problem::ApiError;
use crate::state::AppState;

/// What history to return.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Comma-separated keys; every key of the device when omitted.
    keys: Option<String>,
    /// Inclusive lower bound (ms since the epoch); default 0.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 9223372036854.0)]
    from: Option<String>,
    /// Inclusive upper bound (ms); default: no bound.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 9223372036854.0)]
    to: Option<String>,
    /// Samples (or intervals) per key; default 100, at most the server's `query_max_limit`.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100000)]
    limit: Option<String>,
    /// `desc` (default, newest first) or `asc`.
    #[param(pattern = "^(?i:asc|desc)$")]
    order: Option<String>,
    /// avg, min, max, sum, count, first or last: one sample per interval (needs `interval`).
    #[param(pattern = "^(avg|min|max|sum|count|first|last)$")]
    agg: Option<String>,
    /// Interval length (ms) for `agg`; intervals are aligned to the epoch.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 9223372036854.0)]
    interval: Option<String>,
}

/// Which latest values to return.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LatestParams {
    /// Comma-separated keys; all when omitted.
    keys: Option<String>,
}

/// Which devices' latest values to return, and which page of them.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FleetLatestParams {
    /// Comma-separated keys; all when omitted.
    keys: Option<String>,
    /// Devices per page, 1 to the server's query limit (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page (a device id).
    #[param(format = Uuid)]
    cursor: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    filter: DeviceFilterParams,
}

/// One device's newest values.
#[derive(Serialize, ToSchema)]
pub struct DeviceValues {
    #[schema(value_type = String)]
    device_id: DeviceId,
    /// `{"key":{"ts":ms,"value":v},…}`
    #[schema(value_type = Object)]
    values: LatestValues,
}

/// The newest sample per key, written as `{"key":{"ts":ms,"value":v},…}`
/// straight from the samples (no JSON tree is built for a large answer).
pub struct LatestValues(BTreeMap<String, Sample>);

impl Serialize for LatestValues {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct One<'a>(&'a Sample);
        impl Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut st = ser.serialize_struct("Sample", 2)?;
                st.serialize_field("ts", &ns_to_ms(self.0.ts))?;
                st.serialize_field("value", &self.0.value.to_json())?;
                st.end()
            }
        }
        let mut map = ser.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, &One(v))?;
        }
        map.end()
    }
}

/// A page of devices with their newest values, in device id order.
#[derive(Serialize, ToSchema)]
pub struct FleetLatest {
    data: Vec<DeviceValues>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

fn parse_keys(raw: Option<&str>) -> Vec<String> {
    raw.map(|k| {
        k.split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn parse_ms(field: &str, raw: Option<&str>, default: i64) -> Result<i64, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    let ms: i64 = raw.parse().map_err(|_| {
        ApiError::validation(
            field,
            format!("{field} must be milliseconds since the epoch, got {raw:?}"),
        )
    })?;
    ms_to_ns(ms)
        .ok_or_else(|| ApiError::validation(field, format!("{field} must be within 0..={MAX_MS}")))
}

fn sample_json(s: &Sample) -> Json_ {
    if s.saturated {
        return json!({"ts": ns_to_ms(s.ts), "value": s.value.to_json(), "saturated": true});
    }
    json!({"ts": ns_to_ms(s.ts), "value": s.value.to_json()})
}

/// Telemetry history: raw samples, or one aggregate per interval. `{"key":[{"ts":ms,"value":v},…]}`
#[utoipa::path(get, path = "/api/v1/devices/{id}/telemetry", tag = "telemetry", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id"), HistoryParams),
    responses((status = 200, body = Object), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn history(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Map<String, Json_>>, ApiError> {
    let p = auth.require(Action::Read)?;
    let Query(q) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = find(&s, p.tenant, &id).await?.id;
    let from = parse_ms("from", q.from.as_deref(), 0)?;
    // The default upper bound reaches the last whole millisecond representable.
    // `to` includes its whole millisecond, so every stored point is reachable.
    let to =
        parse_ms("to", q.to.as_deref(), MAX_MS * NANOS_PER_MS)?.saturating_add(NANOS_PER_MS - 1);
    if from > to {
        return Err(ApiError::validation("from", "from must not be after to"));
    }
    let limit = match q.limit.as_deref() {
        None => s.config.default_query_limit,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=s.config.max_query_limit).contains(l))
            .ok_or_else(|| {
                ApiError::validation(
                    "limit",
                    format!("limit must be between 1 and {}", s.config.max_query_limit),
                )
            })?,
    };
    let order = match q.order.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(other) => {
            return Err(ApiError::validation(
                "order",
                format!("order must be asc or desc, got {other:?}"),
            ))
        }
    };
    let range = RawQuery {
        keys: parse_keys(q.keys.as_deref()),
        from,
        to,
        limit,
        order,
    };
    s.catch_up().await;
    let result = match (q.agg.as_deref(), q.interval.as_deref()) {
        (None, None) => s.series.query(p.tenant, id, &range).await?,
        (Some(agg), interval) => {
            let agg: Aggregate = agg
                .parse()
                .map_err(|e: String| ApiError::validation("agg", e))?;
            let interval = interval.ok_or_else(|| {
                ApiError::validation("interval", "agg needs interval (milliseconds)")
            })?;
            let interval_ms = interval
                .parse::<i64>()
                .ok()
                .filter(|i| (1..=MAX_MS).contains(i))
                .ok_or_else(|| {
                    ApiError::validation(
                        "interval",
                        format!(
                            "interval must be a whole number of milliseconds from 1 to {MAX_MS}"
                        ),
                    )
                })?;
            s.series
                .aggregate(
                    p.tenant,
                    id,
                    &AggQuery {
                        range,
                        agg,
                        interval: interval_ms * NANOS_PER_MS,
                    },
                )
                .await?
        }
        (None, Some(_)) => {
            return Err(ApiError::validation(
                "agg",
                "interval needs agg (avg, min, max, sum, count, first or last)",
            ))
        }
    };
    Ok(Json(
        result
            .into_iter()
            .map(|(k, samples)| (k, Json_::Array(samples.iter().map(sample_json).collect())))
            .collect(),
    ))
}

/// The newest value of each key: `{"key":{"ts":ms,"value":v},…}`
#[utoipa::path(get, path = "/api/v1/devices/{id}/latest", tag = "telemetry", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id"), LatestParams),
    responses((status = 200, body = Object), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn latest(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    params: Result<Query<LatestParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LatestValues>, ApiError> {
    let p = auth.require(Action::Read)?;
    let Query(q) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = find(&s, p.tenant, &id).await?.id;
    s.catch_up().await;
    let latest = s
        .series
        .latest(p.tenant, id, &parse_keys(q.keys.as_deref()))
        .await?;
    Ok(Json(LatestValues(latest)))
}

/// The newest values of many devices at once (those matching the filters,
/// or every device with data), a page at a time in device id order.
#[utoipa::path(get, path = "/api/v1/latest", tag = "telemetry", security(("bearer" = [])),
    params(FleetLatestParams, DeviceFilterParams),
    responses((status = 200, body = FleetLatest), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn fleet_latest(
    State(s): State<AppState>,
    auth: Auth,
    params: Result<Query<FleetLatestParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FleetLatest>, ApiError> {
    let p = auth.require(Action::Read)?;
    let Query(q) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let max = s.config.max_query_limit as usize;
    let limit = match q.limit.as_deref() {
        None => 1000.min(max),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| {
                ApiError::validation(
                    "limit",
                    format!("limit must be a whole number between 1 and {max}"),
                )
            })?,
    };
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse().map_err(|_| {
                ApiError::validation("cursor", format!("cursor {c:?} is not a device id"))
            })
        })
        .transpose()?;
    let only = if q.filter.is_empty() {
        None
    } else {
        Some(
            s.meta
                .device_ids(p.tenant, &q.filter.into_filter()?)
                .await?,
        )
    };
    s.catch_up().await;
    let page = s
        .series
        .latest_many(
            p.tenant,
            only.as_deref(),
            &parse_keys(q.keys.as_deref()),
            after,
            limit + 1,
        )
        .await?;
    let more = page.len() > limit;
    let data: Vec<DeviceValues> = page
        .into_iter()
        .take(limit)
        .map(|(device_id, values)| DeviceValues {
            device_id,
            values: LatestValues(values),
        })
        .collect();
    let next_cursor = more
        .then(|| data.last().map(|d| d.device_id.to_string()))
        .flatten();
    Ok(Json(FleetLatest { data, next_cursor }))
}

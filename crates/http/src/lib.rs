//! Tributary's HTTP interface, a thin axum edge: the user REST API, the
//! ThingsBoard-compatible device API and WebSocket ingest, InfluxDB line
//! protocol, the live WebSocket and SSE feed, MQTT over WebSocket, the
//! OpenAPI document and operations endpoints. A handler translates a
//! request into calls (the ingest gateway, the stores, the log, the hub) and
//! their answers into a response; what every change needs besides itself
//! happens once, elsewhere (audit in `audit`, cache invalidation in the
//! gateway, fan-out from the log).
//!
//! - `routes/`: one module per area, each route registered with its OpenAPI
//!   description in `routes/mod.rs`
//! - `live/`: the live feed (`session.rs` per client; `ws.rs`, `sse.rs`)
//! - `audit`: the layer that records each successful change a handler reports
//! - `extract`: JSON bodies, bearer credentials, `If-Match`, the client
//!   address, list parameters; `validate`: field rules
//! - `problem`: [`ApiError`], RFC 9457 errors
//! - `state`: [`AppState`], what every handler shares; `server`: [`serve`]
//!   (connection limits, body timeouts, graceful shutdown)
//! - `openapi`, `web`, `mqtt_ws`, `client_addr`: the document, the
//!   dashboard's assets, MQTT over WebSocket, proxies' forwarded addresses

mod audit;
mod client_addr;
mod extract;
mod live;
mod mqtt_ws;
mod openapi;
mod problem;
mod routes;
mod server;
mod state;
mod validate;
mod web;

pub use client_addr::trusted_proxy;
pub use problem::ApiError;
pub use routes::{openapi_document, router};
pub use server::{serve, BodyTimeout, ServeLimits};
pub use state::{AppState, HttpConfig};

/// Registers the HTTP layer's metrics so they are exported (at zero) from the start.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "tributary_batches_rejected_total",
        "Device batches rejected, by reason"
    );
    for reason in [
        "unauthorized",
        "too_large",
        "malformed",
        "invalid",
        "profile",
        "unavailable",
    ] {
        metrics::counter!("tributary_batches_rejected_total", "reason" => reason).absolute(0);
    }
}

//! Tributary's HTTP interface: the user REST API, the ThingsBoard-compatible
//! device API, the live WebSocket, the OpenAPI document and operations
//! endpoints. Handlers are thin: they authenticate, validate, and call the
//! stores, the pipeline or the hub.

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

//! End-to-end tests: the real binary on free ports, real HTTP and WebSocket clients.

mod common;
mod contract;
mod crash_events;
mod dashboard;
mod durability;
mod hardening;
mod identity;
mod ingest;
mod line_protocol;
mod live;
mod live_feed;
mod matrix;
mod mqtt;
mod mqtt_broker;
mod operations;
mod resources;
mod retention;
mod revocation;
mod simulate;
mod tenancy;
mod ws_ingest;

//! The test data feeder: a fleet of simulated devices described by a scenario
//! file (signal models per key, injected events, rates), sent over the device
//! HTTP API or WebSocket ingest, MQTT or InfluxDB line protocol to Tributary or to any broker or
//! InfluxDB, with a report of what was sent, acknowledged and rejected, and
//! (against Tributary) end-to-end latency measured on the live feed.
//! Deterministic with a seed, so tests can assert exactly what was sent.

pub mod events;
pub mod generator;
pub mod replay;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod signal;
pub mod target;

pub use generator::{Fleet, Message};
pub use report::Report;
pub use runner::{expected_points, replay, run, LiveProbe, RunOptions};
pub use scenario::{Scenario, ScenarioError};

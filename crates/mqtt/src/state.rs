//! [`MqttState`]: what every MQTT connection shares, and [`MqttConfig`],
//! its limits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tributary_auth::Authenticator;
use tributary_ingest::Gateway;
use tributary_model::ParseLimits;
use tributary_store::meta::prelude::*;

use crate::broker::Broker;

/// Limits of the listener; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct MqttConfig {
    /// Most concurrent connections (TCP, TLS and WebSocket together).
    pub max_connections: usize,
    /// Largest packet accepted (bytes); a larger one closes the connection.
    pub max_packet_bytes: usize,
    /// How long a client may take to send CONNECT.
    pub connect_timeout: Duration,
    /// How often a connection's credential is checked again.
    pub auth_recheck: Duration,
    /// Limits on device payloads (as for HTTP).
    pub parse_limits: ParseLimits,
}

/// What every connection needs.
#[derive(Clone)]
pub struct MqttState {
    /// Credentials.
    pub auth: Arc<Authenticator>,
    /// The ingest gateway: device telemetry and attributes into the log.
    pub gateway: Gateway,
    /// Metadata (attribute reads).
    pub meta: Arc<dyn MetaStore>,
    /// Sessions, subscriptions, retained messages, RPC calls.
    pub broker: Arc<Broker>,
    /// Connection slots shared by every transport.
    pub slots: Arc<Semaphore>,
    /// Limits.
    pub config: Arc<MqttConfig>,
}

//! What every handler can reach.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tributary_auth::Authenticator;
use tributary_live::Hub;
use tributary_log::EventLog;
use tributary_model::ParseLimits;
use tributary_store::meta::prelude::*;
use tributary_store::SeriesStore;

/// Limits and timings of the HTTP interface; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
    /// Limits on device payloads.
    pub parse_limits: ParseLimits,
    /// Most samples per key one query may return.
    pub max_query_limit: u32,
    /// Samples per key when a query names no limit.
    pub default_query_limit: u32,
    /// Longest a query waits for the store to catch up with acknowledged writes.
    pub read_your_writes: Duration,
    /// Interval of server pings on live connections.
    pub live_ping: Duration,
    /// Largest message a live client may send (bytes).
    pub live_max_message: usize,
    /// Devices one live connection may subscribe to.
    pub live_max_subscriptions: usize,
    /// How often a live connection's credential is checked again.
    pub live_auth_recheck: Duration,
    /// How often group and label subscriptions are re-resolved.
    pub live_selector_refresh: Duration,
    /// Most points replayed from the store to a resuming client.
    pub live_resume_max_points: usize,
    /// Days time series are kept for a tenant that sets no retention (0: forever).
    pub default_retention_days: u32,
    /// Devices one line-protocol write may create.
    pub max_auto_devices_per_request: usize,
    /// Devices line-protocol writes may create per tenant per minute.
    pub max_auto_devices_per_minute: usize,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Emails of the users who may read the installation's state (`/api/v1/admin/...`).
    pub system_admins: Vec<String>,
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    /// Tenants, users, devices.
    pub meta: Arc<dyn MetaStore>,
    /// Time series.
    pub series: Arc<dyn SeriesStore>,
    /// The event log.
    pub pipeline: Arc<dyn EventLog>,
    /// The ingest gateway: device telemetry and attribute writes into the log.
    pub gateway: tributary_ingest::Gateway,
    /// Live fan-out.
    pub hub: Arc<Hub>,
    /// Credentials.
    pub auth: Arc<Authenticator>,
    /// The MQTT listener's state, for MQTT over WebSocket (`None`: disabled).
    pub mqtt: Option<tributary_mqtt::MqttState>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Limits and timings.
    pub config: Arc<HttpConfig>,
    /// False while starting or draining; `/readyz` reports it.
    pub ready: Arc<AtomicBool>,
    /// Flips to true when the server begins to shut down.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Whether the server is accepting traffic.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Waits until the store holds every write acknowledged so far.
    pub async fn catch_up(&self) {
        let target = self.pipeline.committed_lsn();
        if !self
            .pipeline
            .wait_applied(target, self.config.read_your_writes)
            .await
        {
            tracing::warn!(
                target,
                "query served before the store caught up with the log"
            );
        }
    }
}

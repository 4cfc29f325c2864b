//! Configuration: defaults < TOML file (`--config`) < `TRIBUTARY_*` environment < flags.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Flags shared by `serve` and `config show`; each overrides its config key.
#[derive(Args, Debug, Default, Serialize)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "TRIBUTARY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where data lives (default ./tributary-data).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address; port 0 picks a free port (default 127.0.0.1:8080).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// MQTT listen address (default 127.0.0.1:1883).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_listen: Option<String>,
    /// Log filter, e.g. `info` or `tributary=debug,info`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// Which series store keeps the history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesStoreKind {
    /// Tributary's own engine (head chunks, compressed blocks) in `<data_dir>/tsdb`.
    #[default]
    Engine,
    /// The first store, one SQLite table in `<data_dir>/series.db`.
    Sqlite,
}

/// How logs are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The effective configuration. Every key can be set in the TOML file or as
/// `TRIBUTARY_<KEY>` (upper case) in the environment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of all data (metadata, write-ahead log, series).
    pub data_dir: PathBuf,
    /// HTTP listen address (REST, device API, live WebSocket, metrics).
    pub http_listen: String,
    /// MQTT listen address (reserved for the MQTT listener).
    pub mqtt_listen: String,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,

    /// Email of the admin user created on first start.
    pub admin_email: String,
    /// Password of that admin user; generated and printed once when unset.
    pub admin_password: Option<String>,
    /// Name of the tenant created on first start.
    pub tenant_name: String,
    /// Secret that signs access tokens; generated into the data directory when unset.
    pub jwt_secret: Option<String>,
    /// Access token lifetime (seconds).
    pub access_token_ttl_secs: i64,
    /// Refresh token lifetime (seconds).
    pub refresh_token_ttl_secs: i64,
    /// Device credentials cached in memory.
    pub device_cache_entries: usize,
    /// Invitation lifetime (seconds) when the inviter names none.
    pub invite_ttl_secs: i64,
    /// Failed logins of one account from one address before each further
    /// attempt there must wait (1 s, doubling up to `login_max_delay_secs`).
    pub login_failures_per_account_address: u32,
    /// Failed logins of one account from all addresses before delays apply
    /// to it everywhere (slows guessing spread over many addresses).
    pub login_failures_per_account: u32,
    /// Failed logins from one address, over all accounts, before delays
    /// apply to that address.
    pub login_failures_per_address: u32,
    /// Longest delay a failed-login limit imposes (seconds).
    pub login_max_delay_secs: u64,
    /// Failures are forgotten this long after the last one (seconds).
    pub login_window_secs: u64,
    /// Proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` names
    /// the client; from anywhere else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Emails of the users who may read the installation's own state
    /// (`/api/v1/admin/...`); empty: the first start's `admin_email`.
    pub system_admins: Vec<String>,

    /// Largest HTTP request body (bytes).
    pub http_max_body_bytes: usize,
    /// Most HTTP connections at once (WebSocket and SSE included); more get
    /// 503. Lowered at start so that MQTT, the log and the stores keep room
    /// under the process's file limit.
    pub http_max_connections: usize,
    /// Seconds a client has to send a complete request head, from connecting
    /// and from the end of its previous response (also the keep-alive idle limit).
    pub http_header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body.
    pub http_body_timeout_secs: u64,
    /// File descriptors kept free of HTTP and MQTT connections for the log,
    /// the stores and the process itself.
    pub reserved_file_descriptors: usize,

    /// Devices one tenant may have.
    pub max_devices_per_tenant: usize,
    /// Devices one line-protocol write may create.
    pub max_auto_devices_per_request: usize,
    /// Devices line-protocol writes may create per tenant per minute.
    pub max_auto_devices_per_minute: usize,
    /// Tenants one user may create.
    pub max_tenants_per_user: usize,
    /// Longest telemetry key (bytes).
    pub max_key_bytes: usize,
    /// Longest string value (bytes).
    pub max_string_bytes: usize,
    /// Most points in one batch.
    pub max_points_per_batch: usize,
    /// Samples per key a query returns when it names no limit.
    pub query_default_limit: u32,
    /// Most samples per key one query may return.
    pub query_max_limit: u32,
    /// Longest a query waits for the store to hold every acknowledged write (ms).
    pub query_catch_up_ms: u64,

    /// Write-ahead log segment size (bytes).
    pub wal_segment_bytes: u64,
    /// Most batch bytes written with one fsync.
    pub wal_group_bytes: usize,
    /// Append requests that may wait for the log writer.
    pub wal_queue: usize,
    /// Bytes of the newest events kept in memory for consumers that keep up
    /// (one that falls further behind reads the log on disk).
    pub wal_tail_bytes: usize,
    /// Most bytes of log kept on disk for consumers that are behind; past
    /// it, appends wait until they catch up (ingestion slows, nothing is lost).
    pub wal_max_retained_bytes: u64,
    /// A file that gets every event of the log as one JSON line (unset: none).
    pub log_export_path: Option<PathBuf>,

    /// Updates a live client may have queued before they coalesce.
    pub live_client_queue: usize,
    /// Devices one live connection may subscribe to.
    pub live_max_subscriptions: usize,
    /// Seconds between server pings on live connections.
    pub live_ping_secs: u64,
    /// Largest message a live client may send (bytes).
    pub live_max_message_bytes: usize,
    /// Live connections one tenant may have.
    pub live_max_clients_per_tenant: usize,
    /// Bytes of recent commits kept in memory for clients that resume.
    pub live_replay_bytes: usize,
    /// Seconds between re-checks of a live connection's credential.
    pub live_auth_recheck_secs: u64,
    /// Seconds between re-resolutions of group and label subscriptions.
    pub live_selector_refresh_secs: u64,
    /// Most points replayed from the store to a resuming client.
    pub live_resume_max_points: usize,

    /// Most concurrent MQTT connections.
    pub mqtt_max_connections: usize,
    /// Largest MQTT packet (bytes); a larger one closes the connection.
    pub mqtt_max_packet_bytes: usize,
    /// Seconds an MQTT client may take to send CONNECT.
    pub mqtt_connect_timeout_secs: u64,
    /// MQTT over TLS listen address (unset: no TLS listener).
    pub mqtt_tls_listen: Option<String>,
    /// PEM certificate chain for the MQTT TLS listener.
    pub mqtt_tls_cert: Option<PathBuf>,
    /// PEM private key for the MQTT TLS listener.
    pub mqtt_tls_key: Option<PathBuf>,
    /// Seconds between re-checks of an MQTT connection's credential.
    pub mqtt_auth_recheck_secs: u64,
    /// QoS 1/2 messages in flight per MQTT connection, each way (receive maximum).
    pub mqtt_max_inflight: u16,
    /// QoS 1/2 messages queued per MQTT session; beyond it new ones are dropped.
    pub mqtt_max_queued_messages: usize,
    /// Bytes of QoS 0 messages queued per connected MQTT session; beyond it
    /// new ones are dropped.
    pub mqtt_max_queued_qos0_bytes: usize,
    /// Subscriptions per MQTT session.
    pub mqtt_max_subscriptions: usize,
    /// Retained MQTT messages per tenant.
    pub mqtt_max_retained_per_tenant: usize,
    /// Payload bytes of retained MQTT messages per tenant.
    pub mqtt_max_retained_bytes_per_tenant: usize,
    /// MQTT sessions (connected or persistent) per tenant broker, and per device.
    pub mqtt_max_sessions_per_tenant: usize,
    /// Longest a disconnected persistent MQTT session is kept (seconds).
    pub mqtt_max_session_expiry_secs: u64,

    /// Series store: `engine` (default) or `sqlite`.
    pub series_store: SeriesStoreKind,
    /// Points in the engine's in-memory head that trigger sealing a block.
    pub tsdb_max_head_points: usize,
    /// Approximate bytes in the engine's head that trigger sealing a block.
    pub tsdb_max_head_bytes: usize,
    /// Longest data stays only in the engine's head (and the write-ahead log).
    pub tsdb_seal_interval_secs: u64,
    /// Days time series are kept for tenants that set no retention (0: forever).
    pub retention_days: u32,
    /// How often expired time series are dropped (seconds).
    pub retention_check_secs: u64,

    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tributary-data"),
            http_listen: "127.0.0.1:8080".into(),
            mqtt_listen: "127.0.0.1:1883".into(),
            log: "info".into(),
            log_format: LogFormat::Text,
            admin_email: "admin@tributary.local".into(),
            admin_password: None,
            tenant_name: "default".into(),
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            device_cache_entries: 100_000,
            invite_ttl_secs: 7 * 24 * 3600,
            login_failures_per_account_address: 5,
            login_failures_per_account: 50,
            login_failures_per_address: 100,
            login_max_delay_secs: 15 * 60,
            login_window_secs: 15 * 60,
            trusted_proxies: Vec::new(),
            system_admins: Vec::new(),
            http_max_body_bytes: 4 * 1024 * 1024,
            http_max_connections: 20_000,
            http_header_timeout_secs: 10,
            http_body_timeout_secs: 60,
            reserved_file_descriptors: 256,
            max_devices_per_tenant: 100_000,
            max_auto_devices_per_request: 1_000,
            max_auto_devices_per_minute: 10_000,
            max_tenants_per_user: 10,
            max_key_bytes: 255,
            max_string_bytes: 8 * 1024,
            max_points_per_batch: 100_000,
            query_default_limit: 100,
            query_max_limit: 100_000,
            query_catch_up_ms: 2_000,
            wal_segment_bytes: 64 * 1024 * 1024,
            wal_group_bytes: 8 * 1024 * 1024,
            wal_queue: 4096,
            wal_tail_bytes: 64 * 1024 * 1024,
            wal_max_retained_bytes: 8 * 1024 * 1024 * 1024,
            log_export_path: None,
            live_client_queue: 1024,
            live_max_subscriptions: 1000,
            live_ping_secs: 30,
            live_max_message_bytes: 64 * 1024,
            live_max_clients_per_tenant: 10_000,
            live_replay_bytes: 64 * 1024 * 1024,
            live_auth_recheck_secs: 15,
            live_selector_refresh_secs: 10,
            live_resume_max_points: 100_000,
            mqtt_max_connections: 100_000,
            mqtt_max_packet_bytes: 1024 * 1024,
            mqtt_connect_timeout_secs: 10,
            mqtt_tls_listen: None,
            mqtt_tls_cert: None,
            mqtt_tls_key: None,
            mqtt_auth_recheck_secs: 15,
            mqtt_max_inflight: 64,
            mqtt_max_queued_messages: 1000,
            mqtt_max_queued_qos0_bytes: 4 * 1024 * 1024,
            mqtt_max_subscriptions: 100,
            mqtt_max_retained_per_tenant: 10_000,
            mqtt_max_retained_bytes_per_tenant: 64 * 1024 * 1024,
            mqtt_max_sessions_per_tenant: 10_000,
            mqtt_max_session_expiry_secs: 24 * 3600,
            series_store: SeriesStoreKind::Engine,
            tsdb_max_head_points: 1_000_000,
            tsdb_max_head_bytes: 256 * 1024 * 1024,
            tsdb_seal_interval_secs: 60,
            retention_days: 0,
            retention_check_secs: 3600,
            shutdown_grace_secs: 10,
        }
    }
}

const MASK: &str = "********";

/// Settings whose values are text, read from the environment without type guessing.
const STRING_KEYS: &[&str] = &[
    "data_dir",
    "http_listen",
    "mqtt_listen",
    "mqtt_tls_listen",
    "mqtt_tls_cert",
    "mqtt_tls_key",
    "log_export_path",
    "log",
    "admin_email",
    "admin_password",
    "tenant_name",
    "jwt_secret",
];

impl Config {
    /// Loads the layers in order: defaults, file, environment, flags.
    pub fn load(args: &ConfigArgs) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &args.config {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            fig = fig.merge(Toml::file(path));
        }
        // Text settings are taken verbatim: a password like `0123456789` must stay a string.
        let raw_strings: BTreeMap<String, String> = STRING_KEYS
            .iter()
            .filter_map(|k| {
                let v = std::env::var(format!("TRIBUTARY_{}", k.to_ascii_uppercase())).ok()?;
                Some((k.to_string(), v))
            })
            .collect();
        let mut ignored = vec!["config"];
        ignored.extend(STRING_KEYS);
        let fig = fig
            .merge(
                Env::prefixed("TRIBUTARY_")
                    .ignore(&ignored)
                    .map(|k| k.as_str().to_ascii_lowercase().into()),
            )
            .merge(Serialized::defaults(raw_strings))
            .merge(Serialized::defaults(args));
        let config: Config = fig.extract().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.access_token_ttl_secs > 0,
            "access_token_ttl_secs must be positive"
        );
        anyhow::ensure!(
            self.refresh_token_ttl_secs > 0,
            "refresh_token_ttl_secs must be positive"
        );
        anyhow::ensure!(
            self.http_max_body_bytes > 0,
            "http_max_body_bytes must be positive"
        );
        anyhow::ensure!(
            (1..=self.query_max_limit).contains(&self.query_default_limit),
            "query_default_limit must be between 1 and query_max_limit"
        );
        anyhow::ensure!(self.live_ping_secs > 0, "live_ping_secs must be positive");
        anyhow::ensure!(
            self.http_header_timeout_secs > 0 && self.http_body_timeout_secs > 0,
            "http_header_timeout_secs and http_body_timeout_secs must be positive"
        );
        anyhow::ensure!(
            self.login_failures_per_account_address > 0
                && self.login_failures_per_account > 0
                && self.login_failures_per_address > 0,
            "the login_failures_* limits must be positive"
        );
        for proxy in &self.trusted_proxies {
            anyhow::ensure!(
                tributary_http::trusted_proxy(proxy).is_some(),
                "trusted_proxies: {proxy:?} is not an IP address or CIDR range"
            );
        }
        anyhow::ensure!(
            self.wal_segment_bytes >= 4096,
            "wal_segment_bytes must be at least 4096"
        );
        anyhow::ensure!(
            self.wal_max_retained_bytes >= 4 * self.wal_segment_bytes,
            "wal_max_retained_bytes must be at least 4 x wal_segment_bytes (the log is trimmed a segment at a time)"
        );
        anyhow::ensure!(
            self.mqtt_tls_listen.is_none()
                || (self.mqtt_tls_cert.is_some() && self.mqtt_tls_key.is_some()),
            "mqtt_tls_listen needs mqtt_tls_cert and mqtt_tls_key"
        );
        anyhow::ensure!(
            self.mqtt_max_inflight > 0,
            "mqtt_max_inflight must be positive"
        );
        anyhow::ensure!(
            self.mqtt_max_queued_qos0_bytes >= 4096,
            "mqtt_max_queued_qos0_bytes must be at least 4096"
        );
        if let Some(s) = &self.jwt_secret {
            anyhow::ensure!(s.len() >= 32, "jwt_secret must be at least 32 characters");
        }
        Ok(())
    }

    /// The configuration as TOML, with secrets masked.
    pub fn show(&self) -> anyhow::Result<String> {
        let mut masked = self.clone();
        for secret in [&mut masked.admin_password, &mut masked.jwt_secret] {
            if secret.is_some() {
                *secret = Some(MASK.into());
            }
        }
        let mut out = toml::to_string(&masked)?;
        for (key, unset) in [
            ("admin_password", masked.admin_password.is_none()),
            ("jwt_secret", masked.jwt_secret.is_none()),
        ] {
            if unset {
                out.push_str(&format!("# {key}: unset (generated on first start)\n"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let c = Config {
            admin_password: Some("hunter2hunter2".into()),
            ..Config::default()
        };
        let shown = c.show().unwrap();
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("admin_password = \"********\""));
        assert!(shown.contains("# jwt_secret: unset"));
    }
}

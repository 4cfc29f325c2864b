//! The bodies of Tributary's fuzz targets, one function each, over every
//! decoder of outside input: device JSON, line protocol, write-ahead log
//! records and batches, chunks, rollups and block files, MQTT client streams
//! and whole MQTT connections.
//! Each takes any bytes and must return; a panic is the bug the fuzzer finds.
//! `fuzz/fuzz_targets/*.rs` call them under libFuzzer (`cargo fuzz run NAME`);
//! `tests/corpus.rs` replays the checked-in corpus through them on every run.

use std::sync::OnceLock;

use tributary_log::wal::{self, Format};
use tributary_model::line_protocol::{self, Precision};
use tributary_model::ParseLimits;
use tributary_store::series::engine::decode;

/// A fuzz target: any bytes in, a panic when it finds a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets` and `fuzz/corpus` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("device_json", device_json),
    ("line_protocol", line_protocol),
    ("wal_record", wal_record),
    ("wal_batch", wal_batch),
    ("chunk", chunk),
    ("rollup", rollup),
    ("block", block),
    ("mqtt_stream", mqtt_stream),
    ("mqtt_connection", mqtt_connection),
];

/// A ThingsBoard telemetry payload; what parses holds to the limits.
pub fn device_json(data: &[u8]) {
    let limits = ParseLimits::default();
    if let Ok(points) = tributary_model::parse_telemetry(data, 1_700_000_000_000_000_000, &limits) {
        assert!(!points.is_empty() && points.len() <= limits.max_points);
        assert!(points.iter().all(|p| p.ts >= 0));
    }
}

/// An InfluxDB line-protocol body; every parsed point can be read back.
pub fn line_protocol(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = line_protocol::parse(
        text,
        Precision::Ns,
        1_700_000_000_000_000_000,
        &ParseLimits::default(),
    );
    for (_, points) in &parsed.groups {
        assert!(points.iter().all(|p| p.ts >= 0));
    }
}

/// A write-ahead log record, in every segment format.
pub fn wal_record(data: &[u8]) {
    for format in [Format::Postcard, Format::Compact, Format::Events] {
        if let Ok((_, _, used)) = wal::decode_record(data, format) {
            assert!(used <= data.len());
        }
    }
}

/// A record's body, as a telemetry-only segment holds it (a batch) and as
/// the log writes it now (an event): what decodes, encodes, and decodes
/// back to the same bytes (compared as bytes: a NaN is not equal to itself).
pub fn wal_batch(data: &[u8]) {
    if let Ok(batch) = wal::decode_batch(data) {
        let again = wal::encode_event(&tributary_model::Event::Telemetry(batch));
        let round = wal::decode_event(&again).expect("an encoded batch decodes");
        assert_eq!(wal::encode_event(&round), again);
    }
    if let Ok(event) = wal::decode_event(data) {
        let again = wal::encode_event(&event);
        let round = wal::decode_event(&again).expect("an encoded event decodes");
        assert_eq!(wal::encode_event(&round), again);
    }
}

/// A compressed chunk.
pub fn chunk(data: &[u8]) {
    let _ = decode::chunk(data);
}

/// A chunk's rollup record.
pub fn rollup(data: &[u8]) {
    let _ = decode::rollup(data);
}

/// A whole block file.
pub fn block(data: &[u8]) {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a scratch folder"));
    let _ = decode::block(dir.path(), data);
}

/// What an MQTT client sends on a connection (3.1.1, then 5).
pub fn mqtt_stream(data: &[u8]) {
    for v5 in [false, true] {
        let _ = tributary_mqtt::decode_client_stream(data, v5, 1 << 20);
    }
}

/// A whole MQTT connection as the server handles it, over an in-memory
/// socket: the bytes after a first byte are what the client sends; when the
/// first byte is even, a valid CONNECT of a device comes first, so the
/// fuzzer reaches what follows it (publishes, subscriptions, acks, RPC).
pub fn mqtt_connection(data: &[u8]) {
    mqtt_connection_output(data);
}

/// What the server answered in [`mqtt_connection`].
pub fn mqtt_connection_output(data: &[u8]) -> Vec<u8> {
    let Some((&first, rest)) = data.split_first() else {
        return Vec::new();
    };
    let h = connection::harness();
    let mut input = if first % 2 == 0 {
        h.connect.clone()
    } else {
        Vec::new()
    };
    input.extend_from_slice(rest);
    h.runtime.block_on(connection::serve(h, input))
}

mod connection {
    //! One server state shared by every fuzzed connection: a metadata store
    //! with one device, a write-ahead log whose committed batches are
    //! dropped (storage is not what this target fuzzes), and the broker.

    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tributary_auth::{AuthConfig, Authenticator, LoginLimits};
    use tributary_log::{Committed, Consumer, ConsumerError, Pipeline, PipelineConfig};
    use tributary_mqtt::{Broker, BrokerLimits, MqttConfig, MqttState};
    use tributary_store::meta::prelude::*;
    use tributary_store::meta::NewDevice;
    use tributary_store::{Role, SqliteMeta};

    pub struct Harness {
        pub runtime: tokio::runtime::Runtime,
        pub state: MqttState,
        /// A device's CONNECT (MQTT 3.1.1, its token as the username).
        pub connect: Vec<u8>,
        _dir: tempfile::TempDir,
    }

    struct Dropped;

    #[async_trait::async_trait]
    impl Consumer for Dropped {
        fn name(&self) -> &str {
            "dropped"
        }
        async fn apply(&self, _: &[Arc<Committed>]) -> Result<(), ConsumerError> {
            Ok(())
        }
    }

    pub fn harness() -> &'static Harness {
        static H: OnceLock<Harness> = OnceLock::new();
        H.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            let dir = tempfile::tempdir().expect("a scratch folder");
            let (state, token) = runtime.block_on(async {
                let meta: Arc<dyn MetaStore> = Arc::new(
                    SqliteMeta::open(&dir.path().join("meta.db"))
                        .await
                        .expect("meta"),
                );
                let hash = Authenticator::hash_password("fuzz-password-123")
                    .await
                    .expect("hash");
                let (tenant, _) = meta
                    .create_tenant_with_owner("fuzz", "fuzz@example.com", &hash, Role::Owner)
                    .await
                    .expect("tenant");
                let (token, token_hash, token_hint) = Authenticator::new_device_token();
                meta.create_device(
                    tenant.id,
                    NewDevice {
                        name: "fuzzed".into(),
                        labels: Default::default(),
                        tags: Vec::new(),
                        profile: None,
                        token_hash,
                        token_hint,
                    },
                )
                .await
                .expect("device");
                let auth = Authenticator::new(
                    meta.clone(),
                    &[7u8; 32],
                    AuthConfig {
                        access_ttl_secs: 900,
                        refresh_ttl_secs: 3600,
                        invite_ttl_secs: 3600,
                        device_cache_entries: 1000,
                        login_limits: LoginLimits {
                            per_account_address: 5,
                            per_account: 50,
                            per_address: 100,
                            max_delay: Duration::from_secs(60),
                            window: Duration::from_secs(60),
                            max_tracked: 1000,
                        },
                    },
                )
                .expect("authenticator");
                let pipeline = Pipeline::start(
                    PipelineConfig {
                        dir: dir.path().join("wal"),
                        segment_bytes: 64 << 20,
                        max_group_bytes: 1 << 20,
                        queue_capacity: 1024,
                        tail_bytes: 1 << 20,
                        max_retained_bytes: 1 << 30,
                    },
                    Arc::new(Dropped),
                    Vec::new(),
                    Vec::new(),
                )
                .await
                .expect("pipeline");
                let broker = Broker::new(BrokerLimits {
                    max_queued: 100,
                    max_queued_qos0_bytes: 1 << 20,
                    max_inflight: 16,
                    max_subscriptions: 16,
                    max_retained: 100,
                    max_retained_bytes: 1 << 20,
                    max_sessions_per_tenant: 1000,
                    max_session_expiry: Duration::from_secs(60),
                });
                let gateway = tributary_ingest::Gateway::new(
                    meta.clone(),
                    Arc::new(tributary_ingest::Caches::new(auth.clone())),
                    pipeline,
                    tributary_ingest::GatewayConfig {
                        parse_limits: Default::default(),
                        attributes_catch_up: Duration::from_millis(100),
                        lifecycle_append_timeout: Duration::from_millis(100),
                    },
                );
                let state = MqttState {
                    auth,
                    gateway,
                    meta,
                    broker,
                    slots: Arc::new(tokio::sync::Semaphore::new(64)),
                    config: Arc::new(MqttConfig {
                        max_connections: 64,
                        max_packet_bytes: 1 << 16,
                        connect_timeout: Duration::from_secs(1),
                        auth_recheck: Duration::from_secs(60),
                        parse_limits: Default::default(),
                    }),
                };
                (state, token)
            });
            let mut connect = vec![
                0x10, 0, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x82, 0x00, 0x3c,
            ];
            connect.extend_from_slice(&[0x00, 0x04]);
            connect.extend_from_slice(b"fuzz");
            connect.extend_from_slice(&(token.len() as u16).to_be_bytes());
            connect.extend_from_slice(token.as_bytes());
            connect[1] = (connect.len() - 2) as u8;
            Harness {
                runtime,
                state,
                connect,
                _dir: dir,
            }
        })
    }

    /// Serves one connection that sends `input` and then closes; waits (a
    /// bounded time) for the server to finish with it; returns what it sent.
    pub async fn serve(h: &Harness, input: Vec<u8>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (_down_tx, down) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(tributary_mqtt::serve_stream(server, h.state.clone(), down));
        let reader = tokio::spawn(async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
            out
        });
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        match tokio::time::timeout(Duration::from_secs(5), reader).await {
            Ok(Ok(out)) => out,
            _ => Vec::new(),
        }
    }
}

//! `tributary serve`: wires stores, pipeline, hub and HTTP together, and
//! shuts them down in order on SIGINT/SIGTERM.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::watch;
use tributary_auth::{AuthConfig, Authenticator, LoginLimits};
use tributary_http::{AppState, HttpConfig};
use tributary_live::{Hub, HubConfig};
use tributary_log::{Listener, Pipeline, PipelineConfig};
use tributary_model::ParseLimits;
use tributary_store::retention::RetentionPolicy;
use tributary_store::{
    Engine, EngineConfig, MetaStore, SeriesStore, SeriesWriter, SqliteMeta, SqliteSeries,
};

use crate::config::{Config, SeriesStoreKind};
use crate::consumers::{AttributesConsumer, SeriesConsumer};
use crate::{bootstrap, fds, logging};

/// Runs the server until a shutdown signal; returns once everything is synced.
pub fn run(config: Config) -> anyhow::Result<()> {
    logging::init(&config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // One server per data directory: a second one would corrupt the log.
    let lock_path = config.data_dir.join("LOCK");
    let lock = fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "data directory {} is in use by another Tributary process",
            config.data_dir.display()
        )
    })?;

    let connections = fds::plan(
        fds::raise_limit(),
        config.http_max_connections,
        config.mqtt_max_connections,
        config.reserved_file_descriptors,
    );
    if connections.lowered {
        tracing::warn!(
            file_limit = connections.file_limit,
            http = connections.http,
            mqtt = connections.mqtt,
            "connection limits lowered to keep file descriptors for the log and the stores; raise the file limit (ulimit -n) for more"
        );
    }

    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    tributary_log::describe_metrics();
    tributary_live::describe_metrics();
    tributary_http::describe_metrics();
    tributary_mqtt::describe_metrics();
    let meta = SqliteMeta::open(&config.data_dir.join("meta.db"))
        .await
        .context("opening metadata store")?
        .with_limits(tributary_store::meta::MetaLimits {
            devices_per_tenant: config.max_devices_per_tenant as u64,
            tenants_per_user: config.max_tenants_per_user as u64,
        });
    let meta: Arc<dyn MetaStore> = Arc::new(meta);
    bootstrap::first_start(meta.as_ref(), &config).await?;
    let series: Arc<dyn SeriesStore> = match config.series_store {
        SeriesStoreKind::Engine => {
            let engine = Engine::open(
                &config.data_dir.join("tsdb"),
                EngineConfig {
                    max_head_points: config.tsdb_max_head_points.max(1),
                    max_head_bytes: config.tsdb_max_head_bytes.max(1),
                    seal_interval: Duration::from_secs(config.tsdb_seal_interval_secs.max(1)),
                },
            )
            .await
            .context("opening the time-series engine")?;
            import_sqlite_history(&config.data_dir, &engine).await?;
            Arc::new(engine)
        }
        SeriesStoreKind::Sqlite => Arc::new(
            SqliteSeries::open(&config.data_dir.join("series.db"))
                .await
                .context("opening series store")?,
        ),
    };

    let hub = Hub::new(HubConfig {
        client_queue: config.live_client_queue,
        max_subscriptions: config.live_max_subscriptions,
        max_clients_per_tenant: config.live_max_clients_per_tenant,
        replay_bytes: config.live_replay_bytes,
    });
    let broker = tributary_mqtt::Broker::new(tributary_mqtt::BrokerLimits {
        max_queued: config.mqtt_max_queued_messages,
        max_queued_qos0_bytes: config.mqtt_max_queued_qos0_bytes,
        max_inflight: config.mqtt_max_inflight,
        max_subscriptions: config.mqtt_max_subscriptions,
        max_retained: config.mqtt_max_retained_per_tenant,
        max_retained_bytes: config.mqtt_max_retained_bytes_per_tenant,
        max_sessions_per_tenant: config.mqtt_max_sessions_per_tenant,
        max_session_expiry: Duration::from_secs(config.mqtt_max_session_expiry_secs),
    });
    let auth = Authenticator::new(
        meta.clone(),
        &bootstrap::jwt_secret(&config)?,
        AuthConfig {
            access_ttl_secs: config.access_token_ttl_secs,
            refresh_ttl_secs: config.refresh_token_ttl_secs,
            invite_ttl_secs: config.invite_ttl_secs,
            device_cache_entries: config.device_cache_entries,
            login_limits: LoginLimits {
                per_account_address: config.login_failures_per_account_address,
                per_account: config.login_failures_per_account,
                per_address: config.login_failures_per_address,
                max_delay: Duration::from_secs(config.login_max_delay_secs.max(1)),
                window: Duration::from_secs(config.login_window_secs),
                max_tracked: 100_000,
            },
        },
    )?;
    let caches = Arc::new(tributary_ingest::Caches::new(auth.clone()));
    let mut consumers: Vec<Arc<dyn tributary_log::Consumer>> = vec![
        Arc::new(AttributesConsumer(meta.clone())),
        Arc::new(tributary_ingest::CachesConsumer(caches.clone())),
    ];
    if let Some(path) = &config.log_export_path {
        let export = crate::export::ExportConsumer::open(path)
            .with_context(|| format!("opening log_export_path {}", path.display()))?;
        consumers.push(Arc::new(export));
    }
    let pipeline = Pipeline::start(
        PipelineConfig {
            dir: config.data_dir.join("wal"),
            segment_bytes: config.wal_segment_bytes,
            max_group_bytes: config.wal_group_bytes,
            queue_capacity: config.wal_queue,
            tail_bytes: config.wal_tail_bytes,
            max_retained_bytes: config.wal_max_retained_bytes,
        },
        Arc::new(SeriesConsumer::new(series.clone())),
        consumers,
        vec![
            hub.clone() as Arc<dyn Listener>,
            Arc::new(tributary_mqtt::LogFeed(broker.clone())),
        ],
    )
    .await
    .context("starting the pipeline")?;

    let ready = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let parse_limits = ParseLimits {
        max_key_len: config.max_key_bytes,
        max_string_len: config.max_string_bytes,
        max_points: config.max_points_per_batch,
    };
    let gateway = tributary_ingest::Gateway::new(
        meta.clone(),
        caches,
        pipeline.clone(),
        tributary_ingest::GatewayConfig {
            parse_limits: parse_limits.clone(),
            attributes_catch_up: Duration::from_millis(config.query_catch_up_ms),
            lifecycle_append_timeout: Duration::from_millis(config.query_catch_up_ms),
        },
    );
    let mqtt_state = tributary_mqtt::MqttState {
        auth: auth.clone(),
        gateway: gateway.clone(),
        meta: meta.clone(),
        broker: broker.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(connections.mqtt.max(1))),
        config: Arc::new(tributary_mqtt::MqttConfig {
            max_connections: connections.mqtt,
            max_packet_bytes: config.mqtt_max_packet_bytes,
            connect_timeout: Duration::from_secs(config.mqtt_connect_timeout_secs.max(1)),
            auth_recheck: Duration::from_secs(config.mqtt_auth_recheck_secs.max(1)),
            parse_limits: parse_limits.clone(),
        }),
    };
    let state = AppState {
        meta: meta.clone(),
        series: series.clone(),
        pipeline: pipeline.clone(),
        gateway,
        hub,
        auth,
        mqtt: Some(mqtt_state.clone()),
        metrics,
        config: Arc::new(HttpConfig {
            max_body_bytes: config.http_max_body_bytes,
            parse_limits,
            max_query_limit: config.query_max_limit,
            default_query_limit: config.query_default_limit,
            read_your_writes: Duration::from_millis(config.query_catch_up_ms),
            live_ping: Duration::from_secs(config.live_ping_secs),
            live_max_message: config.live_max_message_bytes,
            live_max_subscriptions: config.live_max_subscriptions,
            live_auth_recheck: Duration::from_secs(config.live_auth_recheck_secs.max(1)),
            live_selector_refresh: Duration::from_secs(config.live_selector_refresh_secs.max(1)),
            live_resume_max_points: config.live_resume_max_points,
            default_retention_days: config.retention_days,
            max_auto_devices_per_request: config.max_auto_devices_per_request,
            max_auto_devices_per_minute: config.max_auto_devices_per_minute,
            trusted_proxies: config
                .trusted_proxies
                .iter()
                .filter_map(|p| tributary_http::trusted_proxy(p))
                .collect(),
            system_admins: if config.system_admins.is_empty() {
                vec![config.admin_email.clone()]
            } else {
                config.system_admins.clone()
            },
        }),
        ready: ready.clone(),
        shutdown: shutdown_rx.clone(),
    };

    let mqtt_listener = tokio::net::TcpListener::bind(&config.mqtt_listen)
        .await
        .with_context(|| {
            format!(
                "binding MQTT listener on {} (set mqtt_listen to another address)",
                config.mqtt_listen
            )
        })?;
    let mqtt_addr = mqtt_listener.local_addr()?;
    let mqtt_task = tokio::spawn(tributary_mqtt::serve(
        mqtt_listener,
        None,
        mqtt_state.clone(),
        shutdown_rx.clone(),
    ));
    tracing::info!(addr = %mqtt_addr, "mqtt listening");
    if let (Some(addr), Some(cert), Some(key)) = (
        &config.mqtt_tls_listen,
        &config.mqtt_tls_cert,
        &config.mqtt_tls_key,
    ) {
        let acceptor = tributary_mqtt::tls_acceptor(cert, key)?;
        let tls_listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding MQTT TLS listener on {addr}"))?;
        let tls_addr = tls_listener.local_addr()?;
        tokio::spawn(tributary_mqtt::serve(
            tls_listener,
            Some(acceptor),
            mqtt_state.clone(),
            shutdown_rx.clone(),
        ));
        tracing::info!(addr = %tls_addr, "mqtt tls listening");
    }
    tokio::spawn(tributary_mqtt::sweep(broker, shutdown_rx.clone()));
    tokio::spawn(tributary_store::retention::run(
        meta.clone(),
        series.clone(),
        RetentionPolicy {
            default_days: config.retention_days,
            every: Duration::from_secs(config.retention_check_secs.max(1)),
        },
        shutdown_rx.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(&config.http_listen)
        .await
        .with_context(|| format!("binding HTTP listener on {}", config.http_listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "http listening");
    ready.store(true, Ordering::Release);

    let app = tributary_http::router(state);
    let server = tributary_http::serve(
        listener,
        app,
        tributary_http::ServeLimits {
            max_connections: connections.http,
            header_timeout: Duration::from_secs(config.http_header_timeout_secs),
            body_timeout: Duration::from_secs(config.http_body_timeout_secs),
        },
        shutdown_rx.clone(),
    );
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let mut after_signal = shutdown_rx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        ready.store(false, Ordering::Release);
        let _ = shutdown_tx.send(true);
        // Keep the sender alive until the process ends.
        std::future::pending::<()>().await;
    });
    tokio::select! {
        () = server => {},
        _ = async {
            let _ = after_signal.wait_for(|down| *down).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after the grace period; closing"),
    }

    let _ = tokio::time::timeout(Duration::from_secs(2), mqtt_task).await;
    pipeline.shutdown(Duration::from_secs(5)).await;
    series.close().await;
    meta.close().await;
    drop(lock);
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A data directory from before the engine keeps its history in `series.db`:
/// on the first start with the engine, every point moves into the engine
/// (with its LSN), and the file is renamed `series.db.imported`.
async fn import_sqlite_history(data_dir: &std::path::Path, engine: &Engine) -> anyhow::Result<()> {
    let old = data_dir.join("series.db");
    if !old.exists() || !engine.is_empty() {
        return Ok(());
    }
    tracing::info!(file = %old.display(), "moving the series history into the time-series engine");
    let sqlite = SqliteSeries::open(&old)
        .await
        .context("opening series.db to move its history")?;
    let applied = sqlite.applied_lsn().await?;
    let mut points = 0usize;
    let all = sqlite.series().await?;
    for (id, tenant, device, key) in &all {
        let p = sqlite.series_points(*id).await?;
        points += p.len();
        engine.import(*tenant, *device, key, p).await?;
    }
    engine.finish_import(applied).await?;
    sqlite.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let from = data_dir.join(format!("series.db{suffix}"));
        if from.exists() {
            fs::rename(&from, data_dir.join(format!("series.db.imported{suffix}")))
                .with_context(|| format!("renaming {}", from.display()))?;
        }
    }
    tracing::info!(
        series = all.len(),
        points,
        applied_lsn = applied,
        "series history moved"
    );
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

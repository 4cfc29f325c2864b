//! Accepting MQTT connections, within a limit, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tributary_auth::Authenticator;
use tributary_model::ParseLimits;
use tributary_pipeline::Pipeline;
use tributary_store::meta::ProfileCache;
use tributary_store::MetaStore;

use crate::connection;

/// Limits of the listener; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct MqttConfig {
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Largest packet accepted (bytes); a larger one closes the connection.
    pub max_packet_bytes: usize,
    /// How long a client may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Limits on device payloads (as for HTTP).
    pub parse_limits: ParseLimits,
}

/// What every connection needs.
#[derive(Clone)]
pub struct MqttState {
    /// Credentials.
    pub auth: Arc<Authenticator>,
    /// Durable ingestion.
    pub pipeline: Arc<Pipeline>,
    /// Metadata (attributes, profiles).
    pub meta: MetaStore,
    /// Profile schemas for validation.
    pub profiles: Arc<ProfileCache>,
    /// Limits.
    pub config: Arc<MqttConfig>,
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(listener: TcpListener, state: MqttState, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|down| *down) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "MQTT connection refused: connection limit reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (state, shutdown) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            serve_stream(stream, state, shutdown).await;
            tracing::debug!(%peer, "MQTT connection ended");
            drop(permit);
        });
    }
}

/// Serves one MQTT connection over any byte stream (TCP, or WebSocket frames).
pub async fn serve_stream<S>(stream: S, state: MqttState, shutdown: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    metrics::gauge!("tributary_mqtt_connections").increment(1.0);
    if let Err(e) = connection::run(stream, state, shutdown).await {
        tracing::debug!(error = %e, "MQTT connection closed");
    }
    metrics::gauge!("tributary_mqtt_connections").decrement(1.0);
}

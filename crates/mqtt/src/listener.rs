//! Accepting MQTT connections (plain TCP or TLS), within a limit, until shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::broker::Broker;
use crate::connection;
use crate::state::MqttState;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("MQTT TLS: {0}")]
pub struct TlsError(String);

/// A TLS acceptor from PEM certificate-chain and private-key files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| TlsError(format!("reading certificates from {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("no certificate in {}", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        TlsError(format!(
            "reading the private key from {}: {e}",
            key.display()
        ))
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `shutdown` turns true; with `tls`, each is a TLS session.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: MqttState,
    mut shutdown: watch::Receiver<bool>,
) {
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
        let Some(permit) = slot(&state) else {
            tracing::warn!(%peer, "MQTT connection refused: connection limit reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (state, shutdown, tls) = (state.clone(), shutdown.clone(), tls.clone());
        tokio::spawn(async move {
            serve_accepted(stream, tls, state, shutdown).await;
            tracing::debug!(%peer, "MQTT connection ended");
            drop(permit);
        });
    }
}

async fn serve_accepted(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    state: MqttState,
    shutdown: watch::Receiver<bool>,
) {
    let Some(tls) = tls else {
        return serve_stream(stream, state, shutdown).await;
    };
    // Boxed: a TLS connection's state is large, and plain connections (the
    // many idle ones) should not carry room for it in their task.
    Box::pin(async move {
        let handshake =
            tokio::time::timeout(state.config.connect_timeout, tls.accept(stream)).await;
        match handshake {
            Ok(Ok(stream)) => serve_stream(stream, state, shutdown).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "MQTT TLS handshake failed"),
            Err(_) => tracing::debug!("MQTT TLS handshake timed out"),
        }
    })
    .await
}

/// A connection slot, if one is free.
pub fn slot(state: &MqttState) -> Option<OwnedSemaphorePermit> {
    state.slots.clone().try_acquire_owned().ok()
}

/// Serves one MQTT connection over any byte stream (TCP, TLS, or WebSocket frames).
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

/// Ends expired sessions and retained messages every few seconds until shutdown.
pub async fn sweep(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = every.tick() => broker.sweep(),
            _ = shutdown.wait_for(|down| *down) => return,
        }
    }
}

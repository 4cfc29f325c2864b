//! One MQTT connection: CONNECT and authentication, then publishes, pings and
//! keep-alive, until the client leaves, breaks the protocol, or the server stops.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tributary_model::time::now_ns;
use tributary_model::{parse_telemetry, Batch};
use tributary_store::meta::AttributeScope;
use tributary_store::Device;

use crate::listener::MqttState;

/// The ThingsBoard device topics.
const TELEMETRY: &str = "v1/devices/me/telemetry";
const ATTRIBUTES: &str = "v1/devices/me/attributes";

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The socket failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent something that is not valid MQTT 3.1.1.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Authentication failed.
    #[error("not authorized")]
    Unauthorized,
    /// The client went quiet past its keep-alive.
    #[error("keep-alive expired")]
    KeepAlive,
    /// A payload was rejected; MQTT 3.1.1 has no negative PUBACK, so the connection closes.
    #[error("rejected publish: {0}")]
    Rejected(String),
}

struct Conn<S> {
    stream: S,
    buf: BytesMut,
    max: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// The next packet, reading from the socket as needed.
    async fn read(&mut self) -> Result<Option<Packet>, ConnError> {
        loop {
            match Packet::read(&mut self.buf, self.max) {
                Ok(p) => return Ok(Some(p)),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => return Err(ConnError::Protocol(e.to_string())),
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(8192);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn write(&mut self, packet: Packet) -> Result<(), ConnError> {
        let mut out = BytesMut::with_capacity(64);
        packet
            .write(&mut out, self.max)
            .map_err(|e| ConnError::Protocol(e.to_string()))?;
        self.stream.write_all(&out).await?;
        Ok(())
    }
}

async fn authenticate(
    state: &MqttState,
    client_id: &str,
    username: &str,
    password: &str,
) -> Option<Device> {
    if password.is_empty() {
        // ThingsBoard style: the access token is the username.
        return state.auth.device(username).await.ok().flatten();
    }
    match state
        .auth
        .device_by_mqtt(username, password, client_id)
        .await
        .ok()
        .flatten()
    {
        Some(d) => Some(d),
        None => state.auth.device(username).await.ok().flatten(),
    }
}

/// Serves one connection to its end.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    state: MqttState,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(4096),
        max: state.config.max_packet_bytes,
    };
    let first = tokio::time::timeout(state.config.connect_timeout, conn.read())
        .await
        .map_err(|_| ConnError::Protocol("no CONNECT in time".into()))??;
    let Some(Packet::Connect(connect)) = first else {
        return Err(ConnError::Protocol(
            "the first packet must be CONNECT".into(),
        ));
    };
    let (user, pass) = connect
        .login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()))
        .unwrap_or(("", ""));
    let Some(device) = authenticate(&state, &connect.client_id, user, pass).await else {
        metrics::counter!("tributary_batches_rejected_total", "reason" => "unauthorized")
            .increment(1);
        conn.write(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::BadUserNamePassword,
            false,
        )))
        .await?;
        return Err(ConnError::Unauthorized);
    };
    conn.write(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        false,
    )))
    .await?;
    tracing::debug!(device = %device.id, client_id = %connect.client_id, "MQTT device connected");

    // A client that says nothing for 1.5 × its keep-alive is gone (0: no keep-alive).
    let keep_alive = match connect.keep_alive {
        0 => Duration::from_secs(24 * 3600),
        k => Duration::from_millis(u64::from(k) * 1500),
    };
    loop {
        let packet = tokio::select! {
            p = tokio::time::timeout(keep_alive, conn.read()) => p.map_err(|_| ConnError::KeepAlive)??,
            _ = shutdown.wait_for(|down| *down) => return Ok(()),
        };
        match packet {
            None | Some(Packet::Disconnect) => return Ok(()),
            Some(Packet::PingReq) => conn.write(Packet::PingResp).await?,
            Some(Packet::Publish(p)) => {
                if p.qos == QoS::ExactlyOnce {
                    return Err(ConnError::Protocol(
                        "QoS 2 is not supported yet on the device API".into(),
                    ));
                }
                match p.topic.as_str() {
                    TELEMETRY => telemetry(&state, &device, &p.payload).await?,
                    ATTRIBUTES => attributes(&state, &device, &p.payload).await?,
                    other => {
                        return Err(ConnError::Protocol(format!(
                            "devices may not publish to {other:?}"
                        )))
                    }
                }
                if p.qos == QoS::AtLeastOnce {
                    conn.write(Packet::PubAck(PubAck::new(p.pkid))).await?;
                }
            }
            Some(Packet::Subscribe(s)) => {
                // Attribute pushes and RPC are not served yet: refuse each filter explicitly.
                let codes = s
                    .filters
                    .iter()
                    .map(|_| SubscribeReasonCode::Failure)
                    .collect();
                conn.write(Packet::SubAck(SubAck::new(s.pkid, codes)))
                    .await?;
            }
            Some(Packet::Unsubscribe(u)) => {
                conn.write(Packet::UnsubAck(UnsubAck::new(u.pkid))).await?
            }
            Some(other) => return Err(ConnError::Protocol(format!("unexpected {other:?}"))),
        }
    }
}

fn rejected(reason: &'static str, detail: String) -> ConnError {
    metrics::counter!("tributary_batches_rejected_total", "reason" => reason).increment(1);
    ConnError::Rejected(detail)
}

/// Parses, validates and durably logs a telemetry payload (then the caller PUBACKs).
async fn telemetry(state: &MqttState, device: &Device, payload: &[u8]) -> Result<(), ConnError> {
    let points = parse_telemetry(payload, now_ns(), &state.config.parse_limits).map_err(|e| {
        let reason = if matches!(e, tributary_model::ParseError::Json(_)) {
            "malformed"
        } else {
            "invalid"
        };
        rejected(reason, e.to_string())
    })?;
    match state.profiles.check(&state.meta, device, &points).await {
        Ok(Ok(())) => {}
        Ok(Err(v)) => return Err(rejected("profile", v.to_string())),
        Err(e) => return Err(rejected("unavailable", e.to_string())),
    }
    state
        .pipeline
        .append(Batch {
            tenant: device.tenant,
            device: device.id,
            points,
        })
        .await
        .map_err(|e| rejected("unavailable", format!("telemetry not stored: {e}")))?;
    Ok(())
}

/// Stores client attributes.
async fn attributes(state: &MqttState, device: &Device, payload: &[u8]) -> Result<(), ConnError> {
    let values: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(payload).map_err(|e| {
            rejected(
                "malformed",
                format!("attributes must be a JSON object: {e}"),
            )
        })?;
    if values.is_empty() || values.values().any(serde_json::Value::is_null) {
        return Err(rejected(
            "invalid",
            "attributes must be a non-empty object without nulls".into(),
        ));
    }
    state
        .meta
        .set_attributes(device.tenant, device.id, AttributeScope::Client, &values)
        .await
        .map_err(|e| rejected("unavailable", e.to_string()))?;
    Ok(())
}

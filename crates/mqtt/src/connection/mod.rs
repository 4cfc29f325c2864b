//! One MQTT connection: CONNECT and authentication, then the packet loop —
//! publishes in (acknowledged once handled, telemetry once durable), queued
//! messages out (within the client's in-flight window), subscriptions, pings
//! and keep-alive — until the client leaves, breaks the protocol, is taken
//! over, loses its credential, or the server stops.
//!
//! - this module: the connection's lifetime ([`run`]) and its packet loop
//! - `connect`: who the client is, the CONNACK, the will
//! - `publish`: PUBLISH from the client
//! - `subscribe`: SUBSCRIBE and UNSUBSCRIBE

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectProperties,
    DisconnectReasonCode, Filter, LastWill, Packet, PingResp, PubAckReason, PubRecReason, Publish,
    PublishProperties, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, UnsubAckReason,
};
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tributary_auth::policy::Action;
use tributary_auth::Principal;
use tributary_log::{Durable, WalError};
use tributary_store::Device;

use crate::broker::{min_qos, SubscribeError};
use crate::codec::{self, CodecError, Framed, Version};
use crate::device::{self, Handled, Refusal};
use crate::session::{Delivery, Message, Outgoing, Session, Space, SubOptions};
use crate::state::MqttState;
use crate::topic;

mod connect;
mod publish;
mod subscribe;

use connect::{authenticate, connack, publish_will};

/// Topic aliases a client may use (MQTT 5).
const TOPIC_ALIAS_MAX: u16 = 64;
/// Longest a write to the client may take before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Framing or socket failure.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The client broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Authentication failed.
    #[error("not authorized")]
    Unauthorized,
    /// A publish was refused (on MQTT 3.1.1, which has no negative PUBACK, this closes).
    #[error("rejected publish: {0}")]
    Rejected(String),
}

/// Who is on the other end.
enum Peer {
    /// A device, using the ThingsBoard device API, and how it authenticated.
    Device(Device, DeviceCredential),
    /// A client of the tenant's broker, with its API key or access token.
    Client(Principal, String),
}

/// What a device connected with, to check again later.
enum DeviceCredential {
    /// Its access token.
    Token(String),
    /// Its MQTT username, and the password hash it matched.
    Mqtt(String, String),
}

/// How the packet loop ended.
enum End {
    /// DISCONNECT from the client; true if it asked for its will to be sent.
    Disconnect(bool),
    /// The connection broke, timed out or was refused: the will is sent.
    Lost,
    /// Another connection took the session over.
    TakenOver,
    /// The server is stopping.
    Shutdown,
}

/// Serves one connection to its end.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    state: MqttState,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let mut io = Framed::new(stream, state.config.max_packet_bytes);
    let first = tokio::time::timeout(state.config.connect_timeout, io.read_first())
        .await
        .map_err(|_| ConnError::Protocol("no CONNECT in time".into()))??;
    let Some(Packet::Connect(connect, will, login)) = first else {
        return Err(ConnError::Protocol(
            "the first packet must be CONNECT".into(),
        ));
    };
    let v5 = io.version == Version::V5;
    let props = connect.properties.clone().unwrap_or_default();
    let (user, pass) = login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()))
        .unwrap_or(("", ""));
    let Some(peer) = authenticate(&state, &connect.client_id, user, pass).await else {
        metrics::counter!("tributary_batches_rejected_total", "reason" => "unauthorized")
            .increment(1);
        io.send(connack(ConnectReturnCode::BadUserNamePassword, false, None))
            .await?;
        return Err(ConnError::Unauthorized);
    };

    // An empty client id gets one assigned (MQTT 3.1.1 only with a clean session).
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if !v5 && !connect.clean_start {
            io.send(connack(
                ConnectReturnCode::ClientIdentifierNotValid,
                false,
                None,
            ))
            .await?;
            return Err(ConnError::Protocol(
                "an empty client id needs a clean session".into(),
            ));
        }
        let id = format!("auto-{}", state.broker.next_serial());
        assigned = Some(id.clone());
        id
    } else {
        connect.client_id.clone()
    };
    let max_expiry = state.broker.limits().max_session_expiry;
    let expiry = if v5 {
        Duration::from_secs(u64::from(props.session_expiry_interval.unwrap_or(0))).min(max_expiry)
    } else if connect.clean_start {
        Duration::ZERO
    } else {
        max_expiry
    };
    let space = match &peer {
        Peer::Device(d, _) => Space::Device(d.id),
        Peer::Client(p, _) => Space::Tenant(p.tenant),
    };
    let conn_id = state.broker.next_serial();
    let Some((session, present, kicked)) =
        state
            .broker
            .open(space, &client_id, connect.clean_start, conn_id, expiry)
    else {
        io.send(connack(ConnectReturnCode::QuotaExceeded, false, None))
            .await?;
        return Err(ConnError::Protocol(
            "the tenant has as many MQTT sessions as allowed".into(),
        ));
    };

    let limits = state.broker.limits();
    let ack_props = ConnAckProperties {
        session_expiry_interval: props
            .session_expiry_interval
            .is_some()
            .then_some(expiry.as_secs() as u32),
        receive_max: Some(limits.max_inflight),
        max_qos: None,
        retain_available: Some(1),
        max_packet_size: Some(state.config.max_packet_bytes as u32),
        assigned_client_identifier: assigned,
        topic_alias_max: Some(TOPIC_ALIAS_MAX),
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: Some(1),
        subscription_identifiers_available: Some(1),
        shared_subscription_available: Some(1),
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    };
    io.send(connack(
        ConnectReturnCode::Success,
        present,
        v5.then_some(ack_props),
    ))
    .await?;
    tracing::debug!(%client_id, ?space, v5, present, "MQTT client connected");

    // A client that says nothing for 1.5 × its keep-alive is gone (0: no keep-alive).
    let keep_alive = match connect.keep_alive {
        0 => None,
        k => Some(Duration::from_millis(u64::from(k) * 1500)),
    };
    let window = usize::from(
        props
            .receive_maximum
            .unwrap_or(u16::MAX)
            .min(limits.max_inflight)
            .max(1),
    );
    let mut conn = Connection {
        io,
        state: state.clone(),
        session: session.clone(),
        peer,
        v5,
        window,
        client_max_packet: props.max_packet_size.map(|m| m as usize),
        aliases: HashMap::new(),
        keep_alive,
        expiry,
        conn_id,
        pending: VecDeque::new(),
    };
    let end = conn.serve(kicked, &mut shutdown).await;
    let expiry = conn.expiry;
    let revoked = matches!(end, Err(ConnError::Unauthorized));
    let (end, result) = match end {
        Ok(e) => (e, Ok(())),
        Err(e) => (End::Lost, Err(e)),
    };
    // The will goes out unless the client said goodbye normally (or lost its credential).
    let send_will = !revoked && matches!(end, End::Lost | End::TakenOver | End::Disconnect(true));
    if let (true, Some(will)) = (send_will, will) {
        publish_will(&state, &conn, will);
    }
    if session.detach(conn_id, expiry) && expiry.is_zero() {
        state.broker.discard(&session);
    }
    result
}

struct Connection<S> {
    io: Framed<S>,
    state: MqttState,
    session: Arc<Session>,
    peer: Peer,
    v5: bool,
    /// QoS 1/2 messages we may have in flight to the client.
    window: usize,
    client_max_packet: Option<usize>,
    aliases: HashMap<u16, String>,
    keep_alive: Option<Duration>,
    expiry: Duration,
    /// This connection's number (the session's owner while attached).
    conn_id: u64,
    /// QoS 0/1 telemetry on its way into the log, oldest first: acknowledged
    /// in order as each becomes durable, so one connection can keep several
    /// batches in one group commit.
    pending: VecDeque<(u16, QoS, Durable)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    async fn serve(
        &mut self,
        mut kicked: oneshot::Receiver<()>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<End, ConnError> {
        // A resumed session first gets what was in flight when it left.
        for out in self.session.resend() {
            self.queue_outgoing(out)?;
        }
        let mut heard = Instant::now();
        let mut recheck = tokio::time::interval(self.state.config.auth_recheck);
        recheck.tick().await;
        // A deleted device or tenant, or a rotated credential, is checked at
        // once; the periodic check catches expiry.
        let mut revocations = self.state.gateway.revocations();
        let (tenant, device) = match &self.peer {
            Peer::Device(d, _) => (d.tenant, Some(d.id)),
            Peer::Client(p, _) => (p.tenant, None),
        };
        // A change made between the CONNECT's check and the subscription
        // above is caught by checking once more now.
        if !self.still_authorized().await {
            self.disconnect(DisconnectReasonCode::NotAuthorized, "credential revoked")
                .await;
            return Err(ConnError::Unauthorized);
        }
        // One timer for the keep-alive, moved only when it fires: arming a
        // new one for every packet would cost a timer-wheel entry each time.
        let silence = self.keep_alive.unwrap_or(Duration::from_secs(3600));
        let idle = tokio::time::sleep_until((heard + silence).into());
        tokio::pin!(idle);
        loop {
            for out in self.session.take_sendable(self.conn_id, self.window) {
                self.queue_outgoing(out)?;
            }
            // A client that stops reading must not hold this task (and its slot) forever.
            tokio::time::timeout(WRITE_TIMEOUT, self.io.flush())
                .await
                .map_err(|_| ConnError::Protocol("the client stopped reading".into()))??;
            tokio::select! {
                biased;
                _ = &mut kicked => {
                    self.disconnect(DisconnectReasonCode::SessionTakenOver, "another connection took the session over").await;
                    return Ok(End::TakenOver);
                }
                _ = async { let _ = shutdown.wait_for(|down| *down).await; } => {
                    self.disconnect(DisconnectReasonCode::ServerShuttingDown, "the server is stopping").await;
                    return Ok(End::Shutdown);
                }
                // Before packets: a client that publishes without pause must
                // not hold off its own revocation.
                _ = revocations.concerns(tenant, device) => {
                    if !self.still_authorized().await {
                        self.disconnect(DisconnectReasonCode::NotAuthorized, "credential revoked").await;
                        return Err(ConnError::Unauthorized);
                    }
                }
                packet = self.io.read() => {
                    heard = Instant::now();
                    let Some(packet) = packet? else { return Ok(End::Lost) };
                    if let Some(end) = self.handle(packet).await? {
                        return Ok(end);
                    }
                }
                _ = self.session.notified() => {}
                durable = next_durable(&mut self.pending) => {
                    self.acknowledge_all(durable).await?;
                }
                _ = &mut idle => {
                    if self.keep_alive.is_some() && heard.elapsed() >= silence {
                        self.disconnect(DisconnectReasonCode::KeepAliveTimeout, "keep-alive expired").await;
                        return Ok(End::Lost);
                    }
                    // Not expired (or no keep-alive): wait until it could be.
                    let next = if self.keep_alive.is_some() {
                        heard + silence
                    } else {
                        Instant::now() + silence
                    };
                    idle.as_mut().reset(next.into());
                }
                _ = recheck.tick() => {
                    if !self.still_authorized().await {
                        self.disconnect(DisconnectReasonCode::NotAuthorized, "credential revoked or expired").await;
                        return Err(ConnError::Unauthorized);
                    }
                }
            }
        }
    }

    /// Whether the credential the client connected with is still valid; a
    /// device's connection takes the device as it is now (its profile may
    /// have changed).
    async fn still_authorized(&mut self) -> bool {
        match &mut self.peer {
            Peer::Client(_, bearer) => self.state.auth.authenticate(bearer).await.is_ok(),
            // A rotated token or a deleted device ends the connection; a store
            // error does not.
            Peer::Device(d, DeviceCredential::Token(token)) => {
                match self.state.auth.device(token).await {
                    Ok(Some(now)) if now.id == d.id => {
                        *d = now;
                        true
                    }
                    Ok(_) => false,
                    Err(_) => true,
                }
            }
            Peer::Device(d, DeviceCredential::Mqtt(username, hash)) => {
                match self.state.meta.devices_by_mqtt_username(username).await {
                    Ok(found) => match found
                        .into_iter()
                        .find(|(now, now_hash)| now.id == d.id && now_hash == hash)
                    {
                        Some((now, _)) => {
                            *d = now;
                            true
                        }
                        None => false,
                    },
                    Err(_) => true,
                }
            }
        }
    }

    /// Sends a DISCONNECT with a reason (MQTT 5 only; 3.1.1 just closes).
    async fn disconnect(&mut self, code: DisconnectReasonCode, reason: &str) {
        if self.v5 {
            let _ = self
                .io
                .send(Packet::Disconnect(Disconnect {
                    reason_code: code,
                    properties: Some(DisconnectProperties {
                        session_expiry_interval: None,
                        reason_string: Some(reason.into()),
                        user_properties: Vec::new(),
                        server_reference: None,
                    }),
                }))
                .await;
        }
    }

    fn queue_outgoing(&mut self, out: Outgoing) -> Result<(), ConnError> {
        let packet = match out {
            Outgoing::Release(pkid) => codec::pubrel(pkid, true),
            Outgoing::Publish(pkid, d, dup) => {
                let packet = self.publish_packet(pkid, &d, dup);
                if self
                    .client_max_packet
                    .is_some_and(|max| packet.size() > max)
                {
                    // MQTT 5: a message larger than the client accepts is dropped.
                    if pkid != 0 {
                        self.session.complete(self.conn_id, pkid);
                    }
                    metrics::counter!("tributary_mqtt_messages_dropped_total").increment(1);
                    return Ok(());
                }
                packet
            }
        };
        self.io.queue(packet)?;
        Ok(())
    }

    fn publish_packet(&self, pkid: u16, d: &Delivery, dup: bool) -> Packet {
        let properties = if self.v5 {
            let mut p = d.msg.props.clone().unwrap_or_default();
            p.subscription_identifiers = d.ids.clone();
            p.message_expiry_interval = d.msg.expires_at.map(|at| {
                at.saturating_duration_since(Instant::now())
                    .as_secs()
                    .max(1) as u32
            });
            (p != PublishProperties::default()).then_some(p)
        } else {
            None
        };
        Packet::Publish(Publish {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic: Bytes::from(d.msg.topic.clone()),
            pkid,
            payload: d.msg.payload.clone(),
            properties,
        })
    }

    /// Handles one packet; `Some` ends the connection.
    async fn handle(&mut self, packet: Packet) -> Result<Option<End>, ConnError> {
        match packet {
            Packet::Publish(p) => self.on_publish(p).await?,
            Packet::PubAck(a) => {
                self.session.complete(self.conn_id, a.pkid);
            }
            Packet::PubRec(r) => {
                if matches!(
                    r.reason,
                    PubRecReason::Success | PubRecReason::NoMatchingSubscribers
                ) {
                    let known = self.session.received(self.conn_id, r.pkid);
                    self.io.queue(codec::pubrel(r.pkid, known))?;
                } else {
                    // MQTT 5: a PUBREC with an error reason ends the exchange.
                    self.session.complete(self.conn_id, r.pkid);
                }
            }
            Packet::PubComp(c) => {
                self.session.complete(self.conn_id, c.pkid);
            }
            Packet::PubRel(r) => {
                let known = self.session.lock().incoming.remove(&r.pkid).is_some();
                self.io.queue(codec::pubcomp(r.pkid, known))?;
            }
            Packet::Subscribe(s) => self.on_subscribe(s)?,
            Packet::Unsubscribe(u) => {
                let reasons = u
                    .filters
                    .iter()
                    .map(|f| {
                        if self.state.broker.unsubscribe(&self.session, f) {
                            UnsubAckReason::Success
                        } else {
                            UnsubAckReason::NoSubscriptionExisted
                        }
                    })
                    .collect();
                self.io.queue(Packet::UnsubAck(UnsubAck {
                    pkid: u.pkid,
                    reasons,
                    properties: None,
                }))?;
            }
            Packet::PingReq(_) => self.io.queue(Packet::PingResp(PingResp))?,
            Packet::Disconnect(d) => {
                if let Some(secs) = d.properties.and_then(|p| p.session_expiry_interval) {
                    if !self.expiry.is_zero() {
                        self.expiry = Duration::from_secs(u64::from(secs))
                            .min(self.state.broker.limits().max_session_expiry);
                    }
                }
                return Ok(Some(End::Disconnect(
                    d.reason_code == DisconnectReasonCode::DisconnectWithWillMessage,
                )));
            }
            other => {
                self.disconnect(DisconnectReasonCode::ProtocolError, "unexpected packet")
                    .await;
                return Err(ConnError::Protocol(format!(
                    "unexpected {}",
                    codec::packet_name(&other)
                )));
            }
        }
        Ok(None)
    }

    /// Acknowledges the oldest pending telemetry once it is durable.
    async fn acknowledge(&mut self, durable: Result<u64, WalError>) -> Result<(), ConnError> {
        let Some((pkid, qos, _)) = self.pending.pop_front() else {
            return Ok(());
        };
        match durable {
            Ok(_) if qos == QoS::AtLeastOnce => {
                self.io
                    .queue(codec::puback(pkid, PubAckReason::Success, None))?
            }
            Ok(_) => {}
            Err(e) => {
                let refusal = device::unavailable(format!("telemetry not stored: {e}"));
                if self.v5 && qos == QoS::AtLeastOnce {
                    self.io
                        .queue(codec::puback(pkid, refusal.code, Some(refusal.detail)))?;
                } else {
                    self.disconnect(
                        DisconnectReasonCode::ImplementationSpecificError,
                        &refusal.detail,
                    )
                    .await;
                    return Err(ConnError::Rejected(refusal.detail));
                }
            }
        }
        Ok(())
    }

    /// Acknowledges the oldest pending telemetry (`durable` is its outcome)
    /// and all after it that are durable already: what one group commit
    /// made durable is acknowledged in the same write.
    async fn acknowledge_all(&mut self, durable: Result<u64, WalError>) -> Result<(), ConnError> {
        self.acknowledge(durable).await?;
        while let Some(durable) = ready_durable(&mut self.pending) {
            self.acknowledge(durable).await?;
        }
        Ok(())
    }

    /// Waits for every pending telemetry and acknowledges it (acknowledgements
    /// go out in the order the publishes came).
    async fn drain_pending(&mut self) -> Result<(), ConnError> {
        while !self.pending.is_empty() {
            let durable = next_durable(&mut self.pending).await;
            self.acknowledge(durable).await?;
        }
        Ok(())
    }
}

/// The oldest pending telemetry's outcome if it is durable already. (Polled
/// with a no-op waker: the loop polls it again with its own before waiting.)
fn ready_durable(pending: &mut VecDeque<(u16, QoS, Durable)>) -> Option<Result<u64, WalError>> {
    use std::future::Future;
    let (_, _, durable) = pending.front_mut()?;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(durable).poll(&mut cx) {
        std::task::Poll::Ready(r) => Some(r),
        std::task::Poll::Pending => None,
    }
}

/// Resolves when the oldest pending telemetry is durable (never, when none is pending).
async fn next_durable(pending: &mut VecDeque<(u16, QoS, Durable)>) -> Result<u64, WalError> {
    match pending.front_mut() {
        Some((_, _, durable)) => durable.await,
        None => std::future::pending().await,
    }
}

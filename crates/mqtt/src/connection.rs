//! One MQTT connection: CONNECT and authentication, then the packet loop —
//! publishes in (acknowledged once handled, telemetry once durable), queued
//! messages out (within the client's in-flight window), subscriptions, pings
//! and keep-alive — until the client leaves, breaks the protocol, is taken
//! over, loses its credential, or the server stops.

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
use tributary_pipeline::{Durable, WalError};
use tributary_store::Device;

use crate::broker::{min_qos, SubscribeError};
use crate::codec::{self, CodecError, Framed, Version};
use crate::device::{self, Handled, Refusal};
use crate::listener::MqttState;
use crate::session::{Delivery, Message, Outgoing, Session, Space, SubOptions};
use crate::topic;

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

async fn authenticate(
    state: &MqttState,
    client_id: &str,
    username: &str,
    password: &str,
) -> Option<Peer> {
    // API keys (and user access tokens) in the password, or an API key as the username.
    let bearer = if password.is_empty() {
        username
    } else {
        password
    };
    if bearer.starts_with(tributary_auth::API_KEY_PREFIX) || bearer.matches('.').count() == 2 {
        if let Ok(p) = state.auth.authenticate(bearer).await {
            return Some(Peer::Client(p, bearer.to_string()));
        }
    }
    if password.is_empty() {
        // ThingsBoard style: the access token is the username.
        return by_token(state, username).await;
    }
    match state
        .auth
        .device_by_mqtt(username, password, client_id)
        .await
    {
        Ok(Some(d)) => {
            // Remember the hash the password matched: a changed password ends the connection.
            let hash = match state.meta.devices_by_mqtt_username(username).await {
                Ok(found) => found.into_iter().find(|(c, _)| c.id == d.id)?.1,
                Err(_) => return None,
            };
            Some(Peer::Device(
                d,
                DeviceCredential::Mqtt(username.to_string(), hash),
            ))
        }
        _ => by_token(state, username).await,
    }
}

async fn by_token(state: &MqttState, token: &str) -> Option<Peer> {
    let device = state.auth.device(token).await.ok().flatten()?;
    Some(Peer::Device(
        device,
        DeviceCredential::Token(token.to_string()),
    ))
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

fn connack(code: ConnectReturnCode, present: bool, props: Option<ConnAckProperties>) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: present && code == ConnectReturnCode::Success,
        code,
        properties: props,
    })
}

/// Publishes a will, after its delay (MQTT 5) unless the session is resumed first.
fn publish_will<S>(state: &MqttState, conn: &Connection<S>, will: LastWill) {
    let Ok(topic) = String::from_utf8(will.topic.to_vec()) else {
        return;
    };
    let allowed = match &conn.peer {
        Peer::Client(p, _) => {
            p.require(Action::Write).is_ok() && topic::valid_name(&topic) && !topic.starts_with('$')
        }
        Peer::Device(..) => false,
    };
    if !allowed {
        return;
    }
    let (mut delay, mut expires_at, mut msg_props) = (Duration::ZERO, None, None);
    if let Some(p) = will.properties {
        delay = Duration::from_secs(u64::from(p.delay_interval.unwrap_or(0)));
        expires_at = p
            .message_expiry_interval
            .map(|s| Instant::now() + delay + Duration::from_secs(u64::from(s)));
        msg_props = Some(PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            ..PublishProperties::default()
        });
    }
    let msg = Message {
        topic,
        payload: will.message,
        qos: will.qos,
        retain: will.retain,
        expires_at,
        props: msg_props,
        origin: conn.session.serial,
    };
    let (broker, space, session) = (
        state.broker.clone(),
        conn.session.space,
        conn.session.clone(),
    );
    // The will is due at the will delay or when the session ends, whichever is first.
    let delay = delay.min(conn.expiry);
    if delay.is_zero() {
        broker.publish(space, msg);
        return;
    }
    let cancelled = session.pending_will();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {
                broker.publish(space, msg);
            }
            // Resumed (or replaced) in time: no will.
            _ = cancelled => {}
        }
    });
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
                _ = revocations.concerns(tenant, device) => {
                    if !self.still_authorized().await {
                        self.disconnect(DisconnectReasonCode::NotAuthorized, "credential revoked").await;
                        return Err(ConnError::Unauthorized);
                    }
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

    /// Whether the credential the client connected with is still valid.
    async fn still_authorized(&self) -> bool {
        match &self.peer {
            Peer::Client(_, bearer) => self.state.auth.authenticate(bearer).await.is_ok(),
            // A rotated token or a deleted device ends the connection; a store
            // error does not.
            Peer::Device(_, DeviceCredential::Token(token)) => {
                !matches!(self.state.auth.device(token).await, Ok(None))
            }
            Peer::Device(d, DeviceCredential::Mqtt(username, hash)) => {
                match self.state.meta.devices_by_mqtt_username(username).await {
                    Ok(found) => found
                        .iter()
                        .any(|(now, now_hash)| now.id == d.id && now_hash == hash),
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

    async fn on_publish(&mut self, p: Publish) -> Result<(), ConnError> {
        let topic = self.resolve_topic(&p).await?;
        // QoS 0/1 telemetry of a device is pipelined; anything else is
        // acknowledged at once, so what is pending goes first.
        let pipelined = matches!(self.peer, Peer::Device(..))
            && topic == device::TELEMETRY
            && p.qos != QoS::ExactlyOnce;
        if !pipelined {
            self.drain_pending().await?;
        }
        if p.qos == QoS::ExactlyOnce {
            let max = usize::from(self.state.broker.limits().max_inflight);
            let (seen, full) = self.claim_qos2(p.pkid, max).await;
            if seen {
                // A resend of a QoS 2 publish already handled (and durable):
                // acknowledge again, without handling it twice.
                self.io
                    .queue(codec::pubrec(p.pkid, PubRecReason::Success))?;
                return Ok(());
            }
            if full {
                self.disconnect(
                    DisconnectReasonCode::ReceiveMaximumExceeded,
                    "too many QoS 2 publishes in flight",
                )
                .await;
                return Err(ConnError::Protocol("receive maximum exceeded".into()));
            }
        }
        let outcome = match &self.peer {
            Peer::Device(d, _) => {
                match device::publish(&self.state, d, &self.session, &topic, &p.payload).await {
                    Ok(Handled::Done) => Ok(PubAckReason::Success),
                    Ok(Handled::Telemetry(batch)) if pipelined => {
                        if self.pending.len() >= self.window {
                            let durable = next_durable(&mut self.pending).await;
                            self.acknowledge_all(durable).await?;
                        }
                        let durable = self.state.gateway.submit(batch).await.map_err(|e| {
                            ConnError::Rejected(format!("telemetry not stored: {e}"))
                        })?;
                        self.pending.push_back((p.pkid, p.qos, durable));
                        return Ok(());
                    }
                    // QoS 2: durable before PUBREC, one at a time.
                    Ok(Handled::Telemetry(batch)) => match self.state.gateway.submit(batch).await {
                        Ok(durable) => durable
                            .await
                            .map(|_| PubAckReason::Success)
                            .map_err(|e| device::unavailable(format!("telemetry not stored: {e}"))),
                        Err(e) => Err(e.into()),
                    },
                    Err(r) => Err(r),
                }
            }
            Peer::Client(principal, _) => self.client_publish(principal, topic, &p),
        };
        let (code, text) = match outcome {
            Ok(matched) => {
                if p.qos == QoS::ExactlyOnce {
                    self.session.lock().incoming.insert(p.pkid, true);
                }
                (matched, None)
            }
            Err(refusal) => {
                if p.qos == QoS::ExactlyOnce {
                    self.session.lock().incoming.remove(&p.pkid);
                }
                // MQTT 3.1.1 has no negative acknowledgement, and QoS 0 none at all:
                // closing is the only way to tell the client.
                if !self.v5 || p.qos == QoS::AtMostOnce {
                    let code = match refusal.code {
                        PubAckReason::NotAuthorized => DisconnectReasonCode::NotAuthorized,
                        PubAckReason::TopicNameInvalid => DisconnectReasonCode::TopicNameInvalid,
                        PubAckReason::PayloadFormatInvalid => {
                            DisconnectReasonCode::PayloadFormatInvalid
                        }
                        _ => DisconnectReasonCode::ImplementationSpecificError,
                    };
                    self.disconnect(code, &refusal.detail).await;
                    return Err(ConnError::Rejected(refusal.detail));
                }
                (refusal.code, Some(refusal.detail))
            }
        };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.io.queue(codec::puback(p.pkid, code, text))?,
            QoS::ExactlyOnce => self.io.queue(codec::pubrec(p.pkid, rec_reason(code)))?,
        }
        Ok(())
    }

    /// Claims a QoS 2 packet id for handling: (already handled, too many in
    /// flight). If another connection of the session is still handling the
    /// same id (a resend after take-over), waits for its outcome, so a resend
    /// is acknowledged only once the first attempt is durable.
    async fn claim_qos2(&self, pkid: u16, max: usize) -> (bool, bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut st = self.session.lock();
                match st.incoming.get(&pkid).copied() {
                    Some(true) => return (true, false),
                    Some(false) if Instant::now() < deadline => {}
                    _ => {
                        if st.incoming.len() >= max {
                            return (false, true);
                        }
                        st.incoming.insert(pkid, false);
                        return (false, false);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The topic of a publish, through MQTT 5 topic aliases.
    async fn resolve_topic(&mut self, p: &Publish) -> Result<String, ConnError> {
        let Ok(named) = std::str::from_utf8(&p.topic) else {
            return Err(ConnError::Protocol("topic is not UTF-8".into()));
        };
        let alias = p.properties.as_ref().and_then(|pr| pr.topic_alias);
        match alias {
            None if !named.is_empty() => Ok(named.to_string()),
            Some(a) if a == 0 || a > TOPIC_ALIAS_MAX => {
                self.disconnect(
                    DisconnectReasonCode::TopicAliasInvalid,
                    "topic alias out of range",
                )
                .await;
                Err(ConnError::Protocol("topic alias out of range".into()))
            }
            Some(a) if !named.is_empty() => {
                self.aliases.insert(a, named.to_string());
                Ok(named.to_string())
            }
            Some(a) => match self.aliases.get(&a) {
                Some(t) => Ok(t.clone()),
                None => {
                    self.disconnect(DisconnectReasonCode::ProtocolError, "unknown topic alias")
                        .await;
                    Err(ConnError::Protocol("unknown topic alias".into()))
                }
            },
            None => {
                self.disconnect(DisconnectReasonCode::TopicNameInvalid, "empty topic")
                    .await;
                Err(ConnError::Protocol("empty topic".into()))
            }
        }
    }

    /// A broker client's publish: routed within its tenant.
    fn client_publish(
        &self,
        principal: &Principal,
        topic: String,
        p: &Publish,
    ) -> Result<PubAckReason, Refusal> {
        if principal.require(Action::Write).is_err() {
            return Err(Refusal::new(
                PubAckReason::NotAuthorized,
                "forbidden",
                "this key may only subscribe (read scope)".into(),
            ));
        }
        if !topic::valid_name(&topic) || topic.starts_with('$') {
            return Err(Refusal::new(
                PubAckReason::TopicNameInvalid,
                "topic",
                format!("clients may not publish to {topic:?}"),
            ));
        }
        let mut props = p.properties.clone();
        let mut expires_at = None;
        if let Some(pr) = props.as_mut() {
            pr.topic_alias = None;
            pr.subscription_identifiers.clear();
            expires_at = pr
                .message_expiry_interval
                .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        }
        let matched = self.state.broker.publish(
            self.session.space,
            Message {
                topic,
                payload: p.payload.clone(),
                qos: p.qos,
                retain: p.retain,
                props,
                expires_at,
                origin: self.session.serial,
            },
        );
        Ok(if matched == 0 {
            PubAckReason::NoMatchingSubscribers
        } else {
            PubAckReason::Success
        })
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Result<(), ConnError> {
        let id = s.properties.as_ref().and_then(|p| p.id);
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for f in &s.filters {
            let code = self.subscribe_one(f, id, &mut retained);
            codes.push(code);
        }
        self.io.queue(Packet::SubAck(SubAck {
            pkid: s.pkid,
            return_codes: codes,
            properties: None,
        }))?;
        // Retained messages follow the SUBACK, with the retain flag set.
        for (msg, qos, ids) in retained {
            let qos = min_qos(msg.qos, qos);
            self.state.broker.enqueue(
                &self.session,
                Delivery {
                    msg,
                    qos,
                    retain: true,
                    ids,
                    shared: None,
                },
            );
        }
        Ok(())
    }

    fn subscribe_one(
        &self,
        f: &Filter,
        id: Option<usize>,
        retained: &mut Vec<(Arc<Message>, QoS, Vec<usize>)>,
    ) -> SubscribeReasonCode {
        if !topic::valid_filter(&f.path) {
            return SubscribeReasonCode::TopicFilterInvalid;
        }
        match &self.peer {
            Peer::Device(..) if !f.path.starts_with(device::PREFIX) => {
                return SubscribeReasonCode::NotAuthorized
            }
            Peer::Device(..) => {}
            Peer::Client(p, _) => {
                if p.require(Action::Read).is_err() {
                    return SubscribeReasonCode::NotAuthorized;
                }
                if crate::shared::parse(&f.path).is_some_and(|p| p.is_err()) {
                    return SubscribeReasonCode::TopicFilterInvalid;
                }
            }
        }
        let opts = SubOptions {
            qos: f.qos,
            no_local: f.nolocal,
            retain_as_published: f.preserve_retain,
            ids: id.into_iter().collect(),
        };
        match self.state.broker.subscribe(
            &self.session,
            &f.path,
            opts,
            f.retain_forward_rule.clone(),
        ) {
            Ok(msgs) => {
                let ids: Vec<usize> = id.into_iter().collect();
                retained.extend(msgs.into_iter().map(|m| (m, f.qos, ids.clone())));
                SubscribeReasonCode::Success(f.qos)
            }
            Err(SubscribeError::Quota) => SubscribeReasonCode::QuotaExceeded,
        }
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

fn rec_reason(code: PubAckReason) -> PubRecReason {
    match code {
        PubAckReason::Success => PubRecReason::Success,
        PubAckReason::NoMatchingSubscribers => PubRecReason::NoMatchingSubscribers,
        PubAckReason::NotAuthorized => PubRecReason::NotAuthorized,
        PubAckReason::TopicNameInvalid => PubRecReason::TopicNameInvalid,
        PubAckReason::PayloadFormatInvalid => PubRecReason::PayloadFormatInvalid,
        PubAckReason::QuotaExceeded => PubRecReason::QuotaExceeded,
        _ => PubRecReason::ImplementationSpecificError,
    }
}

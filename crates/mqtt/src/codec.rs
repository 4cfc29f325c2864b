//! Framing for both protocol versions. The CONNECT packet decides the version;
//! from then on every packet is read and written as the MQTT 5 types of the
//! `rumqttc` codec, converted to and from MQTT 3.1.1 on such connections, so
//! the rest of the crate handles one set of packets.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::mqttbytes::{Error as V4Error, QoS as QoS4};
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Disconnect, DisconnectReasonCode, Filter, LastWill, Login, Packet, PingReq,
    PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, PubRel, PubRelReason,
    Publish, RetainForwardRule, Subscribe, SubscribeReasonCode, Unsubscribe,
};
use rumqttc::v5::mqttbytes::{Error as V5Error, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (and 3.1).
    V4,
    /// MQTT 5.0.
    V5,
}

/// Why reading or writing a packet failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid packet.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The packet is larger than the limit.
    #[error("packet larger than {0} bytes")]
    TooLarge(usize),
}

/// A connection's byte stream, read and written as packets.
pub struct Framed<S> {
    stream: S,
    buf: BytesMut,
    out: BytesMut,
    max: usize,
    /// The connection's protocol version (known after CONNECT).
    pub version: Version,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Frames `stream`, refusing packets over `max` bytes.
    pub fn new(stream: S, max: usize) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(1024),
            out: BytesMut::new(),
            max,
            version: Version::V5,
        }
    }

    /// Reads the first packet and learns the protocol version from it.
    pub async fn read_first(&mut self) -> Result<Option<Packet>, CodecError> {
        loop {
            let mut probe = self.buf.clone();
            match Packet::read(&mut probe, Some(self.max as u32)) {
                Ok(p) => {
                    self.buf = probe;
                    self.version = Version::V5;
                    return Ok(Some(p));
                }
                Err(V5Error::InvalidProtocolLevel(3 | 4)) => {
                    self.version = Version::V4;
                    return self.read().await;
                }
                Err(V5Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(v5_error(e, self.max)),
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The next packet; `None` when the client closed the connection.
    pub async fn read(&mut self) -> Result<Option<Packet>, CodecError> {
        loop {
            if let Some(p) = self.parse()? {
                return Ok(Some(p));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Packet>, CodecError> {
        parse(&mut self.buf, self.version, self.max)
    }

    async fn fill(&mut self) -> Result<bool, CodecError> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Encodes a packet into the output buffer (sent by `flush`). Packets that
    /// MQTT 3.1.1 has no form for (a server DISCONNECT, AUTH) are skipped there.
    pub fn queue(&mut self, packet: Packet) -> Result<(), CodecError> {
        match self.version {
            Version::V5 => {
                packet
                    .write(&mut self.out, None)
                    .map_err(|e| CodecError::Malformed(e.to_string()))?;
            }
            Version::V4 => {
                if let Some(p) = to_v4(packet) {
                    p.write(&mut self.out, usize::MAX)
                        .map_err(|e| CodecError::Malformed(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), CodecError> {
        if !self.out.is_empty() {
            let out = self.out.split();
            self.stream.write_all(&out).await?;
            self.stream.flush().await?;
        }
        Ok(())
    }

    /// Queues and writes one packet.
    pub async fn send(&mut self, packet: Packet) -> Result<(), CodecError> {
        self.queue(packet)?;
        self.flush().await
    }
}

fn v5_error(e: V5Error, max: usize) -> CodecError {
    match e {
        V5Error::PayloadSizeLimitExceeded { .. } => CodecError::TooLarge(max),
        e => CodecError::Malformed(e.to_string()),
    }
}

fn qos5(q: QoS4) -> QoS {
    match q {
        QoS4::AtMostOnce => QoS::AtMostOnce,
        QoS4::AtLeastOnce => QoS::AtLeastOnce,
        QoS4::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos4(q: QoS) -> QoS4 {
    match q {
        QoS::AtMostOnce => QoS4::AtMostOnce,
        QoS::AtLeastOnce => QoS4::AtLeastOnce,
        QoS::ExactlyOnce => QoS4::ExactlyOnce,
    }
}

/// An MQTT 3.1.1 packet from a client, as its MQTT 5 equivalent.
fn from_v4(p: v4::Packet) -> Result<Packet, CodecError> {
    Ok(match p {
        v4::Packet::Connect(c) => Packet::Connect(
            rumqttc::v5::mqttbytes::v5::Connect {
                keep_alive: c.keep_alive,
                client_id: c.client_id,
                clean_start: c.clean_session,
                properties: None,
            },
            c.last_will.map(|w| LastWill {
                topic: Bytes::from(w.topic),
                message: w.message,
                qos: qos5(w.qos),
                retain: w.retain,
                properties: None,
            }),
            c.login.map(|l| Login {
                username: l.username,
                password: l.password,
            }),
        ),
        v4::Packet::Publish(p) => Packet::Publish(Publish {
            dup: p.dup,
            qos: qos5(p.qos),
            retain: p.retain,
            topic: Bytes::from(p.topic),
            pkid: p.pkid,
            payload: p.payload,
            properties: None,
        }),
        v4::Packet::PubAck(a) => Packet::PubAck(PubAck::new(a.pkid, None)),
        v4::Packet::PubRec(a) => Packet::PubRec(PubRec::new(a.pkid, None)),
        v4::Packet::PubRel(a) => Packet::PubRel(PubRel::new(a.pkid, None)),
        v4::Packet::PubComp(a) => Packet::PubComp(PubComp::new(a.pkid, None)),
        v4::Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| Filter {
                    path: f.path,
                    qos: qos5(f.qos),
                    nolocal: false,
                    preserve_retain: false,
                    retain_forward_rule: RetainForwardRule::OnEverySubscribe,
                })
                .collect(),
            properties: None,
        }),
        v4::Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
            properties: None,
        }),
        v4::Packet::PingReq => Packet::PingReq(PingReq),
        v4::Packet::Disconnect => {
            Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection))
        }
        other => {
            return Err(CodecError::Malformed(format!(
                "a client may not send {}",
                v4_name(&other)
            )))
        }
    })
}

/// The kind of a packet, for errors and logs: a packet itself is never
/// formatted, since a CONNECT carries a password.
pub fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::Auth(_) => "AUTH",
        Packet::Connect(..) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PingReq(_) => "PINGREQ",
        Packet::PingResp(_) => "PINGRESP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::Disconnect(_) => "DISCONNECT",
    }
}

/// [`packet_name`] of an MQTT 3.1.1 packet.
fn v4_name(p: &v4::Packet) -> &'static str {
    match p {
        v4::Packet::Connect(_) => "CONNECT",
        v4::Packet::ConnAck(_) => "CONNACK",
        v4::Packet::Publish(_) => "PUBLISH",
        v4::Packet::PubAck(_) => "PUBACK",
        v4::Packet::PubRec(_) => "PUBREC",
        v4::Packet::PubRel(_) => "PUBREL",
        v4::Packet::PubComp(_) => "PUBCOMP",
        v4::Packet::Subscribe(_) => "SUBSCRIBE",
        v4::Packet::SubAck(_) => "SUBACK",
        v4::Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        v4::Packet::UnsubAck(_) => "UNSUBACK",
        v4::Packet::PingReq => "PINGREQ",
        v4::Packet::PingResp => "PINGRESP",
        v4::Packet::Disconnect => "DISCONNECT",
    }
}

/// The next whole packet at the start of `buf` (taken out of it), `None`
/// while it is incomplete.
fn parse(buf: &mut BytesMut, version: Version, max: usize) -> Result<Option<Packet>, CodecError> {
    match version {
        Version::V5 => {
            // The codec refuses a DISCONNECT without a reason code, which MQTT 5
            // allows (and most clients send): it means a normal disconnection.
            if buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0 {
                let _ = buf.split_to(2);
                return Ok(Some(Packet::Disconnect(Disconnect::new(
                    DisconnectReasonCode::NormalDisconnection,
                ))));
            }
            match Packet::read(buf, Some(max as u32)) {
                Ok(p) => Ok(Some(p)),
                Err(V5Error::InsufficientBytes(_)) => Ok(None),
                Err(e) => Err(v5_error(e, max)),
            }
        }
        Version::V4 => match v4::Packet::read(buf, max) {
            Ok(p) => from_v4(p).map(Some),
            Err(V4Error::InsufficientBytes(_)) => Ok(None),
            Err(V4Error::PayloadSizeLimitExceeded(_)) => Err(CodecError::TooLarge(max)),
            Err(e) => Err(CodecError::Malformed(e.to_string())),
        },
    }
}

/// Reads `bytes` as a client's stream (MQTT 5 when `v5`, else 3.1.1) the
/// way a connection does, and checks the topics and filters the packets
/// name; returns how many packets were read before the end or an error.
/// For fuzzing: any bytes give packets or an error, never a panic.
pub fn decode_client_stream(bytes: &[u8], v5: bool, max: usize) -> usize {
    let mut buf = BytesMut::from(bytes);
    let version = if v5 { Version::V5 } else { Version::V4 };
    let mut n = 0;
    while let Ok(Some(packet)) = parse(&mut buf, version, max) {
        n += 1;
        match &packet {
            Packet::Publish(p) => {
                let _ = std::str::from_utf8(&p.topic).map(crate::topic::valid_name);
            }
            Packet::Subscribe(s) => {
                for f in &s.filters {
                    let _ = crate::topic::valid_filter(&f.path);
                    let _ = crate::shared::parse(&f.path);
                }
            }
            _ => {}
        }
        let _ = packet_name(&packet);
    }
    n
}

/// A server packet in its MQTT 3.1.1 form (reason codes and properties fall away).
fn to_v4(p: Packet) -> Option<v4::Packet> {
    Some(match p {
        Packet::ConnAck(a) => {
            let code = match a.code {
                ConnectReturnCode::Success => v4::ConnectReturnCode::Success,
                ConnectReturnCode::BadUserNamePassword => {
                    v4::ConnectReturnCode::BadUserNamePassword
                }
                ConnectReturnCode::NotAuthorized | ConnectReturnCode::Banned => {
                    v4::ConnectReturnCode::NotAuthorized
                }
                ConnectReturnCode::UnsupportedProtocolVersion => {
                    v4::ConnectReturnCode::RefusedProtocolVersion
                }
                ConnectReturnCode::ClientIdentifierNotValid => v4::ConnectReturnCode::BadClientId,
                _ => v4::ConnectReturnCode::ServiceUnavailable,
            };
            v4::Packet::ConnAck(v4::ConnAck::new(code, a.session_present))
        }
        Packet::Publish(p) => v4::Packet::Publish(v4::Publish {
            dup: p.dup,
            qos: qos4(p.qos),
            retain: p.retain,
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            pkid: p.pkid,
            payload: p.payload,
        }),
        Packet::PubAck(a) => v4::Packet::PubAck(v4::PubAck::new(a.pkid)),
        Packet::PubRec(a) => v4::Packet::PubRec(v4::PubRec::new(a.pkid)),
        Packet::PubRel(a) => v4::Packet::PubRel(v4::PubRel::new(a.pkid)),
        Packet::PubComp(a) => v4::Packet::PubComp(v4::PubComp::new(a.pkid)),
        Packet::SubAck(a) => v4::Packet::SubAck(v4::SubAck::new(
            a.pkid,
            a.return_codes
                .into_iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(q) => v4::SubscribeReasonCode::Success(qos4(q)),
                    _ => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Packet::UnsubAck(a) => v4::Packet::UnsubAck(v4::UnsubAck::new(a.pkid)),
        Packet::PingResp(_) => v4::Packet::PingResp,
        _ => return None,
    })
}

/// A PUBACK with a reason (MQTT 5; the reason falls away on 3.1.1).
pub fn puback(pkid: u16, reason: PubAckReason, text: Option<String>) -> Packet {
    Packet::PubAck(PubAck {
        pkid,
        reason,
        properties: text.map(|t| rumqttc::v5::mqttbytes::v5::PubAckProperties {
            reason_string: Some(t),
            user_properties: Vec::new(),
        }),
    })
}

/// A PUBREC with a reason (MQTT 5; the reason falls away on 3.1.1).
pub fn pubrec(pkid: u16, reason: PubRecReason) -> Packet {
    Packet::PubRec(PubRec {
        pkid,
        reason,
        properties: None,
    })
}

/// A PUBCOMP, or one saying the packet id was unknown.
pub fn pubcomp(pkid: u16, known: bool) -> Packet {
    Packet::PubComp(PubComp {
        pkid,
        reason: if known {
            PubCompReason::Success
        } else {
            PubCompReason::PacketIdentifierNotFound
        },
        properties: None,
    })
}

/// A PUBREL for a QoS 2 delivery, or one saying the packet id was unknown.
pub fn pubrel(pkid: u16, known: bool) -> Packet {
    Packet::PubRel(PubRel {
        pkid,
        reason: if known {
            PubRelReason::Success
        } else {
            PubRelReason::PacketIdentifierNotFound
        },
        properties: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn both_versions_are_recognised_from_connect() {
        for (version, level) in [(Version::V4, 4u8), (Version::V5, 5u8)] {
            let (mut client, server) = duplex(1024);
            let mut bytes = BytesMut::new();
            match level {
                4 => v4::Packet::Connect(v4::Connect::new("c1"))
                    .write(&mut bytes, 1024)
                    .map(|_| ())
                    .unwrap(),
                _ => Packet::Connect(
                    rumqttc::v5::mqttbytes::v5::Connect {
                        keep_alive: 10,
                        client_id: "c1".into(),
                        clean_start: true,
                        properties: None,
                    },
                    None,
                    None,
                )
                .write(&mut bytes, None)
                .map(|_| ())
                .unwrap(),
            }
            // A bare DISCONNECT follows.
            bytes.extend_from_slice(&[0xE0, 0x00]);
            client.write_all(&bytes).await.unwrap();
            let mut framed = Framed::new(server, 1024);
            let Some(Packet::Connect(c, _, _)) = framed.read_first().await.unwrap() else {
                panic!("expected CONNECT")
            };
            assert_eq!(c.client_id, "c1");
            assert_eq!(framed.version, version);
            assert!(matches!(
                framed.read().await.unwrap(),
                Some(Packet::Disconnect(_))
            ));
        }
    }

    /// Hostile input: every single-byte mutation and truncation of valid
    /// packets of both versions is an error or a packet, never a panic.
    #[tokio::test]
    async fn mutated_packets_never_panic() {
        let mut seeds: Vec<(Version, BytesMut)> = Vec::new();
        let mut v4_publish = BytesMut::new();
        let mut p = v4::Publish::new("a/b", QoS4::AtLeastOnce, "payload");
        p.pkid = 7;
        v4::Packet::Publish(p).write(&mut v4_publish, 1024).unwrap();
        seeds.push((Version::V4, v4_publish));
        let mut v4_sub = BytesMut::new();
        v4::Packet::Subscribe(v4::Subscribe::new("a/+", QoS4::ExactlyOnce))
            .write(&mut v4_sub, 1024)
            .unwrap();
        seeds.push((Version::V4, v4_sub));
        let mut v5_publish = BytesMut::new();
        let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
            topic_alias: Some(3),
            user_properties: vec![("k".into(), "v".into())],
            message_expiry_interval: Some(9),
            ..Default::default()
        };
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: Bytes::from_static(b"x/y"),
            pkid: 9,
            payload: Bytes::from_static(b"{}"),
            properties: Some(props),
        })
        .write(&mut v5_publish, None)
        .unwrap();
        seeds.push((Version::V5, v5_publish));
        let mut cases = 0;
        for (version, seed) in seeds {
            for i in 0..seed.len() {
                for byte in [0x00, 0x01, 0x7F, 0x80, 0xFF, seed[i] ^ 0x55] {
                    for cut in [seed.len(), i + 1] {
                        let mut bytes = BytesMut::from(&seed[..cut]);
                        bytes[i] = byte;
                        let (mut client, server) = duplex(4096);
                        client.write_all(&bytes).await.unwrap();
                        drop(client);
                        let mut framed = Framed::new(server, 1024);
                        framed.version = version;
                        // Read until the stream ends or errors; the point is no panic.
                        while let Ok(Some(_)) = framed.read().await {}
                        cases += 1;
                    }
                }
            }
        }
        assert!(cases > 200, "{cases} cases");
    }

    #[tokio::test]
    async fn garbage_and_oversize_are_errors() {
        let (mut client, server) = duplex(1024);
        client
            .write_all(&[0x10, 0x05, 0, 1, b'x', 9, 9])
            .await
            .unwrap();
        let mut framed = Framed::new(server, 1024);
        assert!(matches!(
            framed.read_first().await,
            Err(CodecError::Malformed(_))
        ));
        let (mut client, server) = duplex(1024);
        client.write_all(&[0x10, 0xff, 0xff, 0x03]).await.unwrap();
        let mut framed = Framed::new(server, 1024);
        assert!(matches!(
            framed.read_first().await,
            Err(CodecError::TooLarge(_))
        ));
    }
}

//! One MQTT session: its subscriptions, the messages queued for it, the ones in
//! flight, and which connection (if any) it is attached to. A session outlives
//! its connection when the client asked for a persistent one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::{oneshot, Notify};
use tributary_model::{DeviceId, TenantId};

/// The namespace a session lives in: tenants never see each other's topics,
/// and a device connection sees only its own device API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// The broker of one tenant, used by API-key clients.
    Tenant(TenantId),
    /// The device API of one device (`v1/devices/me/...`).
    Device(DeviceId),
}

/// A published message, shared by every session it goes to.
#[derive(Debug)]
pub struct Message {
    /// Topic name.
    pub topic: String,
    /// Payload bytes, as published.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// Whether it was published as retained.
    pub retain: bool,
    /// MQTT 5 properties that travel with it (no topic alias or subscription ids).
    pub props: Option<PublishProperties>,
    /// When it expires (MQTT 5 message expiry).
    pub expires_at: Option<Instant>,
    /// Serial of the publishing session (0: the server), for no-local subscriptions.
    pub origin: u64,
}

impl Message {
    /// A message from the server itself.
    pub fn server(topic: String, payload: impl Into<Bytes>, qos: QoS) -> Self {
        Self {
            topic,
            payload: payload.into(),
            qos,
            retain: false,
            props: None,
            expires_at: None,
            origin: 0,
        }
    }

    /// Whether the message has expired by `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// What a subscription asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct SubOptions {
    /// Highest QoS to deliver at.
    pub qos: QoS,
    /// MQTT 5: do not deliver the session's own publishes.
    pub no_local: bool,
    /// MQTT 5: keep the retain flag on live deliveries.
    pub retain_as_published: bool,
    /// MQTT 5 subscription identifiers (several when filters overlap).
    pub ids: Vec<usize>,
}

impl Default for SubOptions {
    fn default() -> Self {
        Self {
            qos: QoS::AtMostOnce,
            no_local: false,
            retain_as_published: false,
            ids: Vec::new(),
        }
    }
}

impl SubOptions {
    /// Folds an overlapping subscription of the same session into this one.
    pub fn merge(&mut self, other: &SubOptions) {
        if other.qos > self.qos {
            self.qos = other.qos;
        }
        self.no_local &= other.no_local;
        self.retain_as_published |= other.retain_as_published;
        self.ids.extend(other.ids.iter().copied());
    }

    /// The subscription identifiers to send with a delivery.
    pub fn ids(&self) -> Vec<usize> {
        self.ids.clone()
    }
}

/// A message on its way to one session.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The message.
    pub msg: Arc<Message>,
    /// QoS of this delivery: the lower of the publish's and the subscription's.
    pub qos: QoS,
    /// Retain flag of this delivery.
    pub retain: bool,
    /// Subscription identifiers that matched.
    pub ids: Vec<usize>,
    /// The shared subscription it came through (`$share/...`), if any: when
    /// this session ends before acknowledging it, another member gets it.
    pub shared: Option<Arc<str>>,
}

impl Delivery {
    /// What it holds in a queue, roughly: topic, payload and bookkeeping.
    fn cost(&self) -> usize {
        64 + self.msg.topic.len() + self.msg.payload.len()
    }
}

/// How much a session's queue holds.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// QoS 1/2 messages.
    pub messages: usize,
    /// Bytes of QoS 0 messages (see [`Delivery`]'s cost).
    pub qos0_bytes: usize,
}

/// What to (re)send to a client.
#[derive(Debug)]
pub enum Outgoing {
    /// A PUBLISH with its packet id (0 for QoS 0) and DUP flag.
    Publish(u16, Delivery, bool),
    /// A PUBREL for a QoS 2 delivery the client has received.
    Release(u16),
}

struct InFlight {
    delivery: Delivery,
    /// PUBREC received and PUBREL sent (QoS 2).
    released: bool,
}

/// The mutable part of a session.
pub struct State {
    /// Filters and their options.
    pub subs: HashMap<String, SubOptions>,
    queue: VecDeque<Delivery>,
    /// QoS 1/2 deliveries in `queue` (bounded by count).
    reliable: usize,
    /// What the QoS 0 deliveries in `queue` hold (bounded by size).
    qos0_bytes: usize,
    inflight: BTreeMap<u16, InFlight>,
    next_pkid: u16,
    /// QoS 2 packet ids received: `false` while being handled, `true` once
    /// PUBREC'd (until PUBREL).
    pub incoming: HashMap<u16, bool>,
    /// The attached connection (0: none).
    owner: u64,
    kick: Option<oneshot::Sender<()>>,
    /// Dropping it cancels a pending delayed will of this session.
    will: Option<oneshot::Sender<()>>,
    /// How long the session lives after its connection ends.
    pub expiry: Duration,
    /// When its last connection ended (None while attached).
    pub detached_at: Option<Instant>,
}

/// One client's session.
pub struct Session {
    /// Unique within the process; identifies the session in subscription indexes.
    pub serial: u64,
    /// The namespace.
    pub space: Space,
    /// The client identifier.
    pub client_id: String,
    state: Mutex<State>,
    notify: Notify,
}

impl Session {
    /// A new, empty session.
    pub fn new(serial: u64, space: Space, client_id: String) -> Arc<Self> {
        Arc::new(Self {
            serial,
            space,
            client_id,
            state: Mutex::new(State {
                subs: HashMap::new(),
                queue: VecDeque::new(),
                reliable: 0,
                qos0_bytes: 0,
                inflight: BTreeMap::new(),
                next_pkid: 0,
                incoming: HashMap::new(),
                owner: 0,
                kick: None,
                will: None,
                expiry: Duration::ZERO,
                detached_at: Some(Instant::now()),
            }),
            notify: Notify::new(),
        })
    }

    /// The session's state, locked (briefly: never across an await).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves when messages were queued since the last call.
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// Queues a delivery unless its share of the queue is full; false when
    /// dropped. QoS 1/2 deliveries are bounded by `limits.messages`; QoS 0
    /// ones by `limits.qos0_bytes` (as Mosquitto bounds them by bytes, not
    /// count: a burst of small telemetry waiting for the connection's next
    /// turn is not thrown away), and not kept for a detached session.
    pub fn enqueue(&self, delivery: Delivery, limits: QueueLimits) -> bool {
        {
            let mut st = self.lock();
            if delivery.qos == QoS::AtMostOnce {
                let cost = delivery.cost();
                if st.owner == 0 || st.qos0_bytes + cost > limits.qos0_bytes {
                    return false;
                }
                st.qos0_bytes += cost;
            } else {
                if st.reliable >= limits.messages {
                    return false;
                }
                st.reliable += 1;
            }
            st.queue.push_back(delivery);
        }
        self.notify.notify_one();
        true
    }

    /// Attaches connection `conn`; the previous connection (if any) is told to
    /// leave through its kick channel. Returns this connection's kick channel.
    pub fn attach(&self, conn: u64, expiry: Duration) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        if let Some(old) = st.kick.replace(tx) {
            let _ = old.send(());
        }
        st.owner = conn;
        st.expiry = expiry;
        st.detached_at = None;
        // A resumed session cancels its pending will.
        st.will = None;
        rx
    }

    /// Registers a pending delayed will; it is cancelled when the session is resumed.
    pub fn pending_will(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.lock().will = Some(tx);
        rx
    }

    /// How long the session lives after its connection ends.
    pub fn expiry(&self) -> Duration {
        self.lock().expiry
    }

    /// Tells the attached connection (if any) to leave.
    pub fn kick(&self) {
        if let Some(old) = self.lock().kick.take() {
            let _ = old.send(());
        }
    }

    /// Detaches connection `conn`; false if another connection took over.
    pub fn detach(&self, conn: u64, expiry: Duration) -> bool {
        let mut st = self.lock();
        if st.owner != conn {
            return false;
        }
        st.owner = 0;
        st.kick = None;
        st.expiry = expiry;
        st.detached_at = Some(Instant::now());
        // QoS 0 messages are not kept for a detached session.
        st.queue.retain(|d| d.qos != QoS::AtMostOnce);
        st.qos0_bytes = 0;
        true
    }

    /// Whether a connection is attached.
    pub fn attached(&self) -> bool {
        self.lock().owner != 0
    }

    /// What an attaching connection must resend: unacknowledged PUBLISHes
    /// (with DUP) and PUBRELs, in packet-id order.
    pub fn resend(&self) -> Vec<Outgoing> {
        let st = self.lock();
        st.inflight
            .iter()
            .map(|(pkid, f)| {
                if f.released {
                    Outgoing::Release(*pkid)
                } else {
                    Outgoing::Publish(*pkid, f.delivery.clone(), true)
                }
            })
            .collect()
    }

    /// Takes queued deliveries while fewer than `window` QoS 1/2 messages are
    /// in flight, assigning packet ids; expired messages are dropped. Nothing
    /// unless connection `conn` still owns the session.
    pub fn take_sendable(&self, conn: u64, window: usize) -> Vec<Outgoing> {
        let now = Instant::now();
        let mut st = self.lock();
        let mut out = Vec::new();
        if st.owner != conn {
            return out;
        }
        while st.inflight.len() < window {
            let Some(d) = st.queue.pop_front() else { break };
            if d.qos == QoS::AtMostOnce {
                st.qos0_bytes -= d.cost();
            } else {
                st.reliable -= 1;
            }
            if d.msg.expired(now) {
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                out.push(Outgoing::Publish(0, d, false));
                continue;
            }
            let pkid = st.allocate_pkid();
            st.inflight.insert(
                pkid,
                InFlight {
                    delivery: d.clone(),
                    released: false,
                },
            );
            out.push(Outgoing::Publish(pkid, d, false));
        }
        out
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) on connection `conn`: the delivery is done.
    pub fn complete(&self, conn: u64, pkid: u16) -> bool {
        let mut st = self.lock();
        st.owner == conn && st.inflight.remove(&pkid).is_some()
    }

    /// PUBREC on connection `conn`: true if the packet id was in flight at QoS 2.
    pub fn received(&self, conn: u64, pkid: u16) -> bool {
        let mut st = self.lock();
        if st.owner != conn {
            return false;
        }
        match st.inflight.get_mut(&pkid) {
            Some(f) if f.delivery.qos == QoS::ExactlyOnce => {
                f.released = true;
                true
            }
            _ => false,
        }
    }

    /// Takes the QoS 1/2 deliveries of shared subscriptions this session has
    /// not acknowledged (queued, or sent and not acknowledged), for another
    /// member of their groups. A QoS 2 delivery the client has PUBREC'd was
    /// received and stays.
    pub fn take_shared_unacknowledged(&self) -> Vec<Delivery> {
        let mut st = self.lock();
        let reliable = |d: &Delivery| d.shared.is_some() && d.qos != QoS::AtMostOnce;
        let mut out: Vec<Delivery> = Vec::new();
        let unacked: Vec<u16> = st
            .inflight
            .iter()
            .filter(|(_, f)| !f.released && reliable(&f.delivery))
            .map(|(pkid, _)| *pkid)
            .collect();
        for pkid in unacked {
            if let Some(f) = st.inflight.remove(&pkid) {
                out.push(f.delivery);
            }
        }
        let queue = std::mem::take(&mut st.queue);
        for d in queue {
            if reliable(&d) {
                st.reliable -= 1;
                out.push(d);
            } else {
                st.queue.push_back(d);
            }
        }
        out
    }

    /// Messages waiting and in flight.
    pub fn backlog(&self) -> (usize, usize) {
        let st = self.lock();
        (st.queue.len(), st.inflight.len())
    }
}

impl State {
    fn allocate_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if !self.inflight.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(messages: usize) -> QueueLimits {
        QueueLimits {
            messages,
            qos0_bytes: 1 << 20,
        }
    }

    fn delivery(qos: QoS, topic: &str) -> Delivery {
        Delivery {
            msg: Arc::new(Message::server(topic.into(), "x", qos)),
            qos,
            retain: false,
            ids: vec![],
            shared: None,
        }
    }

    #[test]
    fn window_bounds_inflight_and_acks_free_it() {
        let s = Session::new(1, Space::Device(DeviceId::new()), "c".into());
        let _kick = s.attach(7, Duration::ZERO);
        for i in 0..5 {
            assert!(s.enqueue(delivery(QoS::AtLeastOnce, &format!("t/{i}")), limits(10)));
        }
        let first = s.take_sendable(7, 2);
        assert_eq!(first.len(), 2);
        assert!(s.take_sendable(7, 2).is_empty());
        assert!(s.take_sendable(8, 2).is_empty(), "not the owner");
        let Outgoing::Publish(pkid, _, false) = first[0] else {
            panic!("expected a publish")
        };
        assert!(!s.complete(8, pkid), "not the owner");
        assert!(s.complete(7, pkid));
        assert!(!s.complete(7, pkid));
        assert_eq!(s.take_sendable(7, 2).len(), 1);
        assert_eq!(s.backlog(), (2, 2));
    }

    #[test]
    fn queue_is_bounded_and_detached_sessions_skip_qos0() {
        let s = Session::new(1, Space::Device(DeviceId::new()), "c".into());
        assert!(!s.enqueue(delivery(QoS::AtMostOnce, "t"), limits(10)));
        assert!(s.enqueue(delivery(QoS::AtLeastOnce, "t"), limits(1)));
        assert!(!s.enqueue(delivery(QoS::AtLeastOnce, "t"), limits(1)));
    }

    #[test]
    fn qos0_is_bounded_by_bytes_and_qos1_by_count_each_apart() {
        let s = Session::new(1, Space::Device(DeviceId::new()), "c".into());
        let _kick = s.attach(7, Duration::ZERO);
        let cost = delivery(QoS::AtMostOnce, "t").cost();
        let limits = QueueLimits {
            messages: 2,
            qos0_bytes: 3 * cost,
        };
        for _ in 0..3 {
            assert!(s.enqueue(delivery(QoS::AtMostOnce, "t"), limits));
        }
        assert!(
            !s.enqueue(delivery(QoS::AtMostOnce, "t"), limits),
            "bytes full"
        );
        // QoS 0 beyond two messages does not take QoS 1's room, nor the reverse.
        assert!(s.enqueue(delivery(QoS::AtLeastOnce, "t"), limits));
        assert!(s.enqueue(delivery(QoS::AtLeastOnce, "t"), limits));
        assert!(
            !s.enqueue(delivery(QoS::AtLeastOnce, "t"), limits),
            "count full"
        );
        assert_eq!(s.backlog(), (5, 0));
        // Sending frees both.
        assert_eq!(s.take_sendable(7, 10).len(), 5);
        assert!(s.enqueue(delivery(QoS::AtMostOnce, "t"), limits));
        assert!(s.enqueue(delivery(QoS::AtLeastOnce, "t"), limits));
        // Detaching drops the QoS 0 ones and their bytes.
        assert!(s.detach(7, Duration::from_secs(60)));
        assert_eq!(s.backlog(), (1, 2));
        let _again = s.attach(8, Duration::ZERO);
        for _ in 0..3 {
            assert!(s.enqueue(delivery(QoS::AtMostOnce, "t"), limits));
        }
    }

    #[test]
    fn inflight_is_resent_after_reattach_and_takeover_kicks() {
        let s = Session::new(1, Space::Device(DeviceId::new()), "c".into());
        let mut kick1 = s.attach(1, Duration::from_secs(60));
        s.enqueue(delivery(QoS::ExactlyOnce, "a"), limits(10));
        s.enqueue(delivery(QoS::AtLeastOnce, "b"), limits(10));
        let sent = s.take_sendable(1, 10);
        let Outgoing::Publish(p1, _, _) = sent[0] else {
            panic!()
        };
        assert!(s.received(1, p1));
        let _kick2 = s.attach(2, Duration::from_secs(60));
        assert!(kick1.try_recv().is_ok(), "the old connection is kicked");
        assert!(
            !s.detach(1, Duration::ZERO),
            "the old connection no longer owns it"
        );
        let again = s.resend();
        assert!(matches!(again[0], Outgoing::Release(p) if p == p1));
        assert!(matches!(again[1], Outgoing::Publish(_, _, true)));
    }
}

//! The broker: sessions by namespace and client id, each namespace's
//! subscriptions and retained messages, and routing of publishes to sessions.
//! State is in memory; sessions and retained messages do not survive a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::RetainForwardRule;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::oneshot;

use crate::router::Router;
use crate::rpc::{Calls, RpcError};
use crate::session::{Delivery, Message, QueueLimits, Session, Space, SubOptions};
use crate::shared::{self, SharedGroups};
use crate::topic;

/// Limits of the broker; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct BrokerLimits {
    /// QoS 1/2 messages queued per session (beyond it new ones are dropped and counted).
    pub max_queued: usize,
    /// Bytes of QoS 0 messages queued per connected session (likewise).
    pub max_queued_qos0_bytes: usize,
    /// QoS 1/2 messages in flight per connection, each way.
    pub max_inflight: u16,
    /// Subscriptions per session.
    pub max_subscriptions: usize,
    /// Retained messages per tenant.
    pub max_retained: usize,
    /// Payload bytes of retained messages per tenant.
    pub max_retained_bytes: usize,
    /// Sessions (connected or persistent) per tenant, and per device.
    pub max_sessions_per_tenant: usize,
    /// Longest a detached persistent session is kept.
    pub max_session_expiry: Duration,
}

/// Why a subscription was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SubscribeError {
    /// The session has as many subscriptions as allowed.
    #[error("subscription limit reached")]
    Quota,
}

#[derive(Default)]
struct SpaceState {
    router: Router,
    shared: SharedGroups,
    retained: HashMap<String, Arc<Message>>,
    /// Payload bytes of the retained messages.
    retained_bytes: usize,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<(Space, String), Arc<Session>>,
    /// Sessions per namespace.
    per_space: HashMap<Space, usize>,
    spaces: HashMap<Space, SpaceState>,
}

/// Sessions, subscriptions and retained messages of every namespace.
pub struct Broker {
    limits: BrokerLimits,
    inner: Mutex<Inner>,
    serials: AtomicU64,
    /// Server-side RPC calls waiting for their device's answer.
    pub calls: Calls,
}

impl Broker {
    /// An empty broker.
    pub fn new(limits: BrokerLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            inner: Mutex::default(),
            serials: AtomicU64::new(1),
            calls: Calls::default(),
        })
    }

    /// The limits.
    pub fn limits(&self) -> &BrokerLimits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A number no other session or connection has.
    pub fn next_serial(&self) -> u64 {
        self.serials.fetch_add(1, Ordering::Relaxed)
    }

    /// Attaches connection `conn` to the session for `client_id` in `space`:
    /// the existing one (whose connection, if any, is told to leave) unless
    /// `clean` asks for a new one or it was not persistent. Returns the
    /// session, whether it existed before, and this connection's kick channel;
    /// `None` when the namespace has as many sessions as allowed.
    pub fn open(
        &self,
        space: Space,
        client_id: &str,
        clean: bool,
        conn: u64,
        expiry: Duration,
    ) -> Option<(Arc<Session>, bool, oneshot::Receiver<()>)> {
        let mut inner = self.lock();
        let key = (space, client_id.to_string());
        if let Some(old) = inner.sessions.get(&key).cloned() {
            old.kick();
            // A session without expiry ends with its connection, take-over or not.
            if !clean && !old.expiry().is_zero() {
                let kicked = old.attach(conn, expiry);
                return Some((old, true, kicked));
            }
            drop_session(&mut inner, &old, &self.limits);
        }
        let count = inner.per_space.get(&space).copied().unwrap_or(0);
        if count >= self.limits.max_sessions_per_tenant {
            return None;
        }
        let session = Session::new(self.next_serial(), space, client_id.to_string());
        let kicked = session.attach(conn, expiry);
        inner.sessions.insert(key, session.clone());
        *inner.per_space.entry(space).or_default() += 1;
        metrics::gauge!("tributary_mqtt_sessions").set(inner.sessions.len() as f64);
        Some((session, false, kicked))
    }

    /// Ends `session` now: its subscriptions go, queued messages are dropped.
    pub fn discard(&self, session: &Arc<Session>) {
        let mut inner = self.lock();
        drop_session(&mut inner, session, &self.limits);
        metrics::gauge!("tributary_mqtt_sessions").set(inner.sessions.len() as f64);
    }

    /// Subscribes `session` to a valid `filter`; returns the retained messages
    /// to send now, as the retain handling option asks.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &str,
        opts: SubOptions,
        retain_rule: RetainForwardRule,
    ) -> Result<Vec<Arc<Message>>, SubscribeError> {
        let mut inner = self.lock();
        let existed = {
            let mut st = session.lock();
            let existed = st.subs.contains_key(filter);
            if !existed && st.subs.len() >= self.limits.max_subscriptions {
                return Err(SubscribeError::Quota);
            }
            st.subs.insert(filter.to_string(), opts.clone());
            existed
        };
        let space = inner.spaces.entry(session.space).or_default();
        if let Some(Ok((_, inner_filter))) = shared::parse(filter) {
            // A shared subscription gets no retained messages (MQTT 5 4.8.2).
            space.shared.insert(filter, inner_filter, session, opts);
            return Ok(Vec::new());
        }
        space.router.insert(filter, session, opts);
        let send = match retain_rule {
            RetainForwardRule::OnEverySubscribe => true,
            RetainForwardRule::OnNewSubscribe => !existed,
            RetainForwardRule::Never => false,
        };
        if !send {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        Ok(space
            .retained
            .values()
            .filter(|m| !m.expired(now) && topic::matches(filter, &m.topic))
            .cloned()
            .collect())
    }

    /// Removes `session`'s subscription to `filter`; true if it had one.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let mut inner = self.lock();
        session.lock().subs.remove(filter);
        inner.spaces.get_mut(&session.space).is_some_and(|s| {
            if shared::parse(filter).is_some() {
                s.shared.remove(filter, session.serial)
            } else {
                s.router.remove(filter, session.serial)
            }
        })
    }

    /// Sends an RPC request (`{"method":…,"params":…}`) to a device; a two-way
    /// call waits up to `timeout` for its answer, a one-way call returns `None`
    /// as soon as the request is queued for the device.
    pub async fn call(
        &self,
        device: tributary_model::DeviceId,
        request: serde_json::Value,
        timeout: Duration,
        oneway: bool,
    ) -> Result<Option<bytes::Bytes>, RpcError> {
        // However this call ends, its entry goes with `pending`.
        let mut pending = self.calls.register(device);
        let msg = Message::server(
            format!("v1/devices/me/rpc/request/{}", pending.id),
            request.to_string(),
            QoS::AtLeastOnce,
        );
        if self.publish(Space::Device(device), msg) == 0 {
            return Err(RpcError::Offline);
        }
        let Some(answer) = pending.answer.take().filter(|_| !oneway) else {
            return Ok(None);
        };
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(answer)) => Ok(Some(answer)),
            _ => Err(RpcError::Timeout(timeout)),
        }
    }

    /// Routes a message to every matching session in `space` (and keeps or
    /// clears it as retained); returns how many sessions it matched.
    pub fn publish(&self, space: Space, msg: Message) -> usize {
        let msg = Arc::new(msg);
        let matched = {
            let mut inner = self.lock();
            let state = inner.spaces.entry(space).or_default();
            if msg.retain {
                if let Some(old) = state.retained.remove(&msg.topic) {
                    state.retained_bytes -= old.payload.len();
                }
                if msg.payload.is_empty() {
                    // An empty retained message clears the topic.
                } else if state.retained.len() < self.limits.max_retained
                    && state.retained_bytes + msg.payload.len() <= self.limits.max_retained_bytes
                {
                    state.retained_bytes += msg.payload.len();
                    state.retained.insert(msg.topic.clone(), msg.clone());
                } else {
                    metrics::counter!("tributary_mqtt_retained_refused_total").increment(1);
                    tracing::warn!(topic = %msg.topic, "retained message limit reached; not retained");
                }
            }
            state.matching(&msg.topic)
        };
        self.fan_out(&msg, &matched)
    }

    /// Routes a server message on `topic` whose payload is built only when
    /// something in `space` subscribes to it; returns how many sessions matched.
    pub fn publish_built(
        &self,
        space: Space,
        topic: String,
        qos: QoS,
        payload: impl FnOnce() -> String,
    ) -> usize {
        let matched = match self.lock().spaces.get_mut(&space) {
            Some(s) if s.router.len() > 0 || !s.shared.is_empty() => s.matching(&topic),
            _ => return 0,
        };
        if matched.is_empty() {
            return 0;
        }
        let msg = Arc::new(Message::server(topic, payload(), qos));
        self.fan_out(&msg, &matched)
    }

    /// Queues `msg` on every matched session (but the publisher's own no-local ones).
    fn fan_out(&self, msg: &Arc<Message>, matched: &[Matched]) -> usize {
        let mut delivered = 0;
        for (session, opts, shared) in matched {
            if opts.no_local && session.serial == msg.origin {
                continue;
            }
            delivered += 1;
            self.enqueue(
                session,
                Delivery {
                    msg: msg.clone(),
                    qos: min_qos(msg.qos, opts.qos),
                    retain: msg.retain && opts.retain_as_published,
                    ids: opts.ids(),
                    shared: shared.clone(),
                },
            );
        }
        metrics::counter!("tributary_mqtt_messages_routed_total").increment(delivered as u64);
        delivered
    }

    /// Sends `msg` to `session` alone, if one of its subscriptions matches.
    pub fn deliver_to(&self, session: &Arc<Session>, msg: Message) -> bool {
        let qos = {
            let st = session.lock();
            st.subs
                .iter()
                .filter(|(f, _)| {
                    let filter = match shared::parse(f) {
                        Some(Ok((_, inner))) => inner,
                        _ => f.as_str(),
                    };
                    topic::matches(filter, &msg.topic)
                })
                .map(|(_, o)| o.qos)
                .reduce(|a, b| if b > a { b } else { a })
        };
        let Some(qos) = qos else { return false };
        self.enqueue(
            session,
            Delivery {
                qos: min_qos(msg.qos, qos),
                msg: Arc::new(msg),
                retain: false,
                ids: Vec::new(),
                shared: None,
            },
        )
    }

    /// Queues a delivery on `session`, counting it when the queue is full.
    pub fn enqueue(&self, session: &Session, delivery: Delivery) -> bool {
        let limits = QueueLimits {
            messages: self.limits.max_queued,
            qos0_bytes: self.limits.max_queued_qos0_bytes,
        };
        let ok = session.enqueue(delivery, limits);
        if !ok && session.attached() {
            metrics::counter!("tributary_mqtt_messages_dropped_total").increment(1);
        }
        ok
    }

    /// Ends detached sessions past their expiry and drops expired retained messages.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        let expired: Vec<Arc<Session>> = inner
            .sessions
            .values()
            .filter(|s| {
                let st = s.lock();
                st.detached_at
                    .is_some_and(|at| now.duration_since(at) >= st.expiry)
            })
            .cloned()
            .collect();
        for s in &expired {
            drop_session(&mut inner, s, &self.limits);
        }
        for space in inner.spaces.values_mut() {
            let mut freed = 0;
            space.retained.retain(|_, m| {
                let keep = !m.expired(now);
                if !keep {
                    freed += m.payload.len();
                }
                keep
            });
            space.retained_bytes -= freed;
        }
        inner
            .spaces
            .retain(|_, s| s.router.len() > 0 || !s.retained.is_empty());
        metrics::gauge!("tributary_mqtt_sessions").set(inner.sessions.len() as f64);
    }

    /// Sessions currently known (attached or persistent).
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }
}

/// A session a message goes to, with the options it subscribed with and the
/// shared subscription it came through (if any).
type Matched = (Arc<Session>, SubOptions, Option<Arc<str>>);

impl SpaceState {
    /// Every session `topic` goes to: each matching plain subscription, and
    /// one member in turn of each matching shared group.
    fn matching(&mut self, topic: &str) -> Vec<Matched> {
        let mut out: Vec<Matched> = self
            .router
            .matches(topic)
            .into_iter()
            .map(|(s, o)| (s, o, None))
            .collect();
        if !self.shared.is_empty() {
            out.extend(
                self.shared
                    .pick(topic)
                    .into_iter()
                    .map(|(s, o, k)| (s, o, Some(k))),
            );
        }
        out
    }
}

fn drop_session(inner: &mut Inner, session: &Arc<Session>, limits: &BrokerLimits) {
    let key = (session.space, session.client_id.clone());
    if inner
        .sessions
        .get(&key)
        .is_some_and(|s| Arc::ptr_eq(s, session))
    {
        inner.sessions.remove(&key);
        if let Some(n) = inner.per_space.get_mut(&session.space) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_space.remove(&session.space);
            }
        }
    }
    let filters: Vec<String> = session.lock().subs.drain().map(|(f, _)| f).collect();
    let Some(space) = inner.spaces.get_mut(&session.space) else {
        return;
    };
    for f in filters {
        if shared::parse(&f).is_some() {
            space.shared.remove(&f, session.serial);
        } else {
            space.router.remove(&f, session.serial);
        }
    }
    // What it had not acknowledged of its shared subscriptions goes to
    // another member of each group (MQTT 5 4.8.2), with the group's QoS.
    for d in session.take_shared_unacknowledged() {
        let Some(key) = d.shared.clone() else {
            continue;
        };
        if let Some((other, opts, key)) = space.shared.pick_other(&key, session.serial) {
            let redelivery = Delivery {
                qos: min_qos(d.msg.qos, opts.qos),
                shared: Some(key),
                ..d
            };
            let ok = other.enqueue(
                redelivery,
                QueueLimits {
                    messages: limits.max_queued,
                    qos0_bytes: limits.max_queued_qos0_bytes,
                },
            );
            if !ok {
                metrics::counter!("tributary_mqtt_messages_dropped_total").increment(1);
            }
        }
    }
}

/// The lower of two QoS levels.
pub fn min_qos(a: QoS, b: QoS) -> QoS {
    if a < b {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::TenantId;

    fn broker() -> Arc<Broker> {
        Broker::new(BrokerLimits {
            max_queued: 10,
            max_queued_qos0_bytes: 1 << 20,
            max_inflight: 10,
            max_subscriptions: 2,
            max_retained: 1,
            max_retained_bytes: 1 << 20,
            max_sessions_per_tenant: 3,
            max_session_expiry: Duration::from_secs(60),
        })
    }

    fn msg(topic: &str, retain: bool) -> Message {
        Message {
            retain,
            ..Message::server(topic.into(), "v", QoS::AtLeastOnce)
        }
    }

    fn sub(qos: QoS) -> SubOptions {
        SubOptions {
            qos,
            ..SubOptions::default()
        }
    }

    #[test]
    fn tenants_are_isolated_and_retained_is_bounded() {
        let b = broker();
        let (t1, t2) = (
            Space::Tenant(TenantId::new()),
            Space::Tenant(TenantId::new()),
        );
        let (s1, _, _k) = b.open(t1, "c", true, 1, Duration::ZERO).unwrap();
        b.subscribe(
            &s1,
            "#",
            sub(QoS::AtLeastOnce),
            RetainForwardRule::OnEverySubscribe,
        )
        .unwrap();
        assert_eq!(b.publish(t2, msg("a", true)), 0, "another tenant's publish");
        assert_eq!(b.publish(t1, msg("a", false)), 1);
        assert_eq!(b.publish(t1, msg("r1", true)), 1);
        b.publish(t1, msg("r2", true));
        let (s2, _, _k2) = b.open(t1, "d", true, 2, Duration::ZERO).unwrap();
        let retained = b
            .subscribe(
                &s2,
                "+",
                sub(QoS::AtMostOnce),
                RetainForwardRule::OnEverySubscribe,
            )
            .unwrap();
        let topics: Vec<&str> = retained.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            vec!["r1"],
            "one retained message per tenant allowed"
        );
        assert_eq!(
            b.subscribe(&s2, "x", sub(QoS::AtMostOnce), RetainForwardRule::Never)
                .unwrap()
                .len(),
            0
        );
        assert_eq!(
            b.subscribe(&s2, "y", sub(QoS::AtMostOnce), RetainForwardRule::Never)
                .err(),
            Some(SubscribeError::Quota)
        );
    }

    #[test]
    fn persistent_sessions_survive_reopen_and_clean_ones_do_not() {
        let b = broker();
        let t = Space::Tenant(TenantId::new());
        let (s, present, _k) = b.open(t, "c", false, 1, Duration::from_secs(60)).unwrap();
        assert!(!present);
        b.subscribe(&s, "a", sub(QoS::AtLeastOnce), RetainForwardRule::Never)
            .unwrap();
        assert!(s.detach(1, Duration::from_secs(60)));
        assert_eq!(
            b.publish(t, msg("a", false)),
            1,
            "queued for the offline session"
        );
        let (again, present, _k) = b.open(t, "c", false, 2, Duration::from_secs(60)).unwrap();
        assert!(present && Arc::ptr_eq(&s, &again));
        assert_eq!(again.backlog().0, 1);
        let (fresh, present, _k) = b.open(t, "c", true, 3, Duration::ZERO).unwrap();
        assert!(!present && !Arc::ptr_eq(&s, &fresh));
        assert_eq!(
            b.publish(t, msg("a", false)),
            0,
            "old subscriptions are gone"
        );
        // A session without expiry is not carried on by a later persistent connect.
        let (carried, present, _k) = b.open(t, "c", false, 4, Duration::from_secs(60)).unwrap();
        assert!(!present && !Arc::ptr_eq(&fresh, &carried));
        // A detached session with zero expiry is swept.
        carried.detach(4, Duration::ZERO);
        b.sweep();
        assert_eq!(b.session_count(), 0);
        // The per-tenant session limit holds.
        for i in 0..3 {
            assert!(b
                .open(t, &format!("s{i}"), true, 10 + i, Duration::ZERO)
                .is_some());
        }
        assert!(b
            .open(t, "one-too-many", true, 20, Duration::ZERO)
            .is_none());
    }
}

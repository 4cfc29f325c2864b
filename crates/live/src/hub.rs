//! The registry of subscriptions and the fan-out of committed batches and
//! attribute changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;
use tributary_log::{Committed, Listener};
use tributary_model::{Batch, DeviceId, TenantId};

use crate::queue::{AttributeChange, Event, Queue, Update};
use crate::ring::Ring;
use crate::KeyFilter;

/// Limits of the hub; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Updates a client may have waiting before they coalesce.
    pub client_queue: usize,
    /// Most devices one client may subscribe to.
    pub max_subscriptions: usize,
    /// Most live clients of one tenant.
    pub max_clients_per_tenant: usize,
    /// Bytes of recent commits kept for clients that resume.
    pub replay_bytes: usize,
}

/// What a client is subscribed to.
#[derive(Default)]
struct Subs {
    devices: HashMap<DeviceId, KeyFilter>,
    /// Every device of the tenant, with this key filter.
    tenant: Option<KeyFilter>,
}

/// One connected client.
struct Client {
    id: u64,
    tenant: TenantId,
    queue: Mutex<Queue>,
    notify: Notify,
    subs: Mutex<Subs>,
}

impl Client {
    /// The key filter that applies to `device`, if the client wants it at all.
    fn filter_for(&self, device: DeviceId) -> Option<KeyFilter> {
        let subs = self.subs.lock().ok()?;
        subs.devices
            .get(&device)
            .cloned()
            .or_else(|| subs.tenant.clone())
    }
}

/// Fans committed batches out to subscribed clients. Cheap to share.
pub struct Hub {
    config: HubConfig,
    by_device: RwLock<HashMap<DeviceId, Vec<Arc<Client>>>>,
    by_tenant: RwLock<HashMap<TenantId, Vec<Arc<Client>>>>,
    clients_per_tenant: Mutex<HashMap<TenantId, usize>>,
    ring: Mutex<Ring>,
    next_id: AtomicU64,
}

/// Why a client could not connect.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// The tenant already has the most live clients allowed.
    TooManyClients(usize),
}

/// Why a subscription was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// The client already has the most subscriptions allowed.
    TooMany(usize),
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Arc<Self> {
        Arc::new(Self {
            ring: Mutex::new(Ring::new(config.replay_bytes)),
            config,
            by_device: RwLock::new(HashMap::new()),
            by_tenant: RwLock::new(HashMap::new()),
            clients_per_tenant: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Registers a client of `tenant`; it receives nothing until it subscribes.
    pub fn connect(self: &Arc<Self>, tenant: TenantId) -> Result<Subscription, ConnectError> {
        if let Ok(mut counts) = self.clients_per_tenant.lock() {
            let n = counts.entry(tenant).or_insert(0);
            if *n >= self.config.max_clients_per_tenant {
                return Err(ConnectError::TooManyClients(
                    self.config.max_clients_per_tenant,
                ));
            }
            *n += 1;
        }
        metrics::gauge!("tributary_live_clients").increment(1.0);
        Ok(Subscription {
            hub: self.clone(),
            client: Arc::new(Client {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                tenant,
                queue: Mutex::new(Queue::default()),
                notify: Notify::new(),
                subs: Mutex::new(Subs::default()),
            }),
        })
    }

    /// The clients that may want `device` of `tenant`, each once.
    fn audience(&self, tenant: TenantId, device: DeviceId) -> Vec<Arc<Client>> {
        let mut out: Vec<Arc<Client>> = Vec::new();
        if let Ok(reg) = self.by_device.read() {
            out.extend(reg.get(&device).into_iter().flatten().cloned());
        }
        if let Ok(reg) = self.by_tenant.read() {
            for c in reg.get(&tenant).into_iter().flatten() {
                if !out.iter().any(|o| o.id == c.id) {
                    out.push(c.clone());
                }
            }
        }
        // Isolation holds here too: a client only ever gets its own tenant's data.
        out.retain(|c| c.tenant == tenant);
        out
    }

    fn publish(&self, lsn: u64, batch: &Batch) {
        for client in self.audience(batch.tenant, batch.device) {
            let Some(filter) = client.filter_for(batch.device) else {
                continue;
            };
            let points: Vec<_> = batch
                .points
                .iter()
                .filter(|p| {
                    filter
                        .as_ref()
                        .is_none_or(|keys| keys.contains(p.key.as_str()))
                })
                .cloned()
                .collect();
            if points.is_empty() {
                continue;
            }
            let update = Update {
                seq: lsn,
                device: batch.device,
                points,
            };
            if let Ok(mut q) = client.queue.lock() {
                if q.push_update(update, self.config.client_queue) {
                    metrics::counter!("tributary_live_lagged_total").increment(1);
                }
            }
            metrics::counter!("tributary_live_updates_total").increment(1);
            client.notify.notify_one();
        }
    }

    /// Tells subscribers of `device` that attributes changed.
    pub fn publish_attributes(
        &self,
        tenant: TenantId,
        device: DeviceId,
        scope: &str,
        values: &BTreeMap<String, serde_json::Value>,
    ) {
        for client in self.audience(tenant, device) {
            if client.filter_for(device).is_none() {
                continue;
            }
            let change = AttributeChange {
                device,
                scope: scope.to_string(),
                values: values.clone(),
            };
            if let Ok(mut q) = client.queue.lock() {
                if q.push_attributes(change, self.config.client_queue) {
                    metrics::counter!("tributary_live_lagged_total").increment(1);
                }
            }
            client.notify.notify_one();
        }
    }

    /// Updates of `tenant` after `since` for the devices `wanted` accepts,
    /// if recent enough to be in memory; `None` means: ask the store.
    pub fn replay(
        &self,
        tenant: TenantId,
        since: u64,
        wanted: impl Fn(DeviceId) -> Option<KeyFilter>,
    ) -> Option<Vec<Update>> {
        let entries = self.ring.lock().ok()?.since(since)?;
        Some(
            entries
                .iter()
                .filter_map(|e| Some((e.lsn, e.event.telemetry()?)))
                .filter(|(_, batch)| batch.tenant == tenant)
                .filter_map(|(lsn, batch)| {
                    let filter = wanted(batch.device)?;
                    let points: Vec<_> = batch
                        .points
                        .iter()
                        .filter(|p| filter.as_ref().is_none_or(|k| k.contains(p.key.as_str())))
                        .cloned()
                        .collect();
                    (!points.is_empty()).then(|| Update {
                        seq: lsn,
                        device: batch.device,
                        points,
                    })
                })
                .collect(),
        )
    }

    fn remove_device(&self, client: &Arc<Client>, device: DeviceId) {
        if let Ok(mut registry) = self.by_device.write() {
            if let Some(list) = registry.get_mut(&device) {
                list.retain(|c| c.id != client.id);
                if list.is_empty() {
                    registry.remove(&device);
                }
            }
        }
    }

    fn remove_tenant(&self, client: &Arc<Client>) {
        if let Ok(mut registry) = self.by_tenant.write() {
            if let Some(list) = registry.get_mut(&client.tenant) {
                list.retain(|c| c.id != client.id);
                if list.is_empty() {
                    registry.remove(&client.tenant);
                }
            }
        }
    }
}

impl Listener for Hub {
    fn on_commit(&self, entries: &[Arc<Committed>]) {
        if let Ok(mut ring) = self.ring.lock() {
            for e in entries {
                ring.push(e);
            }
        }
        for e in entries {
            match &e.event {
                tributary_model::Event::Telemetry(batch) => self.publish(e.lsn, batch),
                tributary_model::Event::Attributes(a) => {
                    self.publish_attributes(a.tenant, a.device, a.scope.as_str(), &a.update())
                }
                _ => {}
            }
        }
    }
}

/// A client's handle: subscribe, unsubscribe, receive. Dropping it disconnects.
pub struct Subscription {
    hub: Arc<Hub>,
    client: Arc<Client>,
}

impl Subscription {
    /// Subscribes to `device` (which the caller has checked is in the client's
    /// tenant); `keys` empty means all keys. Re-subscribing replaces the key filter.
    pub fn subscribe(&self, device: DeviceId, keys: &[String]) -> Result<(), SubscribeError> {
        let filter: KeyFilter = (!keys.is_empty()).then(|| keys.iter().cloned().collect());
        {
            let Ok(mut subs) = self.client.subs.lock() else {
                return Ok(());
            };
            if !subs.devices.contains_key(&device)
                && subs.devices.len() >= self.hub.config.max_subscriptions
            {
                return Err(SubscribeError::TooMany(self.hub.config.max_subscriptions));
            }
            if subs.devices.insert(device, filter).is_some() {
                return Ok(());
            }
        }
        if let Ok(mut registry) = self.hub.by_device.write() {
            registry
                .entry(device)
                .or_default()
                .push(self.client.clone());
        }
        Ok(())
    }

    /// Subscribes to every device of the client's tenant, present and future.
    pub fn subscribe_tenant(&self, keys: &[String]) {
        let filter: KeyFilter = (!keys.is_empty()).then(|| keys.iter().cloned().collect());
        let newly = self
            .client
            .subs
            .lock()
            .map(|mut s| s.tenant.replace(filter).is_none())
            .unwrap_or(false);
        if newly {
            if let Ok(mut registry) = self.hub.by_tenant.write() {
                registry
                    .entry(self.client.tenant)
                    .or_default()
                    .push(self.client.clone());
            }
        }
    }

    /// Stops updates for `device`; true when it was subscribed.
    pub fn unsubscribe(&self, device: DeviceId) -> bool {
        let was = self
            .client
            .subs
            .lock()
            .map(|mut s| s.devices.remove(&device).is_some())
            .unwrap_or(false);
        if was {
            self.hub.remove_device(&self.client, device);
        }
        was
    }

    /// Stops the tenant-wide subscription; true when there was one.
    pub fn unsubscribe_tenant(&self) -> bool {
        let was = self
            .client
            .subs
            .lock()
            .map(|mut s| s.tenant.take().is_some())
            .unwrap_or(false);
        if was {
            self.hub.remove_tenant(&self.client);
        }
        was
    }

    /// The key filter that applies to `device` now, if subscribed.
    pub fn filter_for(&self, device: DeviceId) -> Option<KeyFilter> {
        self.client.filter_for(device)
    }

    /// The devices subscribed one by one.
    pub fn devices(&self) -> Vec<DeviceId> {
        self.client
            .subs
            .lock()
            .map(|s| s.devices.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Waits for the next event; `None` once closed.
    pub async fn recv(&self) -> Option<Event> {
        loop {
            let notified = self.client.notify.notified();
            if let Ok(mut q) = self.client.queue.lock() {
                if let Some(e) = q.pop() {
                    return Some(e);
                }
                if q.closed {
                    return None;
                }
            }
            notified.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let (devices, tenant) = self
            .client
            .subs
            .lock()
            .map(|mut s| {
                (
                    s.devices.drain().map(|(d, _)| d).collect::<Vec<_>>(),
                    s.tenant.take().is_some(),
                )
            })
            .unwrap_or_default();
        for d in devices {
            self.hub.remove_device(&self.client, d);
        }
        if tenant {
            self.hub.remove_tenant(&self.client);
        }
        if let Ok(mut q) = self.client.queue.lock() {
            q.closed = true;
        }
        if let Ok(mut counts) = self.hub.clients_per_tenant.lock() {
            if let Some(n) = counts.get_mut(&self.client.tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&self.client.tenant);
                }
            }
        }
        metrics::gauge!("tributary_live_clients").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::{Batch, Point, Value};

    fn config() -> HubConfig {
        HubConfig {
            client_queue: 8,
            max_subscriptions: 2,
            max_clients_per_tenant: 2,
            replay_bytes: 1 << 20,
        }
    }

    fn committed(lsn: u64, tenant: TenantId, device: DeviceId) -> Arc<Committed> {
        Arc::new(Committed {
            lsn,
            event: tributary_model::Event::Telemetry(Batch {
                tenant,
                device,
                points: vec![
                    Point {
                        key: "a".into(),
                        ts: 1,
                        value: Value::Int(1),
                    },
                    Point {
                        key: "b".into(),
                        ts: 1,
                        value: Value::Int(2),
                    },
                ],
            }),
        })
    }

    #[tokio::test]
    async fn subscribers_get_their_devices_keys_only() {
        let hub = Hub::new(config());
        let (t, d, other) = (TenantId::new(), DeviceId::new(), DeviceId::new());
        let sub = hub.connect(t).unwrap();
        sub.subscribe(d, &["a".to_string()]).unwrap();
        hub.on_commit(&[committed(1, t, other), committed(2, t, d)]);
        let Some(Event::Update(u)) = sub.recv().await else {
            panic!()
        };
        assert_eq!((u.seq, u.device, u.points.len()), (2, d, 1));
        assert_eq!(u.points[0].key, "a");

        // Another tenant's batch for the same device id never arrives.
        hub.on_commit(&[committed(3, TenantId::new(), d)]);
        assert!(sub.unsubscribe(d));
        hub.on_commit(&[committed(4, t, d)]);
        sub.subscribe(d, &[]).unwrap();
        hub.on_commit(&[committed(5, t, d)]);
        let Some(Event::Update(u)) = sub.recv().await else {
            panic!()
        };
        assert_eq!((u.seq, u.points.len()), (5, 2));

        sub.subscribe(other, &[]).unwrap();
        assert_eq!(
            sub.subscribe(DeviceId::new(), &[]),
            Err(SubscribeError::TooMany(2))
        );
        drop(sub);
        assert!(hub.by_device.read().unwrap().is_empty(), "drop unregisters");
    }

    #[tokio::test]
    async fn tenant_subscriptions_attributes_replay_and_client_limits() {
        let hub = Hub::new(config());
        let (t, d) = (TenantId::new(), DeviceId::new());
        let sub = hub.connect(t).unwrap();
        sub.subscribe_tenant(&[]);
        sub.subscribe(d, &["b".to_string()]).unwrap();
        hub.on_commit(&[
            committed(1, t, DeviceId::new()),
            committed(2, t, d),
            committed(3, TenantId::new(), d),
        ]);
        let Some(Event::Update(u)) = sub.recv().await else {
            panic!()
        };
        assert_eq!((u.seq, u.points.len()), (1, 2), "tenant-wide: all keys");
        let Some(Event::Update(u)) = sub.recv().await else {
            panic!()
        };
        assert_eq!(
            (u.seq, u.points.len()),
            (2, 1),
            "device filter wins, delivered once"
        );
        hub.publish_attributes(
            t,
            d,
            "shared",
            &[("x".to_string(), serde_json::json!(1))].into(),
        );
        assert!(
            matches!(sub.recv().await, Some(Event::Attributes(a)) if a.device == d && a.scope == "shared")
        );

        let replay = hub.replay(t, 1, |dev| (dev == d).then_some(None)).unwrap();
        assert_eq!(
            replay.iter().map(|u| u.seq).collect::<Vec<_>>(),
            vec![2],
            "other tenants never replayed"
        );

        let _second = hub.connect(t).unwrap();
        assert_eq!(hub.connect(t).err(), Some(ConnectError::TooManyClients(2)));
        drop(sub);
        assert!(hub.connect(t).is_ok(), "a slot frees on disconnect");
        assert!(hub.by_tenant.read().unwrap().is_empty());
    }
}

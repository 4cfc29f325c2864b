//! The registry of subscriptions and the fan-out of committed batches.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;
use tributary_model::{DeviceId, TenantId};
use tributary_pipeline::{Committed, Listener};

use crate::queue::{Event, Queue, Update};

/// Limits of the hub; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Updates a client may have waiting before they coalesce.
    pub client_queue: usize,
    /// Most devices one client may subscribe to.
    pub max_subscriptions: usize,
}

/// One connected client.
struct Client {
    id: u64,
    tenant: TenantId,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Subscribed devices and their key filter (`None`: all keys).
    subs: Mutex<HashMap<DeviceId, Option<HashSet<String>>>>,
}

/// Fans committed batches out to subscribed clients. Cheap to share.
pub struct Hub {
    config: HubConfig,
    by_device: RwLock<HashMap<DeviceId, Vec<Arc<Client>>>>,
    next_id: AtomicU64,
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            by_device: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Registers a client of `tenant`; it receives nothing until it subscribes.
    pub fn connect(self: &Arc<Self>, tenant: TenantId) -> Subscription {
        metrics::gauge!("tributary_live_clients").increment(1.0);
        Subscription {
            hub: self.clone(),
            client: Arc::new(Client {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                tenant,
                queue: Mutex::new(Queue::default()),
                notify: Notify::new(),
                subs: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn publish(&self, entry: &Committed) {
        let Ok(registry) = self.by_device.read() else {
            return;
        };
        let Some(clients) = registry.get(&entry.batch.device) else {
            return;
        };
        for client in clients {
            // Isolation holds here too: a client only ever gets its own tenant's batches.
            if client.tenant != entry.batch.tenant {
                continue;
            }
            let filter = client
                .subs
                .lock()
                .ok()
                .and_then(|s| s.get(&entry.batch.device).cloned());
            let Some(filter) = filter else { continue };
            let points: Vec<_> = entry
                .batch
                .points
                .iter()
                .filter(|p| filter.as_ref().is_none_or(|keys| keys.contains(&p.key)))
                .cloned()
                .collect();
            if points.is_empty() {
                continue;
            }
            let update = Update {
                seq: entry.lsn,
                device: entry.batch.device,
                points,
            };
            if let Ok(mut q) = client.queue.lock() {
                if q.push(update, self.config.client_queue) {
                    metrics::counter!("tributary_live_lagged_total").increment(1);
                }
            }
            metrics::counter!("tributary_live_updates_total").increment(1);
            client.notify.notify_one();
        }
    }

    fn remove(&self, client: &Arc<Client>, device: DeviceId) {
        if let Ok(mut registry) = self.by_device.write() {
            if let Some(list) = registry.get_mut(&device) {
                list.retain(|c| c.id != client.id);
                if list.is_empty() {
                    registry.remove(&device);
                }
            }
        }
    }
}

impl Listener for Hub {
    fn on_commit(&self, entries: &[Arc<Committed>]) {
        for e in entries {
            self.publish(e);
        }
    }
}

/// Why a subscription was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// The client already has the most subscriptions allowed.
    TooMany(usize),
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
        let filter = (!keys.is_empty()).then(|| keys.iter().cloned().collect());
        {
            let Ok(mut subs) = self.client.subs.lock() else {
                return Ok(());
            };
            if !subs.contains_key(&device) && subs.len() >= self.hub.config.max_subscriptions {
                return Err(SubscribeError::TooMany(self.hub.config.max_subscriptions));
            }
            if subs.insert(device, filter).is_some() {
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

    /// Stops updates for `device`; true when it was subscribed.
    pub fn unsubscribe(&self, device: DeviceId) -> bool {
        let was = self
            .client
            .subs
            .lock()
            .map(|mut s| s.remove(&device).is_some())
            .unwrap_or(false);
        if was {
            self.hub.remove(&self.client, device);
        }
        was
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
        let devices: Vec<DeviceId> = self
            .client
            .subs
            .lock()
            .map(|mut s| s.drain().map(|(d, _)| d).collect())
            .unwrap_or_default();
        for d in devices {
            self.hub.remove(&self.client, d);
        }
        if let Ok(mut q) = self.client.queue.lock() {
            q.closed = true;
        }
        metrics::gauge!("tributary_live_clients").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::{Batch, Point, Value};

    fn committed(lsn: u64, tenant: TenantId, device: DeviceId) -> Arc<Committed> {
        Arc::new(Committed {
            lsn,
            batch: Batch {
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
            },
        })
    }

    #[tokio::test]
    async fn subscribers_get_their_devices_keys_only() {
        let hub = Hub::new(HubConfig {
            client_queue: 8,
            max_subscriptions: 2,
        });
        let (t, d, other) = (TenantId::new(), DeviceId::new(), DeviceId::new());
        let sub = hub.connect(t);
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
}

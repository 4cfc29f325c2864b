//! MQTT: one connection per device (username = its access token for
//! Tributary's device API), or one shared connection to a plain broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions as RumqttOptions, Packet, QoS};

use super::{telemetry_json, Outcome};
use crate::generator::Message;

/// How to reach the broker.
#[derive(Clone, Debug)]
pub struct MqttOptions {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// 0 or 1.
    pub qos: u8,
    /// Topic; `{device}` is replaced by the device name. Tributary: `v1/devices/me/telemetry`.
    pub topic: String,
    /// One connection per device (true) or one shared connection.
    pub per_device: bool,
}

struct Conn {
    client: AsyncClient,
    acks: Arc<AtomicU64>,
    published: AtomicU64,
}

/// Publishes each message as the ThingsBoard JSON payload.
pub struct MqttTarget {
    opts: MqttOptions,
    names: Vec<String>,
    conns: Vec<Conn>,
}

impl MqttTarget {
    /// Connects; `usernames` (device tokens) are used per device when given.
    pub async fn connect(
        opts: MqttOptions,
        names: Vec<String>,
        usernames: Option<Vec<String>>,
    ) -> Result<Self, String> {
        let n = if opts.per_device { names.len() } else { 1 };
        let mut conns = Vec::with_capacity(n);
        for (i, name) in names.iter().enumerate().take(n) {
            let client_id = if opts.per_device {
                name.clone()
            } else {
                format!("tributary-sim-{}", std::process::id())
            };
            let mut o = RumqttOptions::new(client_id, opts.host.clone(), opts.port);
            o.set_keep_alive(Duration::from_secs(30));
            o.set_inflight(100);
            if let Some(u) = usernames.as_ref().and_then(|u| u.get(i)) {
                o.set_credentials(u.clone(), "");
            }
            let (client, mut eventloop) = AsyncClient::new(o, 1024);
            let acks = Arc::new(AtomicU64::new(0));
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
            let task_acks = acks.clone();
            tokio::spawn(async move {
                let mut ready = Some(ready_tx);
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(Ok(()));
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            task_acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(Err(e.to_string()));
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
            match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    return Err(format!(
                        "MQTT connect to {}:{} failed: {e}",
                        opts.host, opts.port
                    ))
                }
                _ => {
                    return Err(format!(
                        "MQTT connect to {}:{} timed out",
                        opts.host, opts.port
                    ))
                }
            }
            conns.push(Conn {
                client,
                acks,
                published: AtomicU64::new(0),
            });
        }
        Ok(Self { opts, names, conns })
    }

    pub(super) async fn send(&self, msg: &Message) -> Outcome {
        let conn = &self.conns[if self.opts.per_device { msg.device } else { 0 }];
        let name = self
            .names
            .get(msg.device)
            .map(String::as_str)
            .unwrap_or_default();
        let topic = self.opts.topic.replace("{device}", name);
        let qos = if self.opts.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let payload = serde_json::to_vec(&telemetry_json(msg)).unwrap_or_default();
        match conn.client.publish(topic, qos, false, payload).await {
            Ok(()) => {
                conn.published.fetch_add(1, Ordering::Relaxed);
                Outcome::Acked
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// Waits (up to 10 s) for every QoS 1 publish to be acknowledged; returns how many were not.
    pub async fn finish(&self) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let missing: u64 = if self.opts.qos == 0 {
                0
            } else {
                self.conns
                    .iter()
                    .map(|c| {
                        c.published
                            .load(Ordering::Relaxed)
                            .saturating_sub(c.acks.load(Ordering::Relaxed))
                    })
                    .sum()
            };
            if missing == 0 || tokio::time::Instant::now() > deadline {
                for c in &self.conns {
                    let _ = c.client.disconnect().await;
                }
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

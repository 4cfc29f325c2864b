//! Server-side RPC: a call made through the REST API is published to the
//! device on `v1/devices/me/rpc/request/{id}`, and its answer on
//! `v1/devices/me/rpc/response/{id}` is handed back to the waiting caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::oneshot;
use tributary_model::DeviceId;

use crate::broker::Broker;
use crate::session::{Message, Space};

/// Calls waiting for their answer, by device and request id.
#[derive(Default)]
pub struct Calls {
    next_id: AtomicU32,
    pending: Mutex<HashMap<(DeviceId, u32), oneshot::Sender<Bytes>>>,
}

/// Why an RPC call did not get an answer.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RpcError {
    /// No session of the device is subscribed to RPC requests.
    #[error("the device is not connected or not subscribed to v1/devices/me/rpc/request/+")]
    Offline,
    /// The device did not answer in time.
    #[error("the device did not answer within {0:?}")]
    Timeout(Duration),
}

impl Calls {
    fn register(&self, device: DeviceId) -> (u32, oneshot::Receiver<Bytes>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        self.lock().insert((device, id), tx);
        (id, rx)
    }

    fn forget(&self, device: DeviceId, id: u32) {
        self.lock().remove(&(device, id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(DeviceId, u32), oneshot::Sender<Bytes>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a device's answer to its waiting caller; false if nobody waits
    /// (unknown id, or the call timed out).
    pub fn answer(&self, device: DeviceId, id: &str, payload: Bytes) -> bool {
        let Ok(id) = id.parse::<u32>() else {
            return false;
        };
        match self.lock().remove(&(device, id)) {
            Some(tx) => tx.send(payload).is_ok(),
            None => false,
        }
    }
}

/// Removes a call's entry when dropped.
struct Forget<'a>(&'a Calls, DeviceId, u32);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1, self.2);
    }
}

impl Broker {
    /// Sends an RPC request (`{"method":…,"params":…}`) to a device; a two-way
    /// call waits up to `timeout` for its answer, a one-way call returns `None`
    /// as soon as the request is queued for the device.
    pub async fn call(
        &self,
        device: DeviceId,
        request: serde_json::Value,
        timeout: Duration,
        oneway: bool,
    ) -> Result<Option<Bytes>, RpcError> {
        let (id, rx) = self.calls.register(device);
        // However this call ends (answer, timeout, or the HTTP caller leaving),
        // its entry goes.
        let _forget = Forget(&self.calls, device, id);
        let msg = Message::server(
            format!("v1/devices/me/rpc/request/{id}"),
            request.to_string(),
            QoS::AtLeastOnce,
        );
        if self.publish(Space::Device(device), msg) == 0 {
            return Err(RpcError::Offline);
        }
        if oneway {
            return Ok(None);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(Some(answer)),
            _ => Err(RpcError::Timeout(timeout)),
        }
    }
}

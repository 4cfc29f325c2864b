//! Server-side RPC bookkeeping: a call made through the REST API is
//! published to the device on `v1/devices/me/rpc/request/{id}` (by
//! [`crate::Broker::call`]), and its answer on
//! `v1/devices/me/rpc/response/{id}` is handed back to the waiting caller
//! through [`Calls`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tributary_model::DeviceId;

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

/// A call waiting for its answer; its entry goes when this is dropped
/// (answer, timeout, or the HTTP caller leaving).
pub(crate) struct Pending<'a> {
    calls: &'a Calls,
    device: DeviceId,
    /// The request id.
    pub id: u32,
    /// Resolves with the device's answer.
    pub answer: Option<oneshot::Receiver<Bytes>>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.calls.forget(self.device, self.id);
    }
}

impl Calls {
    /// A new call to `device`, waiting for its answer.
    pub(crate) fn register(&self, device: DeviceId) -> Pending<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        self.lock().insert((device, id), tx);
        Pending {
            calls: self,
            device,
            id,
            answer: Some(rx),
        }
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

//! [`Revocations`]: tells open connections that a device or tenant changed
//! (credentials rotated, deleted, re-profiled), so they check their
//! credential and re-read their device at once instead of at their next
//! periodic check.

use tokio::sync::broadcast;
use tributary_model::{DeviceId, TenantId};

/// Notices kept for a connection that is slow to read them; one that falls
/// further behind checks its credential anyway.
const BACKLOG: usize = 1024;

/// A device, or a whole tenant, changed: its connections check again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The tenant.
    pub tenant: TenantId,
    /// The device; `None` for every device (and user) of the tenant.
    pub device: Option<DeviceId>,
}

impl Revoked {
    /// Whether a connection of `device` of `tenant` must check its credential.
    pub fn covers(&self, tenant: TenantId, device: Option<DeviceId>) -> bool {
        self.tenant == tenant && (self.device.is_none() || self.device == device)
    }
}

/// The broadcast of [`Revoked`] notices; cheap to clone.
#[derive(Clone)]
pub struct Revocations(broadcast::Sender<Revoked>);

impl Default for Revocations {
    fn default() -> Self {
        Self(broadcast::channel(BACKLOG).0)
    }
}

impl Revocations {
    /// Tells every listening connection.
    pub fn send(&self, notice: Revoked) {
        // No receiver is not an error: no connection is open.
        let _ = self.0.send(notice);
    }

    /// A receiver of the notices sent from now on.
    pub fn subscribe(&self) -> Listener {
        Listener(self.0.subscribe())
    }
}

/// One connection's view of the notices.
pub struct Listener(broadcast::Receiver<Revoked>);

impl Listener {
    /// Resolves when the connection of `device` of `tenant` must check its
    /// credential again: a notice covering it, or notices missed.
    pub async fn concerns(&mut self, tenant: TenantId, device: Option<DeviceId>) {
        loop {
            match self.0.recv().await {
                Ok(n) if n.covers(tenant, device) => return,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                // The server is stopping; its shutdown ends the connection.
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_notice_covers_its_devices_and_a_device_notice_only_that_device() {
        let (t, d, other) = (TenantId::new(), DeviceId::new(), DeviceId::new());
        let tenant = Revoked {
            tenant: t,
            device: None,
        };
        assert!(tenant.covers(t, Some(d)) && tenant.covers(t, None));
        assert!(!tenant.covers(TenantId::new(), Some(d)));
        let device = Revoked {
            tenant: t,
            device: Some(d),
        };
        assert!(device.covers(t, Some(d)));
        assert!(!device.covers(t, Some(other)) && !device.covers(t, None));
    }

    #[tokio::test]
    async fn a_listener_wakes_for_its_own_notice_and_not_for_others() {
        let r = Revocations::default();
        let (t, d) = (TenantId::new(), DeviceId::new());
        let mut l = r.subscribe();
        r.send(Revoked {
            tenant: t,
            device: Some(DeviceId::new()),
        });
        let woke =
            tokio::time::timeout(std::time::Duration::from_millis(50), l.concerns(t, Some(d)))
                .await;
        assert!(woke.is_err(), "another device's notice woke it");
        r.send(Revoked {
            tenant: t,
            device: Some(d),
        });
        tokio::time::timeout(std::time::Duration::from_secs(1), l.concerns(t, Some(d)))
            .await
            .expect("its own notice did not wake it");
    }
}

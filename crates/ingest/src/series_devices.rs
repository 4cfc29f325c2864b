//! [`SeriesDevices`]: the device each line-protocol series key (measurement
//! plus tag set) names, remembered so steady writes skip the metadata store,
//! and each tenant's budget of devices created by writes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tributary_model::{DeviceId, TenantId};
use tributary_store::Device;

/// Devices remembered by series key (per process); cleared wholesale when full.
const CACHE_ENTRIES: usize = 100_000;

/// Devices by (tenant, series key), so steady writes skip the metadata
/// store; and how many devices each tenant's writes created this minute.
#[derive(Default)]
pub struct SeriesDevices(
    Mutex<HashMap<(TenantId, String), Device>>,
    Mutex<HashMap<TenantId, (Instant, usize)>>,
);

impl SeriesDevices {
    /// Takes up to `wanted` device creations from the tenant's budget of
    /// `per_minute`; returns how many were granted.
    pub fn take_creations(&self, tenant: TenantId, wanted: usize, per_minute: usize) -> usize {
        let mut budgets = self.1.lock().unwrap_or_else(|p| p.into_inner());
        if budgets.len() >= CACHE_ENTRIES {
            budgets.retain(|_, (start, _)| start.elapsed() < Duration::from_secs(60));
        }
        let (start, used) = budgets.entry(tenant).or_insert((Instant::now(), 0));
        if start.elapsed() >= Duration::from_secs(60) {
            (*start, *used) = (Instant::now(), 0);
        }
        let granted = wanted.min(per_minute.saturating_sub(*used));
        *used += granted;
        granted
    }

    /// The device remembered for a series key.
    pub fn get(&self, tenant: TenantId, series: &str) -> Option<Device> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(tenant, series.to_string())).cloned()
    }

    /// Remembers the device of a series key.
    pub fn put(&self, device: Device, series: String) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
        map.insert((device.tenant, series), device);
    }

    /// Forgets every device of a tenant (deleted).
    pub fn forget_tenant(&self, tenant: TenantId) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(t, _), _| *t != tenant);
    }

    /// Forgets a device (deleted or renamed).
    pub fn forget(&self, device: DeviceId) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, d| d.id != device);
    }
}

//! Retention: every so often, each tenant's time series older than its
//! retention (or the server's default) are expired in the series store.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::meta::SettingsStore;
use crate::series::SeriesStore;
use crate::StoreError;

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// How long time series are kept when a tenant does not say.
#[derive(Clone, Copy, Debug)]
pub struct RetentionPolicy {
    /// Days kept by default; 0 keeps them forever.
    pub default_days: u32,
    /// How often retention is enforced.
    pub every: Duration,
}

/// The cutoff (ns) for `days` of retention at `now_ns`; `None` keeps everything.
pub fn cutoff(days: u32, now_ns: i64) -> Option<i64> {
    (days > 0).then(|| now_ns.saturating_sub(i64::from(days).saturating_mul(DAY_NS)))
}

/// Expires, once, every tenant's samples past its retention; returns how many tenants had one.
pub async fn enforce(
    meta: &dyn SettingsStore,
    series: &dyn SeriesStore,
    default_days: u32,
    now_ns: i64,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for t in meta.all_tenant_settings().await? {
        let days = t.retention_days.unwrap_or(default_days);
        if let Some(before) = cutoff(days, now_ns) {
            series.expire(t.id, before).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Enforces retention now and then every `policy.every`, until shutdown.
pub async fn run(
    meta: Arc<dyn crate::meta::MetaStore>,
    series: Arc<dyn SeriesStore>,
    policy: RetentionPolicy,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(policy.every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|down| *down) => return,
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        if let Err(e) = enforce(meta.as_ref(), series.as_ref(), policy.default_days, now).await {
            tracing::error!(error = %e, "enforcing retention failed; trying again later");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_is_days_before_now_or_none() {
        assert_eq!(cutoff(0, 10 * DAY_NS), None);
        assert_eq!(cutoff(7, 10 * DAY_NS), Some(3 * DAY_NS));
        assert_eq!(cutoff(u32::MAX, 0), Some(-i64::MAX), "saturates");
    }
}

//! Login rate limiting: failures per account and per client address in a
//! fixed window. Bounded: the oldest windows go first when the map is full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits of failed logins.
#[derive(Clone, Debug)]
pub struct LoginLimits {
    /// Failures allowed per account in one window.
    pub per_account: u32,
    /// Failures allowed per client address in one window.
    pub per_address: u32,
    /// Window length.
    pub window: Duration,
    /// Most accounts and addresses tracked.
    pub max_tracked: usize,
}

#[derive(Default)]
pub(crate) struct Limiter {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    /// Seconds to wait when `key` has used up `limit` failures, else `None`.
    pub(crate) fn blocked(&self, key: &str, limit: u32, window: Duration) -> Option<u64> {
        let map = self.windows.lock().ok()?;
        let (start, count) = map.get(key)?;
        let left = window.checked_sub(start.elapsed())?;
        (*count >= limit).then(|| left.as_secs().max(1))
    }

    /// Records a failure for `key`.
    pub(crate) fn fail(&self, key: &str, window: Duration, max_tracked: usize) {
        let Ok(mut map) = self.windows.lock() else {
            return;
        };
        if map.len() >= max_tracked && !map.contains_key(key) {
            map.retain(|_, (start, _)| start.elapsed() < window);
            if map.len() >= max_tracked {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(key.to_string()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    /// Forgets `key` (after a successful login).
    pub(crate) fn clear(&self, key: &str) {
        if let Ok(mut map) = self.windows.lock() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_stays_bounded() {
        let l = Limiter::default();
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(l.blocked("a", 3, w).is_none());
            l.fail("a", w, 10);
        }
        assert!(l.blocked("a", 3, w).is_some_and(|s| (1..=60).contains(&s)));
        l.clear("a");
        assert!(l.blocked("a", 3, w).is_none());
        for i in 0..100 {
            l.fail(&format!("k{i}"), w, 10);
        }
        assert!(l.windows.lock().unwrap().len() <= 10);
    }
}

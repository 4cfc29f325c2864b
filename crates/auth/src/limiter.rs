//! Failed-login limits as progressive delays. Each failure is counted for
//! the (account, address) pair, for the account and for the address; once a
//! count passes its free allowance, the next attempt under that key must wait
//! 1 s, then 2 s, 4 s … up to a cap, whatever password it brings. A failure
//! elsewhere can thus delay an account only through the account-wide count,
//! whose allowance is larger and whose delays stay short, so no one outside
//! can lock a user out. Bounded: the stalest entries go first when full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest delay the account-wide and address-wide counts impose: they slow
/// guessing spread over many addresses (or accounts), but must never lock a
/// user out.
const SHARED_MAX_DELAY: Duration = Duration::from_secs(60);

/// Limits of failed logins.
#[derive(Clone, Debug)]
pub struct LoginLimits {
    /// Failures of one account from one address before delays start there.
    pub per_account_address: u32,
    /// Failures of one account from anywhere before delays start for it.
    pub per_account: u32,
    /// Failures from one address (any account) before delays start for it.
    pub per_address: u32,
    /// Longest delay for one account at one address.
    pub max_delay: Duration,
    /// A key's failures are forgotten this long after its last one.
    pub window: Duration,
    /// Most keys tracked.
    pub max_tracked: usize,
}

/// The keys one attempt is counted under, each with its allowance and cap.
pub(crate) struct AttemptKeys {
    keys: [(String, u32, Duration); 3],
}

impl AttemptKeys {
    /// The keys of an attempt on `account` from `address`.
    pub(crate) fn new(limits: &LoginLimits, account: &str, address: &str) -> Self {
        let account = account.to_lowercase();
        Self {
            keys: [
                (
                    format!("pair:{account}\u{0}{address}"),
                    limits.per_account_address,
                    limits.max_delay,
                ),
                (
                    format!("account:{account}"),
                    limits.per_account,
                    limits.max_delay.min(SHARED_MAX_DELAY),
                ),
                (
                    format!("address:{address}"),
                    limits.per_address,
                    limits.max_delay.min(SHARED_MAX_DELAY),
                ),
            ],
        }
    }
}

#[derive(Default)]
pub(crate) struct Limiter {
    /// Failures by key: when the last one was, and how many in a row.
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    /// Seconds the attempt must still wait, if any key of it is delayed.
    pub(crate) fn wait(&self, attempt: &AttemptKeys, window: Duration) -> Option<u64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        attempt
            .keys
            .iter()
            .filter_map(|(key, free, cap)| {
                let (last, count) = map.get(key)?;
                let since = last.elapsed();
                if since >= window || count < free {
                    return None;
                }
                let left = delay(count - free, *cap).checked_sub(since)?;
                Some(left.as_secs_f64().ceil().max(1.0) as u64)
            })
            .max()
    }

    /// Records a failed attempt under each of its keys.
    pub(crate) fn fail(&self, attempt: &AttemptKeys, window: Duration, max_tracked: usize) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (key, _, _) in &attempt.keys {
            if map.len() >= max_tracked && !map.contains_key(key) {
                map.retain(|_, (last, _)| last.elapsed() < window);
                if map.len() >= max_tracked {
                    if let Some(stalest) = map
                        .iter()
                        .min_by_key(|(_, (last, _))| *last)
                        .map(|(k, _)| k.clone())
                    {
                        map.remove(&stalest);
                    }
                }
            }
            let entry = map.entry(key.clone()).or_insert((Instant::now(), 0));
            if entry.0.elapsed() >= window {
                entry.1 = 0;
            }
            *entry = (Instant::now(), entry.1.saturating_add(1));
        }
    }

    /// Forgets the account's failures after it proved its password (the
    /// address's count stays: it may be guessing other accounts).
    pub(crate) fn succeed(&self, attempt: &AttemptKeys) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (key, _, _) in &attempt.keys[..2] {
            map.remove(key);
        }
    }

    /// Counts one failure under a single `key`; returns how many in a row.
    pub(crate) fn count(&self, key: &str, window: Duration) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(key.to_string()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= window {
            entry.1 = 0;
        }
        *entry = (Instant::now(), entry.1.saturating_add(1));
        entry.1
    }
}

/// The wait after `over` failures beyond the allowance: 1 s doubling, capped.
fn delay(over: u32, cap: Duration) -> Duration {
    Duration::from_secs(1u64 << over.min(30)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LoginLimits {
        LoginLimits {
            per_account_address: 3,
            per_account: 10,
            per_address: 20,
            max_delay: Duration::from_secs(900),
            window: Duration::from_secs(900),
            max_tracked: 10,
        }
    }

    #[test]
    fn delays_grow_after_the_allowance_and_success_clears_them() {
        let (l, lim) = (Limiter::default(), limits());
        let a = AttemptKeys::new(&lim, "Victim@Example.com", "10.0.0.1");
        for _ in 0..3 {
            assert_eq!(l.wait(&a, lim.window), None);
            l.fail(&a, lim.window, 100);
        }
        assert_eq!(l.wait(&a, lim.window), Some(1));
        for _ in 0..4 {
            l.fail(&a, lim.window, 100);
        }
        // Seven failures: four past the allowance, so 2^4 = 16 s.
        assert!(l
            .wait(&a, lim.window)
            .is_some_and(|s| (15..=16).contains(&s)));
        l.succeed(&a);
        assert_eq!(l.wait(&a, lim.window), None);
    }

    #[test]
    fn another_address_cannot_lock_the_account() {
        let (l, lim) = (Limiter::default(), limits());
        let attacker = AttemptKeys::new(&lim, "victim@example.com", "203.0.113.5");
        for _ in 0..40 {
            l.fail(&attacker, lim.window, 100);
        }
        assert!(l.wait(&attacker, lim.window).is_some_and(|s| s >= 60));
        // The owner, elsewhere, waits at most the shared cap.
        let owner = AttemptKeys::new(&lim, "victim@example.com", "198.51.100.1");
        assert!(l.wait(&owner, lim.window).is_some_and(|s| s <= 60));
        // And a user behind the attacker's address waits at most that too.
        let neighbour = AttemptKeys::new(&lim, "other@example.com", "203.0.113.5");
        assert!(l.wait(&neighbour, lim.window).is_some_and(|s| s <= 60));
    }

    #[test]
    fn stays_bounded() {
        let (l, lim) = (Limiter::default(), limits());
        for i in 0..100 {
            let a = AttemptKeys::new(&lim, &format!("u{i}"), &format!("a{i}"));
            l.fail(&a, lim.window, 10);
        }
        assert!(l.failures.lock().unwrap().len() <= 10);
    }
}
